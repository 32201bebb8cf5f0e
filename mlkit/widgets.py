"""Slider explorers: one figure function, two front ends.

A chapter writes a pure function of a few slider values that returns a
matplotlib Figure and hands it to :func:`explorer` with one :class:`Slider` per
argument::

    explorer(
        draw,
        [
            Slider("inner_steps", values=list(range(0, 11)), value=1),
            Slider("alpha", values=[0.001, 0.01, 0.1], value=0.01,
                   fmt="{:.3g}"),
        ],
        title="Adapting a MAML model",
    )

:func:`explorer` shows one of two front ends:

1. in a reader's live kernel, the **ipywidgets** version
   (``ipywidgets.interactive`` over ``SelectionSlider`` widgets), at once:
   ``fn`` runs only for the values the reader picks;
2. where the environment sets ``MLKIT_NO_LIVE_WIDGETS=1`` (``make execute``,
   the grader), a **static twin**: ``fn`` evaluated on every point of the
   slider grid ahead of time, each figure rendered to a PNG and embedded in
   self-contained HTML with one ``<input type="range">`` per slider. A few
   lines of inline JavaScript swap the image, so the built book's pages respond
   with no kernel behind them. Without JavaScript the figure at the sliders'
   starting values still shows.

The stored notebooks are executed the second way, so the site shows the twin.
Cells that call :func:`explorer` carry the tag ``nbval-ignore-output``: a
widget's output cannot be compared by nbval.

Grids stay small: the product of the slider lengths is at most
:data:`MAX_FRAMES`. Identical frames (the function ignores a value in part of
the grid) are stored once.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
import math
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

__all__ = [
    "MAX_FRAMES",
    "Slider",
    "StaticTwin",
    "static_twin",
    "live_widget",
    "explorer",
]

# : Largest grid :func:`static_twin` accepts (product of the slider lengths).
# Every frame is a : PNG stored in the notebook, so a larger grid makes the
# notebook and the page heavy.
MAX_FRAMES = 48

# : Resolution of the embedded frames. 80 dpi keeps a 6x4 inch figure near 30
# KB.
FRAME_DPI = 80


def _same(a: Any, b: Any) -> bool:
    """Value equality that treats floats as equal within 1e-12 (0.1 + 0.2 vs
    0.3)."""
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(
                float(a), float(b), rel_tol=1e-12, abs_tol=1e-15
            )
        except (TypeError, ValueError):
            return False
    return a == b


@dataclass(frozen=True)
class Slider:
    """A slider over a fixed list of values (the grid).

    Args:
        name: keyword argument of the figure function that receives the value.
        values: the grid, in slider order (at least one value, no duplicates).
        value: starting value; must be one of ``values``.
        label: text shown beside the slider (defaults to ``name``).
        fmt: format string applied to a value for display, e.g. ``"{:.3g}"``.
    """

    name: str
    values: Sequence[Any]
    value: Any
    label: str | None = None
    fmt: str = "{}"
    index: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(
                "name must be a Python identifier (a keyword argument), got "
                f"{self.name!r}"
            )
        try:
            values = list(self.values)
        except TypeError:
            raise ValueError(
                "values must be a list of values, got "
                f"{type(self.values).__name__}"
            ) from None
        if len(values) == 0:
            raise ValueError(
                f"values must hold at least one value (slider {self.name!r} "
                "got none)"
            )
        for i, a in enumerate(values):
            for b in values[:i]:
                if _same(a, b):
                    raise ValueError(
                        "values must not repeat a value (slider "
                        f"{self.name!r}: {a!r} twice)"
                    )
        matches = [i for i, v in enumerate(values) if _same(v, self.value)]
        if not matches:
            raise ValueError(
                f"value must be one of values {values!r} (slider "
                f"{self.name!r} got {self.value!r})"
            )
        try:
            self.fmt.format(values[0])
        except (ValueError, IndexError, KeyError, TypeError) as e:
            raise ValueError(
                f"fmt must format a value, e.g. '{{:.3g}}' (slider "
                f"{self.name!r}: {e})"
            ) from None
        labels = [self.fmt.format(v) for v in values]
        if len(set(labels)) != len(labels):
            raise ValueError(
                f"fmt must tell the values apart (slider {self.name!r}: "
                f"{labels})"
            )
        object.__setattr__(self, "values", tuple(values))
        object.__setattr__(self, "index", matches[0])

    @property
    def text(self) -> str:
        """The label shown beside the slider."""
        return self.label if self.label is not None else self.name

    def format(self, v: Any) -> str:
        """``v`` formatted for display with ``fmt``."""
        return self.fmt.format(v)


def _check_sliders(sliders: Sequence[Slider]) -> list[Slider]:
    sliders = list(sliders)
    if not sliders:
        raise ValueError("sliders must hold at least one Slider")
    for s in sliders:
        if not isinstance(s, Slider):
            raise ValueError(
                f"sliders must hold Slider objects, got {type(s).__name__}"
            )
    names = [s.name for s in sliders]
    if len(set(names)) != len(names):
        raise ValueError(f"sliders must have distinct names, got {names}")
    n = math.prod(len(s.values) for s in sliders)
    if n > MAX_FRAMES:
        raise ValueError(
            f"sliders span {n} grid points; at most {MAX_FRAMES} allowed "
            "(shorten the values lists)"
        )
    return sliders


def _render_png(fig: Any, dpi: int) -> bytes:
    """Render a matplotlib Figure to PNG bytes and close it (no figure left
    open)."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise ValueError(
            f"fn must return a matplotlib Figure, got {type(fig).__name__}"
        )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    # An adaptive 256-colour palette (no dithering) makes the frames about 3x
    # smaller and is indistinguishable for line plots and colormapped images (a
    # colormap has 256 entries). Saved without metadata, the bytes depend only
    # on the pixels, so equal figures dedupe.
    from PIL import Image

    im = Image.open(io.BytesIO(buf.getvalue()))
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    im = im.convert("RGB").quantize(
        colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    out = io.BytesIO()
    im.save(out, format="PNG", optimize=True)
    return out.getvalue()


@dataclass
class StaticTwin:
    """The precomputed version of an explorer.

    Attributes:
        sliders: the sliders, in order.
        title: heading shown above the sliders.
        frames: distinct PNG images (bytes), in the order first met on the
            grid.
        grid: for every grid point (a tuple of value indices, row-major over
            ``sliders``), the index into ``frames`` of its image.
    """

    sliders: list[Slider]
    title: str
    frames: list[bytes]
    grid: dict[tuple[int, ...], int]

    def frame_at(self, **values: Any) -> bytes:
        """PNG bytes of the frame for the given slider values (every slider
        named)."""
        missing = [s.name for s in self.sliders if s.name not in values]
        extra = sorted(set(values) - {s.name for s in self.sliders})
        if missing or extra:
            raise ValueError(
                "values must name exactly the sliders "
                f"{[s.name for s in self.sliders]}"
            )
        key = []
        for s in self.sliders:
            idx = [
                i for i, v in enumerate(s.values) if _same(v, values[s.name])
            ]
            if not idx:
                raise ValueError(
                    f"{s.name} must be one of {list(s.values)}, got "
                    f"{values[s.name]!r}"
                )
            key.append(idx[0])
        return self.frames[self.grid[tuple(key)]]

    def to_html(self) -> str:
        """Self-contained HTML: the sliders, the starting frame, and inline JS
        that swaps it.

        The data (frames as base64, the grid as a flat row-major list of frame
        indices) sits in ``data-`` attributes and a
        ``<script type="application/json">`` block; the inline script wires the
        ``<input type="range">`` elements of its own container only, so several
        explorers on one page do not interfere.
        """
        uid = (
            "mlkit-explorer-"
            + uuid.UUID(bytes=hashlib.md5(b"".join(self.frames)).digest()).hex[
                :12
            ]
        )
        shape = [len(s.values) for s in self.sliders]
        flat = [
            self.grid[k] for k in itertools.product(*[range(n) for n in shape])
        ]
        start = tuple(s.index for s in self.sliders)
        start_frame = self.grid[start]
        data = {
            "shape": shape,
            "grid": flat,
            "frames": [
                base64.b64encode(f).decode("ascii") for f in self.frames
            ],
            "labels": [[s.format(v) for v in s.values] for s in self.sliders],
        }
        rows = []
        for i, s in enumerate(self.sliders):
            rows.append(
                '<label style="display:flex;align-items:center;gap:0.6em;'
                'margin:0.15em 0">'
                f'<span style="min-width:8em">{html.escape(s.text)}</span>'
                # data-lm-suppress-shortcuts: JupyterLab would take the arrow
                # keys as notebook shortcuts instead of moving the slider
                f'<input type="range" class="mlkit-slider" data-slider="{i}" '
                'data-lm-suppress-shortcuts="true" min="0" '
                f'max="{len(s.values) - 1}" step="1" value="{s.index}" '
                f'aria-label="{html.escape(s.text, quote=True)}" '
                'style="flex:1;max-width:22em">'
                '<output class="mlkit-value" '
                'style="min-width:4em;font-family:monospace">'
                f"{html.escape(s.format(s.values[s.index]))}</output></label>"
            )
        alt = html.escape(self.title or "figure", quote=True)
        title = (
            '<div style="font-weight:bold;margin-bottom:0.3em">'
            f"{html.escape(self.title)}</div>"
            if self.title
            else ""
        )
        # JSON inside <script>: escape "</" so the data cannot close the tag.
        payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
        return (
            f'<div class="mlkit-explorer" id="{uid}" '
            'style="border:1px solid #ddd;border-radius:4px;padding:0.6em;'
            'margin:0.5em 0">'
            f"{title}{''.join(rows)}"
            f'<img class="mlkit-frame" alt="{alt}" '
            'style="max-width:100%;height:auto;display:block;'
            'margin-top:0.4em" '
            f'src="data:image/png;base64,{data["frames"][start_frame]}">'
            '<script type="application/json" class="mlkit-data">'
            f"{payload}</script>"
            f"<script>{_JS.replace('__UID__', uid)}</script>"
            "</div>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()


# The static twin's behaviour. Kept tiny and dependency-free; it runs once per
# explorer. It finds its container through document.currentScript (JupyterLab
# runs output scripts after re-inserting them; two identical explorers on one
# page share an id), the id as fallback. A backslash ending a line continues
# the script's line: the string holds no line break there.
_JS = """(function(){
var me=document.currentScript,\
root=(me&&me.closest(".mlkit-explorer"))||document.getElementById("__UID__");
if(!root||root.dataset.ready)return;root.dataset.ready="1";
var d=JSON.parse(root.querySelector("script.mlkit-data").textContent);
var inputs=root.querySelectorAll("input.mlkit-slider"),\
outs=root.querySelectorAll("output.mlkit-value");
var img=root.querySelector("img.mlkit-frame");
function show(){var k=0;for(var i=0;i<inputs.length;i++){\
var v=parseInt(inputs[i].value,10);
k=k*d.shape[i]+v;outs[i].textContent=d.labels[i][v];}
img.src="data:image/png;base64,"+d.frames[d.grid[k]];}
for(var i=0;i<inputs.length;i++){inputs[i].addEventListener("input",show);}
})();"""


def static_twin(
    fn: Callable[..., Any],
    sliders: Sequence[Slider],
    *,
    title: str = "",
    dpi: int = FRAME_DPI,
) -> StaticTwin:
    """Evaluate ``fn`` on every grid point of ``sliders`` and keep each figure
    as a PNG.

    ``fn`` is called with keyword arguments named after the sliders and must
    return a matplotlib Figure (which is closed after rendering). Frames whose
    PNG bytes are identical are stored once.
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {type(fn).__name__}")
    sliders = _check_sliders(sliders)
    if not isinstance(dpi, int) or not 20 <= dpi <= 300:
        raise ValueError(f"dpi must be an int in [20, 300], got {dpi!r}")
    frames: list[bytes] = []
    seen: dict[bytes, int] = {}
    grid: dict[tuple[int, ...], int] = {}
    points = list(itertools.product(*[range(len(s.values)) for s in sliders]))
    # A text bar outside notebooks only: in a kernel, tqdm.auto's widget would
    # stay behind in the stored notebook as the view of a closed widget (an
    # error box in JupyterLab).
    from tqdm import tqdm

    it = tqdm(
        points,
        desc="precomputing frames",
        leave=False,
        disable=len(points) < 8 or _in_live_kernel(),
    )
    for key in it:
        kwargs = {s.name: s.values[i] for s, i in zip(sliders, key)}
        png = _render_png(fn(**kwargs), dpi)
        digest = hashlib.sha256(png).digest()
        if digest not in seen:
            seen[digest] = len(frames)
            frames.append(png)
        grid[key] = seen[digest]
    return StaticTwin(sliders=sliders, title=title, frames=frames, grid=grid)


def live_widget(
    fn: Callable[..., Any], sliders: Sequence[Slider], *, title: str = ""
) -> Any:
    """The ipywidgets version: ``ipywidgets.interactive`` with one
    SelectionSlider per slider.

    Each change calls ``fn`` with the current values and shows the returned
    Figure.
    """
    import ipywidgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    sliders = _check_sliders(sliders)

    def show(**kwargs: Any) -> None:
        fig = fn(**kwargs)
        display(fig)
        plt.close(fig)

    controls = {
        s.name: ipywidgets.SelectionSlider(
            options=[(s.format(v), v) for v in s.values],
            value=s.values[s.index],
            description=s.text,
            continuous_update=False,
            style={"description_width": "initial"},
            layout=ipywidgets.Layout(width="32em"),
        )
        for s in sliders
    }
    ui = ipywidgets.interactive(show, **controls)
    if title:
        return ipywidgets.VBox(
            [ipywidgets.HTML(f"<b>{html.escape(title)}</b>"), ui]
        )
    return ui


def _in_live_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def explorer(
    fn: Callable[..., Any], sliders: Sequence[Slider], *, title: str = ""
) -> None:
    """Show a slider explorer of ``fn``: the live widget in a kernel, else the
    static twin.

    In a live kernel (a reader in JupyterLab) the ipywidgets version is shown
    at once, and nothing is precomputed: ``fn`` runs only for the values the
    reader picks. When the environment sets ``MLKIT_NO_LIVE_WIDGETS=1``
    (``make execute``, the grader) the static twin is computed instead, every
    frame of the grid, and displayed as ``text/html``: that is what the stored
    notebooks keep and the built site shows, where no kernel is behind the
    page. Outside IPython nothing is displayed; use :func:`static_twin` there.
    Returns None so that a call on a cell's last line does not display twice.
    """
    sliders = _check_sliders(sliders)
    live = _in_live_kernel() and os.environ.get("MLKIT_NO_LIVE_WIDGETS") != "1"
    if not live:
        twin = static_twin(fn, sliders, title=title)
        if not _in_live_kernel():
            return None
    from IPython.display import display

    if live:
        widget = live_widget(fn, sliders, title=title)
        bundle = {
            k: v
            for k, v in widget._repr_mimebundle_().items()
            if k != "text/plain"
        }
        # A front end without widget support shows this line instead of the
        # sliders.
        bundle["text/plain"] = (
            f"<explorer {title!r}: a live widget; "
            "static_twin(...) draws every frame ahead of time>"
        )
    else:
        bundle = {
            "text/plain": (
                f"<explorer {title!r}: {len(twin.grid)} grid points>"
            ),
            "text/html": twin.to_html(),
        }
    display(bundle, raw=True)
    return None
