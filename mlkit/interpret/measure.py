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
* ``metric-embeddings``: what the metric learners' embeddings encode
  (correlation ratio per unit, effective rank, CKA between learners, the
  most character-selective units and their top drawings).
* ``attention-removal``: whether removing the support image a query
  "attends" to most changes the metric learners' decisions more than
  removing a random one.
* ``siamese-margins``: the collapse of a small Siamese embedding trained
  with a too-small contrastive margin, and the fix.
* ``support-influence``: leave-one-out influence of the support images of
  a 5-way 5-shot test task with a query MAML misclassifies.
* ``metric-randomisation``: Adebayo et al. (2018)'s model-parameter
  randomisation check of saliency and Integrated Gradients on the metric
  learners' pair similarity (Siamese) and prototype score (prototypical).
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

__all__ = [
    "MEASURES",
    "attention_removal",
    "explanations_dir",
    "inner_loop_cka",
    "load",
    "metric_embeddings",
    "metric_randomisation",
    "randomised_copies",
    "save",
    "siamese_margins",
    "small_siamese",
    "support_influence",
]

INNER_LOOP_MODELS = (
    "maml-omniglot-5w1s",
    "fomaml-omniglot-5w1s",
    "anil-omniglot-5w1s",
)
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


def _adapted(
    model: torch.nn.Module, config: Any, episode: Any
) -> dict[str, torch.Tensor]:
    from .. import maml

    fast = maml.adapt(
        model,
        episode.support_x,
        episode.support_y,
        loss_fn=maml.summed_cross_entropy(config.k_shot),
        inner_steps=config.test_inner_steps,
        alpha=maml._inner_alpha(model, config),
        adapt_names=maml._adapt_names(model, config),
    )
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
        raise ValueError(
            f"names must be a non-empty list of checkpoint "
            f"names, got {names!r}"
        )
    say = progress or (lambda text: None)
    pool = data.omniglot_classes("finn-test")
    episodes = [
        data.sample_episode(pool, 5, 1, queries, seed=seed + t)
        for t in range(tasks)
    ]
    groups = torch.arange(tasks).repeat_interleave(5 * queries)
    results: dict[str, Any] = {}
    sha: dict[str, str] = {}
    for name in names:
        start = time.perf_counter()
        model, config, entry = maml.load_model(name)
        sha[name] = checkpoint_entry(name)["sha256"]
        if config.task != "omniglot" or config.n_way != 5:
            raise ValueError(
                f"names must be 5-way Omniglot MAML-family "
                f"checkpoints, got {name!r}"
            )
        torch.manual_seed(seed + 1)
        random_net = maml.build_model(config)
        layers = default_layers(model)
        fast = [_adapted(model, config, ep) for ep in episodes]
        reps: dict[str, list[dict[str, torch.Tensor]]] = {
            k: [] for k in ("init", "own task", "other task", "random network")
        }
        correct = []
        for t, ep in enumerate(episodes):
            reps["init"].append(layer_activations(model, None, ep.query_x))
            reps["own task"].append(
                layer_activations(model, fast[t], ep.query_x)
            )
            reps["other task"].append(
                layer_activations(model, fast[(t + 1) % tasks], ep.query_x)
            )
            reps["random network"].append(
                layer_activations(random_net, None, ep.query_x)
            )
            logits = reps["own task"][-1]["head"]
            correct.append(
                float((logits.argmax(1) == ep.query_y).float().mean())
            )
        per_layer: dict[str, Any] = {}
        for lay in layers:
            grams = {
                k: _gram(k, torch.cat([r[lay] for r in v]))
                for k, v in reps.items()
            }
            per_layer[lay] = {}
            for comp in COMPARISONS:
                ci = _interval(
                    grams["init"],
                    grams[comp],
                    groups,
                    tasks,
                    method,
                    n_boot,
                    0.95,
                    seed,
                )
                per_layer[lay][comp] = {
                    "estimate": ci.estimate,
                    "low": ci.low,
                    "high": ci.high,
                }
        acc = torch.tensor(correct) * 100
        results[name] = {
            "order": config.order,
            "layers": per_layer,
            "query_accuracy": {
                "mean": float(acc.mean()),
                "per_task": [float(a) for a in acc],
            },
            "inner_loop": {
                "alpha": config.alpha,
                "steps": config.test_inner_steps,
                "adapted": (
                    "head only" if config.order == "anil" else "all layers"
                ),
            },
        }
        say(f"{name}: {time.perf_counter() - start:.0f} s")
    return {
        "measure": "inner-loop-cka",
        "protocol": {
            "split": "finn-test",
            "ways": 5,
            "shots": 1,
            "queries_per_class": queries,
            "tasks": tasks,
            "images": tasks * 5 * queries,
            "task_seeds": [seed, seed + tasks - 1],
            "batch_layout": "adaptation on the task's 5 support images as "
            "one batch; representations of the task's "
            f"{5 * queries} query images as one batch; "
            "BatchNorm with each batch's own statistics",
            "estimator": "debiased linear CKA (unbiased HSIC, Song et al. "
            "2012) on the pooled images",
            "interval": (
                "95% delete-one-task jackknife interval "
                "(estimate +- t * SE)"
                if method == "jackknife"
                else f"95% percentile bootstrap over tasks, "
                f"{n_boot} resamples"
            ),
            "random_network_seed": seed + 1,
            "other_task": "the weights adapted to task t + 1 (mod tasks), "
            "applied to task t's queries",
        },
        "comparisons": COMPARISONS,
        "checkpoints": sha,
        "results": results,
    }


