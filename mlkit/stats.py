"""Summary statistics the book reports."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["mean_ci95", "summary"]


def mean_ci95(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and half-width of its 95% confidence interval, 1.96 * std /
    sqrt(n).

    This is the interval few-shot papers report over test tasks (Finn et al.
    2017 over 600 tasks); ``std`` is the sample standard deviation (ddof=1).
    One value gives a half-width of ``nan``. ``values`` must be finite (a
    diverged run's NaN or inf has no interval).
    """
    try:
        a = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(
            f"values must be a sequence or array of numbers, got "
            f"{values!r}"
        ) from None
    if a.size == 0:
        raise ValueError("values must hold at least one number, got none")
    if not np.isfinite(a).all():
        raise ValueError(
            f"values must be finite numbers (no NaN or inf), got "
            f"{int((~np.isfinite(a)).sum())} that are not"
        )
    with np.errstate(over="ignore"):
        half = (
            1.96 * a.std(ddof=1) / math.sqrt(a.size)
            if a.size > 1
            else float("nan")
        )
        mean = float(a.mean())
    if math.isinf(mean) or math.isinf(half):
        raise ValueError(
            "values must be small enough to average in float64 "
            "(the mean or the spread overflows)"
        )
    return mean, float(half)


def summary(values: Sequence[float] | np.ndarray) -> dict[str, object]:
    """What ``python -m mlkit evaluate`` reports of per-task scores: the mean
    and its 95% half-width (:func:`mean_ci95`), the median and the
    interquartile range ``[q25, q75]`` (one diverging task can own a mean of
    squared errors, not the middle), and the number of tasks."""
    mean, ci = mean_ci95(values)
    a = np.asarray(values, dtype=np.float64).ravel()
    q25, median, q75 = (float(v) for v in np.percentile(a, [25, 50, 75]))
    return {"mean": mean, "ci95": ci, "median": median, "iqr": [q25, q75],
            "tasks": int(a.size)}
