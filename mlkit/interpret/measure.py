"""Expensive measurements of chapter 6, computed once and stored.

``python -m mlkit explain NAME`` runs one measurement of :data:`MEASURES`
and writes ``checkpoints/explanations/NAME.json`` with the command that made
it, the protocol (split, tasks, batch layout, seeds) and the sha256 of every
checkpoint it read; the chapter loads the file with :func:`load` (or
recomputes it with the function itself).

* ``inner-loop-cka``: Raghu et al. (2020)'s question, which layers change in
  the inner loop, for MAML, first-order MAML and ANIL, with the debiased CKA
  pooled over many test tasks, a 95% interval over tasks, and two
  baselines (a randomly initialised network of the same architecture; the
  network adapted to a different task).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ._checks import _check_positive_int, _check_seed
from .activations import default_layers, layer_activations
from .similarity import METHODS, _gram, _interval

__all__ = ["MEASURES", "explanations_dir", "inner_loop_cka", "load", "save"]

INNER_LOOP_MODELS = ("maml-omniglot-5w1s", "fomaml-omniglot-5w1s",
                     "anil-omniglot-5w1s")
COMPARISONS = {
    "own task": "initialisation vs adapted to the task of the images",
    "other task": "initialisation vs adapted to a different task",
    "random network": "initialisation vs a randomly initialised network "
                      "of the same architecture",
}


def explanations_dir() -> Path:
    """``checkpoints/explanations`` beside the book's checkpoints."""
    from ..checkpoints import CHECKPOINT_DIR

    return Path(CHECKPOINT_DIR) / "explanations"


def _adapted(model: torch.nn.Module, config: Any, episode: Any
             ) -> dict[str, torch.Tensor]:
    from .. import maml

    fast = maml.adapt(model, episode.support_x, episode.support_y,
                      loss_fn=maml.summed_cross_entropy(config.k_shot),
                      inner_steps=config.test_inner_steps,
                      alpha=maml._inner_alpha(model, config),
                      adapt_names=maml._adapt_names(model, config))
    return {k: v.detach() for k, v in fast.items()}