# The command line passes every measure its options (--tasks, --method,
# --boot, --seed); the measures below pool no tasks and compute no interval
# over them, so they accept those options and use only --seed where it
# names a seed of theirs.
METRIC_NETS = ("siamese-omniglot", "protonet-omniglot")


def _metric_embeddings(names: Sequence[str]) -> dict[str, Any]:
    from .. import protonet, siamese

    nets: dict[str, Any] = {}
    for name in names:
        if name.startswith("siamese"):
            nets[name] = siamese.load_siamese(name)[0].embedding
        elif name.startswith("protonet"):
            nets[name] = protonet.load_protonet(name)[0]
        else:
            raise ValueError(
                f"names must be Siamese or prototypical "
                f"network checkpoints, got {name!r}"
            )
    return nets


def metric_embeddings(
    names: Sequence[str] = METRIC_NETS,
    *,
    stride: int = 6,
    top_units: int = 5,
    top_images: int = 8,
    progress: Callable[[str], None] | None = None,
    **_cli: Any,
) -> dict[str, Any]:
    """What the metric learners' embeddings encode, on every ``stride``-th
    evaluation character (Lake's evaluation alphabets), 20 drawings each.

    For each checkpoint in ``names``, MAML's body (the features of
    ``maml-omniglot-5w1s``' initialisation, all drawings as one batch) and the
    pixels: the mean per-unit correlation ratio
    ``eta^2 = Var_between / Var_total`` by character and by alphabet
    (:func:`~mlkit.interpret.class_selectivity`), the effective rank (Roy &
    Vetterli 2007) and the debiased linear CKA between every two
    representations of the same drawings. For the first checkpoint, its
    ``top_units`` most character-selective units and, for each, the indices
    (into the drawings, character-major) of the ``top_images`` drawings that
    excite it most (Zeiler & Fergus 2014). Returns a JSON-ready dict.
    """
    import numpy as np

    from .. import maml, siamese
    from ..checkpoints import checkpoint_entry
    from .activations import class_selectivity, effective_rank, top_activating
    from .similarity import linear_cka

    _check_positive_int("stride", stride, 1)
    _check_positive_int("top_units", top_units, 1)
    _check_positive_int("top_images", top_images, 1)
    if isinstance(names, str) or not names:
        raise ValueError(
            f"names must be a non-empty list of checkpoint "
            f"names, got {names!r}"
        )
    say = progress or (lambda text: None)
    sub = siamese.eval_subset(stride=stride)
    images = torch.from_numpy(
        sub.images.reshape(-1, 1, 28, 28).astype(np.float32)
    )
    chars = torch.arange(len(sub)).repeat_interleave(20)
    alphabet_names = sorted({sub.alphabet(c) for c in range(len(sub))})
    alphabets = torch.tensor(
        [alphabet_names.index(sub.alphabet(c)) for c in range(len(sub))]
    ).repeat_interleave(20)
    reps = {
        name: siamese.embed_images(emb, images)
        for name, emb in _metric_embeddings(names).items()
    }
    sha = {name: checkpoint_entry(name)["sha256"] for name in names}
    model = maml.load_model("maml-omniglot-5w1s")[0]
    sha["maml-omniglot-5w1s"] = checkpoint_entry("maml-omniglot-5w1s")[
        "sha256"
    ]
    with torch.no_grad():  # one batch: BatchNorm with its statistics
        reps["MAML body"] = model.features(images)
    reps["pixels"] = images.reshape(len(images), -1)
    say(f"embedded {len(images)} drawings")
    table = {}
    for name, z in reps.items():
        table[name] = {
            "eta2_character": float(class_selectivity(z, chars).mean()),
            "eta2_alphabet": float(class_selectivity(z, alphabets).mean()),
            "effective_rank": float(effective_rank(z)),
            "units": int(z.shape[1]),
        }
    listed = list(reps)
    cka = {
        a: {b: linear_cka(reps[a], reps[b]) for b in listed[i + 1 :]}
        for i, a in enumerate(listed[:-1])
    }
    main = reps[names[0]]
    eta = class_selectivity(main, chars)
    units = eta.argsort(descending=True)[:top_units].tolist()
    top = top_activating(main, k=top_images)
    return {
        "measure": "metric-embeddings",
        "protocol": {
            "pool": f"every {stride}th character of Lake's evaluation "
            "alphabets, 20 drawings each",
            "characters": len(sub),
            "drawings": len(images),
            "stride": stride,
            "eta2": "correlation ratio per unit, mean over units",
            "cka": "debiased linear CKA (unbiased HSIC, Song et al. 2012)",
            "maml_body": "maml-omniglot-5w1s initialisation, "
            "model.features on all the drawings as one batch "
            "(BatchNorm with that batch's statistics)",
        },
        "checkpoints": sha,
        "representations": table,
        "cka": cka,
        "top_units": {
            "network": names[0],
            "units": [
                {
                    "unit": u,
                    "eta2": float(eta[u]),
                    "drawings": [int(i) for i in top[u]],
                }
                for u in units
            ],
        },
    }


