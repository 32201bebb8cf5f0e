"""Every figure the chapters show, one function per figure kind (matplotlib,
seaborn).

Functions take what :mod:`mlkit.interpret`, the learners or :mod:`mlkit.data`
return and only draw it: no training and no computing of explanations here.
Each returns the matplotlib ``Figure`` so that a chapter can save or adjust it.
Sections are grouped by the chapter that added them.
"""

from __future__ import annotations

# =============================================================================
# Chapters 1 and 2: sinusoid fits, task errors, episodes, and the first
# explanations
# =============================================================================

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402


def _np(a: object) -> np.ndarray:
    """A numpy copy of a tensor or array-like (tensors are detached first)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _finish_image_grid(
    fig: Figure, axes: np.ndarray, title: str | None
) -> Figure:
    """Shared ending of the image-grid figures: no ticks, an optional title,
    tight layout."""
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _thousands_ticks(ax: object, largest: float) -> None:
    """Write x ticks as 12.5k when they reach 10,000: 12500 runs into its
    neighbours."""
    if largest >= 10000:
        ax.xaxis.set_major_formatter(
            FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0")
        )


def _finish_line_axes(
    fig: Figure, ax: object, xlabel: str, ylabel: str, title: str | None
) -> Figure:
    """The common ending of the one-panel line plots: labels, grid, legend,
    title, layout."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_sinusoid_fits(
    x: object,
    curves: dict[str, object],
    support_x: object,
    support_y: object,
    *,
    truth: object | None = None,
    title: str | None = None,
    ax: plt.Axes | None = None,
) -> Figure:
    """One sinusoid task: the true curve (dashed), the support points, and each
    model's fit.

    ``x`` is the grid the curves are evaluated on; ``curves`` maps a label to
    its values.
    """
    fig, ax = plt.subplots(figsize=(8, 3.6)) if ax is None else (ax.figure, ax)
    xs = _np(x).ravel()
    if truth is not None:
        ax.plot(xs, _np(truth).ravel(), "k--", lw=1.5, label="true function")
    for label, y in curves.items():
        ax.plot(xs, _np(y).ravel(), lw=2, label=label)
    ax.scatter(
        _np(support_x).ravel(),
        _np(support_y).ravel(),
        c="k",
        s=40,
        zorder=5,
        label=f"{len(_np(support_x).ravel())} support points",
    )
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def plot_task_errors(
    values: object,
    errors: dict[str, object],
    *,
    xlabel: str,
    ylabel: str = "query MSE after adaptation",
    shade: tuple[float, float] | None = None,
    shade_label: str = "",
    logy: bool = True,
    ax: plt.Axes | None = None,
) -> Figure:
    """Per-task errors against a task property (one dot per task and method).

    ``values`` holds the property of each task (e.g. the amplitude), ``errors``
    maps a method to its per-task errors; ``shade`` marks an interval, e.g. the
    training range.
    """
    fig, ax = plt.subplots(figsize=(6, 3.6)) if ax is None else (ax.figure, ax)
    v = _np(values).ravel()
    if shade is not None:
        ax.axvspan(*shade, color="0.92", zorder=0, label=shade_label or None)
    for label, e in errors.items():
        ax.scatter(v, _np(e).ravel(), s=14, alpha=0.75, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return fig


def plot_episode(
    support: object,
    support_y: object,
    query: object,
    query_y: object,
    *,
    row_labels: list[str] | None = None,
    title: str | None = None,
    max_query: int | None = None,
) -> Figure:
    """An N-way K-shot episode as an image grid: one row per class, support
    left, query right.

    ``support`` and ``query`` are images ``(n, H, W)`` (ink bright or dark,
    shown as ink dark); ``row_labels`` names each class (e.g. its alphabet).
    """
    s, sy, q, qy = (
        _np(support),
        _np(support_y).ravel(),
        _np(query),
        _np(query_y).ravel(),
    )
    s, q = s.reshape(len(sy), *s.shape[-2:]), q.reshape(len(qy), *q.shape[-2:])
    n_way = int(sy.max()) + 1
    k = int(np.bincount(sy).max())
    nq = int(np.bincount(qy, minlength=n_way).max()) if len(qy) else 0
    if max_query is not None:
        nq = min(nq, max_query)
    cols = k + 1 + nq
    fig, axes = plt.subplots(
        n_way,
        cols,
        figsize=(1.0 * cols + 1.6, 1.0 * n_way + 0.5),
        squeeze=False,
    )
    ink = (
        s.max() <= 1.0 and s.mean() < 0.5
    )  # ink 1.0 on 0.0: show it dark on white
    cmap = "gray_r" if ink else "gray"
    for r in range(n_way):
        for c, img in enumerate(s[sy == r][:k]):
            axes[r, c].imshow(img, cmap=cmap, vmin=0, vmax=1)
        for c, img in enumerate(q[qy == r][:nq]):
            axes[r, k + 1 + c].imshow(img, cmap=cmap, vmin=0, vmax=1)
        if row_labels is not None:
            axes[r, 0].set_ylabel(
                f"{r}: {row_labels[r]}",
                rotation=0,
                ha="right",
                va="center",
                fontsize=8,
            )
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
        for side in a.spines.values():
            side.set_visible(False)
    axes[0, 0].set_title(
        "support" if k == 1 else f"support ({k} shots)", fontsize=9, loc="left"
    )
    if nq:
        axes[0, k + 1].set_title(
            f"query ({nq} per class)", fontsize=9, loc="left"
        )
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_training_curve(
    history: list[dict[str, float]],
    keys: tuple[str, ...] = ("loss",),
    *,
    x: str = "episode",
    window: int = 20,
    title: str | None = None,
    since: float | None = None,
    rate: tuple[object, object] | None = None,
) -> Figure:
    """Training rows (dicts) against ``x``: the raw values faint, a running
    mean of ``window``.

    ``since`` keeps the rows with ``x >= since`` (the late part of a long run).
    ``rate`` is ``(x values, learning rates)``, drawn on a right-hand axis of
    each panel, with the stretch where it is below its maximum shaded (an
    annealed learning rate).
    """
    if since is not None:
        history = [row for row in history if row[x] >= since]
    fig, axes = plt.subplots(
        1,
        len(keys),
        figsize=(4.2 * len(keys) + (0.8 if rate else 0), 3),
        squeeze=False,
    )
    steps = np.array([row[x] for row in history])
    for ax, key in zip(axes[0], keys):
        if rate is not None:
            rx, ry = _np(rate[0]).ravel(), _np(rate[1]).ravel()
            keep = rx >= (steps.min() if len(steps) else -np.inf)
            rx, ry = rx[keep], ry[keep]
            low = rx[ry < ry.max()] if len(ry) else rx[:0]
            if len(low):
                ax.axvspan(low.min(), rx.max(), color="C1", alpha=0.12, lw=0)
            twin = ax.twinx()
            twin.plot(rx, ry, color="C1", lw=1.5)
            twin.set_ylabel("outer learning rate", color="C1")
            twin.set_ylim(
                0, 1.1 * max(float(ry.max()) if len(ry) else 0.0, 1e-12)
            )
            twin.tick_params(axis="y", colors="C1")
        v = np.array([row[key] for row in history], dtype=float)
        ax.plot(steps, v, color="C0", alpha=0.25, lw=0.8)
        if len(v) >= window > 1:
            smooth = np.convolve(v, np.ones(window) / window, mode="valid")
            ax.plot(
                steps[window - 1 :],
                smooth,
                color="C0",
                lw=2,
                label=f"running mean of {window}",
            )
            ax.legend(fontsize=8)
        ax.set_xlabel(x)
        ax.set_ylabel(key)
        _thousands_ticks(ax, steps.max() if len(steps) else 0)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_image_maps(
    images: object,
    maps: object,
    *,
    titles: list[str] | None = None,
    map_label: str = "",
    symmetric: bool = True,
    suptitle: str | None = None,
) -> Figure:
    """Images (top row) and an explanation map for each (bottom row, drawn over
    the image).

    ``maps`` has the images' spatial shape; with ``symmetric`` the colour scale
    is centred on 0 (red raises the output, blue lowers it), else it runs from
    0 (white) to the maximum.
    """
    imgs = _np(images)
    imgs = imgs.reshape(-1, *imgs.shape[-2:])
    m = _np(maps).reshape(len(imgs), *imgs.shape[-2:])
    fig, axes = plt.subplots(
        2, len(imgs), figsize=(2.2 * len(imgs) + 0.8, 4.6), squeeze=False
    )
    lim = float(np.abs(m).max()) or 1.0
    for i, (img, mp) in enumerate(zip(imgs, m)):
        axes[0, i].imshow(img, cmap="gray_r", vmin=0, vmax=1)
        axes[1, i].imshow(img, cmap="gray_r", vmin=0, vmax=1, alpha=0.35)
        im = axes[1, i].imshow(
            mp,
            cmap="RdBu_r" if symmetric else "Reds",
            alpha=0.75,
            vmin=-lim if symmetric else 0.0,
            vmax=lim,
        )
        if titles:
            axes[0, i].set_title(titles[i], fontsize=8)
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.85, label=map_label)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def plot_support_attention(
    attention: object,
    support_images: object,
    query_images: object,
    *,
    support_labels: object | None = None,
    query_labels: object | None = None,
    title: str | None = None,
) -> Figure:
    """The attention matrix (queries x support examples) with the images along
    its edges."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    a = _np(attention)
    s = _np(support_images).reshape(
        a.shape[1], *_np(support_images).shape[-2:]
    )
    q = _np(query_images).reshape(a.shape[0], *_np(query_images).shape[-2:])
    fig, ax = plt.subplots(
        figsize=(0.8 * a.shape[1] + 3.0, 0.6 * a.shape[0] + 2.0)
    )
    im = ax.imshow(a, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    zoom = (
        30 / s.shape[-1]
    )  # about 30 points per thumbnail whatever the image size
    for j, img in enumerate(s):
        ax.add_artist(
            AnnotationBbox(
                OffsetImage(img, cmap="gray_r", zoom=zoom),
                (j, -0.5),
                xybox=(0, 20),
                boxcoords="offset points",
                frameon=False,
                annotation_clip=False,
            )
        )
    for i, img in enumerate(q):
        ax.add_artist(
            AnnotationBbox(
                OffsetImage(img, cmap="gray_r", zoom=zoom),
                (-0.5, i),
                xybox=(-20, 0),
                boxcoords="offset points",
                frameon=False,
                annotation_clip=False,
            )
        )
    if support_labels is not None:
        ax.set_xticks(
            range(a.shape[1]),
            [str(v) for v in _np(support_labels).ravel()],
            fontsize=8,
        )
        ax.set_xlabel("support example (label)")
    else:
        ax.set_xticks([])
    if query_labels is not None:
        ax.set_yticks(
            range(a.shape[0]),
            [str(v) for v in _np(query_labels).ravel()],
            fontsize=8,
        )
        ax.set_ylabel("query (true label)", labelpad=4)
    else:
        ax.set_yticks([])
    ax.tick_params(axis="y", pad=40)
    ax.tick_params(axis="x", top=False, labeltop=False)
    fig.colorbar(im, ax=ax, label="attention (each row sums to 1)")
    if title:
        ax.set_title(title, fontsize=10, pad=44)
    fig.tight_layout()
    return fig


def plot_activation_maps(
    image: object,
    activations: dict[str, object],
    *,
    channels: int = 8,
    title: str | None = None,
) -> Figure:
    """One image and the first ``channels`` feature maps of each recorded layer
    (one row each).

    ``activations`` maps a layer name to its output for this image,
    ``(C, H, W)`` or ``(1, C, H, W)``.
    """
    layers = list(activations)
    fig, axes = plt.subplots(
        len(layers),
        channels + 1,
        figsize=(1.15 * (channels + 1) + 0.6, 1.25 * len(layers) + 0.4),
        squeeze=False,
    )
    img = _np(image).reshape(*_np(image).shape[-2:])
    for r, name in enumerate(layers):
        act = _np(activations[name])
        act = (
            act.reshape(-1, *act.shape[-2:])
            if act.ndim >= 3
            else act.reshape(-1, 1, 1)
        )
        axes[r, 0].imshow(img, cmap="gray_r", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(
            f"{name}\n{act.shape[-2]}x{act.shape[-1]}",
            fontsize=8,
            rotation=0,
            ha="right",
            va="center",
        )
        top = max(float(act[:channels].max()), 1e-12)
        for c in range(min(channels, len(act))):
            axes[r, c + 1].imshow(act[c], cmap="magma", vmin=0, vmax=top)
            if r == 0:
                axes[r, c + 1].set_title(f"unit {c}", fontsize=8)
    return _finish_image_grid(fig, axes, title)


# =============================================================================
# Chapter 4: Siamese and prototypical networks (pairs, distances, margins,
# embeddings)
# =============================================================================


def plot_pairs(
    x1: object,
    x2: object,
    same: object,
    *,
    n: int = 8,
    title: str | None = None,
) -> Figure:
    """The first ``n`` pairs as two rows of images (left member above, right
    below), each column titled *same* or *different*."""
    a, b, s = _np(x1), _np(x2), _np(same).ravel()
    n = min(n, len(s))
    fig, axes = plt.subplots(2, n, figsize=(1.1 * n, 2.6), squeeze=False)
    for c in range(n):
        for r, img in enumerate((a[c], b[c])):
            ax = axes[r, c]
            ax.imshow(
                img.reshape(img.shape[-2:]), cmap="gray_r", vmin=0, vmax=1
            )
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_color("tab:green" if s[c] else "tab:red")
                sp.set_linewidth(2)
        axes[0, c].set_title(
            "same" if s[c] else "different",
            fontsize=8,
            color="tab:green" if s[c] else "tab:red",
        )
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_curve_panels(
    panels: list[tuple[str, dict[str, tuple[object, object]]]],
    *,
    xlabel: str = "iteration",
    title: str | None = None,
    ncols: int | None = None,
) -> Figure:
    """Line panels in a grid of ``ncols`` columns: each
    ``(panel title, {label: (x, y)})``."""
    ncols = len(panels) if ncols is None else ncols
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.6 * ncols, 3.2 * nrows), squeeze=False
    )
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    for ax, (name, lines) in zip(axes.ravel(), panels):
        for label, (x, y) in lines.items():
            ax.plot(
                _np(x).ravel(),
                _np(y).ravel(),
                marker="o" if len(_np(x).ravel()) < 20 else None,
                ms=3,
                label=label,
            )
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        _thousands_ticks(
            ax,
            max(
                (_np(x).max() for x, _ in lines.values() if _np(x).size),
                default=0,
            ),
        )
        if len(lines) > 1:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_distance_histograms(
    d_same: object,
    d_different: object,
    margin: float | None = None,
    *,
    ax: object = None,
    note: str | None = None,
    threshold: float | None = None,
    title: str | None = None,
) -> Figure:
    """Histograms of same-class and different-class pair distances, with the
    margin ``m`` (and optionally a decision threshold) drawn as vertical
    lines."""
    fig, ax = (
        plt.subplots(figsize=(5.5, 3.4)) if ax is None else (ax.figure, ax)
    )
    ds, dd = _np(d_same).ravel(), _np(d_different).ravel()
    top = float(np.percentile(np.concatenate([ds, dd]), 99.5))
    top = max(top, (margin or 0) * 1.1)
    bins = np.linspace(0, top, 40)
    ax.hist(ds, bins=bins, alpha=0.6, color="tab:green", label="same class")
    ax.hist(dd, bins=bins, alpha=0.6, color="tab:red", label="different class")
    if margin is not None:
        ax.axvline(margin, color="k", lw=2, label=f"margin m = {margin:g}")
    if threshold is not None:
        ax.axvline(
            threshold,
            color="tab:blue",
            ls="--",
            lw=1.5,
            label=f"threshold {threshold:.2f}",
        )
    ax.set_xlabel("distance d(f(x1), f(x2))")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=8, loc="upper right")
    if note:
        ax.text(
            0.98,
            0.55,
            note,
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"},
        )
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_points_2d(
    points: object,
    labels: object,
    *,
    ax: object = None,
    circles: float | None = None,
    names: list[str] | None = None,
    title: str | None = None,
    legend: bool = True,
    ticks: bool = False,
) -> Figure:
    """A 2-D scatter coloured by ``labels``; with ``circles=r``, a circle of
    radius ``r`` around each class mean (disjoint circles of radius m/2: class
    means at least m apart).
    """
    fig, ax = (
        plt.subplots(figsize=(5.2, 4.6)) if ax is None else (ax.figure, ax)
    )
    p, y = _np(points), _np(labels).ravel()
    classes = list(dict.fromkeys(y.tolist()))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for k, c in enumerate(classes):
        pts = p[y == c]
        colour = cmap(k % cmap.N)
        ax.scatter(
            pts[:, 0],
            pts[:, 1],
            s=12,
            color=colour,
            alpha=0.8,
            label=str(names[k] if names else c),
        )
        if circles:
            ax.add_patch(
                plt.Circle(
                    pts.mean(0), circles, fill=False, color=colour, lw=1
                )
            )
    ax.set_aspect("equal", adjustable="datalim")
    if (
        not ticks
    ):  # t-SNE axes carry no meaning; a trained 2-D embedding's scale does
        ax.set_xticks([])
        ax.set_yticks([])
    if legend:
        ax.legend(
            fontsize=7,
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            markerscale=1.5,
        )
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_margin_frame(
    d_same: object,
    d_different: object,
    margin: float,
    note: str,
    points: object,
    labels: object,
    *,
    title: str | None = None,
) -> Figure:
    """The margin slider's frame: distance histograms of a trained model at
    margin ``m`` (left) and a 2-D embedding trained for that ``m`` (right)."""
    fig, axes = plt.subplots(
        1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.2, 1]}
    )
    plot_distance_histograms(
        d_same,
        d_different,
        margin,
        ax=axes[0],
        note=note,
        title="trained model: distances of fixed pairs",
    )
    plot_points_2d(
        points,
        labels,
        ax=axes[1],
        circles=margin / 2,
        legend=False,
        ticks=True,
        title="2-D embedding trained live, circles of radius m/2",
    )
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_interval_panels(
    runs: dict[str, dict[str, tuple[float, float]]],
    *,
    targets: dict[str, tuple[float, str]] | None = None,
    highlight: tuple[str, ...] = (),
    highlight_label: str = "",
    title: str | None = None,
) -> Figure:
    """One row per run and one panel per measure, each value a dot with its 95%
    confidence interval (a forest plot). ``runs`` maps a run's name to
    ``{measure: (mean, ci95)}``; ``targets`` maps a measure to
    ``(value, label)``, drawn as a dashed vertical line; the runs named in
    ``highlight`` (for example one recipe trained from several seeds) are drawn
    in a second colour, so that a reader can see whether the runs differ by
    more than the seeds do, and by more than each measure's own uncertainty."""
    names = list(runs)
    measures = list(dict.fromkeys(m for r in runs.values() for m in r))
    fig, axes = plt.subplots(
        1,
        len(measures),
        figsize=(4.4 * len(measures) + 0.8, 0.3 * len(names) + 1.4),
        sharey=True,
        squeeze=False,
    )
    ys = np.arange(len(names))[::-1]  # first run at the top
    for ax, measure in zip(axes[0], measures):
        for y, name in zip(ys, names):
            if measure not in runs[name]:
                continue
            mean, ci = runs[name][measure]
            ax.errorbar(
                mean,
                y,
                xerr=ci,
                fmt="o",
                ms=4,
                capsize=2,
                lw=1,
                color="tab:orange" if name in highlight else "tab:blue",
            )
        if targets and measure in targets:
            value, label = targets[measure]
            ax.axvline(value, color="k", ls="--", lw=1, label=label)
            ax.legend(fontsize=8, loc="lower left")
        ax.set_xlabel(measure, fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    axes[0][0].set_yticks(ys, names, fontsize=8)
    axes[0][0].set_ylim(-0.7, len(names) - 0.3)
    if highlight and highlight_label:
        axes[0][-1].plot(
            [], [], "o", color="tab:orange", label=highlight_label
        )
        axes[0][-1].legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_image_rows(
    rows: list[list[object]],
    *,
    row_labels: list[str] | None = None,
    colours: list[list[str | None]] | None = None,
    titles: list[list[str]] | None = None,
    title: str | None = None,
    size: float = 1.0,
) -> Figure:
    """A grid of small images, one list per row; ``colours[r][c]`` frames an
    image (e.g. green for a correct retrieval, red for a wrong one)."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(size * n_cols + 0.8, size * n_rows + 0.5),
        squeeze=False,
    )
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            img = _np(row[c])
            ax.imshow(
                img.reshape(img.shape[-2:]), cmap="gray_r", vmin=0, vmax=1
            )
            colour = colours[r][c] if colours else None
            for sp in ax.spines.values():
                sp.set_color(colour or "0.7")
                sp.set_linewidth(2.5 if colour else 0.5)
            if titles and titles[r][c]:
                ax.set_title(titles[r][c], fontsize=7)
        if row_labels:
            axes[r, 0].set_ylabel(
                row_labels[r], fontsize=8, rotation=0, ha="right", va="center"
            )
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_loss_gradients(
    distance: object, curves: dict[str, dict[str, object]], margin: float
) -> Figure:
    """The two contrastive losses (left) and their derivatives dL/dd (right),
    for same-class (solid) and different-class (dashed) pairs, as
    :func:`mlkit.siamese.loss_gradient_curves` returns them."""
    d = _np(distance).ravel()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    colours = {"source": "tab:blue", "hadsell": "tab:orange"}
    names = {
        "source": "source: d, max(0, m-d)",
        "hadsell": "Hadsell: d²/2, max(0, m-d)²/2",
    }
    for form, c in curves.items():
        for kind, ls in (("same", "-"), ("different", "--")):
            axes[0].plot(
                d,
                _np(c[kind]),
                ls,
                color=colours.get(form),
                label=f"{names.get(form, form)} ({kind})",
            )
            axes[1].plot(
                d,
                _np(c["grad_" + kind]),
                ls,
                color=colours.get(form),
                label=f"{form}, {kind}",
            )
    for ax, name in zip(
        axes, ("loss per pair", "dL/dd (positive: pulled together)")
    ):
        ax.axvline(margin, color="k", lw=1, alpha=0.5)
        ax.axhline(0, color="k", lw=0.5, alpha=0.5)
        ax.set_xlabel("distance d")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


# --- Chapters 1 and 2 (continued) ---


def plot_weight_change(
    changes: dict[str, object],
    *,
    ylabel: str = "relative change",
    title: str | None = None,
    ax: plt.Axes | None = None,
) -> Figure:
    """Mean (bar) and 95% interval (whisker) over tasks of each parameter
    tensor's change."""
    fig, ax = (
        plt.subplots(figsize=(6.5, 3.2)) if ax is None else (ax.figure, ax)
    )
    names = list(changes)
    vals = [_np(changes[n]).ravel() for n in names]
    means = [v.mean() for v in vals]
    halves = [
        1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
        for v in vals
    ]
    colors = ["C1" if n.startswith("head") else "C0" for n in names]
    ax.bar(range(len(names)), means, yerr=halves, color=colors, capsize=3)
    ax.set_xticks(
        range(len(names)), names, rotation=30, ha="right", fontsize=8
    )
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# =============================================================================
# Chapter 5: the mathematics (meta-gradients, linear MAML, cost, contrastive
# toy)
# =============================================================================


def plot_meta_gradient_agreement(rows: list[dict[str, float]]) -> Figure:
    """First-order and Hessian-vector-product meta-gradients against autograd's
    along a meta-training run (:func:`mlkit.theory.first_order_drift`): cosine
    (left), norm ratio (right)."""
    it = [r["iteration"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
    for ax, key, name in (
        (axes[0], "cosine", "cosine with autograd"),
        (axes[1], "norm_ratio", "norm / autograd's norm"),
    ):
        ax.plot(it, [r[key] for r in rows], "o-", label="first order")
        ax.plot(
            it,
            [r["hvp_" + key] for r in rows],
            "s--",
            label="Hessian-vector products",
        )
        ax.axhline(1.0, color="k", lw=0.6, alpha=0.5)
        ax.set_xlabel("meta-training iteration")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_linear_maml(
    task_optima: object,
    grid_w: object,
    grid_b: object,
    objective: object,
    closed: object,
    path: object,
    *,
    pooled: object | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (6.2, 4.6),
) -> Figure:
    """The linear MAML problem in the plane of ``theta = (w, b)``: contour
    lines of the MAML objective, each task's own least-squares fit (grey dots),
    the closed-form optimum (star), the path of meta-training (line, ending in
    a cross) and optionally the pooled fit.
    """
    fig, ax = plt.subplots(figsize=figsize)
    z = _np(objective)
    levels = np.quantile(z, [0.002, 0.01, 0.03, 0.07, 0.15, 0.3, 0.5, 0.7])
    cs = ax.contour(
        _np(grid_w),
        _np(grid_b),
        z,
        levels=np.unique(levels),
        cmap="viridis",
        linewidths=0.8,
    )
    ax.clabel(cs, fontsize=6, fmt="%.2g")
    t = _np(task_optima)
    ax.scatter(t[:, 0], t[:, 1], c="0.6", s=18, label="each task's own fit")
    if pooled is not None:
        p = _np(pooled)
        ax.scatter(
            [p[0]],
            [p[1]],
            marker="D",
            c="tab:green",
            s=40,
            zorder=5,
            label="pooled fit (0 inner steps)",
        )
    pa = _np(path)
    ax.plot(pa[:, 0], pa[:, 1], "-", color="tab:red", lw=1.2, alpha=0.8)
    ax.scatter(
        [pa[-1, 0]],
        [pa[-1, 1]],
        marker="x",
        c="tab:red",
        s=70,
        zorder=6,
        label="trained by mlkit.maml",
    )
    c = _np(closed)
    ax.scatter(
        [c[0]],
        [c[1]],
        marker="*",
        facecolors="none",
        edgecolors="k",
        s=260,
        zorder=7,
        label="closed-form optimum",
    )
    ax.set_xlim(float(_np(grid_w).min()), float(_np(grid_w).max()))
    ax.set_ylim(float(_np(grid_b).min()), float(_np(grid_b).max()))
    ax.set_xlabel("slope w")
    ax.set_ylabel("intercept b")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def plot_meta_gradient_cost(rows: list[dict[str, object]]) -> Figure:
    """Time (left) and autograd memory (right) of one meta-gradient against the
    number of inner steps, second against first order
    (:func:`mlkit.theory.meta_gradient_cost`).
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for order, style in (("second", "o-"), ("first", "s--")):
        sel = [r for r in rows if r["order"] == order]
        k = [r["inner_steps"] for r in sel]
        axes[0].plot(
            k,
            [1e3 * float(r["seconds"]) for r in sel],
            style,
            label=f"{order} order",
        )
        axes[1].plot(
            k,
            [float(r["graph_bytes"]) / 1024 for r in sel],
            style,
            label=f"{order} order",
        )
    axes[0].set_ylabel("milliseconds per meta-gradient")
    axes[1].set_ylabel("KiB held for backward (peak)")
    steps = sorted({int(r["inner_steps"]) for r in rows})
    for ax in axes:
        ax.set_xlabel("inner steps")
        ax.set_xticks(
            steps
        )  # a linear axis: linear growth in the steps shows as a line
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_contrastive_toy(
    snapshots: object,
    labels: object,
    margin: float,
    *,
    radius: float | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (9, 4.2),
) -> Figure:
    """Free 2-D points moved by a contrastive loss
    (:func:`mlkit.theory.contrastive_toy`): the start (left) and the end
    (right). On the right each class centre carries a circle of radius m/2: two
    circles overlap exactly when their centres are closer than the margin.
    """
    s = _np(snapshots)
    y = _np(labels)
    fig, axes = plt.subplots(1, 2, figsize=figsize)
    lim = max(float(np.abs(s).max()), (radius or 0.0)) * 1.1 + margin / 2
    for ax, pts, name in (
        (axes[0], s[0], "start"),
        (axes[1], s[-1], "after training"),
    ):
        for c in np.unique(y):
            ax.scatter(
                pts[y == c, 0],
                pts[y == c, 1],
                s=22,
                color=f"C{int(c)}",
                label=f"class {int(c)}",
            )
            if name != "start":
                ctr = pts[y == c].mean(0)
                ax.add_patch(
                    plt.Circle(
                        tuple(ctr),
                        margin / 2,
                        fill=False,
                        ls="--",
                        lw=0.8,
                        color=f"C{int(c)}",
                    )
                )
        if radius is not None:
            ax.add_patch(
                plt.Circle(
                    (0, 0), radius, fill=False, color="k", lw=0.6, alpha=0.5
                )
            )
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.2)
    axes[0].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# =============================================================================
# Chapter 6: opening the box (CKA per layer, inner-loop trajectories,
# attributions, support influence, the debugging case study)
# =============================================================================


def plot_cka_layers(
    cka: dict[str, object],
    *,
    references: dict[str, float] | None = None,
    title: str | None = None,
    ax: plt.Axes | None = None,
) -> Figure:
    """CKA per layer (bars: mean over tasks; whiskers: 95% interval) for one or
    more settings, ``{setting: {layer: per-task values}}``; ``references``
    draws horizontal lines (e.g. Raghu et al.'s 0.9 for the body and 0.5 for
    the head)."""
    fig, ax = plt.subplots(figsize=(7, 3.4)) if ax is None else (ax.figure, ax)
    settings = list(cka)
    layers = list(next(iter(cka.values())))
    width = 0.8 / len(settings)
    for k, s in enumerate(settings):
        vals = [_np(cka[s][lay]).ravel() for lay in layers]
        means = [v.mean() for v in vals]
        halves = [
            1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
            for v in vals
        ]
        ax.bar(
            np.arange(len(layers)) + (k - (len(settings) - 1) / 2) * width,
            means,
            width,
            yerr=halves,
            capsize=3,
            label=s,
        )
    for name, y in (references or {}).items():
        ax.axhline(y, color="k", ls="--", lw=1)
        ax.text(
            len(layers) - 0.5, y, name, ha="right", va="bottom", fontsize=8
        )
    ax.set_xticks(range(len(layers)), layers)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("linear CKA before vs after")
    if len(settings) > 1:
        ax.legend(fontsize=8, loc="lower left")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_accuracy_curves(
    curves: dict[str, object],
    *,
    xlabel: str = "inner steps",
    ylabel: str = "query accuracy (%)",
    chance: float | None = None,
    title: str | None = None,
    ax: plt.Axes | None = None,
) -> Figure:
    """Mean accuracy with a 95% band over tasks:
    ``{label: (steps, per-task values (tasks, steps))}``; ``chance`` draws the
    chance level."""
    fig, ax = plt.subplots(figsize=(6, 3.4)) if ax is None else (ax.figure, ax)
    for label, (x, v) in curves.items():
        v = _np(v)
        v = v.reshape(-1, len(_np(x).ravel()))
        m = v.mean(0)
        half = (
            1.96 * v.std(0, ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0 * m
        )
        xs = _np(x).ravel()
        ax.plot(xs, m, marker="o", ms=3, label=label)
        ax.fill_between(xs, m - half, m + half, alpha=0.2)
    if chance is not None:
        ax.axhline(chance, color="0.5", ls=":", lw=1, label="chance")
    return _finish_line_axes(fig, ax, xlabel, ylabel, title)


def plot_trajectory(
    support_loss: object,
    query_loss: object,
    step_size: dict[str, object],
    *,
    upto: int | None = None,
    title: str | None = None,
) -> Figure:
    """The inner loop, step by step: support and query loss (left) and the size
    of each step per layer, ``||theta_t - theta_{t-1}||`` (right, log scale),
    drawn up to step ``upto`` (the slider's value) with the rest greyed out."""
    sl, ql = _np(support_loss).ravel(), _np(query_loss).ravel()
    steps = np.arange(len(sl))
    upto = len(sl) - 1 if upto is None else upto
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for y, label, c in ((sl, "support loss", "C0"), (ql, "query loss", "C1")):
        axes[0].plot(steps, y, color=c, alpha=0.25)
        axes[0].plot(
            steps[: upto + 1],
            y[: upto + 1],
            marker="o",
            ms=3,
            color=c,
            label=label,
        )
    axes[0].axvline(upto, color="k", lw=0.8, alpha=0.5)
    axes[0].set_xlabel("inner step t")
    axes[0].set_ylabel("cross-entropy")
    axes[0].set_yscale("symlog", linthresh=0.1)
    axes[0].set_ylim(
        bottom=0
    )  # losses are never negative; symlog would show a negative band
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    for k, (layer, v) in enumerate(step_size.items()):
        v = _np(v).ravel()
        xs = np.arange(1, len(v) + 1)
        axes[1].plot(xs, v, color=f"C{k}", alpha=0.25)
        axes[1].plot(
            xs[:upto], v[:upto], marker="o", ms=3, color=f"C{k}", label=layer
        )
    axes[1].set_yscale("log")
    axes[1].set_xlim(0.5, len(sl) - 0.5)
    axes[1].set_xlabel("inner step t")
    axes[1].set_ylabel("step size per layer")
    axes[1].legend(fontsize=8, ncol=2)
    axes[1].grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_activation_change(
    per_step: dict[str, object],
    per_unit: dict[str, object],
    *,
    title: str | None = None,
) -> Figure:
    """Relative change of each layer's activations across inner steps (left)
    and the change of every unit after the last step, sorted, one line per
    layer (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for k, (layer, v) in enumerate(per_step.items()):
        v = _np(v).ravel()
        axes[0].plot(
            range(len(v)), v, marker="o", ms=3, color=f"C{k}", label=layer
        )
    axes[0].set_xlabel("inner step t")
    axes[0].set_ylabel("||a_t - a_0|| / ||a_0||")
    axes[0].set_yscale("symlog", linthresh=0.01)
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    for k, (layer, v) in enumerate(per_unit.items()):
        v = np.sort(_np(v).ravel())[::-1]
        axes[1].plot(
            np.linspace(0, 1, len(v)),
            v,
            color=f"C{k}",
            label=f"{layer} ({len(v)})",
        )
    axes[1].set_xlabel("units, sorted by change (fraction of the layer)")
    axes[1].set_ylabel("mean |change| / mean |a_0|")
    axes[1].set_yscale("log")
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_attribution_grid(
    images: object,
    maps: dict[str, object],
    *,
    row_labels: list[str] | None = None,
    title: str | None = None,
) -> Figure:
    """One row per image: the image, then one attribution map per column of
    ``maps`` (``{column title: maps (n, H, W)}``), each map on its own
    symmetric colour scale (red raises the score, blue lowers it) so that
    before and after can be compared by pattern.
    """
    imgs = _np(images)
    imgs = imgs.reshape(-1, *imgs.shape[-2:])
    cols = list(maps)
    fig, axes = plt.subplots(
        len(imgs),
        len(cols) + 1,
        figsize=(1.6 * (len(cols) + 1) + 0.6, 1.6 * len(imgs) + 0.5),
        squeeze=False,
    )
    for r, img in enumerate(imgs):
        axes[r, 0].imshow(img, cmap="gray_r", vmin=0, vmax=1)
        if row_labels:
            axes[r, 0].set_ylabel(
                row_labels[r], fontsize=8, rotation=0, ha="right", va="center"
            )
        for c, name in enumerate(cols):
            m = _np(maps[name]).reshape(len(imgs), *imgs.shape[-2:])[r]
            lim = float(np.abs(m).max()) or 1.0
            axes[r, c + 1].imshow(
                img, cmap="gray_r", vmin=0, vmax=1, alpha=0.3
            )
            axes[r, c + 1].imshow(
                m, cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.8
            )
            if r == 0:
                axes[r, c + 1].set_title(name, fontsize=8)
    axes[0, 0].set_title("image", fontsize=8)
    return _finish_image_grid(fig, axes, title)


def plot_support_influence(
    query: object,
    support: object,
    loo: object,
    grad_maps: object,
    grad_score: object,
    *,
    support_labels: object,
    query_label: int | None = None,
    title: str | None = None,
) -> Figure:
    """Which support examples moved one query's prediction. Left: the query.
    Middle: the support set, one row per class, each image framed by its
    leave-one-out influence (red: removing it raises the query's loss) with the
    value above; then the gradient map ``-dL/dx`` of each image (red: more ink
    there would lower the loss). Right: leave-one-out influence against the
    gradient estimate."""
    s = _np(support)
    s = s.reshape(-1, *s.shape[-2:])
    g = _np(grad_maps).reshape(s.shape)
    lo, gs = _np(loo).ravel(), _np(grad_score).ravel()
    y = _np(support_labels).ravel()
    classes = list(dict.fromkeys(y.tolist()))
    k = max(int((y == c).sum()) for c in classes)
    fig = plt.figure(
        figsize=(0.95 * (2 * k + 1) + 4.0, 1.05 * len(classes) + 0.9)
    )
    grid = fig.add_gridspec(
        len(classes),
        2 * k + 3,
        width_ratios=[1.1] + [1] * k + [0.3] + [1] * k + [3.6],
        left=0.03,
        right=0.93,
        bottom=0.1,
        top=0.86,
        wspace=0.08,
        hspace=0.45,
    )
    qa = fig.add_subplot(grid[len(classes) // 2, 0])
    qa.imshow(_np(query).reshape(s.shape[-2:]), cmap="gray_r", vmin=0, vmax=1)
    qa.set_title(
        "query"
        + (f"\n(label {query_label})" if query_label is not None else ""),
        fontsize=8,
    )
    qa.set_xticks([])
    qa.set_yticks([])
    lim_l = float(np.abs(lo).max()) or 1.0
    lim_g = float(np.abs(g).max()) or 1.0
    cmap = plt.get_cmap("RdBu_r")
    for r, c in enumerate(classes):
        idx = np.flatnonzero(y == c)
        for j, i in enumerate(idx):
            a = fig.add_subplot(grid[r, 1 + j])
            a.imshow(s[i], cmap="gray_r", vmin=0, vmax=1)
            for sp in a.spines.values():
                sp.set_color(cmap(0.5 + 0.5 * lo[i] / lim_l))
                sp.set_linewidth(3)
            a.set_title(f"{lo[i]:+.2g}", fontsize=7, pad=2)
            b = fig.add_subplot(grid[r, k + 2 + j])
            b.imshow(-g[i], cmap="RdBu_r", vmin=-lim_g, vmax=lim_g)
            for ax in (a, b):
                ax.set_xticks([])
                ax.set_yticks([])
            if j == 0:
                a.set_ylabel(f"class {c}", fontsize=8)
            if r == 0 and j == k // 2:
                a.text(
                    0.5,
                    1.55,
                    "support images: leave-one-out ΔL",
                    fontsize=8,
                    ha="center",
                    transform=a.transAxes,
                )
                b.text(
                    0.5,
                    1.55,
                    "-dL/dx (through the learner)",
                    fontsize=8,
                    ha="center",
                    transform=b.transAxes,
                )
    sc = fig.add_subplot(grid[:, -1])
    own = (
        y == query_label if query_label is not None else np.zeros(len(y), bool)
    )
    sc.scatter(gs[~own], lo[~own], s=14, label="other classes")
    if own.any():
        sc.scatter(
            gs[own], lo[own], s=20, color="C3", label="the query's class"
        )
        sc.legend(fontsize=7)
    sc.axhline(0, color="0.6", lw=0.6)
    sc.axvline(0, color="0.6", lw=0.6)
    sc.set_xlabel("gradient estimate -<dL/dx, x>", fontsize=8)
    sc.set_ylabel("leave-one-out ΔL", fontsize=8)
    sc.tick_params(labelsize=7)
    sc.yaxis.set_label_position("right")
    sc.yaxis.tick_right()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_metric_bars(
    values: dict[str, dict[str, float]], *, title: str | None = None
) -> Figure:
    """Small side-by-side bar panels, one per metric:
    ``{metric: {setting: value}}`` (the case study's before-and-after
    numbers)."""
    fig, axes = plt.subplots(
        1, len(values), figsize=(2.6 * len(values) + 0.6, 3.0), squeeze=False
    )
    for ax, (metric, row) in zip(axes[0], values.items()):
        names = list(row)
        ax.bar(
            range(len(names)),
            [row[n] for n in names],
            color=[f"C{k}" for k in range(len(names))],
        )
        ax.set_xticks(range(len(names)), names, fontsize=8, rotation=15)
        ax.set_title(metric, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# =============================================================================
# Chapter 3: MAML
# =============================================================================


def plot_adaptation_panels(
    x: object,
    panels: dict[str, dict[str, object]],
    *,
    ncols: int = 2,
    title: str | None = None,
) -> Figure:
    """A grid of sinusoid panels in the style of Finn et al.'s Figure 2.

    ``panels`` maps a panel title to
    ``{"truth": y, "support_x": .., "support_y": .., "curves": {label: y}}``
    with every curve evaluated on ``x``.
    """
    n = len(panels)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(5.2 * ncols, 3.2 * nrows),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    xs = _np(x).ravel()
    for ax, (name, p) in zip(axes.ravel(), panels.items()):
        ax.plot(
            xs, _np(p["truth"]).ravel(), "k--", lw=1.5, label="true function"
        )
        for i, (label, y) in enumerate(p["curves"].items()):
            ax.plot(xs, _np(y).ravel(), lw=1.8, color=f"C{i}", label=label)
        ax.scatter(
            _np(p["support_x"]).ravel(),
            _np(p["support_y"]).ravel(),
            c="k",
            s=30,
            zorder=5,
            label="support points",
        )
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    axes.ravel()[0].legend(fontsize=7, loc="lower left")
    for ax in axes[-1]:
        ax.set_xlabel("x")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_sinusoid_explorer(
    x: object,
    truth: object,
    support_x: object,
    support_y: object,
    prediction: object,
    query_mse: float,
    *,
    inner_steps: int,
    alpha: float,
) -> Figure:
    """One frame of the inner-steps / alpha explorer: the fit after adaptation
    and its error."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    xs = _np(x).ravel()
    ax.plot(xs, _np(truth).ravel(), "k--", lw=1.5, label="true function")
    ax.plot(
        xs,
        _np(prediction).ravel(),
        lw=2,
        color="C0",
        label=(
            f"MAML after {inner_steps} "
            f"step{'s' if inner_steps != 1 else ''}"
        ),
    )
    ax.scatter(
        _np(support_x).ravel(),
        _np(support_y).ravel(),
        c="k",
        s=30,
        zorder=5,
        label="support points",
    )
    ax.set_ylim(-6, 6)
    ax.set_title(
        f"inner steps = {inner_steps}, α = {alpha:g}: query MSE "
        f"{query_mse:.3f}",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="lower left")
    ax.set_xlabel("x")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_step_bars(
    rows: dict[str, float], *, ylabel: str, title: str | None = None
) -> Figure:
    """A single bar chart: one bar per variant (e.g. seconds per meta-step)."""
    fig, ax = plt.subplots(figsize=(5.0, 3.0))
    names = list(rows)
    ax.bar(
        range(len(names)),
        [rows[n] for n in names],
        color=[f"C{k}" for k in range(len(names))],
    )
    ax.set_xticks(range(len(names)), names, fontsize=9)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_error_curves(
    curves: dict[str, tuple[object, object]],
    *,
    ylabel: str,
    title: str | None = None,
    logy: bool = True,
) -> Figure:
    """Median and interquartile band over tasks against inner steps:
    ``{label: (steps, values (steps, tasks))}``. The median, because a few
    diverging tasks would dominate a mean."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for i, (label, (x, v)) in enumerate(curves.items()):
        v = _np(v)
        xs = _np(x).ravel()
        lo, med, hi = np.nanpercentile(v, [25, 50, 75], axis=1)
        ax.plot(xs, med, marker="o", ms=3, color=f"C{i}", label=label)
        ax.fill_between(xs, lo, hi, color=f"C{i}", alpha=0.15)
    if logy:
        ax.set_yscale("log")
    return _finish_line_axes(fig, ax, "inner steps", ylabel, title)


# =============================================================================
# The head-to-head comparison (mlkit.compare)
# =============================================================================


def plot_head_to_head(
    result: dict,
    *,
    learners: list[str] | None = None,
    zoom_below: float | None = 90.0,
    title: str | None = None,
) -> Figure:
    """Query accuracy against shots per class, one line per learner with its
    95% interval as error bars, from :func:`mlkit.compare.run_comparison`'s
    result (or the stored ``head_to_head.json``, whose ``"learners"`` it
    reads).

    The left panel shows every learner with chance (1/N) as a floor; the right
    one zooms onto the learners whose every mean is at least ``zoom_below``
    percent (``None``: no zoomed panel).
    """
    table = (
        result.get("learners", result) if isinstance(result, dict) else None
    )
    if not isinstance(table, dict) or not table:
        raise ValueError(
            "result must be a dict of learners (or hold one under "
            "'learners') with 'accuracy' per shot count"
        )
    names = list(table) if learners is None else list(learners)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(
            f"learners holds names not in result: {unknown}; "
            f"allowed: {list(table)}"
        )
    n_way = result.get("n_way") if isinstance(result, dict) else None
    panels = 1 if zoom_below is None else 2
    fig, axes = plt.subplots(
        1, panels, figsize=(4.2 * panels + 1.4, 3.6), squeeze=False
    )
    axes = axes[0]
    top = [
        n
        for n in names
        if zoom_below is not None
        and min(v["mean"] for v in table[n]["accuracy"].values()) >= zoom_below
    ]
    for p, ax in enumerate(axes):
        shown = names if p == 0 else top
        for i, name in enumerate(names):
            if name not in shown:
                continue
            acc = table[name]["accuracy"]
            ks = sorted(acc, key=float)
            x = np.array([float(k) for k in ks])
            # a small offset per learner keeps the error bars apart
            x = x * (1.0 + 0.03 * (i - (len(names) - 1) / 2))
            floor = name == "pixels"
            ax.errorbar(
                x,
                [acc[k]["mean"] for k in ks],
                yerr=[acc[k]["ci95"] for k in ks],
                marker="o",
                ms=3.5,
                capsize=2.5,
                lw=1.2,
                color="0.45" if floor else f"C{i}",
                ls="--" if floor else "-",
                label=table[name].get("label", name),
            )
        if p == 0 and n_way:
            ax.axhline(
                100.0 / n_way,
                color="0.6",
                ls=":",
                lw=1,
                label=f"chance (1 in {n_way})",
            )
        ax.set_xscale("log")
        ticks = sorted({float(k) for n in names for k in table[n]["accuracy"]})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("shots per class (K)")
        ax.set_ylabel("query accuracy (%)")
        ax.grid(alpha=0.3)
        ax.set_title(
            (
                "all learners"
                if p == 0
                else f"zoomed: learners above {zoom_below:g}%"
            ),
            fontsize=10,
        )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        fontsize=8,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
    )
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# =============================================================================
# Meta-SGD (chapters 3 and 6): the inner rates it learns
# =============================================================================


def plot_learned_rates(
    rows: list[dict[str, object]],
    *,
    alpha0: float | None = None,
    title: str | None = None,
    logy: bool = False,
) -> Figure:
    """Meta-SGD's learned inner rates, one bar per parameter tensor.

    ``rows`` come from :func:`mlkit.maml.learned_rate_summary`: the bar is the
    mean :math:`|\\alpha|` over the tensor's entries, the whisker its
    interquartile range, the colour the layer (``body.0`` ... ``head``);
    ``alpha0`` draws the rate every entry started from (MAML's alpha) as a
    dashed line.
    """
    keys = ("parameter", "layer", "mean_abs", "q25_abs", "q75_abs")
    if (
        isinstance(rows, (str, bytes, dict))
        or not isinstance(rows, (list, tuple))
        or not (
            rows
            and all(
                isinstance(r, dict) and all(k in r for k in keys) for r in rows
            )
        )
    ):
        raise ValueError(
            f"rows must be a non-empty list of learned_rate_summary rows "
            f"(dicts with {list(keys)}), got {type(rows).__name__}"
        )
    if alpha0 is not None and (
        isinstance(alpha0, bool)
        or not isinstance(alpha0, (int, float))
        or not 0 < alpha0 < float("inf")
    ):
        raise ValueError(
            f"alpha0 must be None or a positive number, got {alpha0!r}"
        )
    if not isinstance(logy, bool):
        raise ValueError(f"logy must be True or False, got {logy!r}")
    fig, ax = plt.subplots(figsize=(7.6, 3.4))
    layers = list(dict.fromkeys(str(r["layer"]) for r in rows))
    colour = {lay: f"C{i}" for i, lay in enumerate(layers)}
    mean = np.array([float(r["mean_abs"]) for r in rows])
    low = mean - np.array([float(r["q25_abs"]) for r in rows])
    high = np.array([float(r["q75_abs"]) for r in rows]) - mean
    # the mean can lie outside the quartiles of a skewed tensor: no negative
    # whisker
    err = np.clip(np.stack([low, high]), 0.0, None)
    x = np.arange(len(rows))
    ax.bar(
        x,
        mean,
        yerr=err,
        capsize=2,
        color=[colour[str(r["layer"])] for r in rows],
    )
    ax.set_xticks(
        x,
        [str(r["parameter"]) for r in rows],
        rotation=60,
        ha="right",
        fontsize=7,
    )
    from matplotlib.patches import Patch

    handles = [Patch(color=colour[lay], label=lay) for lay in layers]
    if alpha0 is not None:
        handles.append(
            ax.axhline(
                alpha0,
                color="k",
                ls="--",
                lw=1,
                label=f"start (alpha = {alpha0:g})",
            )
        )
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("parameter tensor")
    ax.set_ylabel("mean |learned inner rate|")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(
        handles=handles,
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        frameon=False,
    )
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_cka_intervals(
    results: dict[str, dict[str, dict[str, dict[str, float]]]],
    *,
    title: str | None = None,
) -> Figure:
    """Chapter 6: CKA per layer with 95% intervals, one panel per model.

    ``results`` is ``{model: {layer: {comparison: {"estimate", "low",
    "high"}}}}`` (the stored ``inner-loop-cka`` measurement); each comparison
    is one series of points with interval bars."""
    models = list(results)
    fig, axes = plt.subplots(
        1,
        len(models),
        figsize=(3.6 * len(models), 3.4),
        sharey=True,
        squeeze=False,
    )
    for ax, name in zip(axes[0], models):
        layers = list(results[name])
        comps = list(results[name][layers[0]])
        for j, comp in enumerate(comps):
            est = np.array(
                [results[name][lay][comp]["estimate"] for lay in layers]
            )
            lo = np.array([results[name][lay][comp]["low"] for lay in layers])
            hi = np.array([results[name][lay][comp]["high"] for lay in layers])
            x = np.arange(len(layers)) + (j - (len(comps) - 1) / 2) * 0.2
            err = np.clip(np.stack([est - lo, hi - est]), 0.0, None)
            ax.errorbar(x, est, yerr=err, fmt="o", ms=4, capsize=3, label=comp)
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_xticks(range(len(layers)), layers)
        ax.set_xlabel("layer")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0, 0].set_ylabel("debiased CKA with the initialisation")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_attribution_maps(
    images: object,
    maps: dict[str, object],
    *,
    row_labels: list[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Like :func:`plot_attribution_grid`, with one symmetric colour scale
    per column and its colour bar (attribution per pixel: red raises the
    score, blue lowers it), so that maps of one column compare by value."""
    imgs = _np(images)
    imgs = imgs.reshape(-1, *imgs.shape[-2:])
    cols = list(maps)
    fig, axes = plt.subplots(
        len(imgs),
        len(cols) + 1,
        figsize=(1.9 * (len(cols) + 1) + 0.6, 1.6 * len(imgs) + 0.9),
        squeeze=False,
    )
    for c, name in enumerate(cols):
        m = _np(maps[name]).reshape(len(imgs), *imgs.shape[-2:])
        lim = float(np.abs(m).max()) or 1.0
        for r, img in enumerate(imgs):
            ax = axes[r, c + 1]
            ax.imshow(img, cmap="gray_r", vmin=0, vmax=1, alpha=0.3)
            im = ax.imshow(m[r], cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.8)
        axes[0, c + 1].set_title(name, fontsize=8)
        bar = fig.colorbar(
            im,
            ax=axes[:, c + 1].tolist(),
            orientation="horizontal",
            fraction=0.04,
            pad=0.02,
        )
        bar.ax.tick_params(labelsize=6)
        bar.set_label("attribution", fontsize=7)
    for r, img in enumerate(imgs):
        axes[r, 0].imshow(img, cmap="gray_r", vmin=0, vmax=1)
        if row_labels:
            axes[r, 0].set_ylabel(
                row_labels[r], fontsize=8, rotation=0, ha="right", va="center"
            )
    axes[0, 0].set_title("image", fontsize=8)
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_randomisation_check(
    curves: dict[str, tuple[object, object]],
    steps: list[str],
    *,
    title: str | None = None,
) -> Figure:
    """Adebayo et al. (2018)'s model-parameter randomisation check:
    ``{method: (mean, half-width of the 95% interval)}`` of the rank
    correlation with the trained model's map after re-initialising the
    layers named in ``steps`` cumulatively from the top."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    x = np.arange(len(steps))
    for name, (mean, half) in curves.items():
        ax.errorbar(
            x,
            _np(mean),
            yerr=_np(half),
            marker="o",
            ms=4,
            capsize=3,
            label=name,
        )
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xticks(x, steps, fontsize=8)
    ax.set_xlabel("layers re-initialised (cumulative, from the top)")
    ax.set_ylabel("Spearman rank correlation\nwith the trained map")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_subset_baseline(
    random_values: object,
    marks: dict[str, float],
    *,
    xlabel: str,
    title: str | None = None,
) -> Figure:
    """A statistic of chosen subsets against random subsets of the same size
    (chapter 6's MMD-critic prototypes): the histogram of
    ``random_values`` with its 2.5% and 97.5% percentiles dashed, and one
    vertical line per entry of ``marks`` (``{label: value}``)."""
    values = _np(random_values).ravel()
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    ax.hist(values, bins=30, color="0.75", label="random subsets")
    for q in np.percentile(values, [2.5, 97.5]):
        ax.axvline(q, color="0.4", ls="--", lw=0.8)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, (label, value) in enumerate(marks.items()):
        ax.axvline(
            float(value), color=colours[j % len(colours)], lw=2, label=label
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("random subsets (count)")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