def inner_loop_cka(
    names: Sequence[str] = INNER_LOOP_MODELS,
    *,
    tasks: int = 12,
    queries: int = 15,
    method: str = "jackknife",
    n_boot: int = 1000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Which layers change in the inner loop (Raghu et al. 2020), measured
    with the debiased linear CKA on ``tasks * 5 * queries`` query images.

    For each checkpoint in ``names`` and each of ``tasks`` 5-way 1-shot test
    tasks (Finn's test split, seeds ``seed, seed + 1, ...``), the model is
    adapted on the task's support set with its recipe's test-time inner
    loop; every layer's representation of the task's queries (one batch of
    ``5 * queries`` images, BatchNorm with that batch's statistics, as Finn's
    code) is recorded under the initialisation, the adapted weights, the
    weights adapted to the *next* task, and a randomly initialised network of
    the same architecture (``torch.manual_seed(seed + 1)``). The
    representations are pooled over tasks and compared with
    :func:`~mlkit.interpret.cka_interval` (95% interval over tasks,
    ``method`` "jackknife" or "bootstrap"). Returns a JSON-ready dict.
    """
    from .. import data, maml
    from ..checkpoints import checkpoint_entry

    _check_positive_int("tasks", tasks, 3)
    _check_positive_int("queries", queries, 1)
    _check_positive_int("n_boot", n_boot, 10)
    _check_seed(seed)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(names, str) or not names:
        raise ValueError(f"names must be a non-empty list of checkpoint "
                         f"names, got {names!r}")
    say = progress or (lambda text: None)
    pool = data.omniglot_classes("finn-test")
    episodes = [data.sample_episode(pool, 5, 1, queries, seed=seed + t)
                for t in range(tasks)]
    groups = torch.arange(tasks).repeat_interleave(5 * queries)
    results: dict[str, Any] = {}
    sha: dict[str, str] = {}
    for name in names:
        start = time.perf_counter()
        model, config, entry = maml.load_model(name)
        sha[name] = checkpoint_entry(name)["sha256"]
        if config.task != "omniglot" or config.n_way != 5:
            raise ValueError(f"names must be 5-way Omniglot MAML-family "
                             f"checkpoints, got {name!r}")
        torch.manual_seed(seed + 1)
        random_net = maml.build_model(config)
        layers = default_layers(model)
        fast = [_adapted(model, config, ep) for ep in episodes]
        reps: dict[str, list[dict[str, torch.Tensor]]] = {
            k: [] for k in ("init", "own task", "other task",
                            "random network")}
        correct = []
        for t, ep in enumerate(episodes):
            reps["init"].append(layer_activations(model, None, ep.query_x))
            reps["own task"].append(
                layer_activations(model, fast[t], ep.query_x))
            reps["other task"].append(layer_activations(
                model, fast[(t + 1) % tasks], ep.query_x))
            reps["random network"].append(
                layer_activations(random_net, None, ep.query_x))
            logits = reps["own task"][-1]["head"]
            correct.append(float((logits.argmax(1) == ep.query_y)
                                 .float().mean()))
        per_layer: dict[str, Any] = {}
        for lay in layers:
            grams = {k: _gram(k, torch.cat([r[lay] for r in v]))
                     for k, v in reps.items()}
            per_layer[lay] = {}
            for comp in COMPARISONS:
                ci = _interval(grams["init"], grams[comp], groups, tasks,
                               method, n_boot, 0.95, seed)
                per_layer[lay][comp] = {"estimate": ci.estimate,
                                        "low": ci.low, "high": ci.high}
        acc = torch.tensor(correct) * 100
        results[name] = {
            "order": config.order,
            "layers": per_layer,
            "query_accuracy": {"mean": float(acc.mean()),
                               "per_task": [float(a) for a in acc]},
            "inner_loop": {"alpha": config.alpha,
                           "steps": config.test_inner_steps,
                           "adapted": "head only" if config.order == "anil"
                           else "all layers"},
        }
        say(f"{name}: {time.perf_counter() - start:.0f} s")
    return {
        "measure": "inner-loop-cka",
        "protocol": {
            "split": "finn-test", "ways": 5, "shots": 1,
            "queries_per_class": queries, "tasks": tasks,
            "images": tasks * 5 * queries,
            "task_seeds": [seed, seed + tasks - 1],
            "batch_layout": "adaptation on the task's 5 support images as "
                            "one batch; representations of the task's "
                            f"{5 * queries} query images as one batch; "
                            "BatchNorm with each batch's own statistics",
            "estimator": "debiased linear CKA (unbiased HSIC, Song et al. "
                         "2012) on the pooled images",
            "interval": ("95% delete-one-task jackknife interval "
                         "(estimate +- t * SE)" if method == "jackknife"
                         else f"95% percentile bootstrap over tasks, "
                         f"{n_boot} resamples"),
            "random_network_seed": seed + 1,
            "other_task": "the weights adapted to task t + 1 (mod tasks), "
                          "applied to task t's queries",
        },
        "comparisons": COMPARISONS,
        "checkpoints": sha,
        "results": results,
    }


MEASURES: dict[str, Callable[..., dict[str, Any]]] = {
    "inner-loop-cka": inner_loop_cka,
}


def save(result: dict[str, Any], command: str,
         directory: Path | None = None) -> Path:
    """Write ``result`` with ``command`` to ``NAME.json`` (``NAME`` its
    ``measure``) in ``directory`` (default :func:`explanations_dir`)."""
    name = result.get("measure")
    if name not in MEASURES:
        raise ValueError(f"result must name a measure in {sorted(MEASURES)}"
                         f", got {name!r}")
    directory = explanations_dir() if directory is None else Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = json.dumps({"command": command, "created": stamp, **result},
                      indent=1)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(path)
    return path


def load(name: str, directory: Path | None = None) -> dict[str, Any]:
    """The stored measurement ``name`` (a key of :data:`MEASURES`)."""
    if name not in MEASURES:
        raise ValueError(f"name must be one of {sorted(MEASURES)}, got "
                         f"{name!r}")
    directory = explanations_dir() if directory is None else Path(directory)
    path = directory / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run python -m mlkit explain {name}")
    return json.loads(path.read_text())
