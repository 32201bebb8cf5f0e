"""Exercise checks a student calls from a chapter notebook.

A chapter's exercise (a ``sphinx-exercise`` block labelled, say, ``ex-ch3-1``) is followed by a
code cell tagged ``solution`` that computes an answer, and then by an ordinary cell that checks
it::

    from mlkit.exercises import check
    check("ex-ch3-1", answer)

:func:`check` prints one line, ``PASS ex-ch3-1: ...`` or ``FAIL ex-ch3-1: ... Hint: ...``, and
returns a :class:`Result` (truthy when the answer passed). ``make student`` empties the
``solution`` cells (leaving ``# your code here``); ``make grade DIR=...`` executes submitted
notebooks and counts the checks that passed (see ``tools/grade.py``).

Adding a check (chapter authors): append a section at the end of this file, headed by a
comment naming your chapter, with one function per exercise::

    # --- chapter 3: MAML ----------------------------------------------------------------
    @register("ex-ch3-1", hint="Take inner_steps gradient steps with rate alpha on the support set.")
    def _ex_ch3_1(answer) -> bool | tuple[bool, str]:
        expected = ...          # recompute the reference answer with tested mlkit code
        return close(answer, expected, rtol=1e-3)

A check function receives whatever the student passes after the exercise id, and returns
``True``/``False`` or ``(passed, message)``. It recomputes the reference answer itself (never
stores a hard-coded number that could drift from the code) and must be quick (seconds).
An exception inside it counts as a FAIL whose message names the exception.

Grading: when the environment variable ``MLKIT_EXERCISE_LOG`` names a file, every call of
:func:`check` appends one JSON line ``{"exercise": id, "passed": bool}`` to it. That is how
``tools/grade.py`` scores a notebook without parsing its printed output.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["Result", "register", "check", "checks", "close", "LOG_ENV"]

#: Environment variable naming the JSON-lines file that :func:`check` appends results to.
LOG_ENV = "MLKIT_EXERCISE_LOG"

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

    def __repr__(self) -> str:  # what a notebook shows if the Result is a cell's last value
        return f"Result({self.exercise!r}, passed={self.passed})"


def register(exercise: str, *, hint: str) -> Callable[[CheckFn], CheckFn]:
    """Decorator adding a check for ``exercise`` (an id like ``"ex-ch3-1"``) to the registry.

    ``hint`` is printed when the check fails; it should point towards the method, not give
    the answer away.
    """
    if not isinstance(exercise, str) or not exercise.startswith("ex-") or len(exercise) < 4:
        raise ValueError(f"exercise must be an id starting with 'ex-' (the exercise label), got {exercise!r}")
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


def _log(exercise: str, passed: bool) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"exercise": exercise, "passed": bool(passed)}) + "\n")


def check(exercise: str, *answer: Any, **kwargs: Any) -> Result:
    """Check a student's answer to ``exercise``; print PASS or FAIL (with a hint) and return it.

    The answer arguments are passed to the exercise's registered check function.
    """
    if exercise not in _REGISTRY:
        known = ", ".join(checks()) or "none yet"
        raise ValueError(f"exercise must be one of the ids with a check ({known}), got {exercise!r}")
    entry = _REGISTRY[exercise]
    try:
        out = entry.fn(*answer, **kwargs)
    except Exception as e:  # a wrong-shaped answer should read as a FAIL, not a traceback
        passed, message = False, f"checking your answer raised {type(e).__name__}: {e}"
    else:
        if isinstance(out, tuple):
            passed, message = bool(out[0]), str(out[1])
        else:
            passed, message = bool(out), ""
    if passed:
        text = f"PASS {exercise}" + (f": {message}" if message else "")
    else:
        text = f"FAIL {exercise}" + (f": {message}." if message else ".") + f" Hint: {entry.hint}"
    print(text)
    _log(exercise, passed)
    return Result(exercise, passed, message)


def close(answer: Any, expected: Any, *, rtol: float = 1e-4, atol: float = 1e-6) -> tuple[bool, str]:
    """Compare an answer (number, array or tensor) with the expected value, within tolerances.

    Returns ``(passed, message)`` for use as a check function's result; the message says what
    differs (shape, or the largest deviation) without revealing the expected values.
    """
    if answer is None or answer is Ellipsis:
        return False, "no answer yet (the variable is None or ...)"
    try:
        a = np.asarray(answer.detach().cpu() if hasattr(answer, "detach") else answer, dtype=float)
    except (TypeError, ValueError):
        return False, f"expected a number or an array, got {type(answer).__name__}"
    e = np.asarray(expected.detach().cpu() if hasattr(expected, "detach") else expected, dtype=float)
    if a.shape != e.shape:
        return False, f"shape {a.shape}, expected {e.shape}"
    if not np.all(np.isfinite(a)):
        return False, "the answer holds NaN or infinite values"
    if np.allclose(a, e, rtol=rtol, atol=atol):
        return True, "matches"
    dev = float(np.max(np.abs(a - e)))
    return False, f"off by up to {dev:.3g}"



# --- chapter 1: a worked example of a check (written by the product helper; the chapter's
# author owns the exercise and may change it) ----------------------------------------------
_CH1_STEPS = (0, 1, 2, 5, 10, 20)


@register("ex-ch1-1", hint="For each number of steps call maml.evaluate(meta_model, [task], "
          "loss_fn=maml.mse_loss, inner_steps=steps, alpha=0.01, metric=maml.mse_loss) and keep "
          "its single value, in a dict keyed by the number of steps.")
def _ex_ch1_1(query_mse: Any, meta_model: Any, task: Any) -> tuple[bool, str]:
    from mlkit import maml

    if not isinstance(query_mse, dict) or sorted(query_mse) != list(_CH1_STEPS):
        return False, f"expected a dict keyed by the steps {list(_CH1_STEPS)}"
    expected = [float(maml.evaluate(meta_model, [task], loss_fn=maml.mse_loss, inner_steps=s,
                                    alpha=0.01, metric=maml.mse_loss)[0]) for s in _CH1_STEPS]
    try:
        got = [float(np.asarray(query_mse[s], dtype=float).reshape(-1)[0]) for s in _CH1_STEPS]
    except (TypeError, ValueError, IndexError):
        return False, "each value should be the query MSE, one number"
    return close(got, expected, rtol=1e-3)


# --- chapter 5: the mathematics ----------------------------------------------------------
# The problems are fixed here and in the chapter's exercise text: linear tasks
# mlkit.theory.sample_linear_tasks(seed=0), alpha = 0.2, two inner steps; the contrastive toy
# mlkit.theory.toy_points() (defaults), Hadsell's form, no radius, no noise.

CH5_ALPHA, CH5_STEPS = 0.2, 2


@register("ex-ch5-1", hint="Each inner step multiplies by (I - alpha A_i), A_i the support "
                           "Hessian; apply both factors to the query gradient at the fast "
                           "weights, then average over tasks.")
def _ex_ch5_1(answer: Any) -> tuple[bool, str]:
    from . import maml as M
    from . import theory as T

    tasks = T.sample_linear_tasks(seed=0)
    g = M.meta_gradient(T.linear_model((0.0, 0.0)), tasks, loss_fn=M.mse_loss,
                        inner_steps=CH5_STEPS, alpha=CH5_ALPHA)
    return close(answer, T.flat(g).detach(), rtol=1e-6, atol=1e-9)


@register("ex-ch5-2", hint="Without a radius or noise the loss has no length scale but m; "
                           "compare class_spacing(...)['between'] of two runs.")
def _ex_ch5_2(answer: Any) -> tuple[bool, str]:
    from . import theory as T

    points, labels = T.toy_points()
    between = [T.class_spacing(T.contrastive_toy(points, labels, m, form="hadsell", radius=None,
                                                 steps=300, lr=0.02)[-1], labels)["between"]
               for m in (1.0, 2.0)]
    return close(answer, between[1] / between[0], rtol=0.05, atol=0.0)


@register("ex-ch5-3", hint="First order drops the factor M_i^T: set the sum over tasks of "
                           "Q_i (M_i theta + c_i) - r_i to zero and solve for theta.")
def _ex_ch5_3(answer: Any) -> tuple[bool, str]:
    from . import theory as T

    expected = T.linear_fomaml_fixed_point(T.sample_linear_tasks(seed=0), alpha=CH5_ALPHA,
                                           inner_steps=CH5_STEPS)
    return close(answer, expected, rtol=1e-3, atol=1e-4)


# --- chapter 6: opening the box -------------------------------------------------------------
@register("ex-ch6-1", hint="Centre each column first (subtract the mean over examples), then "
                           "||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), in float64.")
def _ex_ch6_1(x: Any, y: Any, value: Any) -> tuple[bool, str]:
    from .interpret import linear_cka

    return close(value, linear_cka(x, y), rtol=1e-6, atol=1e-8)


@register("ex-ch6-2", hint="For each support image i: drop it, recompute every class's mean "
                           "embedding, score the queries with minus the squared distance, and "
                           "subtract the cross-entropy with all images kept.")
def _ex_ch6_2(embed: Any, episode: Any, influence: Any) -> tuple[bool, str]:
    import torch

    from .interpret import loo_influence, prototype_scorer

    n_way = int(episode.support_y.max()) + 1

    def fit_predict(sx, sy, qx):
        return prototype_scorer(embed, sx, sy, n_way)(qx)

    with torch.no_grad():
        expected = loo_influence(fit_predict, episode.support_x, episode.support_y,
                                 episode.query_x, episode.query_y).mean(0)
    return close(influence, expected, rtol=1e-4, atol=1e-5)


# --- chapter 3: MAML ----------------------------------------------------------------------


@register("ex-ch3-1", hint="theta' = theta - alpha * grad, with the gradient of maml.mse_loss "
                           "on the support set from torch.autograd.grad, one tensor per name.")
def _ex_ch3_1(my_fast: Any, model: Any, task: Any) -> tuple[bool, str]:
    from . import maml

    expected = maml.adapt(model, task.support_x[0], task.support_y[0], loss_fn=maml.mse_loss,
                          inner_steps=1, alpha=0.01)
    if not isinstance(my_fast, dict) or sorted(my_fast) != sorted(expected):
        return False, f"expected a dict with the keys {sorted(expected)}"
    for name in expected:
        ok, msg = close(my_fast[name], expected[name].detach(), rtol=1e-5, atol=1e-7)
        if not ok:
            return False, f"{name}: {msg}"
    return True, "your fast weights equal maml.adapt's"


@register("ex-ch3-2", hint="maml.adaptation_curve(model, tasks, loss_fn=maml.mse_loss, "
                           "alpha=1e-6, max_steps=1) gives the MSE after 0 and 1 steps.")
def _ex_ch3_2(answer: Any, model: Any, tasks: Any) -> tuple[bool, str]:
    from . import maml

    expected = float(maml.adaptation_curve(model, tasks, loss_fn=maml.mse_loss, alpha=1e-6,
                                           max_steps=1)[1].mean())
    return close(answer, expected, rtol=1e-3)


@register("ex-ch3-3", hint="Adapt with the checkpoint's test steps and alpha on Finn's summed "
                           "loss, then call maml.predict on episode.query_x[i:i + 1] for each i.")
def _ex_ch3_3(answer: Any, model: Any, episode: Any) -> tuple[bool, str]:
    import torch

    from . import maml

    fast = maml.adapt(model, episode.support_x, episode.support_y,
                      loss_fn=maml.summed_cross_entropy(1), inner_steps=3, alpha=0.4)
    with torch.no_grad():
        single = torch.cat([maml.predict(model, fast, episode.query_x[i:i + 1])
                            for i in range(len(episode.query_x))])
    return close(answer, float(maml.accuracy(single, episode.query_y)), rtol=0, atol=1e-6)
