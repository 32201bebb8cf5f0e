"""Fuzz of the public functions: bad input must raise a ValueError, nothing
else.

The package's rule is that every public function rejects bad input with a
``ValueError`` naming the argument. Each fuzz target is one entry of a table:
the callable, a hypothesis strategy that draws its arguments (mostly valid,
with wild values mixed in: zero and negative counts, NaN and inf rates, bools
where numbers belong, unknown strings, empty or mis-shaped tensors) and,
optionally, a check of the result (its shape, so that a silently broadcast
loss fails). A target fails on any exception other than ``ValueError``, on a
hang (a hard time limit per call, besides hypothesis' deadline) and on a
failed result check.

Adding a target is one entry in a family's list (``MAML``, ``SIAMESE``, ...);
a new family is one list and one entry in ``FAMILIES`` at the end of the
file. The strategies draw tiny tensors and networks, and hypothesis runs
derandomized, so the file is fast and gives the same examples on every run.

The plain tests at the end pin the exact cases a first fuzz found.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import warnings
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, Callable
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from mlkit import data
from mlkit import interpret
from mlkit import maml
from mlkit import nets
from mlkit import protonet
from mlkit import siamese
from mlkit import stats
from mlkit import theory
from mlkit.nets import ConvNet, SinusoidMLP

HANG_S = 20.0  # a call that takes longer than this is taken for a hang
FUZZ = settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=5),
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


# -----------------------------------------------------------------------------
# The harness
# -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A fuzz target: ``fn(*args, **kwargs)`` with ``(args, kwargs)`` drawn
    from ``args``; ``check(result, args, kwargs)`` asserts what a valid call
    returns.
    """

    fn: Callable[..., Any]
    args: st.SearchStrategy
    check: Callable[[Any, tuple, dict], None] | None = None
    name: str = ""

    def __str__(self) -> str:
        return self.name or getattr(self.fn, "__qualname__", repr(self.fn))


