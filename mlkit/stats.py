"""Summary statistics the book reports."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["mean_ci95"]


def mean_ci95(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and half-width of its 95% confidence interval, 1.96 * std / sqrt(n).

    This is the interval few-shot papers report over test tasks (Finn et al. 2017 over 600
    tasks); ``std`` is the sample standard deviation (ddof=1). One value gives a half-width
    of ``nan``.
    """
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("values must hold at least one number, got none")
    half = 1.96 * a.std(ddof=1) / math.sqrt(a.size) if a.size > 1 else float("nan")
    return float(a.mean()), float(half)
