"""Small models that train in seconds, for the demonstrations of chapters 1
and 2.

The book's real learners live in :mod:`mlkit.maml`, :mod:`mlkit.siamese` and
:mod:`mlkit.protonet`, trained by ``python -m mlkit train``. The chapters that
introduce the ideas need something that trains while the reader waits:

* :func:`fit_from_scratch`: a sinusoid regressor fitted to a handful of points
  from a random initialisation (the "no meta-learning" baseline of chapter 1).
* :func:`train_tiny_protonet`: a small prototypical network (Snell et al. 2017)
  trained on a few hundred Omniglot episodes; :class:`PrototypeClassifier`
  turns its embedding and one support set into a classifier that the tools of
  :mod:`mlkit.interpret` can query.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import data
from .nets import InductiveConvEmbedding, SinusoidMLP
from .protonet import prototype_logits, prototypes, protonet_loss

__all__ = [
    "fit_from_scratch",
    "scratch_errors",
    "sinusoid_tasks_with_amplitudes",
    "PrototypeClassifier",
    "train_tiny_protonet",
    "evaluate_protonet",
    "episode_images_full_size",
    "sinusoid_weight_changes",
    "add_marker",
    "marker_shortcut",
]


def _check_int(name: str, value: int, minimum: int = 1) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < minimum
    ):
        raise ValueError(
            f"{name} must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


def _check_rate(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
        raise ValueError(
            f"{name} must be a positive finite number, got {value!r}"
        )
    return float(value)


# ------------------------------------------------- chapter 1: no meta-learning


def fit_from_scratch(
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    *,
    steps: int = 500,
    lr: float = 1e-2,
    hidden: tuple[int, ...] = (40, 40),
    seed: int = 0,
) -> SinusoidMLP:
    """Fit a fresh :class:`~mlkit.nets.SinusoidMLP` to one task's support set,
    ``steps`` Adam steps.

    Minimises the mean squared error on ``(support_x, support_y)`` (shapes
    ``(k, 1)``) from a random initialisation drawn with ``seed``: ordinary
    supervised learning, no prior tasks.
    """
    _check_int("steps", steps, 0)
    _check_rate("lr", lr)
    if (
        support_x.dim() != 2
        or support_x.shape[1] != 1
        or support_y.shape != support_x.shape
    ):
        raise ValueError(
            f"support_x and support_y must both be (k, 1), got "
            f"{tuple(support_x.shape)} and {tuple(support_y.shape)}"
        )
    torch.manual_seed(seed)
    model = SinusoidMLP(hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(model(support_x), support_y).backward()
        opt.step()
    return model.eval()


def scratch_errors(
    tasks: data.SinusoidTasks,
    *,
    steps: int = 300,
    lr: float = 1e-2,
    seed: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Query MSE of :func:`fit_from_scratch` on each task of a batch: one
    number per task."""
    from tqdm.auto import tqdm

    errors = []
    for i in tqdm(range(len(tasks)), disable=not progress, desc="tasks"):
        t = tasks.task(i)
        model = fit_from_scratch(
            t.support_x[0], t.support_y[0], steps=steps, lr=lr, seed=seed
        )
        with torch.no_grad():
            errors.append(F.mse_loss(model(t.query_x[0]), t.query_y[0]).item())
    return np.array(errors)


def sinusoid_tasks_with_amplitudes(
    amplitude: Sequence[float] | np.ndarray,
    k_shot: int,
    n_query: int,
    *,
    seed: int | np.random.Generator | None = None,
) -> data.SinusoidTasks:
    """Sinusoid tasks ``y = A sin(x - phi)`` with the given amplitudes, e.g.
    beyond Finn's range.

    Phases ~ U[0, pi] and inputs ~ U[-5, 5] as in
    :func:`mlkit.data.sample_sinusoid_tasks`; only the amplitudes are chosen by
    the caller (for probing a model outside its training distribution, which
    stops at 5.0).
    """
    amp = np.asarray(amplitude, dtype=np.float64).ravel()
    if amp.size == 0 or not np.all(np.isfinite(amp)):
        raise ValueError("amplitude must hold at least one finite number")
    _check_int("k_shot", k_shot)
    _check_int("n_query", n_query)
    rng = (
        seed
        if isinstance(seed, np.random.Generator)
        else np.random.default_rng(seed)
    )
    phase = rng.uniform(*data.SINUSOID_PHASE, size=amp.size)
    xs = rng.uniform(*data.SINUSOID_X, size=(amp.size, k_shot + n_query, 1))
    ys = amp[:, None, None] * np.sin(xs - phase[:, None, None])
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return data.SinusoidTasks(
        support_x=t(xs[:, :k_shot]),
        support_y=t(ys[:, :k_shot]),
        query_x=t(xs[:, k_shot:]),
        query_y=t(ys[:, k_shot:]),
        amplitude=t(amp),
        phase=t(phase),
    )