class Hang(AssertionError):
    """A call ran past ``HANG_S``."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise ``Hang`` in the call after ``seconds`` (SIGALRM: the main thread
    of a POSIX process; elsewhere only hypothesis' deadline applies)."""
    if not hasattr(signal, "setitimer") or (
        threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def fail(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _run(target: Target, draws: st.DataObject) -> None:
    _MODE["wild"] = draws.draw(st.booleans(), label="wild")
    args, kwargs = draws.draw(target.args, label="arguments")
    with _time_limit(HANG_S), warnings.catch_warnings():
        # torch's broadcasting warning (F.mse_loss) means a silent broadcast
        warnings.simplefilter("ignore", UserWarning)
        warnings.filterwarnings(
            "error", message=".*different to the input size"
        )
        try:
            out = target.fn(*args, **kwargs)
        except ValueError as e:
            assert str(e), "a ValueError must say what is wrong"
            return
    if target.check is not None:
        target.check(out, args, kwargs)


# -----------------------------------------------------------------------------
# Strategies: valid values with wild ones mixed in
# -----------------------------------------------------------------------------

WILD = st.sampled_from(
    [
        None,
        -1,
        0,
        True,
        False,
        1.5,
        -0.5,
        math.nan,
        math.inf,
        -math.inf,
        "x",
        "",
        (),
        [],
        {},
        torch.tensor(1.0),
    ]
)

# Half the examples draw valid values only, to reach past the first checks; in
# the other half each argument is wild now and then (set by ``_run``).
_MODE = {"wild": True}
WILDNESS = st.integers(0, 3).map(lambda i: _MODE["wild"] and i == 2)


def wild_or(
    valid: st.SearchStrategy, wild: st.SearchStrategy
) -> st.SearchStrategy:
    """In a wild example ``wild`` one time in four, else ``valid``."""
    return st.integers(0, 3).flatmap(
        lambda i: wild if _MODE["wild"] and i == 2 else valid
    )


def maybe(
    valid: st.SearchStrategy, wild: st.SearchStrategy = WILD
) -> st.SearchStrategy:
    """``valid``, or in a wild example now and then a wild value."""
    return wild_or(valid, wild)


def ints(lo: int, hi: int) -> st.SearchStrategy:
    return maybe(st.integers(lo, hi))


def rates(lo: float = 1e-3, hi: float = 1.0) -> st.SearchStrategy:
    return maybe(st.floats(lo, hi))


def choice(*valid: Any) -> st.SearchStrategy:
    return maybe(st.sampled_from(valid), st.one_of(WILD, st.just("bogus")))


def flags() -> st.SearchStrategy:
    return maybe(st.booleans())


def seeds() -> st.SearchStrategy:
    return maybe(st.integers(0, 3))


def _make(shape: tuple[int, ...], seed: int, kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "labels":
        return torch.randint(0, 3, shape, generator=g)
    if kind == "int":
        return torch.randint(-1, 5, shape, generator=g)
    if kind == "bool":
        return torch.randint(0, 2, shape, generator=g).bool()
    t = torch.randn(shape, generator=g)
    if kind == "nan" and t.numel():
        t.view(-1)[0] = math.nan
    return t


def tensors(
    shape: tuple[int, ...] | st.SearchStrategy,
    kind: str = "float",
    wild: bool = True,
    near: bool = True,
) -> st.SearchStrategy:
    """A tensor of ``shape`` and ``kind`` (float, labels 0..2, int -1..4,
    bool); in a wild example sometimes a near miss (a dimension added, dropped
    or resized; not with ``near=False``), another kind (with NaN) or a wild
    value."""
    shape = st.just(tuple(shape)) if isinstance(shape, tuple) else shape

    def missed(s: tuple[int, ...]) -> st.SearchStrategy:
        resized = st.integers(0, max(len(s) - 1, 0)).flatmap(
            lambda i: st.integers(0, 3).map(
                lambda v: s[:i] + (v,) + s[i + 1 :] if s else (v,)
            )
        )
        return wild_or(
            st.just(s), st.one_of(st.just(s[:-1]), st.just(s + (1,)), resized)
        )

    kinds = wild_or(
        st.just(kind), st.sampled_from(["float", "int", "bool", "nan"])
    )
    t = st.tuples(
        shape.flatmap(missed) if wild and near else shape,
        st.integers(0, 2**16),
        kinds if wild else st.just(kind),
    ).map(lambda a: _make(*a))
    return maybe(t) if wild else t


def inputs(*shape: int) -> st.SearchStrategy:
    """The input of a model that is not the package's (it checks its own input
    shape): ``shape``, its first size (examples) sometimes 0."""
    return sizes(shape[0]).flatmap(
        lambda n: tensors((n,) + shape[1:], near=False)
    )


def labels(shape: tuple[int, ...] | st.SearchStrategy) -> st.SearchStrategy:
    """Class labels of three classes (in a wild example sometimes out of
    range)."""
    return tensors(shape, "labels")


def sizes(*valid: int) -> st.SearchStrategy:
    """One of the ``valid`` sizes, in a wild example now and then 0."""
    return wild_or(st.sampled_from(valid), st.just(0))


def call(*args: Any, **kwargs: Any) -> tuple[tuple, dict]:
    return args, kwargs


def fixed(*args: Any, **kwargs: Any) -> st.SearchStrategy:
    """``(args, kwargs)``, each value a strategy or a constant."""

    def lift(v: Any) -> st.SearchStrategy:
        return v if isinstance(v, st.SearchStrategy) else st.just(v)

    return st.tuples(
        st.tuples(*map(lift, args)),
        st.fixed_dictionaries({k: lift(v) for k, v in kwargs.items()}),
    )


# -----------------------------------------------------------------------------
# Tiny networks and data
# -----------------------------------------------------------------------------

torch.manual_seed(0)
MLP = SinusoidMLP((3,))
CONV = ConvNet(3, hidden=2)  # 8x8 inputs: 8 -> 4 -> 2 -> 1 -> 1
MODELS = st.sampled_from([MLP, CONV])


def _regression_batch(t: int, n: int, q: int) -> st.SearchStrategy:
    return st.builds(
        SimpleNamespace,
        support_x=tensors((t, n, 1)),
        support_y=tensors((t, n, 1)),
        query_x=tensors((t, q, 1)),
        query_y=tensors((t, q, 1)),
    )


def _class_batch(t: int, n: int, q: int) -> st.SearchStrategy:
    return st.builds(
        SimpleNamespace,
        support_x=tensors((t, n, 1, 8, 8)),
        support_y=labels((t, n)),
        query_x=tensors((t, q, 1, 8, 8)),
        query_y=labels((t, q)),
    )


# two or more examples: BatchNorm needs more than one value per channel
batch_sizes = st.tuples(sizes(1, 2), sizes(2, 3), sizes(2, 3))


@st.composite
def model_batch(draw: Any) -> tuple[nn.Module, Any, Callable]:
    """A model, a task batch for it (often slightly wrong) and its loss."""
    model = draw(MODELS)
    t, n, q = draw(batch_sizes)
    if model is MLP:
        batch, loss = draw(_regression_batch(t, n, q)), maml.mse_loss
    else:
        batch, loss = draw(_class_batch(t, n, q)), maml.cross_entropy
    batch = draw(maybe(st.just(batch)))
    return (
        model,
        batch,
        draw(
            maybe(
                st.just(loss),
                st.sampled_from(
                    [None, maml.accuracy, maml.mse_loss, maml.cross_entropy]
                ),
            )
        ),
    )


@st.composite
def params_for(draw: Any, model: nn.Module, tasks: int | None = None) -> Any:
    """The model's parameters (with a task axis of ``tasks``), sometimes
    broken."""
    p = {k: v.detach() for k, v in model.named_parameters()}
    if tasks is not None:
        p = {k: v.expand(tasks, *v.shape) for k, v in p.items()}
    how = draw(
        st.sampled_from(
            [
                "ok",
                "ok",
                "ok",
                "ok",
                "extra",
                "missing",
                "shape",
                "none",
                "list",
            ]
        )
    )
    if how == "extra":
        p["nope"] = torch.zeros(1)
    elif how == "missing":
        p.pop(next(iter(p)))
    elif how == "shape":
        k = next(iter(p))
        p[k] = p[k][..., :0]
    elif how == "none":
        return None
    elif how == "list":
        return list(p.values())
    return p


ADAPT_NAMES = maybe(
    st.sampled_from([None, ["head.weight", "head.bias"]]),
    st.sampled_from([[], ["nope"], "head.weight", 3]),
)


@st.composite
def adapt_args(draw: Any, tasks: bool = False) -> tuple[tuple, dict]:
    model, batch, loss = draw(model_batch())
    sx = getattr(batch, "support_x", torch.zeros(1))
    sy = getattr(batch, "support_y", torch.zeros(1))
    if not tasks:  # the first task (when there is one) of the batch
        sx, sy = (
            t[0] if isinstance(t, torch.Tensor) and t.dim() and len(t) else t
            for t in (sx, sy)
        )
    return call(
        model,
        sx,
        sy,
        loss_fn=loss,
        inner_steps=draw(ints(0, 2)),
        alpha=draw(rates()),
        params=draw(params_for(model)),
        first_order=draw(flags()),
        adapt_names=draw(ADAPT_NAMES),
    )


@st.composite
def predict_args(draw: Any, tasks: bool = False) -> tuple[tuple, dict]:
    model = draw(MODELS)
    t, n = draw(sizes(1, 2)), draw(sizes(2, 3))
    lead = (t, n) if tasks else (n,)
    x = draw(tensors(lead + ((1,) if model is MLP else (1, 8, 8))))
    return call(model, draw(params_for(model, t if tasks else None)), x)


def _out_shape(model: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    return (
        tuple(x.shape[:-1]) + (1,)
        if model is MLP
        else tuple(x.shape[:-3]) + (3,)
    )


@st.composite
def query_args(draw: Any, **extra: st.SearchStrategy) -> tuple[tuple, dict]:
    model, batch, loss = draw(model_batch())
    kw = dict(
        loss_fn=loss,
        inner_steps=draw(ints(0, 2)),
        alpha=draw(rates()),
        batched=draw(maybe(st.sampled_from([None, True, False]))),
    )
    kw.update({k: draw(v) for k, v in extra.items()})
    return call(model, batch, **kw)


def _losses_per_task(out: Any, args: tuple, kwargs: dict) -> None:
    losses, preds = out
    t = args[1].support_x.shape[0]
    assert losses.shape == (t,), losses.shape
    assert preds.shape[0] == t


@st.composite
def meta_train_args(draw: Any) -> tuple[tuple, dict]:
    model, batch, loss = draw(model_batch())
    model = copy.deepcopy(model)  # trained in place: the shared one stays
    sample = draw(maybe(st.just(lambda rng: batch)))
    return call(
        model,
        sample,
        loss_fn=loss,
        iterations=draw(ints(0, 2)),
        inner_steps=draw(ints(0, 1)),
        alpha=draw(rates()),
        meta_lr=draw(rates(1e-4, 1e-2)),
        log_every=draw(ints(1, 2)),
        save_every_s=draw(maybe(st.just(math.inf))),
        workers=draw(ints(1, 2)),
        progress=False,
        anneal_from=draw(maybe(st.sampled_from([None, 0, 1]))),
        time_limit_s=draw(maybe(st.sampled_from([None, 60.0]))),
    )


@st.composite
def curve_args(draw: Any) -> tuple[tuple, dict]:
    model, batch, loss = draw(model_batch())
    return call(
        model,
        batch,
        loss_fn=loss,
        alpha=draw(rates()),
        max_steps=draw(ints(0, 2)),
        batched=draw(maybe(st.sampled_from([None, True, False]))),
    )


def _curve_shape(out: Any, args: tuple, kwargs: dict) -> None:
    assert out.shape == (kwargs["max_steps"] + 1, args[1].support_x.shape[0])


@st.composite
def evaluate_args(draw: Any) -> tuple[tuple, dict]:
    model, batch, loss = draw(model_batch())
    tasks = draw(
        maybe(
            st.sampled_from([[batch], [batch, batch], iter([batch])]),
            st.one_of(WILD, st.just([])),
        )
    )
    metric = draw(
        maybe(
            st.sampled_from([maml.mse_loss, maml.accuracy, maml.cross_entropy])
        )
    )
    return call(
        model,
        tasks,
        loss_fn=loss,
        inner_steps=draw(ints(0, 1)),
        alpha=draw(rates()),
        metric=metric,
    )


@st.composite
def tune_args(draw: Any) -> tuple[tuple, dict]:
    model, batch, loss = draw(model_batch())
    alphas = draw(
        maybe(
            st.lists(rates(), min_size=1, max_size=3),
            st.one_of(WILD, st.just([])),
        )
    )
    return call(
        model,
        batch,
        alphas,
        loss_fn=loss,
        inner_steps=draw(ints(0, 1)),
        higher_is_better=draw(flags()),
    )


ROW = st.fixed_dictionaries(
    {"iteration": st.integers(1, 9), "meta_loss": st.floats(0, 1)}
)
HISTORY = maybe(
    st.lists(
        maybe(
            ROW,
            st.sampled_from([{}, {"meta_loss": 1.0}, 3, {"iteration": "a"}]),
        ),
        max_size=6,
    )
)

CONFIG_KEYS = dict(
    task=choice("sinusoid", "omniglot"),
    n_way=ints(1, 5),
    k_shot=ints(1, 5),
    q_queries=ints(1, 5),
    inner_steps=ints(0, 3),
    test_inner_steps=ints(0, 3),
    alpha=rates(),
    meta_lr=rates(),
    meta_batch=ints(1, 4),
    iterations=ints(0, 10),
    order=choice("second", "first", "anil", "metasgd"),
    inner_loss=choice("summed", "mean", "mse"),
    split=choice("finn-train", "background"),
    hidden=maybe(st.lists(st.integers(1, 4), max_size=2).map(tuple)),
    anneal_from=maybe(st.sampled_from([None, 0, 5])),
    init_from=maybe(st.sampled_from([None, "maml-omniglot-5w1s"])),
)


def _is(kind: type) -> Callable[[Any, tuple, dict], None]:
    def check(out: Any, args: tuple, kwargs: dict) -> None:
        assert isinstance(out, kind), type(out)

    return check


def _shape_of(
    f: Callable[[tuple, dict], tuple],
) -> Callable[[Any, tuple, dict], None]:
    def check(out: Any, args: tuple, kwargs: dict) -> None:
        assert tuple(out.shape) == tuple(f(args, kwargs)), (
            tuple(out.shape),
            f(args, kwargs),
        )

    return check


pred_target = wild_or(st.just(2), st.just(0)).flatmap(
    lambda m: st.lists(sizes(1, 2, 3), min_size=m, max_size=4).map(tuple)
)
logit_shape = wild_or(st.just(2), st.just(0)).flatmap(
    lambda m: st.lists(sizes(1, 2, 3), min_size=m, max_size=3).map(
        lambda s: tuple(s[:-1]) + (3,) if s else ()
    )
)


@st.composite
def logits_labels(draw: Any) -> tuple[tuple, dict]:
    s = draw(logit_shape)
    return call(draw(tensors(s)), draw(labels(s[:-1])))


MAML = [
    Target(
        maml.mse_loss,
        pred_target.flatmap(lambda s: fixed(tensors(s), tensors(s))),
        _shape_of(lambda a, k: a[0].shape[:-2]),
    ),
    Target(
        maml.cross_entropy,
        logits_labels(),
        _shape_of(lambda a, k: a[1].shape[:-1]),
    ),
    Target(
        maml.accuracy, logits_labels(), _shape_of(lambda a, k: a[1].shape[:-1])
    ),
    Target(maml.summed_cross_entropy, fixed(ints(1, 5)), _is(Callable)),
    Target(
        maml.predict,
        predict_args(),
        _shape_of(lambda a, k: _out_shape(a[0], a[2])),
    ),
    Target(
        maml.predict_tasks,
        predict_args(tasks=True),
        _shape_of(lambda a, k: _out_shape(a[0], a[2])),
    ),
    Target(maml.adapt, adapt_args(), _is(dict)),
    Target(maml.adapt_tasks, adapt_args(tasks=True), _is(dict)),
    Target(maml.supports_task_batch, fixed(maybe(MODELS)), _is(bool)),
    Target(maml.query_loss, query_args(), _losses_per_task),
    Target(maml.meta_gradient, query_args(workers=ints(1, 2)), _is(dict)),
    Target(
        maml.concurrent_meta_gradient,
        query_args(workers=ints(1, 2)),
        lambda out, a, k: _losses_per_task(out[1:], a, k),
    ),
    Target(maml.meta_train, meta_train_args(), _is(list)),
    Target(maml.evaluate, evaluate_args(), _is(np.ndarray)),
    Target(maml.adaptation_curve, curve_args(), _curve_shape),
    Target(maml.tune_alpha, tune_args(), _is(tuple)),
    Target(
        maml.compact_history,
        fixed(HISTORY, ints(1, 3)),
        lambda out, a, k: len(out) <= a[1] or pytest.fail("too many rows"),
    ),
    Target(maml.MAMLConfig, fixed(**CONFIG_KEYS), _is(maml.MAMLConfig)),
    Target(
        maml.build_model,
        fixed(maybe(st.sampled_from(list(maml.CONFIGS.values())))),
        _is(nn.Module),
    ),
    Target(
        maml.recipe_config,
        fixed(choice(*maml.CONFIGS), maybe(st.sampled_from([None, 0, 5]))),
        _is(maml.MAMLConfig),
    ),
    Target(
        maml.train_sinusoid,
        fixed(
            ints(0, 1),
            k_shot=ints(1, 3),
            inner_steps=ints(0, 1),
            alpha=rates(),
            meta_lr=rates(),
            meta_batch=ints(1, 2),
            seed=seeds(),
            first_order=flags(),
            progress=False,
        ),
        _is(tuple),
    ),
    Target(
        maml.load_model, fixed(WILD.filter(lambda v: not isinstance(v, str)))
    ),
    # Meta-SGD: a fresh network each time (attaching the rates changes it)
    Target(
        maml.attach_inner_rates,
        fixed(maybe(st.builds(lambda: SinusoidMLP((3,)))), rates()),
        _is(nn.Module),
    ),
    Target(
        maml.inner_rates,
        fixed(
            maybe(
                st.builds(
                    lambda: maml.attach_inner_rates(SinusoidMLP((3,)), 0.1)
                )
            )
        ),
        _is(dict),
    ),
    Target(
        maml.learned_rate_summary,
        fixed(
            maybe(
                st.builds(
                    lambda: maml.attach_inner_rates(ConvNet(3, hidden=2), 0.1)
                )
            ),
            alpha0=maybe(st.one_of(st.none(), st.floats(1e-3, 1.0))),
        ),
        _is(list),
    ),
]


# -----------------------------------------------------------------------------
# mlkit.siamese (and mlkit.protonet) on a synthetic class pool
# -----------------------------------------------------------------------------


def _pool(n_chars: int = 8, size: int = 16) -> data.ClassPool:
    rng = np.random.default_rng(0)
    images = (rng.random((n_chars, data.DRAWINGS, size, size)) < 0.2).astype(
        np.float32
    )
    return data.ClassPool(
        "fuzz",
        images,
        np.arange(1, n_chars + 1),
        np.arange(n_chars),
        np.zeros(n_chars, dtype=int),
    )


POOL = _pool()
EMBEDS = st.sampled_from(
    [
        lambda x: x.flatten(1),
        nn.Flatten(),
        nn.Sequential(nn.AvgPool2d(4), nn.Flatten()),
    ]
)


def _pool_of(split: str, **kw: Any) -> data.ClassPool:
    if split not in data.SPLITS:
        raise ValueError(
            f"split must be one of {list(data.SPLITS)}, got {split!r}"
        )
    return POOL


def with_pool(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with Omniglot replaced by the synthetic pool (nothing loads)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        with (
            mock.patch.object(siamese, "omniglot_classes", _pool_of),
            mock.patch.object(protonet, "omniglot_classes", _pool_of),
            mock.patch.object(protonet, "eval_subset", lambda: POOL),
        ):
            return fn(*args, **kwargs)

    run.__qualname__ = fn.__qualname__
    return run


pairs_n = sizes(1, 2, 3, 4)


@st.composite
def distance_same(draw: Any) -> tuple[tuple, dict]:
    """Pair distances and same/different labels (both kinds when valid)."""
    n = draw(pairs_n)
    d = draw(tensors((n,)))
    if (
        isinstance(d, torch.Tensor)
        and d.is_floating_point()
        and not draw(WILDNESS)
    ):
        d = d.abs()
    same = torch.arange(n) % 2 == 0
    same = draw(
        maybe(
            st.sampled_from([same, same.float(), same.long()]),
            st.one_of(WILD, tensors((n,), "int"), st.just(torch.ones(n))),
        )
    )
    return call(d, same)


@st.composite
def contrastive_args(draw: Any) -> tuple[tuple, dict]:
    (d, same), _ = draw(distance_same())
    return call(
        d,
        same,
        draw(rates(0.1, 2.0)),
        form=draw(choice(*siamese.LOSS_FORMS)),
        reduction=draw(choice("mean", "sum", "none")),
    )


def _contrastive_shape(out: Any, args: tuple, kwargs: dict) -> None:
    assert out.shape == (
        args[0].shape if kwargs["reduction"] == "none" else ()
    )


@st.composite
def few_shot_args(draw: Any) -> tuple[tuple, dict]:
    c = draw(st.integers(2, 4))
    z = draw(
        maybe(
            tensors((c, data.DRAWINGS, 3), wild=False),
            st.one_of(WILD, tensors((3, 5, 2))),
        )
    )
    return call(
        z,
        draw(ints(2, c)),
        draw(ints(1, 3)),
        draw(ints(1, 2)),
        q_queries=draw(ints(1, 3)),
        method=draw(choice("nearest", "prototype")),
        seed=draw(seeds()),
    )


def _episode(n: int, q: int) -> data.Episode:
    g = torch.Generator().manual_seed(n + 10 * q)
    return data.Episode(
        torch.rand(n, 1, 4, 4, generator=g),
        torch.arange(n),
        torch.rand(q, 1, 4, 4, generator=g),
        torch.arange(q) % max(n, 1),
        np.arange(n),
    )


RUNS = maybe(
    st.lists(
        st.tuples(sizes(1, 2, 3), sizes(1, 2, 3)).map(lambda a: _episode(*a)),
        min_size=1,
        max_size=2,
    ),
    st.one_of(WILD, st.just([])),
)


@st.composite
def curves_history(draw: Any) -> tuple[tuple, dict]:
    n = draw(sizes(1, 2, 3, 4))
    h = {
        "iteration": list(range(1, n + 1)),
        "loss": draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)),
        "eval_iteration": [n] if n else [],
        "eval": [{"5way1shot": 50.0}] if n else [],
    }
    h = draw(maybe(st.just(h), st.sampled_from([{}, [], {"iteration": [1]}])))
    keys = draw(maybe(st.sampled_from([["loss"], [], ["nope"], "loss"])))
    return call(h, keys, draw(ints(1, 5)))


VARIANT = st.fixed_dictionaries(
    {
        "tag": st.sampled_from(["v4", "v5", "v6"]),
        "what": st.just("w"),
        "changes": st.sampled_from([{}, {"lr": 1}]),
        "seed": st.integers(0, 2),
        "lake_runs": maybe(
            st.lists(st.floats(0, 100), min_size=2, max_size=2)
        ),
        "evaluation_20way1shot": st.lists(
            st.floats(0, 100), min_size=2, max_size=2
        ),
    }
)
VARIANTS = maybe(
    st.lists(
        maybe(VARIANT, st.sampled_from([{}, 3, {"tag": "v4"}])),
        min_size=1,
        max_size=3,
    ).map(
        lambda rows: (
            [{**rows[0], "tag": "v4"}, *rows[1:]]
            if isinstance(rows[0], dict) and "tag" in rows[0]
            else rows
        )
    )
)
SMALL_TRAIN = {
    "hidden": 2,
    "n_pairs": 4,
    "eval_every": 0,
    "augment": False,
    "rotations": False,
    "split": "evaluation",
}


@st.composite
def train_config(
    draw: Any, base: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, Any] | None:
    cfg = dict(base)
    key = draw(st.sampled_from(sorted(defaults) + ["nope"]))
    if draw(st.booleans()):
        cfg[key] = draw(WILD)
    return draw(maybe(st.just(cfg), st.sampled_from([None, [], "x"])))


PN_SMALL = {
    "hidden": 2,
    "train_way": 2,
    "q_queries": 1,
    "eval_every": 0,
    "split": "evaluation",
    "rotations": False,
}


@st.composite
def proto_args(draw: Any) -> tuple[tuple, dict]:
    k, d = draw(sizes(1, 2, 3)), draw(sizes(1, 2, 3))
    n = draw(sizes(k, 2 * k))
    y = draw(maybe(st.just(torch.arange(n) % max(k, 1)), labels((n,))))
    return call(draw(tensors((n, d))), y, draw(maybe(st.just(k))))


@st.composite
def protonet_loss_args(draw: Any) -> tuple[tuple, dict]:
    n, q = draw(sizes(3, 6)), draw(sizes(1, 2, 3))
    sy = draw(maybe(st.just(torch.arange(n) % 3), labels((n,))))
    return call(
        draw(maybe(EMBEDS)),
        draw(tensors((n, 1, 4, 4), near=False)),
        sy,
        draw(tensors((q, 1, 4, 4), near=False)),
        draw(labels((q,))),
        draw(maybe(st.just(3))),
    )


SIAMESE = [
    Target(
        siamese.euclidean_distance,
        st.tuples(sizes(1, 2, 3), sizes(1, 2, 3)).flatmap(
            lambda s: fixed(tensors(s), tensors(s), maybe(st.just(1e-8)))
        ),
        _shape_of(lambda a, k: a[0].shape[:1]),
    ),
    Target(siamese.contrastive_loss, contrastive_args(), _contrastive_shape),
    Target(
        siamese.SiameseNet,
        fixed(maybe(st.sampled_from([None, nn.Flatten()]))),
        _is(nn.Module),
    ),
    Target(
        lambda *a, **k: siamese.PairSampler(*a, **k).batch(),
        fixed(
            maybe(st.just(POOL)),
            ints(4, 8),
            within_alphabet=rates(0, 1),
            augment=flags(),
            group=ints(2, 4),
            seed=seeds(),
        ),
        _is(siamese.PairBatch),
        "PairSampler.batch",
    ),
    Target(
        siamese.affine_augment,
        fixed(tensors((2, 1, 6, 6)), seed=seeds(), p=rates(0, 1)),
        _shape_of(lambda a, k: a[0].shape),
    ),
    Target(
        siamese.embed_images,
        fixed(maybe(EMBEDS), inputs(3, 1, 8, 8), batch_size=ints(1, 4)),
        lambda out, a, k: out.shape[0] == a[1].shape[0] or pytest.fail(),
    ),
    Target(
        siamese.embed_pool,
        fixed(maybe(EMBEDS), maybe(st.just(POOL)), batch_size=ints(1, 64)),
        lambda out, a, k: out.shape[:2] == (len(POOL), data.DRAWINGS)
        or pytest.fail(),
    ),
    Target(
        siamese.episode_indices,
        fixed(
            ints(5, 6),
            ints(1, 5),
            ints(1, 12),
            ints(0, 8),
            maybe(st.integers(0, 9).map(np.random.default_rng)),
        ),
        lambda out, a, k: out[1].shape == (a[1], a[2] + a[3]) or pytest.fail(),
    ),
    Target(siamese.few_shot_predictions, few_shot_args(), _is(tuple)),
    Target(
        siamese.few_shot_accuracy,
        few_shot_args(),
        _shape_of(lambda a, k: (a[3],)),
    ),
    Target(siamese.lake_runs_accuracy, fixed(maybe(EMBEDS), RUNS), _is(tuple)),
    Target(
        siamese.best_threshold,
        distance_same(),
        lambda out, a, k: math.isfinite(out) or pytest.fail(),
    ),
    Target(
        siamese.verification_accuracy,
        distance_same().flatmap(lambda c: fixed(*c[0], rates(0, 2))),
    ),
    Target(
        siamese.nearest_neighbours,
        fixed(
            tensors((4, 2)),
            maybe(
                st.lists(st.integers(0, 3), min_size=1, max_size=3),
                st.lists(st.integers(-1, 4), max_size=3),
            ),
            ints(1, 3),
        ),
        _shape_of(lambda a, k: (len(a[1]), a[2])),
    ),
    Target(
        siamese.margin_report,
        distance_same().flatmap(
            lambda c: fixed(
                *c[0], rates(0.1, 2), form=choice(*siamese.LOSS_FORMS)
            )
        ),
        _is(dict),
    ),
    Target(
        siamese.loss_gradient_curves,
        fixed(tensors((3,)), rates(0.1, 2)),
        _is(dict),
    ),
    Target(
        siamese.fit_2d_embedding,
        fixed(
            tensors((4, 3)),
            maybe(
                st.sampled_from([[0, 0, 1, 1], [0, 1, 1, 2]]),
                st.sampled_from([[0, 1, 2, 3], [0, 0, 0, 0]]),
            ),
            rates(0.1, 2),
            form=choice(*siamese.LOSS_FORMS),
            steps=ints(1, 3),
            lr=rates(),
            seed=seeds(),
        ),
        _shape_of(lambda a, k: (4, 2)),
    ),
    Target(
        with_pool(siamese.eval_subset),
        fixed(ints(1, 4)),
        _is(data.ClassPool),
        "eval_subset",
    ),
    Target(siamese.training_curves, curves_history(), _is(dict)),
    Target(
        siamese.halving_rate,
        fixed(rates(), ints(0, 20), ints(1, 20), ints(0, 3)),
        lambda out, a, k: 0 < out <= a[0] or pytest.fail(),
    ),
    Target(
        siamese.balanced_pair_loss,
        distance_same().flatmap(
            lambda c: fixed(*c[0], negatives=choice("all", "active"))
        ),
        _shape_of(lambda a, k: ()),
    ),
    Target(
        siamese.build_siamese,
        fixed(
            maybe(
                st.fixed_dictionaries(
                    {"hidden": ints(1, 4), "normalize": flags()}
                )
            )
        ),
        _is(siamese.SiameseNet),
    ),
    Target(
        siamese.recipe_seeds, fixed(VARIANTS, choice("v4", "v5")), _is(list)
    ),
    Target(
        siamese.seed_report,
        fixed(VARIANTS, choice("v4", "v5"), rates(0, 100)),
        _is(list),
    ),
    Target(
        siamese.EnsembleEmbedding,
        fixed(
            maybe(
                st.just([nn.Flatten()]),
                st.sampled_from([[], [3], 3, nn.Flatten()]),
            )
        ),
        _is(nn.Module),
    ),
    Target(siamese.seed_checkpoint, fixed(seeds()), _is(str)),
    Target(
        siamese.load_siamese_ensemble,
        fixed(
            maybe(st.sampled_from([[], [-1], [True], "0", 3]), st.just(None))
        ),
    ),
    Target(
        siamese.load_siamese,
        fixed(WILD.filter(lambda v: not isinstance(v, str))),
    ),
    Target(
        with_pool(siamese.train_siamese),
        fixed(
            ints(1, 1),
            config=train_config(SMALL_TRAIN, siamese.SIAMESE_CONFIG),
            seed=seeds(),
            progress=False,
            resume=flags(),
        ),
        _is(tuple),
        "train_siamese",
    ),
    # mlkit.protonet shares the embedding tools
    Target(
        protonet.prototypes,
        proto_args(),
        _shape_of(lambda a, k: (a[2], a[0].shape[1])),
    ),
    Target(
        protonet.prototype_logits,
        fixed(tensors((3, 2)), tensors((2, 2))),
        _shape_of(lambda a, k: (a[0].shape[0], a[1].shape[0])),
    ),
    Target(protonet.protonet_loss, protonet_loss_args(), _is(tuple)),
    Target(
        protonet.build_protonet,
        fixed(maybe(st.fixed_dictionaries({"hidden": ints(1, 4)}))),
        _is(nn.Module),
    ),
    Target(
        with_pool(protonet.train_protonet),
        fixed(
            ints(1, 1),
            config=train_config(PN_SMALL, protonet.PROTONET_CONFIG),
            seed=seeds(),
            progress=False,
        ),
        _is(tuple),
        "train_protonet",
    ),
]


# -----------------------------------------------------------------------------
# mlkit.interpret
# -----------------------------------------------------------------------------


class _Linear(nn.Module):
    def __init__(self, d: int = 3, out: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(d, 4), nn.ReLU())
        self.head = nn.Linear(4, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.flatten(1)))


NET = _Linear()
PREDICTS_LIST = [
    NET,
    lambda x: x.flatten(1).sum(1),
    lambda x: x.flatten(1)[:, :1],
]
PREDICTS = st.sampled_from(PREDICTS_LIST)


@st.composite
def permutation_args(draw: Any) -> tuple[tuple, dict]:
    n = draw(sizes(2, 3, 4))
    predict, y_shape = draw(
        st.sampled_from(list(zip(PREDICTS_LIST, [(2,), (), (1,)])))
    )
    predict = draw(maybe(st.just(predict)))
    y = draw(
        wild_or(
            st.one_of(
                tensors((n, *y_shape), near=False),
                (
                    tensors((n,), "int", wild=False).map(
                        lambda t: t.clamp(0, 1)
                    )
                    if predict is NET
                    else st.nothing()
                ),
            ),
            st.one_of(
                tensors((n,)), labels((n,)), tensors((n, 1)), tensors((n, 2))
            ),
        )
    )
    return call(
        predict,
        draw(tensors((n, 3), near=False)),
        y,
        n_repeats=draw(ints(1, 2)),
        seed=draw(seeds()),
        feature_mask=draw(
            maybe(st.sampled_from([None, torch.tensor([0, 1, 1])]))
        ),
    )


def _importance_shape(out: Any, args: tuple, kwargs: dict) -> None:
    groups = 3 if kwargs["feature_mask"] is None else 2
    assert out.importances.shape == (kwargs["n_repeats"], groups)
    assert math.isfinite(out.baseline_loss)


@st.composite
def lime_args(draw: Any) -> tuple[tuple, dict]:
    return call(
        draw(maybe(PREDICTS)),
        draw(inputs(1, 3)),
        target=draw(maybe(st.sampled_from([None, 0, 1, 5]))),
        n_samples=draw(ints(2, 8)),
        kernel_width=draw(rates(0.1, 2)),
        ridge_alpha=draw(rates(0, 1)),
        seed=draw(seeds()),
        fidelity_samples=draw(ints(0, 4)),
    )


@st.composite
def attention_args(draw: Any) -> tuple[tuple, dict]:
    q, s, d = draw(sizes(1, 2, 3)), draw(sizes(1, 2, 3)), draw(sizes(1, 2, 3))
    return call(
        draw(tensors((q, d))),
        draw(tensors((s, d))),
        metric=draw(choice("euclidean", "cosine")),
        temperature=draw(rates(0.1, 2)),
    )


@st.composite
def class_attention_args(draw: Any) -> tuple[tuple, dict]:
    q, s = draw(sizes(1, 2, 3)), draw(sizes(1, 2, 3))
    a = (
        torch.softmax(draw(tensors((q, s), wild=False)), 1)
        if s
        else torch.zeros(q, 0)
    )
    return call(
        draw(maybe(st.just(a))),
        draw(labels((s,))),
        draw(maybe(st.sampled_from([None, 1, 3]))),
    )


def _record(model: Any, layers: Any, **kw: Any) -> dict:
    with interpret.record_activations(model, layers, **kw) as acts:
        if isinstance(model, nn.Module):
            model(torch.zeros(2, 3))
    return acts


WEIGHTS = st.fixed_dictionaries({"a": tensors((2,)), "b": tensors((1, 2))})


@st.composite
def episode_tensors(draw: Any) -> tuple[tuple, dict]:
    n, q = draw(sizes(3, 6)), draw(sizes(1, 2, 3))
    sy = draw(maybe(st.just(torch.arange(n) % 3), labels((n,))))
    return call(
        draw(tensors((n, 3))), sy, draw(tensors((q, 3))), draw(labels((q,)))
    )


def _fit_predict(
    sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor
) -> torch.Tensor:
    protos = protonet.prototypes(sx, sy, 3)
    return protonet.prototype_logits(qx, protos)


@st.composite
def trajectory_args(draw: Any) -> tuple[tuple, dict]:
    model, batch, loss = draw(model_batch())
    batched = draw(flags())
    sx = getattr(batch, "support_x", None)
    sy = getattr(batch, "support_y", None)
    qx = getattr(batch, "query_x", None)
    qy = getattr(batch, "query_y", None)
    if batched is not True and all(
        isinstance(t, torch.Tensor) and t.dim() and len(t)
        for t in (sx, sy, qx, qy)
    ):
        sx, sy, qx, qy = sx[0], sy[0], qx[0], qy[0]
    if draw(st.booleans()):
        qx = qy = None
    return call(
        model,
        sx,
        sy,
        loss_fn=loss,
        inner_steps=draw(ints(0, 2)),
        alpha=draw(rates()),
        query_x=qx,
        query_y=qy,
        batched=batched,
        adapt_names=draw(ADAPT_NAMES),
        depth=draw(ints(1, 2)),
    )


@st.composite
def activation_change_args(draw: Any) -> tuple[tuple, dict]:
    p = {k: v.detach() for k, v in NET.named_parameters()}
    params = draw(maybe(st.sampled_from([[p, p], [p], [p, {**p, "nope": 1}]])))
    return call(
        NET,
        params,
        draw(inputs(3, 3)),
        draw(maybe(st.sampled_from([None, ["head"], ["nope"]]))),
    )


@st.composite
def task_params_args(draw: Any) -> tuple[tuple, dict]:
    t = draw(sizes(1, 2))
    p = draw(
        maybe(
            st.sampled_from(
                [
                    {"w": torch.zeros(t, 2), "b": torch.zeros(t)},
                    {},
                    {"w": torch.zeros(t, 2), "b": torch.zeros(t + 1)},
                    {"w": 3},
                    {"w": torch.tensor(1.0)},
                ]
            )
        )
    )
    return call(p, draw(ints(0, 2)))


SCORER = interpret.prototype_scorer(
    lambda x: x.flatten(1),
    torch.randn(3, 3, generator=torch.Generator().manual_seed(0)),
    torch.arange(3),
)

INTERPRET = [
    Target(
        interpret.patch_mask,
        fixed(
            maybe(
                st.lists(sizes(2, 5), min_size=2, max_size=3).map(tuple),
                st.lists(st.integers(0, 5), max_size=3).map(tuple),
            ),
            ints(1, 5),
        ),
        _is(torch.Tensor),
    ),
    Target(
        interpret.permutation_importance, permutation_args(), _importance_shape
    ),
    Target(interpret.lime_surrogate, lime_args(), _is(interpret.Surrogate)),
    Target(
        interpret.support_attention,
        attention_args(),
        _shape_of(lambda a, k: (a[0].shape[0], a[1].shape[0])),
    ),
    Target(
        interpret.class_attention,
        class_attention_args(),
        lambda out, a, k: out.shape[0] == a[0].shape[0] or pytest.fail(),
    ),
    Target(
        _record,
        fixed(
            maybe(st.just(NET)),
            maybe(st.sampled_from([None, ["head"], "head", ["nope"], [""]])),
        ),
        _is(dict),
        "record_activations",
    ),
    Target(
        interpret.weight_change,
        fixed(maybe(WEIGHTS), maybe(WEIGHTS), relative=flags()),
        _is(dict),
    ),
    Target(
        interpret.linear_cka,
        sizes(1, 2, 3, 4, 6).flatmap(
            lambda n: fixed(tensors((n, 3)), tensors((n, 2)), debiased=flags())
        ),
        lambda out, a, k: -1 - 1e-9 <= out <= 1 + 1e-9 or pytest.fail(),
    ),
    Target(
        interpret.cka_interval,
        sizes(4, 6).flatmap(
            lambda n: fixed(
                tensors((n, 3)),
                tensors((n, 2)),
                tensors((n,), "int"),
                n_boot=ints(10, 20),
                seed=seeds(),
            )
        ),
        _is(interpret.CKAInterval),
    ),
    Target(
        interpret.default_layers,
        fixed(maybe(st.sampled_from([NET, MLP, CONV]))),
        _is(list),
    ),
    Target(
        interpret.layer_activations,
        fixed(
            maybe(st.just(NET)),
            maybe(st.just(None)),
            inputs(2, 3),
            maybe(st.sampled_from([None, ["head"]])),
        ),
        _is(dict),
    ),
    Target(
        interpret.layer_cka,
        fixed(
            maybe(st.just(NET)),
            None,
            maybe(st.just(dict(NET.named_parameters()))),
            inputs(3, 3),
        ),
        _is(dict),
    ),
    Target(
        interpret.frozen_statistics,
        fixed(maybe(st.just(CONV)), None, inputs(2, 1, 8, 8)),
        lambda out, a, k: callable(out) or pytest.fail(),
    ),
    Target(
        interpret.prototype_scorer,
        fixed(
            maybe(st.just(lambda x: x.flatten(1))),
            tensors((3, 2)),
            labels((3,)),
            maybe(st.sampled_from([None, 2, 4])),
        ),
        lambda out, a, k: callable(out) or pytest.fail(),
    ),
    Target(
        interpret.pair_similarity,
        fixed(maybe(st.just(lambda x: x.flatten(1))), inputs(1, 3)),
        lambda out, a, k: callable(out) or pytest.fail(),
    ),
    Target(
        interpret.saliency,
        fixed(
            maybe(st.sampled_from([NET, SCORER])),
            inputs(2, 3),
            target=maybe(
                st.sampled_from([0, 1]), st.sampled_from([None, 2, 1.0, "0"])
            ),
        ),
        _is(interpret.Attribution),
    ),
    Target(
        interpret.integrated_gradients,
        fixed(
            maybe(st.sampled_from([NET, SCORER])),
            inputs(2, 3),
            target=maybe(
                st.sampled_from([0, 1]), st.sampled_from([None, 2, 1.0])
            ),
            n_steps=ints(2, 4),
            method=choice("gausslegendre", "riemann_left"),
        ),
        _is(interpret.Attribution),
    ),
    Target(
        interpret.loo_influence,
        episode_tensors().map(lambda c: ((_fit_predict,) + c[0], {})),
        _shape_of(lambda a, k: (a[3].shape[0], a[1].shape[0])),
    ),
    Target(
        interpret.gradient_influence,
        episode_tensors().map(lambda c: ((_fit_predict,) + c[0], {})),
        _is(tuple),
    ),
    Target(
        interpret.fast_weight_trajectory,
        trajectory_args(),
        _is(interpret.Trajectory),
    ),
    Target(
        interpret.layer_of,
        fixed(
            maybe(st.sampled_from(["body.0.1.weight", "head.bias", "w"])),
            ints(1, 3),
        ),
        _is(str),
    ),
    Target(
        interpret.activation_change,
        activation_change_args(),
        _is(interpret.ActivationChange),
    ),
    Target(
        interpret.top_activating,
        sizes(1, 2, 3, 4).flatmap(
            lambda n: fixed(tensors((n, 2)), ints(1, 4))
        ),
        _shape_of(lambda a, k: (a[0].shape[1], a[1])),
    ),
    Target(
        interpret.effective_rank,
        fixed(tensors((3, 2))),
        lambda out, a, k: math.isfinite(out) and out >= 0 or pytest.fail(),
    ),
    Target(
        interpret.dead_units,
        fixed(tensors((3, 2)), rates(0, 1)),
        _shape_of(lambda a, k: a[0].shape[1:2]),
    ),
    Target(
        interpret.class_selectivity,
        sizes(1, 2, 3, 4).flatmap(
            lambda n: fixed(tensors((n, 2)), labels((n,)))
        ),
        _shape_of(lambda a, k: a[0].shape[1:2]),
    ),
    Target(interpret.task_params, task_params_args(), _is(dict)),
]

STATS = [
    Target(
        stats.mean_ci95,
        fixed(
            maybe(
                st.lists(
                    st.floats(allow_nan=True, allow_infinity=True), max_size=4
                ),
                st.one_of(WILD, st.just(["a"]), st.just([[1.0, 2.0], [3.0]])),
            )
        ),
        lambda out, a, k: math.isfinite(out[0]) or pytest.fail(),
    )
]

# mlkit.nets and mlkit.theory, where they check their arguments
NETS = [
    Target(
        SinusoidMLP,
        fixed(maybe(st.lists(ints(1, 4), max_size=2))),
        _is(nn.Module),
    ),
    Target(
        ConvNet,
        fixed(ints(1, 3), hidden=ints(1, 4), in_channels=ints(1, 2)),
        _is(nn.Module),
    ),
    Target(
        nets.InductiveConvEmbedding,
        fixed(
            hidden=ints(1, 4),
            out_dim=maybe(st.sampled_from([None, 2])),
            layers=ints(1, 3),
            normalize=flags(),
        ),
        _is(nn.Module),
    ),
    Target(nets.head_parameter_names, fixed(maybe(MODELS)), _is(list)),
    Target(
        theory.flat,
        fixed(
            maybe(
                st.just(dict(MLP.named_parameters())),
                st.one_of(WILD, st.just({"a": 1})),
            )
        ),
        _is(torch.Tensor),
    ),
    Target(
        theory.gradient_agreement,
        fixed(tensors((3,)), tensors((3,))),
        _is(dict),
    ),
    Target(
        theory.linear_model,
        fixed(maybe(st.tuples(rates(), rates()))),
        _is(nn.Module),
    ),
    Target(
        theory.toy_points,
        fixed(
            ints(2, 3),
            ints(2, 3),
            spread=rates(),
            separation=rates(0, 1),
            seed=seeds(),
        ),
        _is(tuple),
    ),
    Target(
        theory.class_spacing,
        fixed(
            tensors((4, 2)),
            maybe(
                st.sampled_from([[0, 0, 1, 1]]),
                st.sampled_from([[0, 0, 0, 0], [0, 1]]),
            ),
            maybe(st.sampled_from([None, 1.0])),
        ),
        _is(dict),
    ),
]


# -----------------------------------------------------------------------------
# One test over every family's targets
# -----------------------------------------------------------------------------


FAMILIES = {
    "maml": MAML,
    "siamese": SIAMESE,
    "interpret": INTERPRET,
    "stats": STATS,
    "nets_and_theory": NETS,
}


@pytest.mark.parametrize(
    "target",
    [t for family in FAMILIES.values() for t in family],
    ids=[f"{name}-{t}" for name, family in FAMILIES.items() for t in family],
)
@FUZZ
@given(draws=st.data())
def test_fuzz(target: Target, draws: st.DataObject) -> None:
    _run(target, draws)


# -----------------------------------------------------------------------------
# The cases the first fuzz found, one by one
# -----------------------------------------------------------------------------


def _sinusoid_batch(t: int = 2, n: int = 3) -> Any:
    return data.sample_sinusoid_tasks(t, n, n, seed=0)


def test_losses_and_metrics_refuse_to_broadcast():
    # (5, 1) against (5,) used to give a (5, 5) loss and a wrong accuracy
    with pytest.raises(ValueError, match="target must have pred's shape"):
        maml.mse_loss(torch.zeros(5, 1), torch.zeros(5))
    with pytest.raises(ValueError, match="labels must have shape"):
        maml.accuracy(torch.zeros(5, 3), torch.zeros(5, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must have shape"):
        maml.cross_entropy(
            torch.zeros(5, 3), torch.zeros(5, 1, dtype=torch.long)
        )
    with pytest.raises(ValueError, match="labels must be in"):
        maml.cross_entropy(
            torch.zeros(5, 3), torch.full((5,), -100)
        )  # not ignored
    assert maml.mse_loss(
        torch.zeros(2, 5, 1), torch.ones(2, 5, 1)
    ).tolist() == [1.0, 1.0]
    assert maml.accuracy(
        torch.eye(3)[None], torch.arange(3)[None]
    ).tolist() == [1.0]


def test_permutation_importance_refuses_a_broadcast_target():
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="y must have predict"):
        interpret.permutation_importance(lambda v: v[:, :1], x, torch.randn(6))
    with pytest.raises(ValueError, match="y must hold labels"):
        interpret.permutation_importance(
            lambda v: v[:, :2], x, torch.tensor([0, 1, 2, 0, 1, 0])
        )
    ok = interpret.permutation_importance(
        lambda v: v[:, :1], x, torch.randn(6, 1), n_repeats=2
    )
    assert ok.importances.shape == (2, 3)


ERRORS_THAT_WERE_NOT_VALUE_ERRORS = [
    (lambda: siamese.eval_subset(0), "stride"),  # was a ZeroDivisionError
    (
        lambda: siamese.halving_rate(1e-3, 0, 10, -1),
        "halvings",
    ),  # was a ZeroDivisionError
    (lambda: interpret.task_params({}, 0), "params"),  # was a StopIteration
    (
        lambda: interpret.effective_rank(torch.full((3, 2), math.nan)),
        "z must be finite",
    ),  # LinAlgError
    (
        lambda: siamese.few_shot_accuracy(
            torch.zeros(3, data.DRAWINGS, 2), 2, None
        ),
        "k_shot",
    ),
    (
        lambda: maml.predict_tasks(nn.Linear(1, 1), {}, torch.zeros(1, 1, 1)),
        "model",
    ),  # TypeError
    (
        lambda: maml.recipe_config(["maml-sinusoid"]),
        "name",
    ),  # was a TypeError
    (lambda: interpret.patch_mask(None, 2), "shape"),  # was a TypeError
    (
        lambda: interpret.class_attention(
            torch.zeros(2, 0), torch.zeros(0, dtype=torch.long)
        ),
        "support_y",
    ),  # was a RuntimeError
    (
        lambda: siamese.nearest_neighbours(
            torch.zeros(4, 2, dtype=torch.long), [0]
        ),
        "embeddings",
    ),
]


ZERO_AND_NEGATIVE_COUNTS = [
    (lambda: maml.summed_cross_entropy(0), "k_shot"),
    (lambda: maml.MAMLConfig(task="omniglot", n_way=0), "n_way"),
    (lambda: maml.MAMLConfig(task="sinusoid", k_shot=-1), "k_shot"),
    (lambda: maml.MAMLConfig(task="sinusoid", meta_batch=0), "meta_batch"),
    (
        lambda: maml.adapt(
            MLP,
            torch.zeros(3, 1),
            torch.zeros(3, 1),
            loss_fn=maml.mse_loss,
            inner_steps=-1,
        ),
        "inner_steps",
    ),
    (
        lambda: maml.adaptation_curve(
            MLP,
            _sinusoid_batch(),
            loss_fn=maml.mse_loss,
            alpha=0.1,
            max_steps=-1,
        ),
        "max_steps",
    ),
    (
        lambda: maml.meta_train(
            MLP,
            lambda rng: _sinusoid_batch(),
            loss_fn=maml.mse_loss,
            iterations=-1,
            progress=False,
        ),
        "iterations",
    ),
    (
        lambda: maml.meta_train(
            MLP,
            lambda rng: _sinusoid_batch(),
            loss_fn=maml.mse_loss,
            iterations=1,
            log_every=0,
            progress=False,
        ),
        "log_every",
    ),
    (lambda: maml.compact_history([], 0), "max_rows"),
    (
        lambda: siamese.few_shot_accuracy(
            torch.zeros(3, data.DRAWINGS, 2), 0, 1
        ),
        "n_way",
    ),
    (
        lambda: siamese.few_shot_accuracy(
            torch.zeros(3, data.DRAWINGS, 2), 2, 0
        ),
        "k_shot",
    ),
    (
        lambda: siamese.few_shot_accuracy(
            torch.zeros(3, data.DRAWINGS, 2), 2, 1, 0
        ),
        "n_tasks",
    ),
    (
        lambda: siamese.episode_indices(5, 6, 1, 1, np.random.default_rng(0)),
        "n_way",
    ),
    (
        lambda: siamese.embed_images(
            nn.Flatten(), torch.zeros(2, 1, 4, 4), batch_size=0
        ),
        "batch_size",
    ),
    (
        lambda: siamese.training_curves(
            {"iteration": [1], "eval_iteration": [], "eval": []}, [], 0
        ),
        "points",
    ),
    (
        lambda: siamese.fit_2d_embedding(
            torch.zeros(4, 2), [0, 0, 1, 1], 1.0, steps=0
        ),
        "steps",
    ),
    (lambda: interpret.top_activating(torch.zeros(3, 2), 0), "k"),
    (lambda: interpret.layer_of("head.bias", 0), "depth"),
]


NAN_AND_INF_RATES_AND_VALUES = [
    (
        lambda: maml.adapt(
            MLP,
            torch.zeros(3, 1),
            torch.zeros(3, 1),
            loss_fn=maml.mse_loss,
            alpha=math.inf,
        ),
        "alpha",
    ),
    (
        lambda: maml.adapt_tasks(
            MLP,
            torch.zeros(1, 3, 1),
            torch.zeros(1, 3, 1),
            loss_fn=maml.mse_loss,
            alpha=math.nan,
        ),
        "alpha",
    ),
    (
        lambda: maml.meta_train(
            MLP,
            lambda rng: _sinusoid_batch(),
            loss_fn=maml.mse_loss,
            iterations=1,
            meta_lr=math.nan,
            progress=False,
        ),
        "meta_lr",
    ),
    (
        lambda: maml.meta_train(
            MLP,
            lambda rng: _sinusoid_batch(),
            loss_fn=maml.mse_loss,
            iterations=1,
            meta_lr=-1e-3,
            progress=False,
        ),
        "meta_lr",
    ),
    (lambda: maml.MAMLConfig(task="sinusoid", meta_lr=math.inf), "meta_lr"),
    (
        lambda: maml.tune_alpha(
            MLP,
            _sinusoid_batch(),
            [0.1, math.nan],
            loss_fn=maml.mse_loss,
            inner_steps=1,
        ),
        "alphas",
    ),
    (lambda: siamese.halving_rate(math.nan, 0, 10, 1), "base"),
    (
        lambda: siamese.fit_2d_embedding(
            torch.zeros(4, 2), [0, 0, 1, 1], 1.0, lr=math.inf
        ),
        "lr",
    ),
    (
        lambda: siamese.euclidean_distance(
            torch.zeros(2, 2), torch.zeros(2, 2), eps=math.nan
        ),
        "eps",
    ),
    (
        lambda: siamese.verification_accuracy([0.1, 0.2], [0, 1], math.nan),
        "threshold",
    ),
    (lambda: siamese.best_threshold([0.1, math.nan], [0, 1]), "distance"),
    (
        lambda: interpret.support_attention(
            torch.zeros(1, 2), torch.zeros(2, 2), temperature=math.inf
        ),
        "temperature",
    ),
    (
        lambda: interpret.lime_surrogate(
            lambda v: v.sum(1), torch.zeros(1, 3), kernel_width=math.nan
        ),
        "kernel_width",
    ),
    (lambda: interpret.dead_units(torch.zeros(3, 2), tol=math.nan), "tol"),
    (lambda: stats.mean_ci95([1.0, math.nan]), "values"),
    (lambda: stats.mean_ci95([1.0, math.inf]), "values"),
]


BOOLS_WHERE_NUMBERS_BELONG = [
    (lambda: maml.summed_cross_entropy(True), "k_shot"),
    (lambda: maml.MAMLConfig(task="omniglot", n_way=True), "n_way"),
    (
        lambda: maml.adapt(
            MLP,
            torch.zeros(3, 1),
            torch.zeros(3, 1),
            loss_fn=maml.mse_loss,
            inner_steps=True,
        ),
        "inner_steps",
    ),
    (
        lambda: maml.adapt(
            MLP,
            torch.zeros(3, 1),
            torch.zeros(3, 1),
            loss_fn=maml.mse_loss,
            alpha=True,
        ),
        "alpha",
    ),
    (
        lambda: maml.train_sinusoid(1, meta_batch=True, progress=False),
        "meta_batch",
    ),
    (lambda: siamese.halving_rate(1e-3, 0, True, 1), "iterations"),
    (
        lambda: siamese.few_shot_accuracy(
            torch.zeros(3, data.DRAWINGS, 2), True, 1
        ),
        "n_way",
    ),
    (lambda: siamese.eval_subset(True), "stride"),
    (lambda: siamese.affine_augment(torch.zeros(1, 1, 4, 4), p=True), "p"),
    (lambda: interpret.top_activating(torch.zeros(3, 2), True), "k"),
    (lambda: interpret.task_params({"w": torch.zeros(2, 1)}, True), "task"),
]


UNKNOWN_STRINGS = [
    (
        lambda: siamese.few_shot_accuracy(
            torch.zeros(3, data.DRAWINGS, 2), 2, 1, method="bogus"
        ),
        "method",
    ),
    (
        lambda: siamese.contrastive_loss(
            torch.zeros(2), torch.ones(2), form="bogus"
        ),
        "form",
    ),
    (
        lambda: siamese.fit_2d_embedding(
            torch.zeros(4, 2), [0, 0, 1, 1], 1.0, form="bogus"
        ),
        "form",
    ),
    (
        lambda: siamese.train_siamese(1, config={"split": "bogus"}),
        "split",
    ),  # before loading
    (
        lambda: siamese.train_siamese(1, config={"hiden": 8}),
        "unknown keys",
    ),  # a typo
    (
        lambda: protonet.train_protonet(1, config={"negatives": "all"}),
        "unknown keys",
    ),
    (
        lambda: maml.MAMLConfig(task="sinusoid", inner_loss="bogus"),
        "inner_loss",
    ),
    (lambda: maml.MAMLConfig(task="omniglot", split="bogus"), "split"),
    (lambda: maml.MAMLConfig(task="bogus"), "task"),
    (lambda: maml.recipe_config("bogus"), "name"),
    (
        lambda: interpret.support_attention(
            torch.zeros(1, 2), torch.zeros(2, 2), metric="bogus"
        ),
        "metric",
    ),
    (
        lambda: interpret.integrated_gradients(
            nn.Linear(2, 1), torch.zeros(1, 2), target=0, method="bogus"
        ),
        "method",
    ),
    (
        lambda: siamese.recipe_seeds([{"tag": "v4", "changes": {}}], "v9"),
        "recipe",
    ),
]


EMPTY_INPUTS = [
    (lambda: stats.mean_ci95([]), "values"),
    (lambda: maml.mse_loss(torch.zeros(0, 1), torch.zeros(0, 1)), "pred"),
    (
        lambda: maml.cross_entropy(
            torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)
        ),
        "logits",
    ),
    (
        lambda: maml.evaluate(
            MLP,
            [],
            loss_fn=maml.mse_loss,
            inner_steps=1,
            alpha=0.01,
            metric=maml.mse_loss,
        ),
        "tasks",
    ),
    (
        lambda: maml.query_loss(
            MLP,
            SimpleNamespace(
                **dict.fromkeys(
                    ["support_x", "support_y", "query_x", "query_y"],
                    torch.zeros(0, 3, 1),
                )
            ),
            loss_fn=maml.mse_loss,
            inner_steps=1,
            alpha=0.01,
        ),
        "tasks",
    ),
    (
        lambda: maml.tune_alpha(
            MLP, _sinusoid_batch(), [], loss_fn=maml.mse_loss, inner_steps=1
        ),
        "alphas",
    ),
    (lambda: siamese.best_threshold([], []), "distance"),
    (lambda: siamese.lake_runs_accuracy(nn.Flatten(), []), "runs"),
    (
        lambda: siamese.embed_images(nn.Flatten(), torch.zeros(0, 1, 4, 4)),
        "images",
    ),
    (lambda: siamese.nearest_neighbours(torch.zeros(4, 2), []), "queries"),
    (lambda: siamese.load_siamese_ensemble([]), "seeds"),
    (lambda: siamese.EnsembleEmbedding([]), "members"),
    (lambda: interpret.linear_cka(torch.zeros(0, 2), torch.zeros(0, 2)), "x"),
    (lambda: interpret.dead_units(torch.zeros(0, 2)), "z"),
    (
        lambda: interpret.class_selectivity(
            torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)
        ),
        "z",
    ),
]


# Bad input of every kind raises a ValueError naming the argument; one test
# over the groups above (its ids start with the group's name).
ERROR_CASES = [
    *[
        pytest.param(*case, id=f"errors_that_were_not_value_errors-{i}")
        for i, case in enumerate(ERRORS_THAT_WERE_NOT_VALUE_ERRORS)
    ],
    *[
        pytest.param(*case, id=f"zero_and_negative_counts-{i}")
        for i, case in enumerate(ZERO_AND_NEGATIVE_COUNTS)
    ],
    *[
        pytest.param(*case, id=f"nan_and_inf_rates_and_values-{i}")
        for i, case in enumerate(NAN_AND_INF_RATES_AND_VALUES)
    ],
    *[
        pytest.param(*case, id=f"bools_where_numbers_belong-{i}")
        for i, case in enumerate(BOOLS_WHERE_NUMBERS_BELONG)
    ],
    *[
        pytest.param(*case, id=f"unknown_strings-{i}")
        for i, case in enumerate(UNKNOWN_STRINGS)
    ],
    *[
        pytest.param(*case, id=f"empty_inputs-{i}")
        for i, case in enumerate(EMPTY_INPUTS)
    ],
]


@pytest.mark.parametrize("call_, word", ERROR_CASES)
def test_bad_input_raises_a_value_error_naming_it(call_, word):
    with pytest.raises(ValueError, match=word):
        call_()
