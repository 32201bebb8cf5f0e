"""Hidden tests of 01_background.ipynb: the checked exercises, on inputs from the grader's seed.

The discussion exercises of this chapter are marked by hand with instructor/rubrics.md.
"""

from _common import KERNEL, spec_exercise  # noqa: F401 (KERNEL is read by the grader)

EXERCISES = [
    spec_exercise("ex-ch1-1"),
]
