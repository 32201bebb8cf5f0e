"""Tasks, episodes and pairs: everything the learners eat.

Two task families, as in Finn, Abbeel & Levine (2017), *Model-Agnostic Meta-Learning for
Fast Adaptation of Deep Networks*:

* sinusoid regression: y = A sin(x - phi), A ~ U[0.1, 5.0], phi ~ U[0, pi], x ~ U[-5, 5];
* Omniglot (Lake, Salakhutdinov & Tenenbaum 2015): N-way K-shot classification episodes.

Omniglot is read from ``<root>/omniglot/``, where ``root`` is the ``root`` argument, else the
``MLKIT_DATA`` environment variable, else ``~/.cache/mlkit``. In that folder the loader takes,
in this order, ``images_<subset>.npz`` (the compact copy described in the data README), the
official ``images_<subset>.zip``, or downloads the official zip from the upstream repository
(checking its md5 and writing atomically).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "SINUSOID_AMPLITUDE",
    "SINUSOID_PHASE",
    "SINUSOID_X",
    "SinusoidTasks",
    "sample_sinusoid_tasks",
    "data_root",
    "omniglot_dir",
    "OMNIGLOT_URLS",
    "OMNIGLOT_MD5",
    "LAKE_RUNS_URL",
    "LAKE_RUNS_SHA256",
    "download_file",
    "ALPHABETS",
    "alphabet_of",
    "read_omniglot_zip",
    "load_omniglot",
    "character_images",
    "ClassPool",
    "omniglot_classes",
    "SPLITS",
    "Episode",
    "sample_episode",
    "EpisodeSampler",
    "load_lake_runs",
]

# --------------------------------------------------------------------------------------
# Sinusoid regression (Finn et al. 2017, section 5.1)
# --------------------------------------------------------------------------------------

SINUSOID_AMPLITUDE = (0.1, 5.0)
SINUSOID_PHASE = (0.0, math.pi)
SINUSOID_X = (-5.0, 5.0)


def _check_count(name: str, value: int, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return int(value)


def _generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


@dataclass(frozen=True)
class SinusoidTasks:
    """A batch of sinusoid tasks with their support and query sets.

    Shapes: ``support_x``/``support_y`` are ``(tasks, k_shot, 1)``, ``query_x``/``query_y``
    are ``(tasks, n_query, 1)``, ``amplitude``/``phase`` are ``(tasks,)``. All float32.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    amplitude: torch.Tensor
    phase: torch.Tensor

    def __len__(self) -> int:
        return self.support_x.shape[0]

    def task(self, i: int) -> "SinusoidTasks":
        """The ``i``-th task as a batch of one."""
        s = slice(i, i + 1)
        return SinusoidTasks(*(t[s] for t in (self.support_x, self.support_y, self.query_x,
                                              self.query_y, self.amplitude, self.phase)))

    def curve(self, x: torch.Tensor) -> torch.Tensor:
        """The true functions evaluated at ``x`` (shape ``(points,)``): ``(tasks, points)``."""
        return self.amplitude[:, None] * torch.sin(x[None, :] - self.phase[:, None])


def sample_sinusoid_tasks(
    n_tasks: int,
    k_shot: int,
    n_query: int | None = None,
    *,
    seed: int | np.random.Generator | None = None,
) -> SinusoidTasks:
    """Draw ``n_tasks`` sinusoid regression tasks ``y = A sin(x - phi)`` (Finn et al. 2017).

    A ~ U[0.1, 5.0], phi ~ U[0, pi]; support and query inputs are drawn independently from
    U[-5, 5]. ``n_query`` defaults to ``k_shot``. The same ``seed`` gives the same tasks.
    """
    n_tasks = _check_count("n_tasks", n_tasks)
    k_shot = _check_count("k_shot", k_shot)
    n_query = k_shot if n_query is None else _check_count("n_query", n_query)
    rng = _generator(seed)
    amp = rng.uniform(*SINUSOID_AMPLITUDE, size=n_tasks)
    phase = rng.uniform(*SINUSOID_PHASE, size=n_tasks)
    xs = rng.uniform(*SINUSOID_X, size=(n_tasks, k_shot + n_query, 1))
    ys = amp[:, None, None] * np.sin(xs - phase[:, None, None])
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return SinusoidTasks(
        support_x=t(xs[:, :k_shot]), support_y=t(ys[:, :k_shot]),
        query_x=t(xs[:, k_shot:]), query_y=t(ys[:, k_shot:]),
        amplitude=t(amp), phase=t(phase),
    )