SMALL_SIAMESE = {
    "eval_every": 0,
    "hidden": 16,
    "n_pairs": 64,
    "augment": False,
    "rotations": False,
    "form": "source",
    "lr": 3e-3,
    "normalize": False,
    "negatives": "all",
}
SMALL_ITERATIONS = 80


def small_siamese(margin: float, seed: int = 0) -> tuple[Any, Any]:
    """The small Siamese network of chapter 6's case study: 4 conv blocks
    of 16 channels, :data:`SMALL_ITERATIONS` iterations of
    :data:`SMALL_SIAMESE` (free-length embeddings, every negative averaged)
    with contrastive margin ``margin``; returns ``(net in eval mode,
    history)``."""
    from .. import siamese

    if (
        isinstance(margin, bool)
        or not isinstance(margin, (int, float))
        or not margin > 0
    ):
        raise ValueError(f"margin must be a positive number, got {margin!r}")
    _check_seed(seed)
    net, history = siamese.train_siamese(
        SMALL_ITERATIONS,
        config={**SMALL_SIAMESE, "margin": float(margin)},
        seed=seed,
        progress=False,
    )
    return net.eval(), history


def siamese_margins(
    margins: Sequence[float] = (0.01, 0.1, 1.0),
    *,
    seed: int = 0,
    n_tasks: int = 200,
    progress: Callable[[str], None] | None = None,
    **_cli: Any,
) -> dict[str, Any]:
    """The collapse of a Siamese embedding whose contrastive margin is too
    small (Hadsell et al. 2006's loss as the source writes it), and its fix.

    For each margin, :func:`small_siamese` is trained (seed ``seed``) and
    diagnosed on every 6th evaluation character: distances between drawing
    0 of each character and drawings 1-4 of the same character
    (``d_same``), and drawing 0 of the next four characters (``d_diff``);
    their ratio of means; the share of queries of one 5-way 1-shot episode
    (evaluation alphabets, seed 8) whose nearest support drawing is of the
    right class; the share of different-class pairs inside the margin at
    the end of training; and the 5-way 1-shot nearest-neighbour accuracy on
    ``n_tasks`` tasks (mean and 95% interval). Returns a JSON-ready dict.
    """
    from .. import data, siamese
    from ..stats import mean_ci95

    _check_seed(seed)
    _check_positive_int("n_tasks", n_tasks, 2)
    if isinstance(margins, (str, bytes)) or not margins:
        raise ValueError(
            f"margins must be a non-empty list of positive "
            f"numbers, got {margins!r}"
        )
    say = progress or (lambda text: None)
    sub = siamese.eval_subset(stride=6)
    ep = data.sample_episode(
        data.omniglot_classes("evaluation"), 5, 1, 3, seed=8
    )
    out: dict[str, Any] = {}
    for margin in margins:
        start = time.perf_counter()
        net, hist = small_siamese(margin, seed)
        zz = siamese.embed_pool(net.embedding, sub)
        d_same = torch.cat(
            [(zz[:, 0] - zz[:, j]).norm(dim=1) for j in range(1, 5)]
        )
        d_diff = torch.cat(
            [(zz[:, 0] - zz.roll(r, 0)[:, 0]).norm(dim=1) for r in range(1, 5)]
        )
        zq = siamese.embed_images(net.embedding, ep.query_x)
        zs = siamese.embed_images(net.embedding, ep.support_x)
        nearest = float(
            (torch.cdist(zq, zs).argmin(1) == ep.query_y).float().mean()
        )
        accs = siamese.few_shot_accuracy(
            zz, 5, 1, n_tasks, q_queries=5, method="nearest", seed=0
        )
        m, h = mean_ci95(accs)
        out[f"{margin:g}"] = {
            "margin": float(margin),
            "d_same": [round(float(v), 6) for v in d_same],
            "d_diff": [round(float(v), 6) for v in d_diff],
            "ratio": float(d_diff.mean() / d_same.mean()),
            "nearest": nearest,
            "accuracy": {"mean": float(m), "ci95": float(h)},
            "inside_margin": float(hist["inside_margin"][-1]),
        }
        say(f"m = {margin:g}: {time.perf_counter() - start:.0f} s")
    return {
        "measure": "siamese-margins",
        "protocol": {
            "training": {
                "iterations": SMALL_ITERATIONS,
                "seed": seed,
                **SMALL_SIAMESE,
            },
            "pool": "Lake's background alphabets (training); every 6th "
            "evaluation character, 20 drawings each (diagnosis)",
            "pairs": "drawing 0 of each character vs drawings 1-4 of it "
            "(same) and vs drawing 0 of the next 4 characters "
            "(different)",
            "nearest": "one 5-way 1-shot episode, 3 queries per class, "
            "evaluation alphabets, seed 8",
            "accuracy": f"{n_tasks} 5-way 1-shot tasks, 5 queries per "
            "class, nearest support drawing, seed 0; mean and "
            "95% t interval over tasks",
        },
        "margins": out,
    }


