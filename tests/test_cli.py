"""The command line: user errors are one line and status 2, training never
writes the book's checkpoints/, --promote keeps what the book recorded."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mlkit.checkpoints as checkpoints
from mlkit.__main__ import main

ROOT = Path(__file__).resolve().parents[1]

BAD = [
    (["evaluate", "maml-sinusoid", "--tasks", "0"], "--tasks"),
    (["evaluate", "maml-sinusoid", "--tasks", "-3"], "--tasks"),
    (["evaluate", "maml-omniglot-5w1s", "--ways", "0"], "--ways"),
    (["evaluate", "maml-omniglot-5w1s", "--shots", "0"], "--shots"),
    (["evaluate", "maml-sinusoid", "--steps", "-1"], "--steps"),
    (["evaluate", "maml-sinusoid", "--alpha", "nan"], "--alpha"),
    (["evaluate", "maml-sinusoid", "--threads", "0"], "--threads"),
    (["evaluate", "maml-omniglot-5w1s", "--device", "cuda"], "--device"),
    (["evaluate", "maml-sinusoid", "--ways", "5"], "--ways is not used"),
    (["evaluate", "maml-sinusoid", "--lake-runs"], "--lake-runs is not used"),
    (
        ["evaluate", "maml-omniglot-5w1s", "--lake-runs"],
        "--lake-runs is not used",
    ),
    (["evaluate", "siamese-omniglot", "--steps", "3"], "--steps is not used"),
    (
        ["evaluate", "siamese-omniglot", "--alpha", "0.1"],
        "--alpha is not used",
    ),
    (
        ["evaluate", "siamese-omniglot", "--lake-runs", "--ways", "5"],
        "drop --ways",
    ),
    (["evaluate", "maml-omniglot-5w1s", "--split", "nowhere"], "--split"),
    (["evaluate", "no-such-checkpoint"], "NAME"),
    (["train", "maml-sinusoid", "--iterations", "0"], "--iterations"),
    (["train", "maml-sinusoid", "--max-minutes", "0"], "--max-minutes"),
    (["train", "maml-sinusoid", "--max-minutes", "inf"], "--max-minutes"),
    (["train", "maml-sinusoid", "--save-every", "-1"], "--save-every"),
    (["train", "maml-sinusoid", "--device", "tpu"], "--device"),
    (["train", "maml-sinusoid", "--device", "cuda:7"], "CUDA"),
    (["train", "siamese-omniglot", "--workers", "2"], "--workers is not used"),
    (
        ["train", "maml-sinusoid", "--promote", "--iterations", "3"],
        "--promote",
    ),
    (["train", "siamese-omniglot-ensemble", "--seed", "5"], "fixed seeds"),
    (["frobnicate"], "invalid choice"),
]


def _run(argv: list[str]) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "mlkit", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("argv, says", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_status_2(argv, says, refuses):
    refuses(argv, says)


def test_a_real_process_prints_no_traceback_and_debug_shows_it():
    status, _, err = _run(
        ["train", "siamese-omniglot-ensemble", "--seed", "5"]
    )
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    status, _, err = _run(
        ["--debug", "train", "siamese-omniglot-ensemble", "--seed", "5"]
    )
    assert status == 1 and "Traceback" in err and "ValueError" in err


def test_help_lists_every_recipe_with_its_summary_and_the_defaults():
    status, out, _ = _run(["evaluate", "--help"])
    assert status == 0
    from mlkit.__main__ import recipes

    for name, recipe in recipes().items():
        assert name in out and recipe.summary[:30] in " ".join(out.split())
    status, out, _ = _run(["train", "--help"])
    assert "(default: 120.0)" in out and "(default: cpu)" in out


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


@pytest.fixture
def folders(monkeypatch, tmp_path):
    """The book's checkpoints copied to tmp_path/ck, runs in tmp_path/runs."""
    ck = tmp_path / "ck"
    shutil.copytree(ROOT / "checkpoints", ck)
    monkeypatch.setattr(checkpoints, "CHECKPOINT_DIR", ck)
    monkeypatch.setattr(checkpoints, "RUN_DIR", tmp_path / "runs")
    return ck, tmp_path / "runs"


