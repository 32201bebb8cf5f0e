"""What a hidden test is made of, and how values travel from a submission to
the grader.

The instructor's hidden tests (``instructor/tests/NN_name.py``, one module per
chapter notebook ``NN_name.ipynb``) are plain Python modules that
``tools/grade.py`` imports in its own process, before any submission runs. Each
module defines

``KERNEL``
    Python source that builds the inputs the tests choose
    (``_inputs_...(seed)`` functions). It is executed twice: in the
    submission's kernel, inside the one cell the grader appends after the
    student's cells, and in the grader's process, so both sides see the same
    inputs for the same fresh random ``SEED``.
``EXERCISES``
    a list of :class:`Exercise`. ``collect`` maps a key to a Python
    *expression* that the appended cell evaluates in the student's namespace
    (``"my_cka(*_inputs_cka(SEED))"``: the student's function on the test's
    inputs; ``"answer_1"``: a variable). ``score`` runs in the grader's process
    on the decoded values and returns the points and a note.

The appended cell writes the values as JSON (no pickle: nothing the student
made is ever executed by the grader) to a file whose name holds a fresh random
token, in a folder outside the submission's copy. A notebook can overwrite
``mlkit.exercises``, write any log, delete cells or fake a variable: all the
grader ever reads is data, which ``score`` checks against references it
computes itself. Marks never come from ``mlkit.exercises.check``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

#: The exception message a value gets when the student's namespace does not
#: define it.
MISSING = "missing"


@dataclass(frozen=True)
class Value:
    """One collected value: ``ok`` with ``value``, or the ``error`` its
    expression raised."""

    ok: bool
    value: Any = None
    error: str = ""


ScoreFn = Callable[
    [dict[str, Value], int, dict[str, Any]], "tuple[float, str]"
]


@dataclass(frozen=True)
class Exercise:
    """A hidden test: what to collect from the kernel and how to score it.

    ``score(values, seed, kernel_namespace)`` returns ``(points, note)``;
    points are clipped to ``[0, points]`` by the grader, and an exception
    inside ``score`` gives 0 with the exception named in the note.
    """

    exercise: str
    collect: dict[str, str]
    score: ScoreFn
    points: float = 1.0
    title: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.exercise.startswith("ex-"):
            raise ValueError(
                "exercise must be an id starting with 'ex-', "
                f"got {self.exercise!r}"
            )
        if self.points <= 0:
            raise ValueError(f"points must be positive, got {self.points}")
        for key, expr in self.collect.items():
            if not key.isidentifier():
                raise ValueError(
                    f"collect keys must be identifiers, got {key!r}"
                )
            # a syntax error is the author's, found now
            compile(expr, "<collect>", "eval")


# --- the cell the grader appends (runs in the student's kernel) --------------

# A backslash at the end of a line below joins it with the next one: the cell
# holds them as one line.
_COLLECT_CELL = """\
# Appended by the grader: evaluates the hidden tests' expressions and \
writes the values.
def __grader_collect():
    import json as _json
    import math as _math
    _exprs = {exprs!r}
    _env = dict(globals())
    _env["SEED"] = {seed!r}
    exec({kernel!r}, _env)

    def _plain(v, depth=0):
        if depth > 8:
            raise ValueError("nested too deeply")
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return v if _math.isfinite(v) else repr(v)
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        if type(v).__module__ == "numpy":
            import numpy as _np
            a = _np.asarray(v)
            if a.dtype.kind in "biuf":
                flat = [x if _math.isfinite(x) else repr(x) for x in
                        a.astype(float).reshape(-1).tolist()]
                return {{"__array__": flat, "shape": list(a.shape)}}
            return repr(v)[:200]
        if isinstance(v, dict):
            return {{"__dict__": [[_plain(k, depth + 1), _plain(x, depth + 1)]
                                 for k, x in list(v.items())[:10000]]}}
        if isinstance(v, (list, tuple)):
            return [_plain(x, depth + 1) for x in list(v)[:100000]]
        return {{"__repr__": type(v).__name__}}

    _out = {{}}
    for _key, _expr in _exprs.items():
        try:
            _out[_key] = {{"ok": True, "value": _plain(eval(_expr, _env))}}
        except BaseException as _e:  # noqa: BLE001 - anything the \