def support_influence(
    *,
    first_seed: int = 4,
    last_seed: int = 60,
    progress: Callable[[str], None] | None = None,
    **_cli: Any,
) -> dict[str, Any]:
    """Leave-one-out influence of each support image on the queries of a
    5-way 5-shot test task that ``maml-omniglot-5w1s`` gets wrong.

    The first episode of Finn's test split (seeds ``first_seed`` to
    ``last_seed - 1``) with a query that first-order adaptation (the
    recipe's test-time rate and steps, summed cross-entropy, BatchNorm
    statistics frozen on the task's query batch) misclassifies;
    ``interpret.loo_influence`` of the 25 support images on every query's
    loss (re-adapting without each image, Koh & Liang 2017's quantity); and
    for the metric learners that are present, the same with the prototype
    rule and the gradient estimate (``interpret.gradient_influence``) for
    their least certain query. Returns a JSON-ready dict.
    """
    import functools

    from scipy.stats import spearmanr

    from .. import data, maml, protonet, siamese
    from ..checkpoints import checkpoint_entry, manifest
    from .attribution import frozen_statistics, prototype_scorer
    from .influence import gradient_influence, loo_influence

    _check_seed(first_seed)
    if not isinstance(last_seed, int) or last_seed <= first_seed:
        raise ValueError(
            f"last_seed must be an int above first_seed, got {last_seed!r}"
        )
    say = progress or (lambda text: None)
    model, config, _ = maml.load_model("maml-omniglot-5w1s")
    pool = data.omniglot_classes("finn-test")
    loss5 = maml.summed_cross_entropy(5)

    def maml_fit_predict(sx, sy, qx, *, queries):
        w = maml.adapt(
            model,
            sx,
            sy,
            loss_fn=loss5,
            inner_steps=config.test_inner_steps,
            alpha=config.alpha,
            first_order=True,
        )
        return frozen_statistics(model, w, queries)(qx)

    def margins(logits, y):
        true = logits[torch.arange(len(y)), y]
        other = logits.clone()
        other[torch.arange(len(y)), y] = -float("inf")
        return true - other.max(1).values

    for seed in range(first_seed, last_seed):
        ep = data.sample_episode(pool, 5, 5, 3, seed=seed)
        with torch.no_grad():
            logits = maml_fit_predict(
                ep.support_x, ep.support_y, ep.query_x, queries=ep.query_x
            )
        margin = margins(logits, ep.query_y)
        if margin.min() < 0:
            break
    else:
        raise ValueError(
            f"no episode with seeds {first_seed} to "
            f"{last_seed - 1} has a misclassified query"
        )
    say(f"episode seed {seed}")
    loo = loo_influence(
        functools.partial(maml_fit_predict, queries=ep.query_x),
        ep.support_x,
        ep.support_y,
        ep.query_x,
        ep.query_y,
    )
    sha = {
        "maml-omniglot-5w1s": checkpoint_entry("maml-omniglot-5w1s")["sha256"]
    }
    metric = {}
    learned = manifest()
    for label, name in (
        ("Siamese", "siamese-omniglot"),
        ("prototypical", "protonet-omniglot"),
    ):
        if name not in learned:
            continue
        emb = (
            siamese.load_siamese(name)[0].embedding
            if name.startswith("siamese")
            else protonet.load_protonet(name)[0]
        )
        sha[name] = checkpoint_entry(name)["sha256"]

        def fp(sx, sy, qx, emb=emb):
            return prototype_scorer(emb, sx, sy, 5, support_grad=True)(qx)

        with torch.no_grad():
            mm = margins(
                fp(ep.support_x, ep.support_y, ep.query_x), ep.query_y
            )
        qm = int(mm.argmin())
        lp = loo_influence(
            fp, ep.support_x, ep.support_y, ep.query_x, ep.query_y
        )
        _, sp = gradient_influence(
            fp,
            ep.support_x,
            ep.support_y,
            ep.query_x[qm : qm + 1],
            ep.query_y[qm : qm + 1],
        )
        own = ep.support_y == ep.query_y[qm]
        metric[label] = {
            "checkpoint": name,
            "query": qm,
            "margin": float(mm[qm]),
            "own_class": float(lp[qm, own].mean()),
            "other_classes": float(lp[qm, ~own].mean()),
            "spearman": float(spearmanr(lp[qm].numpy(), sp.numpy()).statistic),
        }
        say(f"{label} done")
    return {
        "measure": "support-influence",
        "protocol": {
            "split": "finn-test",
            "ways": 5,
            "shots": 5,
            "queries_per_class": 3,
            "episode": f"first seed from {first_seed} with a query that "
            "first-order adaptation misclassifies",
            "inner_loop": {
                "alpha": config.alpha,
                "steps": config.test_inner_steps,
                "first_order": True,
                "loss": "summed cross-entropy",
            },
            "batch_layout": "adaptation on the 25 support images as one "
            "batch; queries with BatchNorm statistics "
            "frozen on the task's 15 query images",
            "influence": "loss of each query without support image i "
            "(re-adapted) minus the loss with all 25",
        },
        "checkpoints": sha,
        "episode_seed": seed,
        "maml": {"loo": [[float(v) for v in row] for row in loo]},
        "metric": metric,
    }


