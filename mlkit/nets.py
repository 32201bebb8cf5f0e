"""The few networks the book uses.

* :class:`SinusoidMLP`: Finn et al.'s regressor, 1 -> 40 -> 40 -> 1 with ReLUs.
* :class:`ConvNet`: Finn et al.'s Omniglot classifier, 4 x [3x3 conv, 64
  filters, BatchNorm, ReLU] with stride-2 convolutions on 28x28 inputs (28 ->
  14 -> 7 -> 4 -> 2), the 2x2 map averaged to 64 features, then a linear head.
  BatchNorm always normalises with the current batch's statistics
  (``track_running_stats=False``), as Finn's code did: at test time the
  statistics come from the support or query batch itself, so predictions are
  transductive.
* :class:`ConvEmbedding`: the same four blocks with max-pooling instead of
  strides (Vinyals et al. 2016; Snell et al. 2017), giving a 64-dimensional
  embedding for metric learners.

Parameter names matter: MAML's functional code addresses them by name, and ANIL
adapts only the parameters whose names start with ``head.``.
"""

from __future__ import annotations

from numbers import Integral

import torch
from torch import nn


def _check_width(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


__all__ = [
    "SinusoidMLP",
    "ConvNet",
    "ConvEmbedding",
    "InductiveConvEmbedding",
    "conv_block",
    "head_parameter_names",
]


class SinusoidMLP(nn.Module):
    """Finn et al.'s sinusoid regressor: ``hidden`` ReLU layers (default 40,
    40), one output."""

    def __init__(self, hidden: tuple[int, ...] = (40, 40)) -> None:
        super().__init__()
        if isinstance(hidden, (str, bytes)) or not isinstance(
            hidden, (tuple, list)
        ):
            raise ValueError(
                f"hidden must be a tuple of layer widths, got {hidden!r}"
            )
        for h in hidden:
            _check_width("hidden", h)
        layers: list[nn.Module] = []
        width = 1
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def conv_block(
    in_channels: int, out_channels: int, *, stride: int = 1, pool: bool = False
) -> nn.Sequential:
    """3x3 conv -> BatchNorm (batch statistics) -> ReLU [-> 2x2 max-pool]."""
    _check_width("in_channels", in_channels)
    _check_width("out_channels", out_channels)
    _check_width("stride", stride)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
        nn.BatchNorm2d(out_channels, track_running_stats=False),
        nn.ReLU(),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ConvNet(nn.Module):
    """Finn et al.'s Omniglot network: four stride-2 conv blocks, spatial mean,
    linear head.

    ``features(x)`` gives the 64-dimensional representation, ``head`` the
    ``n_way`` logits.
    """

    def __init__(
        self, n_way: int, *, hidden: int = 64, in_channels: int = 1
    ) -> None:
        super().__init__()
        _check_width("n_way", n_way)
        _check_width("hidden", hidden)
        _check_width("in_channels", in_channels)
        self.n_way = n_way
        self.body = nn.Sequential(
            conv_block(in_channels, hidden, stride=2),
            conv_block(hidden, hidden, stride=2),
            conv_block(hidden, hidden, stride=2),
            conv_block(hidden, hidden, stride=2),
        )
        self.head = nn.Linear(hidden, n_way)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(-2, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ConvEmbedding(nn.Module):
    """Four conv blocks with 2x2 max-pooling: 28x28 -> 64-dimensional
    embedding."""

    def __init__(
        self,
        *,
        hidden: int = 64,
        out_dim: int | None = None,
        in_channels: int = 1,
        layers: int = 4,
    ) -> None:
        super().__init__()
        for name, v in (
            ("hidden", hidden),
            ("in_channels", in_channels),
            ("layers", layers),
        ):
            _check_width(name, v)
        if out_dim is not None:
            _check_width("out_dim", out_dim)
        out_dim = hidden if out_dim is None else out_dim
        chans = [in_channels] + [hidden] * (layers - 1) + [out_dim]
        self.body = nn.Sequential(
            *(conv_block(a, b, pool=True) for a, b in zip(chans, chans[1:]))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)


def head_parameter_names(model: nn.Module) -> list[str]:
    """Names of the head's parameters (those ANIL adapts in its inner loop)."""
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model must be a torch.nn.Module, got {type(model).__name__}"
        )
    return [n for n, _ in model.named_parameters() if n.startswith("head.")]


# -----------------------------------------------------------------------------
# Metric learners (chapter 4): an embedding that can be evaluated one image at
# a time
# -----------------------------------------------------------------------------


class InductiveConvEmbedding(nn.Module):
    """:class:`ConvEmbedding`'s four max-pooled blocks, with BatchNorm that
    keeps running stats.

    In training mode BatchNorm normalises with the batch's statistics and
    updates running averages; in ``eval()`` mode it uses those averages, so an
    image's embedding depends on that image alone (inductive), as Snell et
    al.'s reference code does. A verification pair then gets the same distance
    whatever else is in the batch, and a whole split can be embedded once and
    reused for every episode. With ``normalize=True`` the embedding is scaled
    to unit length (no parameters added, so the state dict is unchanged).
    """

    def __init__(
        self,
        *,
        hidden: int = 64,
        out_dim: int | None = None,
        in_channels: int = 1,
        layers: int = 4,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        for name, v in (
            ("hidden", hidden),
            ("in_channels", in_channels),
            ("layers", layers),
        ):
            _check_width(name, v)
        if not isinstance(normalize, bool):
            raise ValueError(
                f"normalize must be True or False, got {normalize!r}"
            )
        if out_dim is not None:
            _check_width("out_dim", out_dim)
        out_dim = hidden if out_dim is None else out_dim
        chans = [in_channels] + [hidden] * (layers - 1) + [out_dim]
        self.body = nn.Sequential(
            *(
                nn.Sequential(
                    nn.Conv2d(a, b, 3, padding=1),
                    nn.BatchNorm2d(b),
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                )
                for a, b in zip(chans, chans[1:])
            )
        )
        self.normalize = bool(normalize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.body(x).flatten(1)
        # on the unit sphere distances lie in [0, 2], so a margin means the
        # same thing whatever scale the network would otherwise drift to
        return nn.functional.normalize(z, dim=1) if self.normalize else z
