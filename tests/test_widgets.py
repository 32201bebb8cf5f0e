"""Tests for mlkit.widgets: the static twin's frames and HTML, the live
widget, bad input."""

import base64
import json
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mlkit.widgets import (
    MAX_FRAMES,
    Slider,
    explorer,
    live_widget,
    static_twin,
)  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def line(a: float, b: int = 1):
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, a * b])
    ax.set_ylim(-10, 10)
    return fig


def ignores_b(a: float, b: int):
    return line(a)  # b has no effect: frames along b are identical


SLIDERS = [
    Slider(
        "a", values=[-2.0, 0.5, 3.0], value=0.5, label="slope", fmt="{:.1f}"
    ),
    Slider("b", values=[1, 2], value=1),
]


def test_one_frame_per_grid_point_and_frames_differ():
    twin = static_twin(line, SLIDERS, title="t")
    assert sorted(twin.grid) == [(i, j) for i in range(3) for j in range(2)]
    # a*b takes 6 distinct values here, so every grid point has its own image
    assert len(twin.frames) == 6
    assert len(set(twin.frames)) == 6
    assert all(f.startswith(PNG_MAGIC) for f in twin.frames)
    assert twin.frame_at(a=3.0, b=2) != twin.frame_at(a=-2.0, b=2)


def test_identical_outputs_share_a_frame():
    twin = static_twin(ignores_b, SLIDERS)
    assert len(twin.grid) == 6
    assert len(twin.frames) == 3
    assert twin.grid[(0, 0)] == twin.grid[(0, 1)]
    assert twin.grid[(0, 0)] != twin.grid[(1, 0)]


def test_no_figures_left_open():
    before = len(plt.get_fignums())
    static_twin(line, SLIDERS)
    assert len(plt.get_fignums()) == before


def test_html_is_self_contained_and_starts_at_value():
    twin = static_twin(line, SLIDERS, title="Slope <demo>")
    page = twin.to_html()
    assert page.count('type="range"') == 2
    assert "Slope &lt;demo&gt;" in page
    assert "http" not in page  # nothing fetched from the network
    data = json.loads(
        re.search(
            r'<script type="application/json" class="mlkit-data">'
            r"(.*?)</script>",
            page,
            re.S,
        ).group(1)
    )
    assert data["shape"] == [3, 2]
    assert len(data["grid"]) == 6
    assert data["labels"][0] == ["-2.0", "0.5", "3.0"]
    # row-major: grid point (i, j) sits at i*2 + j
    assert data["grid"][2 * 2 + 1] == twin.grid[(2, 1)]
    start = re.search(
        r'<img class="mlkit-frame"[^>]*src="data:image/png;base64,([^"]+)"',
        page,
    ).group(1)
    assert base64.b64decode(start) == twin.frame_at(a=0.5, b=1)
    assert 'value="1"' in page.split('data-slider="0"')[1].split(">")[0]


def test_explorer_outside_ipython_returns_none():
    assert explorer(line, SLIDERS, title="x") is None


def test_live_widget_calls_fn_with_slider_values():
    calls = []

    def fn(a, b):
        calls.append((a, b))
        return line(a, b)

    ui = live_widget(fn, SLIDERS)
    assert calls[-1] == (0.5, 1)
    ui.children[0].value = 3.0
    assert calls[-1] == (3.0, 1)
    assert [c.description for c in ui.children[:2]] == ["slope", "b"]


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(name="a", values=[1, 2], value=3), "value"),
        (dict(name="a", values=[], value=1), "values"),
        (dict(name="a", values=[1, 1], value=1), "values"),
        (dict(name="not a name", values=[1], value=1), "name"),
        (dict(name="a", values=5, value=5), "values"),
        (dict(name="a", values=[1.0], value=1.0, fmt="{:q}"), "fmt"),
        (
            dict(
                name="alpha", values=[0.001, 0.003], value=0.001, fmt="{:.1f}"
            ),
            "fmt",
        ),
    ],
)
def test_bad_slider_raises_naming_argument(kwargs, word):
    with pytest.raises(ValueError, match=rf"^{word} "):
        Slider(**kwargs)


def test_float_values_match_within_rounding():
    s = Slider("alpha", values=[0.1, 0.3], value=0.1 + 0.2)
    assert s.index == 1


def test_bad_explorer_input():
    with pytest.raises(ValueError, match="sliders"):
        static_twin(line, [])
    with pytest.raises(ValueError, match="sliders"):
        static_twin(line, [Slider("a", [1], 1), Slider("a", [2], 2)])
    with pytest.raises(ValueError, match=rf"at most {MAX_FRAMES}"):
        static_twin(
            line,
            [Slider("a", list(range(9)), 0), Slider("b", list(range(9)), 0)],
        )
    with pytest.raises(ValueError, match="fn must return a matplotlib Figure"):
        static_twin(lambda a, b: 1, SLIDERS)
    with pytest.raises(ValueError, match="fn must be callable"):
        static_twin(3, SLIDERS)
    twin = static_twin(line, SLIDERS)
    with pytest.raises(ValueError, match="a must be one of"):
        twin.frame_at(a=7.0, b=1)


def _fake_kernel(monkeypatch):
    """Pretend to run in a live kernel and capture what explorer displays."""
    import IPython.display

    from mlkit import widgets

    shown = []
    monkeypatch.setattr(widgets, "_in_live_kernel", lambda: True)
    monkeypatch.setattr(
        IPython.display,
        "display",
        lambda bundle, raw=False: shown.append(bundle),
    )
    return shown


def test_explorer_in_a_live_kernel_shows_the_widget_without_precomputing(
    monkeypatch,
):
    pytest.importorskip("ipywidgets")
    monkeypatch.delenv("MLKIT_NO_LIVE_WIDGETS", raising=False)
    shown = _fake_kernel(monkeypatch)
    calls = []

    def draw(**values):
        calls.append(values)
        return line(**values)

    explorer(draw, SLIDERS, title="x")
    # the widget's first drawing is displayed too; the explorer's bundle is
    # the dict
    (bundle,) = [item for item in shown if isinstance(item, dict)]
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "text/html" not in bundle
    # ipywidgets.interactive draws the starting values once; no grid is
    # precomputed
    assert len(calls) <= 1


def test_explorer_for_the_stored_notebooks_shows_the_static_twin(monkeypatch):
    monkeypatch.setenv("MLKIT_NO_LIVE_WIDGETS", "1")
    shown = _fake_kernel(monkeypatch)
    explorer(line, SLIDERS, title="x")
    (bundle,) = shown
    assert "mlkit-explorer" in bundle["text/html"]
    assert "application/vnd.jupyter.widget-view+json" not in bundle