def test_training_leaves_the_checkpoints_unchanged_and_says_where(
    folders, capsys
):
    ck, runs = folders
    before = _digests(ck)
    assert main(["train", "maml-sinusoid", "--iterations", "1"]) == 0
    out = capsys.readouterr().out
    assert _digests(ck) == before
    where = runs / "maml-sinusoid"
    assert str(where) in out and "--promote" in out
    assert {"maml-sinusoid.pt", "MANIFEST.json", "state.pt"} <= set(
        p.name for p in where.iterdir()
    )
    # a second start would overwrite the run's work: refused, --resume
    # continues
    assert main(["train", "maml-sinusoid", "--iterations", "2"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (
        main(["train", "maml-sinusoid", "--iterations", "2", "--resume"]) == 0
    )
    assert _digests(ck) == before


def test_the_clone_itself_is_untouched_by_a_real_training_process(tmp_path):
    before = _digests(ROOT / "checkpoints")
    env = {"MLKIT_RUNS": str(tmp_path / "runs"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlkit",
            "train",
            "maml-sinusoid",
            "--iterations",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert str(tmp_path / "runs" / "maml-sinusoid") in proc.stdout
    assert _digests(ROOT / "checkpoints") == before


def test_promote_keeps_the_recorded_evaluations_and_names_stale_ones(
    folders, capsys
):
    ck, runs = folders
    old = json.loads((ck / "MANIFEST.json").read_text())["maml-sinusoid"]
    assert old["evaluations"], "the book records evaluations of maml-sinusoid"
    # nothing trained
    assert main(["train", "maml-sinusoid", "--promote"]) == 2
    assert "no checkpoint named 'maml-sinusoid'" in capsys.readouterr().err
    assert main(["train", "maml-sinusoid", "--iterations", "1"]) == 0
    assert main(["train", "maml-sinusoid", "--promote"]) == 0
    out = capsys.readouterr().out
    new = json.loads((ck / "MANIFEST.json").read_text())["maml-sinusoid"]
    assert new["iterations"] == 1 and new["sha256"] != old["sha256"]
    assert new["evaluations"] == old["evaluations"]
    assert "re-measure with: python -m mlkit evaluate maml-sinusoid" in out
    state, entry = checkpoints.load_checkpoint("maml-sinusoid")
    assert entry["sha256"] == new["sha256"]
    # the other checkpoints are as they were
    others = json.loads((ROOT / "checkpoints" / "MANIFEST.json").read_text())
    mine = json.loads((ck / "MANIFEST.json").read_text())
    assert {k: v for k, v in mine.items() if k != "maml-sinusoid"} == {
        k: v for k, v in others.items() if k != "maml-sinusoid"
    }


@pytest.mark.parametrize(
    "name", ["../escape", "a/b", "", ".hidden", "x" * 101, None, 3]
)
def test_a_checkpoint_name_is_never_a_path(tmp_path, name):
    with pytest.raises(ValueError, match="name must be"):
        checkpoints.save_checkpoint(
            name,
            {},
            config={},
            command="c",
            seed=0,
            iterations=0,
            wall_time_s=0.0,
            directory=tmp_path / "ck",
        )
    with pytest.raises(ValueError, match="name must be"):
        checkpoints.save_state(name, {}, directory=tmp_path / "runs")
    assert not any(tmp_path.rglob("*.pt"))


def test_an_unknown_checkpoint_is_a_clear_lookup_error(tmp_path):
    with pytest.raises(
        checkpoints.CheckpointNotFoundError, match="no checkpoint named 'nope'"
    ):
        checkpoints.load_checkpoint("nope", tmp_path)


def test_data_check_lists_every_missing_file_at_once(tmp_path, capsys):
    empty = tmp_path / "nothing"
    assert main(["data", "check", "--root", str(empty)]) == 1
    out = capsys.readouterr().out
    for name in ("images_background", "images_evaluation", "all_runs.zip"):
        assert name in out
    assert "md5" in out and "sha256" in out and "https://" in out
    assert not empty.exists()  # checking creates nothing


def test_data_fetch_without_network_is_one_line_and_leaves_nothing(
    tmp_path, monkeypatch, capsys
):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "data"
    assert main(["data", "fetch", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "all_runs.zip" in err, err
    assert not root.exists()


def test_missing_data_is_one_line_from_the_command_line(tmp_path):
    env = {
        "MLKIT_DATA": str(tmp_path / "empty"),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import urllib.request, urllib.error, sys\n"
            "def offline(*a, **k): raise urllib.error.URLError('offline')\n"
            "urllib.request.urlopen = offline\n"
            "from mlkit.__main__ import main\n"
            "sys.exit(main(['evaluate', 'protonet-omniglot', "
            "'--tasks', '5']))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "python -m mlkit data fetch" in (
        proc.stderr
    ), proc.stderr
    assert not (tmp_path / "empty").exists()


def test_seen_classes_are_refused_and_allowed_only_on_request(capsys):
    assert (
        main(["evaluate", "maml-omniglot-5w1s", "--split", "evaluation"]) == 2
    )
    err = capsys.readouterr().err
    assert "486 of the 659 characters" in err and "finn-test" in err
    assert main(["evaluate", "siamese-omniglot", "--split", "validation"]) == 2
    assert "--allow-seen" in capsys.readouterr().err


def _have_omniglot() -> bool:
    from mlkit import data

    return all(row["present"] for row in data.check_data()[:2])


@pytest.mark.skipif(
    not _have_omniglot(), reason="no Omniglot copy: set MLKIT_DATA"
)
def test_allow_seen_says_so_in_words_and_in_the_json(capsys):
    assert (
        main(
            [
                "evaluate",
                "maml-omniglot-5w1s",
                "--split",
                "finn-train",
                "--allow-seen",
                "--tasks",
                "2",
                "--json",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert "SEEN CLASSES" in out[0]
    assert json.loads(out[-1])["settings"]["seen_characters"] == 1200


@pytest.mark.skipif(
    not _have_omniglot(), reason="no Omniglot copy: set MLKIT_DATA"
)
@pytest.mark.parametrize("protocol, queries", [("paper", 1), ("book", 15)])
def test_the_json_line_names_the_protocol(capsys, protocol, queries):
    assert (
        main(
            [
                "evaluate",
                "maml-omniglot-5w1s",
                "--protocol",
                protocol,
                "--tasks",
                "3",
                "--json",
            ]
        )
        == 0
    )
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    settings = line["settings"]
    assert settings["protocol"] == protocol
    assert settings["queries_per_class"] == queries
    for key in ("split", "n_way", "k_shot", "inner_steps", "seed"):
        assert key in settings
    assert line["tasks"] == 3 and "median" in line


def test_the_sinusoid_json_carries_the_median(capsys):
    assert main(["evaluate", "maml-sinusoid", "--tasks", "20", "--json"]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["metric"] == "mse" and line["median"] <= line["iqr"][1]
    assert line["iqr"][0] <= line["median"]


def test_a_recipe_without_a_checkpoint_says_how_to_train_it(capsys):
    assert (
        main(["evaluate", "maml-omniglot-5w1s-background", "--tasks", "2"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no checkpoint yet" in err
    assert "train maml-omniglot-5w1s-background --promote" in err


@pytest.mark.skipif(
    not _have_omniglot(), reason="no Omniglot copy: set MLKIT_DATA"
)
def test_the_pretrained_baseline_is_a_recipe_like_the_others(folders, capsys):
    ck, runs = folders
    before = _digests(ck)
    assert main(["train", "pretrained-omniglot", "--iterations", "2"]) == 0
    assert _digests(ck) == before
    assert (runs / "pretrained-omniglot" / "pretrained-omniglot.pt").exists()
    # no state to resume from: a second start or --resume is refused
    assert main(["train", "pretrained-omniglot", "--iterations", "2"]) == 2
    assert "--promote" in capsys.readouterr().err
    assert main(["train", "pretrained-omniglot", "--resume"]) == 2
    assert main(["train", "pretrained-omniglot", "--promote"]) == 0
    entry = json.loads((ck / "MANIFEST.json").read_text())[
        "pretrained-omniglot"
    ]
    assert entry["iterations"] == 2
    assert entry["command"].startswith(
        "python -m mlkit train pretrained-omniglot"
    )
    capsys.readouterr()
    assert (
        main(["evaluate", "pretrained-omniglot", "--tasks", "3", "--json"])
        == 0
    )
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["tasks"] == 3 and line["settings"]["split"] == "evaluation"
    assert line["settings"]["finetune"]["chosen_on"] == "validation"
    # its training characters are refused as a test split
    assert (
        main(
            ["evaluate", "pretrained-omniglot", "--split", "background-train"]
        )
        == 2
    )
    assert "--allow-seen" in capsys.readouterr().err
