"""Self-checks a reader runs from a chapter notebook (not marks: see
``tools/grade.py``).

A *checked* exercise asks for a function (``my_cka(X, Y)``,
``one_step(model, x, y, alpha)``, ...). Its check cell passes that function::

    from mlkit.exercises import check
    check("ex-ch6-1", my_cka)

:func:`check` calls the function on inputs the check draws itself (fixed seeds,
small problems), compares with the book's tested implementation on the same
inputs, prints one line, ``PASS ex-ch6-1`` or ``FAIL ex-ch6-1: ... Hint: ...``,
and returns a :class:`Result` (truthy when it passed). A FAIL says what is
wrong (``wrong shape``, ``too large``, ``too small``, ``wrong keys``) but never
prints the expected value, and no reference answer is stored here: each is
computed, on the check's own inputs, when the check runs. Because the inputs
are the check's, an answer typed in as a constant, or a function that is right
only on the chapter's data, does not pass.

Marks come from somewhere else: ``make grade`` runs the instructor's hidden
tests (outside this package) in the grader's own process on the student's
functions, called on inputs drawn from a fresh random seed
(:func:`exercise_inputs`). Nothing a notebook does to this module changes a
mark.

Some chapters still call a check the older way, with a value computed on the
chapter's data (``check("ex-ch5-1", answer_1)``); those calls are accepted,
with tight tolerances, until the chapters' check cells pass functions.

Adding a checked exercise (chapter authors): give :data:`SPECS` an entry: the
name of the function the exercise asks for, how to draw its inputs from a seed,
how the book's own code computes the answer, and how to compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = [
    "Result",
    "register",
    "check",
    "checks",
    "close",
    "exercise_inputs",
    "reference",
    "compare",
    "SPECS",
    "Spec",
]

CheckFn = Callable[..., "bool | tuple[bool, str]"]


@dataclass(frozen=True)
class _Entry:
    fn: CheckFn
    hint: str


_REGISTRY: dict[str, _Entry] = {}


@dataclass(frozen=True)
class Result:
    """Outcome of one :func:`check` call; truthy when the answer passed."""

    exercise: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    # what a notebook shows if the Result is a cell's last value
    def __repr__(self) -> str:
        return f"Result({self.exercise!r}, passed={self.passed})"


def register(exercise: str, *, hint: str) -> Callable[[CheckFn], CheckFn]:
    """Decorator adding a check for ``exercise`` (an id like ``"ex-ch3-1"``) to
    the registry.

    ``hint`` is printed when the check fails; it points towards the method and
    must not be the solution's code.
    """
    if (
        not isinstance(exercise, str)
        or not exercise.startswith("ex-")
        or len(exercise) < 4
    ):
        raise ValueError(
            "exercise must be an id starting with 'ex-' (the exercise label), "
            f"got {exercise!r}"
        )
    if not isinstance(hint, str) or not hint.strip():
        raise ValueError("hint must be a non-empty string")

    def deco(fn: CheckFn) -> CheckFn:
        if exercise in _REGISTRY:
            raise ValueError(f"exercise {exercise!r} already has a check")
        _REGISTRY[exercise] = _Entry(fn, hint.strip())
        return fn

    return deco


def checks() -> list[str]:
    """The exercise ids that have a check, sorted."""
    return sorted(_REGISTRY)


def check(exercise: str, *answer: Any, **kwargs: Any) -> Result:
    """Check a reader's answer to ``exercise``; print PASS or FAIL (with a
    hint) and return it.

    The answer arguments (usually one function) are passed to the exercise's
    check.
    """
    if exercise not in _REGISTRY:
        known = ", ".join(checks()) or "none yet"
        raise ValueError(
            f"exercise must be one of the ids with a check ({known}), got "
            f"{exercise!r}"
        )
    entry = _REGISTRY[exercise]
    try:
        out = entry.fn(*answer, **kwargs)
    except Exception as e:
        # a wrong-shaped answer should read as a FAIL, not a traceback
        passed, message = (
            False,
            f"checking your answer raised {type(e).__name__}: {e}",
        )
    else:
        if isinstance(out, tuple):
            passed, message = bool(out[0]), str(out[1])
        else:
            passed, message = bool(out), ""
    if passed:
        text = f"PASS {exercise}" + (f": {message}" if message else "")
    else:
        text = (
            f"FAIL {exercise}"
            + (f": {message}." if message else ".")
            + f" Hint: {entry.hint}"
        )
    print(text)
    return Result(exercise, passed, message)


def _numeric(value: Any) -> np.ndarray | None:
    if value is None or value is Ellipsis or isinstance(value, (str, bytes)):
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None


def close(
    answer: Any, expected: Any, *, rtol: float = 1e-4, atol: float = 1e-6
) -> tuple[bool, str]:
    """Compare an answer (number, array or tensor) with the expected value,
    within tolerances.

    Returns ``(passed, message)``; the message says what differs
    (``wrong shape``, ``too large``, ``too small``, ``differs``) without the
    expected value or the size of the error (either would let a reader type the
    answer in).
    """
    if answer is None or answer is Ellipsis:
        return False, "no answer yet (the variable is None or ...)"
    a = _numeric(answer)
    if a is None:
        return (
            False,
            f"expected a number or an array, got {type(answer).__name__}",
        )
    e = _numeric(expected)
    if a.shape != e.shape:
        return False, f"wrong shape {a.shape}"
    if not np.all(np.isfinite(a)):
        return False, "the answer holds NaN or infinite values"
    if np.allclose(a, e, rtol=rtol, atol=atol):
        return True, "matches"
    if a.size == 1:
        return False, "too large" if a.item() > e.item() else "too small"
    return False, "differs from the reference"


def _close_dict(
    answer: Any, expected: dict, *, rtol: float, atol: float
) -> tuple[bool, str]:
    """``close`` key by key; keys must match (compared as text, since a
    grader's copy of a dict may carry its integer keys as numbers or
    strings)."""
    if not isinstance(answer, dict):
        return False, f"expected a dict, got {type(answer).__name__}"
    got = {str(k): v for k, v in answer.items()}
    if sorted(got) != sorted(str(k) for k in expected):
        return False, "wrong keys"
    for k, v in expected.items():
        ok, msg = close(got[str(k)], v, rtol=rtol, atol=atol)
        if not ok:
            return False, f"{k}: {msg}"
    return True, "matches"


# --- checked exercises: the function asked for, its inputs, the book's
# answer ---------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A checked exercise: the reader writes ``function``; ``inputs(seed)``
    draws arguments (a fresh copy at each call), ``answer(*args)`` computes
    what the book's tested code gives, ``compare(got, expected)`` returns
    ``(passed, message)``. The self-check uses ``seeds``; the grader's hidden
    tests draw a fresh seed.

    Where the answer is code the library does not have (so that a reference
    here would be the solution in clear), ``answer`` is ``None`` and
    ``digests`` holds, for each self-check seed, a SHA-256 digest of the
    canonical answer (:func:`_canonical`); the hidden tests keep the reference
    implementation, outside the package."""

    function: str
    inputs: Callable[[int], tuple]
    answer: Callable[..., Any] | None
    compare: Callable[[Any, Any], tuple[bool, str]]
    hint: str
    seeds: tuple[int, ...] = (0, 1)
    digests: tuple[str, ...] = ()


