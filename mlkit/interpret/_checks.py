"""Argument checks shared by the interpretation modules.

Each raises a ``ValueError`` (or ``TypeError``) naming the argument and what
it accepts, the package's rule for bad input.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn


def _check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
    ):
        raise ValueError(
            f"{name} must be an integer >= {minimum}, got {value!r}"
        )
    return value


def _check_tensor(name: str, value: object, min_dim: int = 1) -> Tensor:
    if not isinstance(value, Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor, got {type(value).__name__}"
        )
    if value.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimension(s), got shape "
            f"{tuple(value.shape)}"
        )
    return value


def _check_input(
    name: str, value: object, min_dim: int = 1, nonempty: bool = True
) -> Tensor:
    """A floating-point tensor, by default with at least one example (the input
    of a model)."""
    x = _check_tensor(name, value, min_dim)
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor, got {x.dtype}"
        )
    if nonempty and x.shape[0] == 0:
        raise ValueError(
            f"{name} must hold at least one example, got shape "
            f"{tuple(x.shape)}"
        )
    return x


def _check_labels(name: str, value: object) -> Tensor:
    y = _check_tensor(name, value)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(
            f"{name} must be an integer tensor of class labels, "
            f"got {y.dtype}"
        )
    return y


def _check_callable(name: str, value: object) -> None:
    if not callable(value):
        raise ValueError(
            f"{name} must be a callable (a model or a function), "
            f"got {value!r}"
        )


def _check_number(
    name: str, value: object, minimum: float = 0.0, strict: bool = True
) -> float:
    """A finite number above ``minimum`` (or at least it, ``strict=False``)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if (
        not ok
        or not math.isfinite(value)
        or (value <= minimum if strict else value < minimum)
    ):
        sign = ">" if strict else ">="
        raise ValueError(
            f"{name} must be a finite number {sign} {minimum}, "
            f"got {value!r}"
        )
    return float(value)


def _check_seed(seed: object) -> int:
    return _check_positive_int("seed", seed, 0)


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _check_layers(layers: object) -> None:
    if layers is None or isinstance(layers, str):
        return
    if not isinstance(layers, Sequence) or not all(
        isinstance(n, str) for n in layers
    ):
        raise ValueError(
            f"layers must be None or a list of module names, "
            f"got {layers!r}"
        )


def _check_weights(name: str, params: object) -> None:
    if not isinstance(params, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in params.items()
    ):
        raise ValueError(
            f"{name} must be a mapping from parameter names to "
            f"tensors, got {type(params).__name__}"
        )


def _check_target(target: object) -> None:
    if target is None or (
        isinstance(target, int) and not isinstance(target, bool)
    ):
        return
    if isinstance(target, Tensor) and not (
        target.is_floating_point() or target.dtype == torch.bool
    ):
        return
    raise ValueError(
        f"target must be None, an output index or an integer "
        f"tensor of indices, got {target!r}"
    )


# -----------------------------------------------------------------------------
# Feature groups
# -----------------------------------------------------------------------------


def _check_baseline(baseline: object, x: Tensor) -> None:
    if isinstance(baseline, Tensor):
        try:
            torch.broadcast_shapes(baseline.shape, x.shape)
        except RuntimeError:
            raise ValueError(
                f"baseline must broadcast to x's shape "
                f"{tuple(x.shape)}, got "
                f"{tuple(baseline.shape)}"
            ) from None
        if not baseline.is_floating_point():
            raise ValueError(
                f"baseline must be floating-point, got {baseline.dtype}"
            )
    elif (
        isinstance(baseline, bool)
        or not isinstance(baseline, (int, float))
        or not math.isfinite(baseline)
    ):
        raise ValueError(
            f"baseline must be a finite number or a tensor, got "
            f"{baseline!r}"
        )


def _flat64(name: str, x: object) -> Tensor:
    x = _check_tensor(name, x, 1)
    if x.numel() == 0:
        raise ValueError(
            f"{name} must hold examples with features, got shape "
            f"{tuple(x.shape)}"
        )
    if x.dim() == 1:
        x = x[:, None]
    return x.detach().reshape(x.shape[0], -1).to(torch.float64)


def _check_params(model: nn.Module, params: object) -> None:
    """``params`` are None or tensors named as ``model``'s parameters or
    buffers."""
    if params is None:
        return
    _check_weights("params", params)
    known = {n for n, _ in model.named_parameters()} | {
        n for n, _ in model.named_buffers()
    }
    unknown = [n for n in params if n not in known]
    if unknown:
        raise ValueError(
            f"params holds names that are not parameters of "
            f"the model: {unknown}"
        )


def _uses_batch_statistics(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm) and (
        m.training or m.running_mean is None
    )


def _check_episode_tensors(
    support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
) -> None:
    _check_input("support_x", support_x, 2)
    _check_input("query_x", query_x, 2)
    _check_labels("support_y", support_y)
    _check_labels("query_y", query_y)
    if support_y.shape != support_x.shape[:1]:
        raise ValueError(
            f"support_y must hold one label per support example "
            f"({support_x.shape[0]}), got shape {tuple(support_y.shape)}"
        )
    if query_y.shape != query_x.shape[:1]:
        raise ValueError(
            f"query_y must hold one label per query ({query_x.shape[0]}), got "
            f"shape {tuple(query_y.shape)}"
        )
    if support_x.shape[1:] != query_x.shape[1:]:
        raise ValueError(
            "query_x must have the support images' shape "
            f"{tuple(support_x.shape[1:])}, got {tuple(query_x.shape[1:])}"
        )
    if support_x.shape[0] < 2:
        raise ValueError(
            "support_x must hold at least 2 examples, got "
            f"{support_x.shape[0]}"
        )