# -------------------------------------------- chapter 2: a tiny metric learner


class PrototypeClassifier(nn.Module):
    """A trained embedding plus one support set: an ordinary classifier of
    query images.

    ``forward(x)`` gives the prototype logits of images ``x`` ``(n, 1, S, S)``
    (:func:`mlkit.protonet.prototype_logits`); the prototypes are computed
    once, in ``eval()`` mode, so that each query's output depends on that query
    alone (what permutation importance and LIME need).
    """

    def __init__(
        self,
        embedding: nn.Module,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
    ) -> None:
        super().__init__()
        self.embedding = embedding.eval()
        self.n_way = int(support_y.max()) + 1
        self.register_buffer("support_y", support_y.clone())
        with torch.no_grad():
            self.register_buffer(
                "protos",
                prototypes(embedding(support_x), support_y, self.n_way),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return prototype_logits(self.embedding(x), self.protos)


def train_tiny_protonet(
    episodes: int = 300,
    *,
    n_way: int = 5,
    k_shot: int = 1,
    q_queries: int = 5,
    hidden: int = 32,
    lr: float = 2e-3,
    split: str = "background",
    seed: int = 0,
    progress: bool = False,
) -> tuple[InductiveConvEmbedding, list[dict[str, float]]]:
    """Train a small prototypical network on ``episodes`` Omniglot episodes
    (seconds on a CPU).

    Four conv blocks of ``hidden`` channels
    (:class:`~mlkit.nets.InductiveConvEmbedding`), episodes from the ``split``
    class pool (Lake's background alphabets by default), Adam at ``lr``, loss
    the cross-entropy of the prototype logits on the query set (Snell et al.
    2017). Returns the embedding in ``eval()`` mode and one row per episode
    with its loss and query accuracy.
    """
    from tqdm.auto import tqdm

    _check_int("episodes", episodes)
    _check_rate("lr", lr)
    _check_int("hidden", hidden)
    torch.manual_seed(seed)
    pool = data.omniglot_classes(split)
    sampler = data.EpisodeSampler(pool, n_way, k_shot, q_queries, seed=seed)
    net = InductiveConvEmbedding(hidden=hidden)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    history = []
    for i in tqdm(range(episodes), disable=not progress, desc="episodes"):
        ep = sampler.episode()
        net.train()
        loss, acc = protonet_loss(
            net, ep.support_x, ep.support_y, ep.query_x, ep.query_y, n_way
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(
            {"episode": i + 1, "loss": loss.item(), "accuracy": acc.item()}
        )
    return net.eval(), history


def evaluate_protonet(
    embedding: nn.Module,
    n_tasks: int = 100,
    *,
    n_way: int = 5,
    k_shot: int = 1,
    q_queries: int = 5,
    split: str = "evaluation",
    seed: int = 1,
) -> np.ndarray:
    """Query accuracy of the prototype classifier on ``n_tasks`` fresh episodes
    of ``split``.

    Returns one accuracy per episode (summarise with
    :func:`mlkit.stats.mean_ci95`).
    """
    _check_int("n_tasks", n_tasks)
    pool = data.omniglot_classes(split)
    sampler = data.EpisodeSampler(pool, n_way, k_shot, q_queries, seed=seed)
    accs = []
    with torch.no_grad():
        for _ in range(n_tasks):
            ep = sampler.episode()
            clf = PrototypeClassifier(embedding, ep.support_x, ep.support_y)
            accs.append(
                float((clf(ep.query_x).argmax(1) == ep.query_y).float().mean())
            )
    return np.array(accs)


def episode_images_full_size(
    pool: data.ClassPool,
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: np.ndarray,
) -> np.ndarray:
    """The 105x105 drawings behind an episode's 28x28 images, for display.

    Episodes hold the networks' 28x28 inputs; each image is matched to the
    drawing of its class that resizes to it exactly, and that drawing is
    returned at full size, rotated like the class. ``images`` ``(n, 1, S, S)``
    with ``labels`` (episode labels) and ``classes`` (the episode's pool
    classes); returns ``(n, 105, 105)``.
    """
    out = []
    for img, label in zip(images[:, 0].numpy(), labels.tolist()):
        cls = int(classes[label])
        small = pool.drawings(cls, np.arange(data.DRAWINGS))
        match = np.flatnonzero((small == img).all(axis=(-2, -1)))
        if len(match) == 0:
            raise ValueError(
                f"an image of label {label} is not a drawing of pool class "
                f"{cls}"
            )
        char_id = int(pool.char_ids[pool.char_index[cls]])
        full = data.character_images(char_id)[match[0]]
        out.append(np.rot90(full, k=int(pool.rotation[cls])))
    return np.stack(out)


# ------------------------------------------------------ chapter 1: why explain


def sinusoid_weight_changes(
    model: nn.Module,
    tasks: data.SinusoidTasks,
    *,
    inner_steps: int = 10,
    alpha: float = 0.01,
) -> dict[str, np.ndarray]:
    """Adapt ``model`` (MAML, all layers) to each task; how far each parameter
    tensor moved.

    Returns, per parameter name, one relative change
    ``||theta' - theta|| / ||theta||`` per task
    (:func:`mlkit.interpret.weight_change`).
    """
    from . import interpret, maml

    before = {n: p.detach() for n, p in model.named_parameters()}
    out: dict[str, list[float]] = {n: [] for n in before}
    for i in range(len(tasks)):
        t = tasks.task(i)
        fast = maml.adapt(
            model,
            t.support_x[0],
            t.support_y[0],
            loss_fn=maml.mse_loss,
            inner_steps=inner_steps,
            alpha=alpha,
            first_order=True,
        )
        for n, v in interpret.weight_change(before, fast).items():
            out[n].append(v)
    return {n: np.array(v) for n, v in out.items()}


def add_marker(
    images: torch.Tensor, *, size: int = 5, offset: int = 1
) -> torch.Tensor:
    """A copy of ``images`` ``(..., S, S)`` with a solid ``size x size`` ink
    square in the corner.

    The square starts ``offset`` pixels from the top-left corner: the "scanner
    stamp" of chapter 1's shortcut experiment, a feature unrelated to the
    character.
    """
    _check_int("size", size)
    _check_int("offset", offset, 0)
    if offset + size > images.shape[-1] or offset + size > images.shape[-2]:
        raise ValueError(
            "size + offset must fit in the image "
            f"({tuple(images.shape[-2:])}), got {size} + {offset}"
        )
    out = images.clone()
    out[..., offset : offset + size, offset : offset + size] = 1.0
    return out


def marker_shortcut(
    embedding: nn.Module,
    n_tasks: int = 100,
    *,
    n_way: int = 5,
    q_queries: int = 5,
    marked_label: int = 0,
    split: str = "evaluation",
    seed: int = 1000,
    mark: Callable[[torch.Tensor], torch.Tensor] = add_marker,
) -> dict[str, np.ndarray]:
    """A spurious feature in one support image, and what it does to a few-shot
    classifier.

    For each of ``n_tasks`` ``n_way``-way 1-shot episodes the support image of
    ``marked_label`` carries a marker (:func:`add_marker`), as if all examples
    of that class had come from one source. Per-episode query accuracies of the
    prototype classifier:

    * ``"clean"``: no marker anywhere (the honest reference);
    * ``"same source"``: the marker also on that class's queries, as a test set
      drawn from the same source would have it;
    * ``"new source"``: the marker on every *other* class's queries instead;
    * ``"sent to marked class"``: in the new-source setting, the share of
      other-class queries classified as ``marked_label``.
    """
    _check_int("n_tasks", n_tasks)
    pool = data.omniglot_classes(split)
    rng = np.random.default_rng(seed)
    rows: dict[str, list[float]] = {
        k: []
        for k in ("clean", "same source", "new source", "sent to marked class")
    }
    with torch.no_grad():
        for _ in range(n_tasks):
            ep = data.sample_episode(pool, n_way, 1, q_queries, seed=rng)
            q, qy = ep.query_x, ep.query_y
            own = qy == marked_label
            marked_support = ep.support_x.clone()
            marked_support[ep.support_y == marked_label] = mark(
                marked_support[ep.support_y == marked_label]
            )
            clean = PrototypeClassifier(embedding, ep.support_x, ep.support_y)
            biased = PrototypeClassifier(
                embedding, marked_support, ep.support_y
            )
            same = torch.where(own[:, None, None, None], mark(q), q)
            new = torch.where(own[:, None, None, None], q, mark(q))
            pred_new = biased(new).argmax(1)
            rows["clean"].append(
                (clean(q).argmax(1) == qy).float().mean().item()
            )
            rows["same source"].append(
                (biased(same).argmax(1) == qy).float().mean().item()
            )
            rows["new source"].append((pred_new == qy).float().mean().item())
            rows["sent to marked class"].append(
                (pred_new[~own] == marked_label).float().mean().item()
            )
    return {k: np.array(v) for k, v in rows.items()}