def _canonical(exercise: str, value: Any) -> str:
    """The text a digest is taken of: an integer, integer labels, or 3
    decimals."""
    a = _numeric(value)
    if a is None:
        raise ValueError("expected a number or an array")
    if exercise == "ex-ch2-1":
        return str(int(a.item()))
    if exercise == "ex-ch4-3":
        return ",".join(str(int(x)) for x in a.reshape(-1))
    return f"{float(a.item()):.3f}"


def _digest(exercise: str, seed: int, value: Any) -> str:
    import hashlib

    text = f"{exercise}|{seed}|{_canonical(exercise, value)}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _by_digest(exercise: str, seed: int, got: Any) -> tuple[bool, str]:
    spec = SPECS[exercise]
    if got is None or got is Ellipsis:
        return False, "no answer yet (the variable is None or ...)"
    a = _numeric(got)
    if a is None:
        return (
            False,
            f"expected a number or an array, got {type(got).__name__}",
        )
    if exercise == "ex-ch4-3" and a.ndim != 1:
        return False, f"wrong shape {a.shape}"
    if exercise != "ex-ch4-3" and a.size != 1:
        return False, f"wrong shape {a.shape}"
    try:
        ok = (
            _digest(exercise, seed, got)
            == spec.digests[spec.seeds.index(seed)]
        )
    except ValueError as e:
        return False, str(e)
    return ok, "matches" if ok else "does not match"