def _removal_effect(emb: Any, episode: Any, rng: Any) -> dict[str, list]:
    """Per query: the fall of the predicted class's probability and whether
    the decision flips, when the most-attended support image or a random
    other one is removed (prototype rule, 5 ways)."""
    from .influence import support_attention

    with torch.no_grad():
        zs = emb(episode.support_x)
        zq = emb(episode.query_x)
    ys = episode.support_y

    def probs(keep):
        protos = torch.stack([zs[keep & (ys == c)].mean(0) for c in range(5)])
        return torch.softmax(-torch.cdist(zq, protos) ** 2, 1)

    base = probs(torch.ones(len(ys), dtype=torch.bool))
    pred = base.argmax(1)
    att = support_attention(zq, zs)
    out: dict[str, list] = {"most attended": [], "random": []}
    for i in range(len(zq)):
        top_i = int(att[i].argmax())
        others = [j for j in range(len(ys)) if j != top_i]
        for kind, j in (
            ("most attended", top_i),
            ("random", int(rng.choice(others))),
        ):
            keep = torch.ones(len(ys), dtype=torch.bool)
            keep[j] = False
            p = probs(keep)[i]
            out[kind].append(
                (
                    float(base[i, pred[i]] - p[pred[i]]),
                    float(p.argmax() != pred[i]),
                )
            )
    return out