# --------------------------------------------------------------------------------------
# Omniglot files: where they live, how to fetch them, how to read them
# --------------------------------------------------------------------------------------

_UPSTREAM = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
OMNIGLOT_URLS = {
    "background": _UPSTREAM + "images_background.zip",
    "evaluation": _UPSTREAM + "images_evaluation.zip",
}
OMNIGLOT_MD5 = {  # as torchvision checks them
    "background": "68d2efa1b9178cc56df9314c21c6e718",
    "evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}
LAKE_RUNS_URL = _UPSTREAM + "one-shot-classification/all_runs.zip"
LAKE_RUNS_SHA256 = "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325"

_N_CHARS = {"background": 964, "evaluation": 659}
_FIRST_ID = {"background": 1, "evaluation": 965}
DRAWINGS = 20
FULL_SIZE = 105

# Official character-id ranges of the 50 alphabets (data README, "Alphabets by character id").
ALPHABETS: tuple[tuple[str, int, int], ...] = (
    ("Arcadian", 1, 26), ("Armenian", 27, 67), ("Asomtavruli (Georgian)", 68, 107),
    ("Balinese", 108, 131), ("Bengali", 132, 177),
    ("Blackfoot (Canadian Aboriginal Syllabics)", 178, 191), ("Braille", 192, 217),
    ("Cyrillic", 218, 250), ("Early Aramaic", 251, 272), ("Syriac (Estrangelo)", 273, 295),
    ("Anglo-Saxon Futhorc", 296, 324), ("Futurama", 325, 350), ("Grantha", 351, 393),
    ("Greek", 394, 417), ("Gujarati", 418, 465), ("Hebrew", 466, 487),
    ("Japanese (hiragana)", 488, 539), ("Inuktitut (Canadian Aboriginal Syllabics)", 540, 555),
    ("Malay (Jawi - Arabic)", 556, 595), ("Japanese (katakana)", 596, 642),
    ("Korean", 643, 682), ("Latin", 683, 708), ("Alphabet of the Magi", 709, 728),
    ("Mkhedruli (Georgian)", 729, 769), ("Burmese (Myanmar)", 770, 803), ("N_Ko", 804, 836),
    ("Ojibwe (Canadian Aboriginal Syllabics)", 837, 850), ("Sanskrit", 851, 892),
    ("Tagalog", 893, 909), ("Tifinagh", 910, 964),
    ("Angelic", 965, 984), ("Atemayar Qelisayer", 985, 1010), ("Atlantean", 1011, 1036),
    ("Aurek-Besh", 1037, 1062), ("Avesta", 1063, 1088), ("Ge_ez", 1089, 1114),
    ("Glagolitic", 1115, 1159), ("Gurmukhi", 1160, 1204), ("Kannada", 1205, 1245),
    ("Keble", 1246, 1271), ("Malayalam", 1272, 1318), ("Manipuri", 1319, 1358),
    ("Mongolian", 1359, 1388), ("Old Church Slavonic (Cyrillic)", 1389, 1433),
    ("Oriya", 1434, 1479), ("Syriac (Serto)", 1480, 1502), ("Sylheti", 1503, 1530),
    ("Tengwar", 1531, 1555), ("Tibetan", 1556, 1597), ("ULOG", 1598, 1623),
)
_ALPHABET_STARTS = np.array([a[1] for a in ALPHABETS])


def alphabet_of(char_id: int) -> str:
    """The alphabet of an official Omniglot character id (1..1623)."""
    _check_count("char_id", int(char_id), 1, 1623)
    return ALPHABETS[int(np.searchsorted(_ALPHABET_STARTS, char_id, side="right")) - 1][0]


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$MLKIT_DATA``, else ``~/.cache/mlkit``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("MLKIT_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "mlkit"


def omniglot_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder that holds (or will hold) the Omniglot files: ``<root>/omniglot``."""
    return data_root(root) / "omniglot"


def _check_subset(subset: str) -> str:
    if subset not in _N_CHARS:
        raise ValueError(f"subset must be one of {sorted(_N_CHARS)}, got {subset!r}")
    return subset


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_file(url: str, dest: Path, *, md5: str | None = None, sha256: str | None = None,
             timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` atomically and check its digest.

    The bytes go to a temporary file in the same folder, are checked, and only then renamed
    to ``dest``: no half-written or corrupt file is ever left under the final name. A digest
    mismatch is a ``ValueError``; an unreachable network is an ``OSError`` from urllib.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            from tqdm.auto import tqdm

            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name,
                      disable=total is not None and total < (1 << 20)) as bar:
                for block in iter(lambda: resp.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
        for algorithm, expected in (("md5", md5), ("sha256", sha256)):
            if expected is not None:
                got = _digest(Path(tmp), algorithm)
                if got != expected:
                    raise ValueError(f"archive {url} is corrupt: {algorithm} {got}, "
                                     f"expected {expected}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


_ID_RE = re.compile(r"(\d{4})_(\d{2})\.png$")


def read_omniglot_zip(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parse an official Omniglot archive (``images_*/<Alphabet>/characterNN/<id>_<k>.png``).

    Returns ``(images, char_ids)``: a boolean array ``(characters, 20, 105, 105)`` with
    ``True`` for the white background, as in the official PNGs, and the official ids, sorted.
    Works for the full archives and the partial ones (``images_background_small1.zip``).
    """
    from PIL import Image

    found: dict[int, dict[int, np.ndarray]] = {}
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                m = _ID_RE.search(name)
                if not m:
                    continue
                with Image.open(io.BytesIO(z.read(name))) as im:
                    found.setdefault(int(m.group(1)), {})[int(m.group(2))] = (
                        np.asarray(im.convert("1"), dtype=bool))
    except zipfile.BadZipFile as e:
        raise ValueError(f"archive {path} is not a valid zip file: {e}") from None
    if not found:
        raise ValueError(f"archive {path} holds no Omniglot images")
    ids = np.array(sorted(found))
    images = np.ones((len(ids), DRAWINGS, FULL_SIZE, FULL_SIZE), dtype=bool)
    for row, cid in enumerate(ids):
        if sorted(found[cid]) != list(range(1, DRAWINGS + 1)):
            raise ValueError(f"archive {path}: character {cid:04d} lacks some of its 20 drawings")
        for k, img in found[cid].items():
            images[row, k - 1] = img
    return images, ids


def _missing_error(folder: Path, subset: str, cause: Exception) -> FileNotFoundError:
    return FileNotFoundError(
        f"Omniglot ({subset}) was not found in {folder} and could not be downloaded "
        f"({type(cause).__name__}: {cause}).\n"
        f"Fill that folder with either images_{subset}.npz (the compact copy) or the official "
        f"archive images_{subset}.zip, fetched from\n  {OMNIGLOT_URLS[subset]}\n"
        f"(and, for Lake's one-shot runs, all_runs.zip from\n  {LAKE_RUNS_URL}),\n"
        f"or point the MLKIT_DATA environment variable (or the root argument) at a folder "
        f"whose omniglot/ subfolder holds them."
    )


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    except OSError:  # a read-only data folder: simply do not cache
        return
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@lru_cache(maxsize=4)
def _load_raw(subset: str, folder: Path, download_ok: bool) -> np.ndarray:
    n, first = _N_CHARS[subset], _FIRST_ID[subset]
    npz, archive = folder / f"images_{subset}.npz", folder / f"images_{subset}.zip"
    if npz.exists():
        with np.load(npz) as d:
            images = d["images"]
        if images.shape != (n, DRAWINGS, FULL_SIZE, FULL_SIZE) or images.dtype != bool:
            raise ValueError(f"{npz} has shape {images.shape} and dtype {images.dtype}; "
                             f"expected ({n}, 20, 105, 105) bool")
        return images
    if not archive.exists():
        if not download_ok:
            raise _missing_error(folder, subset, RuntimeError("download=False"))
        try:
            download_file(OMNIGLOT_URLS[subset], archive, md5=OMNIGLOT_MD5[subset])
        except (OSError, urllib.error.URLError) as e:
            raise _missing_error(folder, subset, e) from None
    got = _digest(archive, "md5")
    if got != OMNIGLOT_MD5[subset]:
        raise ValueError(f"archive {archive} is corrupt: md5 {got}, expected "
                         f"{OMNIGLOT_MD5[subset]}; delete it and download it again")
    images, ids = read_omniglot_zip(archive)
    if not np.array_equal(ids, np.arange(first, first + n)):
        raise ValueError(f"archive {archive} holds {len(ids)} characters; expected {n}")
    # Parsing 19,280 PNGs takes a while: keep the compact copy beside the archive.
    _atomic_savez(npz, images=images, labels=np.repeat(np.arange(n)[:, None], DRAWINGS, 1))
    return images


def _resize(images: np.ndarray, size: int | None, chunk: int = 4096) -> np.ndarray:
    """Boolean ``(..., 105, 105)`` background-True images -> float32 with ink 1.0."""
    flat = images.reshape(-1, FULL_SIZE, FULL_SIZE)
    side = FULL_SIZE if size is None else size
    out = np.empty((len(flat), side, side), np.float32)
    for i in range(0, len(flat), chunk):  # chunks keep the float copy of 105x105 small
        ink = torch.from_numpy(~flat[i:i + chunk]).to(torch.float32)[:, None]
        if side != FULL_SIZE:
            ink = F.interpolate(ink, size=(side, side), mode="area")
        out[i:i + chunk] = ink[:, 0].numpy()
    return out.reshape(*images.shape[:-2], side, side)


@lru_cache(maxsize=8)
def _load_resized(subset: str, folder: Path, size: int | None, download_ok: bool) -> np.ndarray:
    out = _resize(_load_raw(subset, folder, download_ok), size)
    out.flags.writeable = False  # shared between callers through the cache
    return out


def load_omniglot(
    subset: str = "background",
    *,
    root: str | os.PathLike | None = None,
    size: int | None = 28,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """All characters of one of Lake's two subsets, as ``(images, char_ids)``.

    ``images`` is float32 ``(characters, 20, size, size)`` with ink 1.0 and background 0.0
    (the reverse of the PNGs, so that an empty pixel contributes nothing to a network);
    ``size=None`` keeps the full 105x105 drawings for display. Downsampling averages pixel
    areas, as Finn et al.'s 28x28 inputs do up to the resampling filter.
    """
    subset = _check_subset(subset)
    if size is not None:
        _check_count("size", size, 4, FULL_SIZE)
    folder = omniglot_dir(root).resolve()
    ids = np.arange(_FIRST_ID[subset], _FIRST_ID[subset] + _N_CHARS[subset])
    return _load_resized(subset, folder, size, bool(download)), ids


def character_images(char_id: int, *, root: str | os.PathLike | None = None,
                     size: int | None = None) -> np.ndarray:
    """The 20 drawings of one character (official id 1..1623), ``(20, S, S)``, for display.

    ``size=None`` keeps 105x105. Cheaper than :func:`load_omniglot` at full size, which would
    hold every drawing of a subset as float32.
    """
    _check_count("char_id", char_id, 1, 1623)
    subset = "background" if char_id < _FIRST_ID["evaluation"] else "evaluation"
    raw = _load_raw(subset, omniglot_dir(root).resolve(), True)
    return _resize(raw[char_id - _FIRST_ID[subset]], size)


# --------------------------------------------------------------------------------------
# Class pools and splits
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassPool:
    """The classes one split offers, each a character under a rotation.

    ``images`` holds each character once, ``(characters, 20, S, S)``; class ``c`` is
    character ``char_index[c]`` turned by ``rotation[c]`` quarter turns (Finn et al. add
    90-degree rotations as new classes; Lake's splits use rotation 0 only).
    """

    name: str
    images: np.ndarray
    char_ids: np.ndarray
    char_index: np.ndarray
    rotation: np.ndarray

    def __len__(self) -> int:
        return len(self.char_index)

    @property
    def n_classes(self) -> int:
        return len(self.char_index)

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def alphabet(self, cls: int) -> str:
        """The alphabet of class ``cls``."""
        return alphabet_of(int(self.char_ids[self.char_index[cls]]))

    def drawings(self, cls: int, which: Sequence[int] | np.ndarray) -> np.ndarray:
        """Drawings ``which`` (0..19) of class ``cls``, rotated: ``(len(which), S, S)``."""
        imgs = self.images[self.char_index[cls], np.asarray(which)]
        k = int(self.rotation[cls])
        return np.rot90(imgs, k=k, axes=(-2, -1)) if k else imgs


SPLITS = ("background", "evaluation", "finn-train", "finn-test")
FINN_TRAIN_CHARACTERS = 1200


def omniglot_classes(
    split: str,
    *,
    root: str | os.PathLike | None = None,
    size: int | None = 28,
    rotations: bool | None = None,
    seed: int = 0,
) -> ClassPool:
    """The class pool of a named split.

    * ``"background"`` / ``"evaluation"``: Lake et al.'s split by alphabet (964 / 659
      characters; 30 / 20 alphabets), no rotations by default.
    * ``"finn-train"`` / ``"finn-test"``: Finn et al.'s split, a random 1200 / 423 of all
      1623 characters (shuffled with ``seed``), each under 0, 90, 180 and 270 degrees as
      four classes by default (4800 / 1692 classes).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if split in ("background", "evaluation"):
        images, ids = load_omniglot(split, root=root, size=size)
        rot_default = False
    else:
        bg, bg_ids = load_omniglot("background", root=root, size=size)
        ev, ev_ids = load_omniglot("evaluation", root=root, size=size)
        order = np.random.default_rng(seed).permutation(len(bg_ids) + len(ev_ids))
        keep = order[:FINN_TRAIN_CHARACTERS] if split == "finn-train" else order[FINN_TRAIN_CHARACTERS:]
        keep = np.sort(keep)
        images = np.concatenate([bg, ev])[keep]
        ids = np.concatenate([bg_ids, ev_ids])[keep]
        rot_default = True
    turns = 4 if (rot_default if rotations is None else rotations) else 1
    n = len(ids)
    return ClassPool(
        name=split, images=images, char_ids=ids,
        char_index=np.tile(np.arange(n), turns), rotation=np.repeat(np.arange(turns), n),
    )


# --------------------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot task: support and query sets with labels remapped to 0..N-1.

    ``support_x`` is ``(n_way * k_shot, 1, S, S)`` float32 and ``support_y`` ``(n_way*k_shot,)``
    int64, class-major (all shots of label 0 first); likewise the query set with ``q_queries``
    per class. ``classes[j]`` is the pool class that label ``j`` stands for. Batches of
    episodes stack these along a new first axis.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    classes: np.ndarray

    @property
    def n_way(self) -> int:
        return int(self.classes.shape[-1])


def _episode_arrays(pool: ClassPool, n_way: int, k_shot: int, q_queries: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    classes = rng.choice(len(pool), size=n_way, replace=False)
    s = pool.image_size
    sx = np.empty((n_way, k_shot, s, s), np.float32)
    qx = np.empty((n_way, q_queries, s, s), np.float32)
    for j, c in enumerate(classes):
        which = rng.choice(DRAWINGS, size=k_shot + q_queries, replace=False)
        imgs = pool.drawings(int(c), which)
        sx[j], qx[j] = imgs[:k_shot], imgs[k_shot:]
    sy = np.repeat(np.arange(n_way), k_shot)
    qy = np.repeat(np.arange(n_way), q_queries)
    return (sx.reshape(-1, 1, s, s), sy, qx.reshape(-1, 1, s, s), qy, classes)


def _check_episode_args(pool: ClassPool, n_way: int, k_shot: int, q_queries: int) -> None:
    _check_count("n_way", n_way, 1, len(pool))
    _check_count("k_shot", k_shot, 1, DRAWINGS - 1)
    _check_count("q_queries", q_queries, 0, DRAWINGS - k_shot)


def sample_episode(
    pool: ClassPool,
    n_way: int,
    k_shot: int,
    q_queries: int,
    *,
    seed: int | np.random.Generator | None = None,
) -> Episode:
    """Draw one N-way K-shot episode with ``q_queries`` queries per class from ``pool``.

    ``n_way`` distinct classes, then ``k_shot + q_queries`` distinct drawings of each (so
    ``k_shot + q_queries <= 20``). Labels are remapped to 0..n_way-1 in the order drawn.
    """
    _check_episode_args(pool, n_way, k_shot, q_queries)
    sx, sy, qx, qy, classes = _episode_arrays(pool, n_way, k_shot, q_queries, _generator(seed))
    return Episode(torch.from_numpy(sx), torch.from_numpy(sy), torch.from_numpy(qx),
                   torch.from_numpy(qy), classes)


class EpisodeSampler:
    """An endless, reproducible stream of N-way K-shot episodes from one pool.

    ``sampler.batch(t)`` stacks ``t`` episodes: support ``(t, n_way*k_shot, 1, S, S)``, etc.
    Two samplers with the same pool, arguments and ``seed`` yield the same episodes.
    """

    def __init__(self, pool: ClassPool, n_way: int, k_shot: int, q_queries: int,
                 *, seed: int | None = 0) -> None:
        _check_episode_args(pool, n_way, k_shot, q_queries)
        self.pool, self.n_way, self.k_shot, self.q_queries = pool, n_way, k_shot, q_queries
        self.rng = np.random.default_rng(seed)

    def __iter__(self) -> Iterator[Episode]:
        while True:
            yield self.episode()

    def episode(self) -> Episode:
        """The next episode."""
        return sample_episode(self.pool, self.n_way, self.k_shot, self.q_queries, seed=self.rng)

    def batch(self, n_tasks: int) -> Episode:
        """The next ``n_tasks`` episodes, stacked along a new first axis."""
        _check_count("n_tasks", n_tasks)
        parts = [_episode_arrays(self.pool, self.n_way, self.k_shot, self.q_queries, self.rng)
                 for _ in range(n_tasks)]
        stack = lambda i: torch.from_numpy(np.stack([p[i] for p in parts]))  # noqa: E731
        return Episode(stack(0), stack(1), stack(2), stack(3), np.stack([p[4] for p in parts]))


# --------------------------------------------------------------------------------------
# Lake et al.'s 20 official one-shot runs
# --------------------------------------------------------------------------------------


def load_lake_runs(
    *,
    root: str | os.PathLike | None = None,
    size: int | None = 28,
    download: bool = True,
) -> list[Episode]:
    """Lake et al.'s 20 official 20-way 1-shot runs (``all_runs.zip``) as 20 episodes.

    In run ``r`` the support set is ``training/class01..20.png`` (label ``j`` is
    ``class{j+1:02d}``) and the 20 queries ``test/item01..20.png`` carry the label that
    ``class_labels.txt`` gives them. ``classes`` holds 0..19 (the runs name no character id).
    """
    from PIL import Image

    folder = omniglot_dir(root)
    path = folder / "all_runs.zip"
    if not path.exists():
        if not download:
            raise _missing_error(folder, "background", RuntimeError("download=False"))
        try:
            download_file(LAKE_RUNS_URL, path, sha256=LAKE_RUNS_SHA256)
        except (OSError, urllib.error.URLError) as e:
            raise _missing_error(folder, "background", e) from None
    if size is not None:
        _check_count("size", size, 4, FULL_SIZE)
    runs = []
    with zipfile.ZipFile(path) as z:
        def img(name: str) -> np.ndarray:
            with Image.open(io.BytesIO(z.read(name))) as im:
                return np.asarray(im.convert("1"), dtype=bool)

        for r in range(1, 21):
            base = f"run{r:02d}/"
            support = np.stack([img(f"{base}training/class{j:02d}.png") for j in range(1, 21)])
            pairs = [line.split() for line in z.read(base + "class_labels.txt").decode().splitlines()
                     if line.strip()]
            query = np.stack([img(p[0]) for p in pairs])
            qy = [int(re.search(r"class(\d+)\.png", p[1]).group(1)) - 1 for p in pairs]
            sx, qx = _resize(support, size), _resize(query, size)
            runs.append(Episode(torch.from_numpy(sx[:, None]), torch.arange(20),
                                torch.from_numpy(qx[:, None]), torch.tensor(qy),
                                np.arange(20)))
    return runs