def _torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(int(seed) % (2**31))


# chapter 1 -------------------------------------------------------------------
def _in_ch1_1(seed: int) -> tuple:
    from . import data, nets

    _torch_seed(seed)
    model = nets.SinusoidMLP()
    task = data.sample_sinusoid_tasks(1, k_shot=5, n_query=20, seed=seed)
    return model, task, (0, 1, 3)


def _ans_ch1_1(model: Any, task: Any, steps: tuple) -> dict:
    from . import maml

    return {
        s: float(
            maml.evaluate(
                model,
                [task],
                loss_fn=maml.mse_loss,
                inner_steps=s,
                alpha=0.01,
                metric=maml.mse_loss,
            )[0]
        )
        for s in steps
    }


# chapter 2 -------------------------------------------------------------------
def _in_ch2_1(seed: int) -> tuple:
    from . import data

    rng = np.random.default_rng(seed)
    n = 4  # few classes, so that label 0 often repeats its class
    pool = data.ClassPool(
        "toy",
        rng.random((n, 20, 8, 8)).astype(np.float32),
        np.arange(n),
        np.arange(n),
        np.zeros(n, dtype=int),
    )
    return (
        data.EpisodeSampler(pool, n_way=2, k_shot=1, q_queries=1, seed=seed),
        200,
    )


# chapter 3 -------------------------------------------------------------------
def _in_ch3_1(seed: int) -> tuple:
    import torch

    from . import nets

    _torch_seed(seed)
    model = nets.SinusoidMLP()
    x = torch.rand(5, 1) * 10 - 5
    y = 2.0 * torch.sin(x - 0.5)
    return model, x, y, (0.01, 0.03)[seed % 2]


def _ans_ch3_1(model: Any, x: Any, y: Any, alpha: float) -> dict:
    from . import maml

    fast = maml.adapt(
        model, x, y, loss_fn=maml.mse_loss, inner_steps=1, alpha=alpha
    )
    return {k: v.detach() for k, v in fast.items()}


def _in_ch3_2(seed: int) -> tuple:
    from . import data, nets

    _torch_seed(seed)
    model = nets.SinusoidMLP()
    tasks = data.sample_sinusoid_tasks(20, k_shot=5, n_query=10, seed=seed)
    return model, tasks, (1e-6, 0.01)[seed % 2]


def _ans_ch3_2(model: Any, tasks: Any, alpha: float) -> float:
    from . import maml

    return float(
        maml.adaptation_curve(
            model, tasks, loss_fn=maml.mse_loss, alpha=alpha, max_steps=1
        )[1].mean()
    )


def _in_ch3_3(seed: int) -> tuple:
    import torch

    from . import nets

    _torch_seed(seed)
    model = nets.ConvNet(3, hidden=8)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    return model, params, torch.rand(6, 1, 28, 28)


def _ans_ch3_3(model: Any, params: Any, x: Any) -> Any:
    import torch

    from . import maml

    with torch.no_grad():
        return torch.cat(
            [maml.predict(model, params, x[i : i + 1]) for i in range(len(x))]
        )


# chapter 4 -------------------------------------------------------------------
def _in_ch4_1(seed: int) -> tuple:
    import torch

    _torch_seed(seed)
    return torch.randn(12, 8), np.repeat(np.arange(3), 4), (1.0, 3.0)[seed % 2]


def _ans_ch4_1(features: Any, labels: Any, margin: float) -> float:
    from . import siamese

    return float(
        siamese.fit_2d_embedding(features, labels, margin, seed=0).std()
    )