def attention_removal(
    names: Sequence[str] = METRIC_NETS,
    *,
    episodes: int = 30,
    first_seed: int = 100,
    progress: Callable[[str], None] | None = None,
    **_cli: Any,
) -> dict[str, Any]:
    """Does the support image a query "attends" to most matter most?

    For each metric learner in ``names`` (in order, one
    ``numpy.random.default_rng(0)`` shared by all) and each of ``episodes``
    5-way 5-shot episodes of Lake's evaluation alphabets (3 queries per
    class, seeds ``first_seed, first_seed + 1, ...``): per query, remove the
    most-attended support image (matching networks' attention, Vinyals et
    al. 2016) or one chosen at random among the other 24, recompute that
    class's prototype, and record the fall of the probability of the
    originally predicted class and whether the decision flips. Stores the
    per-episode means (one number per episode and kind). Returns a
    JSON-ready dict.
    """
    import numpy as np

    from .. import data
    from ..checkpoints import checkpoint_entry

    _check_positive_int("episodes", episodes, 2)
    _check_seed(first_seed)
    if isinstance(names, str) or not names:
        raise ValueError(
            f"names must be a non-empty list of checkpoint "
            f"names, got {names!r}"
        )
    say = progress or (lambda text: None)
    evaluation = data.omniglot_classes("evaluation")
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}
    for name, emb in _metric_embeddings(names).items():
        fall: dict[str, list] = {"most attended": [], "random": []}
        flips: dict[str, list] = {"most attended": [], "random": []}
        for s in range(episodes):
            ep = data.sample_episode(evaluation, 5, 5, 3, seed=first_seed + s)
            for kind, v in _removal_effect(emb, ep, rng).items():
                fall[kind].append(float(np.mean([d for d, _ in v])))
                flips[kind].append(float(100 * np.mean([f for _, f in v])))
        results[name] = {"fall": fall, "flipped_percent": flips}
        say(f"{name} done")
    return {
        "measure": "attention-removal",
        "protocol": {
            "pool": "Lake's evaluation alphabets",
            "ways": 5,
            "shots": 5,
            "queries_per_class": 3,
            "episodes": episodes,
            "episode_seeds": [first_seed, first_seed + episodes - 1],
            "rule": "prototypes (class means of the support embeddings), "
            "softmax of minus squared Euclidean distances",
            "random_image": "numpy.random.default_rng(0), shared by the "
            "networks in order, one draw per query",
            "stored": "per episode, the mean over its 15 queries",
        },
        "checkpoints": {n: checkpoint_entry(n)["sha256"] for n in names},
        "results": results,
    }


RANDOMISATION_CASCADE = ("body.3", "body.2", "body.1", "body.0")
RANDOMISATION_METHODS = ("saliency", "IG", "IG, ink only")


def randomised_copies(
    embed: torch.nn.Module, seed: int
) -> list[torch.nn.Module]:
    """Copies of ``embed`` (a four-block embedding such as
    :class:`~mlkit.nets.InductiveConvEmbedding`) with its blocks
    re-initialised cumulatively from the top (``body.3``, then also
    ``body.2``, ...), in ``eval()`` mode: each block's weights and BatchNorm
    running statistics take the values a fresh network of the same
    architecture starts from (``torch.manual_seed(seed)``); Adebayo et al.
    (2018)'s cascading randomisation."""
    import copy

    body = getattr(embed, "body", None)
    if not isinstance(body, torch.nn.Sequential) or len(body) != len(
        RANDOMISATION_CASCADE
    ):
        raise ValueError(
            f"embed must be an embedding network with four "
            f"blocks in embed.body, got "
            f"{type(embed).__name__}"
        )
    _check_seed(seed)

    fresh = copy.deepcopy(embed)
    torch.manual_seed(seed)
    for module in fresh.modules():
        if module is not fresh and hasattr(module, "reset_parameters"):
            module.reset_parameters()  # BatchNorm: running stats too
    out, current = [], copy.deepcopy(embed)
    for layer in RANDOMISATION_CASCADE:
        block = int(layer.split(".")[1])
        current = copy.deepcopy(current)
        current.body[block].load_state_dict(fresh.body[block].state_dict())
        out.append(current.eval())
    return out


