"""The summaries `python -m mlkit evaluate` reports."""

from __future__ import annotations

import numpy as np
import pytest

from mlkit import data, stats


def test_summary_gives_the_middle_beside_the_mean():
    # one diverging task owns the mean, not the median or the quartiles
    scores = [0.1, 0.2, 0.3, 0.4, 1000.0]
    got = stats.summary(scores)
    assert got["mean"] == pytest.approx(200.2)
    assert got["ci95"] == pytest.approx(stats.mean_ci95(scores)[1])
    assert got["median"] == pytest.approx(0.3)
    assert got["iqr"] == pytest.approx([0.2, 0.4])
    assert got["tasks"] == 5
    with pytest.raises(ValueError, match="values"):
        stats.summary([1.0, np.nan])


def test_a_test_task_keeps_a_drawing_for_its_queries():
    assert data.check_test_shots(data.DRAWINGS - 1) == data.DRAWINGS - 1
    with pytest.raises(ValueError, match="--shots must be below 20"):
        data.check_test_shots(data.DRAWINGS)