def _in_ch4_2(seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    same = rng.random(60) < 0.5
    distance = rng.gamma(2.0, 0.5, 60) + np.where(same, 0.0, 0.6)
    return distance, same, float(rng.uniform(0.8, 1.4))


def _ans_ch4_2(distance: Any, same: Any, threshold: float) -> float:
    from . import siamese

    return siamese.verification_accuracy(distance, same, threshold)


def _in_ch4_3(seed: int) -> tuple:
    import torch

    g = torch.Generator().manual_seed(seed)
    n_way, k_shot, dim = 4, 5, 6
    centres = torch.randn(n_way, dim, generator=g)
    support = (
        centres[:, None] + 1.2 * torch.randn(n_way, k_shot, dim, generator=g)
    ).reshape(-1, dim)
    labels = torch.arange(n_way).repeat_interleave(k_shot)
    queries = centres.repeat(5, 1) + 1.2 * torch.randn(
        5 * n_way, dim, generator=g
    )
    return support, labels, queries, ("nearest", "prototype")[seed % 2]


def _in_ch4_4(seed: int) -> tuple:
    import torch

    from . import nets

    _torch_seed(seed)
    net = nets.ConvEmbedding(hidden=8).eval()
    return (
        net,
        torch.rand(1, 1, 28, 28),
        torch.rand(7, 1, 28, 28),
        torch.rand(7, 1, 28, 28) * 0.5,
    )


# chapter 5 -------------------------------------------------------------------
def _in_ch5_1(seed: int) -> tuple:
    from . import theory

    rng = np.random.default_rng(seed)
    return (
        theory.sample_linear_tasks(seed=seed),
        rng.normal(0.0, 0.5, 2),
        float(rng.uniform(0.05, 0.2)),
    )


def _ans_ch5_1(tasks: Any, theta: Any, alpha: float) -> Any:
    from . import maml, theory

    g = maml.meta_gradient(
        theory.linear_model(tuple(float(t) for t in theta)),
        tasks,
        loss_fn=maml.mse_loss,
        inner_steps=2,
        alpha=alpha,
    )
    return theory.flat(g).detach()


def _in_ch5_2(seed: int) -> tuple:
    from . import theory

    points, labels = theory.toy_points(seed=seed)
    return points, labels, (0.5, 1.5, 3.0)[seed % 3]


def _ans_ch5_2(points: Any, labels: Any, margin: float) -> float:
    from . import theory

    final = theory.contrastive_toy(
        points, labels, margin, form="hadsell", radius=None, steps=300, lr=0.02
    )[-1]
    return float(theory.class_spacing(final, labels)["between"])


def _in_ch5_3(seed: int) -> tuple:
    from . import theory

    return (
        theory.sample_linear_tasks(seed=seed),
        (0.1, 0.2)[seed % 2],
        1 + seed % 3,
    )


def _ans_ch5_3(tasks: Any, alpha: float, inner_steps: int) -> Any:
    from . import theory

    return theory.linear_fomaml_fixed_point(
        tasks, alpha=alpha, inner_steps=inner_steps
    )


# chapter 6 -------------------------------------------------------------------
def _in_ch6_1(seed: int) -> tuple:
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(30, 6, generator=g, dtype=torch.float64)
    y = (
        x[:, :4] @ torch.randn(4, 5, generator=g, dtype=torch.float64)
        + 0.7 * torch.randn(30, 5, generator=g, dtype=torch.float64)
        + 3.0
    )
    return x, y


def _ans_ch6_1(x: Any, y: Any) -> float:
    from .interpret import linear_cka

    # the exercise's formula is Kornblith et al.'s (2019) estimator, not the
    # debiased one
    return float(linear_cka(x, y, debiased=False))


def _in_ch6_2(seed: int) -> tuple:
    import torch

    from . import data

    _torch_seed(seed)
    embed = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
    n_way, k_shot, q = 3, 3, 2
    centres = torch.randn(n_way, 1, 4, 4)
    sy = torch.arange(n_way).repeat_interleave(k_shot)
    qy = torch.arange(n_way).repeat_interleave(q)
    episode = data.Episode(
        centres[sy] + 0.8 * torch.randn(n_way * k_shot, 1, 4, 4),
        sy,
        centres[qy] + 0.8 * torch.randn(n_way * q, 1, 4, 4),
        qy,
        np.arange(n_way),
    )
    return embed, episode


def _ans_ch6_2(embed: Any, episode: Any) -> Any:
    import torch

    from .interpret import loo_influence, prototype_scorer

    n_way = int(episode.support_y.max()) + 1

    def fit_predict(sx, sy, qx):
        return prototype_scorer(embed, sx, sy, n_way)(qx)

    with torch.no_grad():
        return loo_influence(
            fit_predict,
            episode.support_x,
            episode.support_y,
            episode.query_x,
            episode.query_y,
        ).mean(0)


def _cmp(rtol: float, atol: float) -> Callable[[Any, Any], tuple[bool, str]]:
    def compare_(got: Any, expected: Any) -> tuple[bool, str]:
        if isinstance(expected, dict):
            return _close_dict(got, expected, rtol=rtol, atol=atol)
        return close(got, expected, rtol=rtol, atol=atol)

    return compare_


# : The checked exercises (the hint names the method, never the solution's
# code).
SPECS: dict[str, Spec] = {
    "ex-ch1-1": Spec(
        "query_errors",
        _in_ch1_1,
        _ans_ch1_1,
        _cmp(1e-3, 1e-6),
        "For each number of steps, adapt on the support set with that many "
        "inner steps and measure the mean squared error on the query set; key "
        "the dict by the number of steps.",
    ),
    "ex-ch2-1": Spec(
        "label0_repeats",
        _in_ch2_1,
        None,
        _cmp(0, 0),
        "Draw the episodes one after the other from the sampler you are "
        "given; an episode's classes say which pool class each label stands "
        "for.",
        digests=("ec1271c88ac9ec75556f", "8f2d4ebc0e887d60831d"),
    ),
    "ex-ch3-1": Spec(
        "one_step",
        _in_ch3_1,
        _ans_ch3_1,
        _cmp(1e-5, 1e-7),
        "One gradient step on the support loss, for every named parameter: "
        "the error at the output is twice the residual over the number of "
        "points; pass it back layer by layer, through each ReLU only where it "
        "was on.",
    ),
    "ex-ch3-2": Spec(
        "one_step_query_mse",
        _in_ch3_2,
        _ans_ch3_2,
        _cmp(1e-3, 1e-6),
        "Adapt each task with one step of rate alpha, then average the query "
        "MSE over the tasks; test your function with a large alpha too.",
    ),
    "ex-ch3-3": Spec(
        "predict_one_at_a_time",
        _in_ch3_3,
        _ans_ch3_3,
        _cmp(1e-4, 1e-5),
        "Call the adapted network on a batch of one image at a time and stack "
        "the rows of logits in the order of the images.",
    ),
    "ex-ch4-1": Spec(
        "embedding_spread",
        _in_ch4_1,
        _ans_ch4_1,
        _cmp(1e-4, 1e-6),
        "Fit the 2-D embedding with the given margin (seed 0) and take the "
        "standard deviation of all its coordinates.",
        seeds=(1,),
    ),
    "ex-ch4-2": Spec(
        "pair_accuracy",
        _in_ch4_2,
        _ans_ch4_2,
        _cmp(1e-6, 1e-9),
        "A pair is called 'same' when its distance is at most the threshold; "
        "count the pairs labelled correctly, in percent.",
    ),
    "ex-ch4-3": Spec(
        "classify",
        _in_ch4_3,
        None,
        _cmp(0, 0),
        "Euclidean distances from each query to every support embedding "
        "('nearest') or to every class mean ('prototype'); the label of the "
        "closest.",
        digests=("bf91d5e7d0fc7a3bf2f1", "abf8c39102f847de6813"),
    ),
    "ex-ch4-4": Spec(
        "batch_shift",
        _in_ch4_4,
        None,
        _cmp(1e-4, 1e-6),
        "Work on a copy of the network in training mode; embed the image as "
        "the first item of each batch and measure the Euclidean distance.",
        seeds=(1, 2),
        digests=("e8a3d67c795b859b7f33", "39017c2a2d46e6b3bb45"),
    ),
    "ex-ch5-1": Spec(
        "meta_gradient_by_hand",
        _in_ch5_1,
        _ans_ch5_1,
        _cmp(1e-6, 1e-9),
        "Each inner step multiplies by (I - alpha H_i), H_i the support "
        "Hessian; apply both factors to the query gradient at the fast "
        "weights, then average over tasks.",
    ),
    "ex-ch5-2": Spec(
        "centre_spacing",
        _in_ch5_2,
        _ans_ch5_2,
        _cmp(1e-4, 1e-6),
        "Run the toy with Hadsell's form, no radius, 300 steps at rate 0.02, "
        "and measure the smallest distance between class centres.",
        seeds=(2,),
    ),
    "ex-ch5-3": Spec(
        "fomaml_fixed_point",
        _in_ch5_3,
        _ans_ch5_3,
        _cmp(1e-6, 1e-9),
        "First order drops the factor M_i^T: set the sum over tasks of "
        "Q_i (M_i theta + c_i) - r_i to zero and solve the linear system.",
    ),
    "ex-ch6-1": Spec(
        "my_cka",
        _in_ch6_1,
        _ans_ch6_1,
        _cmp(1e-6, 1e-9),
        "Centre each column first (subtract the mean over examples), then the "
        "formula of section 6.1, in float64.",
    ),
    "ex-ch6-2": Spec(
        "my_loo_influence",
        _in_ch6_2,
        _ans_ch6_2,
        _cmp(1e-4, 1e-5),
        "For each support image: drop it, recompute the class means, score "
        "the queries with minus the squared distance, and subtract the "
        "cross-entropy with all images kept.",
    ),
}


def exercise_inputs(exercise: str, seed: int) -> tuple:
    """The arguments a checked exercise's function is called with for ``seed``
    (a fresh copy at every call)."""
    if exercise not in SPECS:
        raise ValueError(
            f"exercise must be one of {sorted(SPECS)}, got {exercise!r}"
        )
    return SPECS[exercise].inputs(int(seed))


def reference(exercise: str, seed: int) -> Any:
    """What the book's tested code gives on :func:`exercise_inputs`
    ``(exercise, seed)`` (only for the exercises whose answer the library
    computes; see :class:`Spec`).
    """
    spec = SPECS[exercise] if exercise in SPECS else None
    if spec is None:
        raise ValueError(
            f"exercise must be one of {sorted(SPECS)}, got {exercise!r}"
        )
    if spec.answer is None:
        raise ValueError(
            f"exercise must be one whose answer the library computes; "
            f"{exercise}'s reference is the instructor's"
        )
    return spec.answer(*spec.inputs(int(seed)))


def compare(exercise: str, got: Any, seed: int) -> tuple[bool, str]:
    """Compare ``got`` with :func:`reference` for ``seed``; the message gives
    nothing away."""
    return SPECS[exercise].compare(got, reference(exercise, seed))


def _check_function(exercise: str, fn: Any) -> tuple[bool, str]:
    spec = SPECS[exercise]
    if fn is None or fn is Ellipsis:
        return False, f"no answer yet: define {spec.function}"
    if not callable(fn):
        return (
            False,
            f"pass your function {spec.function}, not a {type(fn).__name__}",
        )
    for seed in spec.seeds:
        try:
            got = fn(*spec.inputs(seed))
        except NotImplementedError:
            return False, f"no answer yet: {spec.function} is not written"
        # the reader's code may raise anything
        except Exception as e:  # noqa: BLE001
            return (
                False,
                f"your {spec.function} raised {type(e).__name__}: {e}",
            )
        if spec.answer is None:
            ok, msg = _by_digest(exercise, seed, got)
        else:
            ok, msg = spec.compare(got, spec.answer(*spec.inputs(seed)))
        if not ok:
            return False, f"on the check's problem {seed + 1}: {msg}"
    count = len(spec.seeds)
    problems = "problem" if count == 1 else "problems"
    return (
        True,
        f"{spec.function} agrees with the book's code on {count} {problems}",
    )


# --- the older calling forms (a value on the chapter's data), until the
# chapters change -------------------------------------------------------------
CH5_ALPHA, CH5_STEPS = 0.2, 2


def _legacy_ch1_1(
    query_mse: Any, meta_model: Any, task: Any
) -> tuple[bool, str]:
    steps = (0, 1, 2, 5, 10, 20)
    return _close_dict(
        query_mse, _ans_ch1_1(meta_model, task, steps), rtol=1e-3, atol=1e-6
    )


def _legacy_ch3_1(my_fast: Any, model: Any, task: Any) -> tuple[bool, str]:
    expected = _ans_ch3_1(model, task.support_x[0], task.support_y[0], 0.01)
    ok, msg = _close_dict(my_fast, expected, rtol=1e-5, atol=1e-7)
    return (
        (True, "your fast weights equal maml.adapt's") if ok else (False, msg)
    )


def _legacy_ch3_2(answer: Any, model: Any, tasks: Any) -> tuple[bool, str]:
    return close(answer, _ans_ch3_2(model, tasks, 1e-6), rtol=1e-3)


def _legacy_ch3_3(answer: Any, model: Any, episode: Any) -> tuple[bool, str]:
    from . import maml

    fast = maml.adapt(
        model,
        episode.support_x,
        episode.support_y,
        loss_fn=maml.summed_cross_entropy(1),
        inner_steps=3,
        alpha=0.4,
    )
    single = _ans_ch3_3(model, fast, episode.query_x)
    return close(
        answer,
        float(maml.accuracy(single, episode.query_y)),
        rtol=0,
        atol=1e-6,
    )


def _legacy_ch5_1(answer: Any) -> tuple[bool, str]:
    from . import theory

    return close(
        answer,
        _ans_ch5_1(theory.sample_linear_tasks(seed=0), (0.0, 0.0), CH5_ALPHA),
        rtol=1e-6,
        atol=1e-9,
    )


def _legacy_ch5_2(answer: Any) -> tuple[bool, str]:
    from . import theory

    points, labels = theory.toy_points()
    ratio = _ans_ch5_2(points, labels, 2.0) / _ans_ch5_2(points, labels, 1.0)
    return close(answer, ratio, rtol=1e-6, atol=0.0)


def _legacy_ch5_3(answer: Any) -> tuple[bool, str]:
    from . import theory

    return close(
        answer,
        _ans_ch5_3(theory.sample_linear_tasks(seed=0), CH5_ALPHA, CH5_STEPS),
        rtol=1e-8,
        atol=1e-10,
    )


def _legacy_ch6_1(x: Any, y: Any, value: Any) -> tuple[bool, str]:
    return close(value, _ans_ch6_1(x, y), rtol=1e-6, atol=1e-8)


def _legacy_ch6_2(
    embed: Any, episode: Any, influence: Any
) -> tuple[bool, str]:
    return close(influence, _ans_ch6_2(embed, episode), rtol=1e-4, atol=1e-5)


_LEGACY: dict[str, Callable[..., tuple[bool, str]]] = {
    "ex-ch1-1": _legacy_ch1_1,
    "ex-ch3-1": _legacy_ch3_1,
    "ex-ch3-2": _legacy_ch3_2,
    "ex-ch3-3": _legacy_ch3_3,
    "ex-ch5-1": _legacy_ch5_1,
    "ex-ch5-2": _legacy_ch5_2,
    "ex-ch5-3": _legacy_ch5_3,
    "ex-ch6-1": _legacy_ch6_1,
    "ex-ch6-2": _legacy_ch6_2,
}


def _make_check(exercise: str) -> CheckFn:
    def run(*answer: Any) -> tuple[bool, str]:
        if (
            len(answer) == 1
            and (
                callable(answer[0])
                or answer[0] is None
                or answer[0] is Ellipsis
            )
            and not hasattr(answer[0], "shape")
        ):
            return _check_function(exercise, answer[0])
        if (
            exercise in _LEGACY
            and len(answer) >= 1
            and not callable(answer[0])
        ):
            return _LEGACY[exercise](*answer)
        # ex-ch6-2's older form passes embed first
        if exercise in _LEGACY and len(answer) == 3:
            return _LEGACY[exercise](*answer)
        return False, f"pass your function {SPECS[exercise].function}"

    run.__name__ = f"_check_{exercise.replace('-', '_')}"
    return run


for _exercise, _spec in SPECS.items():
    register(_exercise, hint=_spec.hint)(_make_check(_exercise))
del _exercise, _spec
