"""Shared by the hidden tests: a checked exercise of mlkit.exercises.SPECS as a hidden test.

The student's function (the name the exercise asks for) is called in the submission's
kernel on ``mlkit.exercises.exercise_inputs(exercise, SEED)``, SEED fresh for every
submission; its result comes back as data and is compared here, in the grader's process,
with what the book's code gives on the same inputs drawn here. A notebook that changes
``mlkit.exercises`` in its kernel only changes its own inputs, never the reference.
"""

from __future__ import annotations

from typing import Any, Callable

# Imported now, before any submission runs: the references are computed with these copies.
from mlkit import data, exercises, interpret, maml, nets, siamese, theory  # noqa: F401

from grading import Exercise, Value, compare, get, missing

from _references import REFERENCES

KERNEL = "from mlkit.exercises import exercise_inputs as _grader_inputs\n"


def _decoded_compare(exercise: str, got: Any, seed: int) -> tuple[bool, str]:
    spec = exercises.SPECS[exercise]
    answer = spec.answer if spec.answer is not None else REFERENCES[exercise]
    ok, msg = spec.compare(got, answer(*spec.inputs(seed)))
    return ok, ("correct" if ok else msg)


def spec_exercise(exercise: str, legacy: tuple[str, Callable[[], Any], float, float] | None = None
                  ) -> Exercise:
    """A hidden test for ``exercise``. ``legacy = (variable, reference, rtol, atol)`` also
    accepts the chapter's older form (a value on the chapter's fixed problem) when the
    function is not there, until the chapter's check cell asks for the function."""
    spec = exercises.SPECS[exercise]
    collect = {"value": f"{spec.function}(*_grader_inputs({exercise!r}, SEED))"}
    if legacy is not None:
        collect["legacy"] = legacy[0]

    def score(values: dict[str, Value], seed: int, ns: dict) -> tuple[float, str]:
        note = missing(values, exercise, "value")
        if note is None:
            ok, msg = _decoded_compare(exercise, get(values, exercise, "value"), seed)
            return float(ok), f"{spec.function}: {msg}"
        if legacy is not None and missing(values, exercise, "legacy") is None:
            ok, msg = compare(get(values, exercise, "legacy"), legacy[1](), rtol=legacy[2],
                              atol=legacy[3])
            return float(ok), f"{legacy[0]} (older form): {msg}"
        return 0.0, f"{spec.function}: {note}"

    return Exercise(exercise, collect, score, title=spec.function)