student's code raises
            _out[_key] = {{"ok": False, \
"error": (type(_e).__name__ + ": " + str(_e))[:300]}}
    with open({path!r}, "w", encoding="utf-8") as _f:
        _json.dump(_out, _f)


__grader_collect()
"""


def collect_cell(
    exercises: list[Exercise], kernel: str, seed: int, path: str
) -> str:
    """Source of the cell appended to a submission: evaluates every ``collect``
    expression (prefixed ``exercise/key``) and writes the JSON to ``path``."""
    exprs = {
        f"{ex.exercise}/{key}": expr
        for ex in exercises
        for key, expr in ex.collect.items()
    }
    return _COLLECT_CELL.format(
        exprs=exprs, seed=int(seed), kernel=kernel, path=str(path)
    )


def _decode(v: Any) -> Any:
    if isinstance(v, dict):
        if "__array__" in v:
            flat = [
                float(x) if not isinstance(x, str) else float("nan")
                for x in v["__array__"]
            ]
            return np.asarray(flat, dtype=float).reshape(v.get("shape", [-1]))
        if "__dict__" in v:
            out = {}
            for k, x in v["__dict__"]:
                try:
                    out[
                        _decode(k) if not isinstance(k, list) else tuple(k)
                    ] = _decode(x)
                except TypeError:  # an unhashable key cannot be an answer
                    continue
            return out
        if "__repr__" in v:
            return Opaque(str(v["__repr__"]))
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if isinstance(v, str) and v in ("nan", "inf", "-inf"):
        # a float that was not finite; compare() reads it as not a number
        return v
    return v


@dataclass(frozen=True)
class Opaque:
    """A collected object the grader cannot read (a model, a function): only
    its type name."""

    type_name: str


def read_values(path: str, max_bytes: int = 50_000_000) -> dict[str, Value]:
    """Decode the appended cell's JSON file (keys ``exercise/key``); a missing
    or broken file gives ``{}`` (every test then scores 0)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
        if len(raw) > max_bytes:
            return {}
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, Value] = {}
    for key, rec in data.items():
        if not isinstance(rec, dict):
            continue
        if rec.get("ok") is True:
            out[str(key)] = Value(True, _decode(rec.get("value")))
        else:
            out[str(key)] = Value(False, None, str(rec.get("error", ""))[:300])
    return out


def as_array(value: Any) -> np.ndarray | None:
    """``value`` as a float array, or ``None`` when it is not numeric."""
    if isinstance(value, (Opaque, str)) or value is None:
        return None
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    return a


def compare(
    value: Any, expected: Any, *, rtol: float = 1e-4, atol: float = 1e-6
) -> tuple[bool, str]:
    """Whether ``value`` equals ``expected`` within tolerances, and a note that
    does not give the expected value away (``wrong shape``, ``too large``,
    ``too small``, ``differs``).
    """
    a = as_array(value)
    e = np.asarray(expected, dtype=float)
    if a is None:
        return False, "not a number or an array"
    if a.shape != e.shape:
        return False, f"wrong shape {tuple(a.shape)}"
    if not np.all(np.isfinite(a)):
        return False, "holds NaN or infinite values"
    if np.allclose(a, e, rtol=rtol, atol=atol):
        return True, "correct"
    if a.size == 1:
        return False, (
            "too large"
            if float(a.reshape(-1)[0]) > float(e.reshape(-1)[0])
            else "too small"
        )
    return False, "differs from the reference"


def missing(values: dict[str, Value], exercise: str, key: str) -> str | None:
    """A note when ``exercise/key`` was not collected (the expression raised),
    else None."""
    v = values.get(f"{exercise}/{key}")
    if v is None:
        return "no value collected"
    if not v.ok:
        return v.error.split("\n")[0][:120]
    return None


def get(values: dict[str, Value], exercise: str, key: str) -> Any:
    """The decoded value of ``exercise/key`` (``None`` when it was not
    collected)."""
    v = values.get(f"{exercise}/{key}")
    return v.value if v is not None and v.ok else None


def isclose_number(x: Any, y: float, tol: float) -> bool:
    """``x`` is a finite number within ``tol`` of ``y``."""
    try:
        return math.isfinite(float(x)) and abs(float(x) - y) <= tol
    except (TypeError, ValueError):
        return False
