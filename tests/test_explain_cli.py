"""``python -m mlkit explain``: chapter 6's stored measurements are made by
the package's command, written with that command, and loaded back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlkit import nets
from mlkit.__main__ import main
from mlkit.interpret import measure

ROOT = Path(__file__).resolve().parents[1]


def _have_omniglot() -> bool:
    from mlkit import data

    return all(row["present"] for row in data.check_data()[:2])


@pytest.mark.parametrize("argv, says", [
    (["explain", "no-such-measure"], "MEASURE"),
    (["explain", "inner-loop-cka", "--tasks", "1"], "--tasks"),
    (["explain", "inner-loop-cka", "--boot", "0"], "--boot"),
    (["explain", "inner-loop-cka", "--method", "bca"], "--method"),
    (["explain", "inner-loop-cka", "--threads", "0"], "--threads"),
])
def test_bad_input_is_one_line_and_status_2(argv, says, refuses):
    refuses(argv, says)


def test_load_and_save_refuse_unknown_measures(tmp_path):
    with pytest.raises(ValueError, match="name must be one of"):
        measure.load("nope", tmp_path)
    with pytest.raises(FileNotFoundError, match="explain inner-loop-cka"):
        measure.load("inner-loop-cka", tmp_path)
    with pytest.raises(ValueError, match="result must name a measure"):
        measure.save({"measure": "nope"}, "cmd", tmp_path)


@pytest.mark.skipif(not _have_omniglot(),
                    reason="no Omniglot copy: set MLKIT_DATA")
def test_explain_writes_the_measurement_with_its_command(tmp_path, capsys):
    argv = ["explain", "inner-loop-cka", "--tasks", "3", "--boot", "20",
            "--out", str(tmp_path)]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    stored = measure.load("inner-loop-cka", tmp_path)
    assert stored["command"].startswith("python -m mlkit explain "
                                        "inner-loop-cka --tasks 3")
    assert stored["protocol"]["images"] == 3 * 5 * 15
    anil = stored["results"]["anil-omniglot-5w1s"]["layers"]
    # ANIL adapts only the head: its body is the initialisation's
    assert anil["body.0"]["own task"]["estimate"] == pytest.approx(1.0)
    for name, result in stored["results"].items():
        for layer, comps in result["layers"].items():
            assert set(comps) == set(measure.COMPARISONS)
            for c in comps.values():
                assert -1.0 <= c["estimate"] <= 1.0 + 1e-9


def test_the_stored_measurement_is_complete():
    path = ROOT / "checkpoints" / "explanations" / "inner-loop-cka.json"
    if not path.is_file():
        pytest.skip("no stored measurement yet")
    stored = json.loads(path.read_text())
    assert stored["command"].startswith("python -m mlkit explain")
    assert stored["protocol"]["images"] >= 300
    assert set(stored["results"]) >= set(measure.INNER_LOOP_MODELS)


def test_every_measure_is_stored_with_its_command():
    """Chapter 6 loads each measure; each stored file names its command."""
    for name in measure.MEASURES:
        path = ROOT / "checkpoints" / "explanations" / f"{name}.json"
        assert path.is_file(), f"{path} is missing: run python -m mlkit " \
                               f"explain {name}"
        stored = json.loads(path.read_text())
        assert stored["command"] == f"python -m mlkit explain {name}"
        assert stored["measure"] == name and stored["protocol"]


def test_the_stored_chapter_measurements_hold_what_the_chapter_reads():
    d = ROOT / "checkpoints" / "explanations"
    emb = json.loads((d / "metric-embeddings.json").read_text())
    assert set(emb["representations"]) >= {"MAML body", "pixels"}
    assert emb["protocol"]["drawings"] == 20 * emb["protocol"]["characters"]
    for unit in emb["top_units"]["units"]:
        assert len(unit["drawings"]) == 8
        assert all(0 <= i < emb["protocol"]["drawings"]
                   for i in unit["drawings"])
    margins = json.loads((d / "siamese-margins.json").read_text())
    for c in margins["margins"].values():
        assert len(c["d_same"]) == len(c["d_diff"]) > 0
        assert 0 <= c["nearest"] <= 1 and 0 <= c["inside_margin"] <= 1
    infl = json.loads((d / "support-influence.json").read_text())
    assert len(infl["maml"]["loo"]) == 15  # queries
    assert all(len(row) == 25 for row in infl["maml"]["loo"])  # supports
    att = json.loads((d / "attention-removal.json").read_text())
    n = att["protocol"]["episodes"]
    for r in att["results"].values():
        for values in (*r["fall"].values(), *r["flipped_percent"].values()):
            assert len(values) == n


@pytest.mark.parametrize("call, says", [
    (lambda: measure.metric_embeddings(names="siamese-omniglot"), "names"),
    (lambda: measure.metric_embeddings(stride=0), "stride"),
    (lambda: measure.siamese_margins(margins=()), "margins"),
    (lambda: measure.siamese_margins(n_tasks=1), "n_tasks"),
    (lambda: measure.small_siamese(0.0), "margin"),
    (lambda: measure.support_influence(first_seed=5, last_seed=5),
     "last_seed"),
    (lambda: measure.attention_removal(episodes=1), "episodes"),
    (lambda: measure.attention_removal(names=[]), "names"),
    (lambda: measure.metric_randomisation(pairs=2), "pairs"),
    (lambda: measure.metric_randomisation(n_steps=1), "n_steps"),
    (lambda: measure.metric_randomisation(names=[]), "names"),
    (lambda: measure.metric_randomisation(names=["maml-omniglot-5w1s"]),
     "names"),
    (lambda: measure.randomised_copies(torch.nn.Linear(2, 2), 0), "embed"),
    (lambda: measure.randomised_copies(nets.InductiveConvEmbedding(
        hidden=4), -1), "seed"),
])
def test_the_chapter_measures_refuse_bad_input(call, says):
    with pytest.raises(ValueError, match=says):
        call()


def test_randomised_copies_reinitialise_the_blocks_from_the_top():
    torch.manual_seed(0)
    embed = nets.InductiveConvEmbedding(hidden=4).eval()
    before = {k: v.clone() for k, v in embed.state_dict().items()}
    copies = measure.randomised_copies(embed, 1)
    assert len(copies) == len(measure.RANDOMISATION_CASCADE) == 4
    for j, net in enumerate(copies):
        state = net.state_dict()
        assert not net.training
        for name, value in state.items():
            if not value.is_floating_point():
                continue  # BatchNorm's batch counter
            block = int(name.split(".")[1])
            if block >= 3 - j:  # re-initialised: the top j + 1 blocks
                if "weight" in name and "body" in name and value.dim() > 1:
                    assert not torch.equal(value, before[name]), name
            else:
                assert torch.equal(value, before[name]), name
    # the trained network itself is untouched
    for name, value in embed.state_dict().items():
        assert torch.equal(value, before[name])
    # the same seed gives the same fresh weights
    again = measure.randomised_copies(embed, 1)[-1].state_dict()
    for name, value in copies[-1].state_dict().items():
        assert torch.equal(value, again[name])


def test_the_stored_randomisation_check_holds_what_the_chapter_reads():
    d = ROOT / "checkpoints" / "explanations"
    stored = json.loads((d / "metric-randomisation.json").read_text())
    n = stored["protocol"]["pairs"]
    assert n >= 50
    assert set(stored["results"]) == set(measure.METRIC_NETS)
    for r in stored["results"].values():
        assert set(r["spearman"]) == set(measure.RANDOMISATION_METHODS)
        for per_stage in r["spearman"].values():
            assert list(per_stage) == stored["protocol"]["cascade"]
            for values in per_stage.values():
                assert len(values) == n
                assert all(-1.0 <= v <= 1.0 for v in values)


@pytest.mark.skipif(not _have_omniglot(),
                    reason="no Omniglot copy: set MLKIT_DATA")
def test_metric_randomisation_runs_on_a_few_pairs():
    from mlkit.checkpoints import manifest

    if "protonet-omniglot" not in manifest():
        pytest.skip("no protonet-omniglot checkpoint")
    out = measure.metric_randomisation(["protonet-omniglot"], pairs=3,
                                       n_steps=4)
    rho = out["results"]["protonet-omniglot"]["spearman"]
    assert out["protocol"]["pairs"] == 3
    for per_stage in rho.values():
        assert len(per_stage) == 4
        assert all(len(v) == 3 for v in per_stage.values())