def _metric_maps(
    embed: torch.nn.Module,
    kind: str,
    x: torch.Tensor,
    partners: torch.Tensor,
    n_steps: int,
) -> dict[str, torch.Tensor]:
    """|saliency| and |IG| (blank baseline) of each drawing in ``x``: the
    Siamese pair similarity ``-d(f(x_i), f(partner_i))``, or the prototype
    score ``-||f(x_i) - c_i||^2`` with ``c_i`` the mean embedding of the
    drawings ``partners[i]`` (5 per row)."""
    from .attribution import (
        integrated_gradients,
        pair_similarity,
        prototype_scorer,
        saliency,
    )

    if kind == "siamese":
        sal, ig = [], []
        for i in range(len(x)):  # one partner per drawing: one scorer each
            score = pair_similarity(embed, partners[i : i + 1])
            sal.append(saliency(score, x[i : i + 1]).attribution)
            ig.append(
                integrated_gradients(
                    score, x[i : i + 1], n_steps=n_steps
                ).attribution
            )
        sal_map, ig_map = torch.cat(sal), torch.cat(ig)
    else:
        shots = partners.shape[1]
        labels = torch.arange(len(x)).repeat_interleave(shots)
        score = prototype_scorer(embed, partners.flatten(0, 1), labels, len(x))
        target = torch.arange(len(x))
        sal_map = saliency(score, x, target=target).attribution
        ig_map = integrated_gradients(
            score, x, target=target, n_steps=n_steps
        ).attribution
    ig_abs = ig_map.abs()[:, 0]
    return {
        "saliency": sal_map.abs()[:, 0],
        "IG": ig_abs,
        "IG, ink only": ig_abs,
    }


def metric_randomisation(
    names: Sequence[str] = METRIC_NETS,
    *,
    pairs: int = 50,
    n_steps: int = 32,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    **_cli: Any,
) -> dict[str, Any]:
    """Adebayo et al. (2018)'s model-parameter randomisation check of
    saliency and Integrated Gradients on the metric learners.

    ``pairs`` characters of Lake's evaluation alphabets are drawn with
    ``numpy.random.default_rng(seed)``; drawing 0 of each is explained. For
    a Siamese checkpoint the score is the pair similarity
    ``-d(f(x), f(x'))`` with ``x'`` drawing 1 of the same character
    (:func:`~mlkit.interpret.pair_similarity`); for a prototypical one it
    is ``-||f(x) - c||^2``, with ``c`` the prototype of drawings 1-5 of the
    same character (:func:`~mlkit.interpret.prototype_scorer`). The
    partner and the prototype are embedded by the network being explained.
    The maps (absolute saliency, absolute IG with a blank baseline and
    ``n_steps`` Gauss-Legendre points) of the trained embedding are
    compared with those of copies whose blocks are re-initialised from the
    top, cumulatively (:data:`RANDOMISATION_CASCADE`; a fresh network from
    ``torch.manual_seed(seed + 1)``, BatchNorm running statistics reset):
    Spearman's rank correlation per drawing, over all 784 pixels, and for
    IG also over the stroke pixels only (ink > 0.5). Stores the per-drawing
    correlations. Returns a JSON-ready dict.
    """
    import numpy as np
    from scipy.stats import spearmanr

    from .. import data
    from ..checkpoints import checkpoint_entry

    _check_positive_int("pairs", pairs, 3)
    _check_positive_int("n_steps", n_steps, 2)
    _check_seed(seed)
    if isinstance(names, str) or not names:
        raise ValueError(
            f"names must be a non-empty list of checkpoint "
            f"names, got {names!r}"
        )
    say = progress or (lambda text: None)
    pool = data.omniglot_classes("evaluation")
    chars = np.random.default_rng(seed).choice(len(pool), pairs, replace=False)
    draw = np.stack([pool.drawings(int(c), list(range(6))) for c in chars])
    draw = torch.from_numpy(draw.astype(np.float32))[:, :, None]
    x = draw[:, 0]
    ink = x[:, 0] > 0.5
    results: dict[str, Any] = {}
    for name, embed in _metric_embeddings(names).items():
        start = time.perf_counter()
        kind = "siamese" if name.startswith("siamese") else "prototypical"
        partners = draw[:, 1] if kind == "siamese" else draw[:, 1:6]
        embed = embed.eval()
        trained = _metric_maps(embed, kind, x, partners, n_steps)
        rho: dict[str, dict[str, list[float]]] = {
            m: {} for m in RANDOMISATION_METHODS
        }
        for layer, net in zip(
            RANDOMISATION_CASCADE, randomised_copies(embed, seed + 1)
        ):
            now = _metric_maps(net, kind, x, partners, n_steps)
            for m in RANDOMISATION_METHODS:
                pick = (
                    [ink[i] for i in range(pairs)]
                    if m == "IG, ink only"
                    else [slice(None)] * pairs
                )
                rho[m][f"up to {layer}"] = [
                    round(
                        float(
                            spearmanr(
                                trained[m][i][pick[i]].ravel().numpy(),
                                now[m][i][pick[i]].ravel().numpy(),
                            ).statistic
                        ),
                        6,
                    )
                    for i in range(pairs)
                ]
        results[name] = {
            "score": (
                "pair similarity -d(f(x), f(x'))"
                if kind == "siamese"
                else "prototype score -||f(x) - c||^2"
            ),
            "spearman": rho,
        }
        say(f"{name}: {time.perf_counter() - start:.0f} s")
    return {
        "measure": "metric-randomisation",
        "protocol": {
            "pool": "Lake's evaluation alphabets",
            "pairs": pairs,
            "characters": "numpy.random.default_rng(seed).choice, "
            "without replacement",
            "seed": seed,
            "explained": "drawing 0 of each character",
            "siamese_partner": "drawing 1 of the same character",
            "prototype": "mean embedding of drawings 1-5 of the same "
            "character",
            "maps": "|saliency|; |Integrated Gradients|, blank baseline, "
            f"{n_steps} Gauss-Legendre points",
            "cascade": [f"up to {layer}" for layer in RANDOMISATION_CASCADE],
            "reinitialisation": "each block's convolution and BatchNorm "
            "(weights and running statistics) as a "
            "fresh network's, torch.manual_seed(seed + "
            "1), cumulatively from the top",
            "statistic": "Spearman rank correlation with the trained "
            "network's map, per drawing: all 784 pixels; "
            "'IG, ink only': the stroke pixels (ink > 0.5)",
            "batch_layout": "embeddings in eval() mode (BatchNorm running "
            "statistics): each drawing's map depends on "
            "that drawing alone",
        },
        "checkpoints": {n: checkpoint_entry(n)["sha256"] for n in names},
        "results": results,
    }


MEASURES: dict[str, Callable[..., dict[str, Any]]] = {
    "attention-removal": attention_removal,
    "inner-loop-cka": inner_loop_cka,
    "metric-embeddings": metric_embeddings,
    "metric-randomisation": metric_randomisation,
    "siamese-margins": siamese_margins,
    "support-influence": support_influence,
}


def save(
    result: dict[str, Any], command: str, directory: Path | None = None
) -> Path:
    """Write ``result`` with ``command`` to ``NAME.json`` (``NAME`` its
    ``measure``) in ``directory`` (default :func:`explanations_dir`)."""
    name = result.get("measure")
    if name not in MEASURES:
        raise ValueError(
            f"result must name a measure in {sorted(MEASURES)}"
            f", got {name!r}"
        )
    directory = explanations_dir() if directory is None else Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = json.dumps(
        {"command": command, "created": stamp, **result}, indent=1
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(path)
    return path


def load(name: str, directory: Path | None = None) -> dict[str, Any]:
    """The stored measurement ``name`` (a key of :data:`MEASURES`)."""
    if name not in MEASURES:
        raise ValueError(
            f"name must be one of {sorted(MEASURES)}, got {name!r}"
        )
    directory = explanations_dir() if directory is None else Path(directory)
    path = directory / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run python -m mlkit explain {name}"
        )
    return json.loads(path.read_text())
