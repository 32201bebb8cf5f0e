"""Tasks, episodes and pairs: everything the learners eat.

Two task families, as in Finn, Abbeel & Levine (2017), *Model-Agnostic
Meta-Learning for Fast Adaptation of Deep Networks*:

* sinusoid regression: y = A sin(x - phi), A ~ U[0.1, 5.0], phi ~ U[0, pi],
  x ~ U[-5, 5];
* Omniglot (Lake, Salakhutdinov & Tenenbaum 2015): N-way K-shot
  classification episodes.

Omniglot is read from ``<root>/omniglot/``, where ``root`` is the ``root``
argument, else the ``MLKIT_DATA`` environment variable, else
``~/.cache/mlkit``. :data:`DATA_FILES` lists the files the book can use and
their checksums; :func:`check_data` says which are there and sound,
:func:`fetch_data` downloads the missing ones. For each subset the loader
takes, in this order, ``images_<subset>.npz`` (the compact copy described in
the data README), the official ``images_<subset>.zip``, or downloads the
official zip from the upstream repository (checking its md5 and writing
atomically). Every file is checked against its known checksum the first time
a process uses it; a mismatch is a :class:`DataCorruptError`, a missing file
a :class:`DataMissingError`, each with a message that says what to do.
The 28x28 images are kept in :func:`cache_root` once made, so that later
processes skip the seconds of reading and downsampling.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "SINUSOID_AMPLITUDE",
    "SINUSOID_PHASE",
    "SINUSOID_X",
    "SinusoidTasks",
    "sample_sinusoid_tasks",
    "DataMissingError",
    "DataCorruptError",
    "data_root",
    "cache_root",
    "omniglot_dir",
    "OMNIGLOT_URLS",
    "OMNIGLOT_MD5",
    "LAKE_RUNS_URL",
    "LAKE_RUNS_SHA256",
    "DataFile",
    "DATA_NEEDS",
    "DATA_FILES",
    "check_data",
    "fetch_data",
    "download_file",
    "ALPHABETS",
    "alphabet_of",
    "read_omniglot_zip",
    "load_omniglot",
    "character_images",
    "ClassPool",
    "SPLITS",
    "VALIDATION_ALPHABETS",
    "split_char_ids",
    "shared_characters",
    "check_test_shots",
    "omniglot_classes",
    "Episode",
    "sample_episode",
    "EpisodeSampler",
    "load_lake_runs",
]

FETCH_COMMAND = "python -m mlkit data fetch"


# ---------------------------------------------------------------------------
# Argument checks: a bad argument is a ValueError naming it and what it may be
# ---------------------------------------------------------------------------


def _check_count(
    name: str, value: int, minimum: int = 1, maximum: int | None = None
) -> int:
    allowed = (
        f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    )
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return int(value)


def _check_tensor(name: str, value: object, min_dim: int = 0) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor, got {type(value).__name__}"
        )
    if value.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimension(s), "
            f"got shape {tuple(value.shape)}"
        )
    return value


def _merge_config(
    config: Mapping[str, Any] | None, defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """``defaults`` updated with ``config``; a ``ValueError`` names any key
    ``defaults`` does not have (the training functions' shared first check)."""
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(
            f"config must be None or a dict, got {type(config).__name__}"
        )
    unknown = sorted(set(config or {}) - set(defaults))
    if unknown:
        raise ValueError(
            f"config holds unknown keys {unknown}; allowed: "
            f"{sorted(defaults)}"
        )
    return {**defaults, **(config or {})}


def _check_flag(name: str, value: bool) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"{name} must be one of {list(allowed)}, got {value!r}"
        )
    return value


def _check_size(size: int | None) -> int | None:
    return None if size is None else _check_count("size", size, 4, FULL_SIZE)


def _generator(
    seed: int | np.random.Generator | None, name: str = "seed"
) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and not isinstance(seed, np.random.SeedSequence):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(
                f"{name} must be an integer >= 0, a numpy "
                f"Generator or None, got {seed!r}"
            )
        _check_count(name, seed, 0)
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------
# Sinusoid regression (Finn et al. 2017, section 5.1)
# ---------------------------------------------------------------------------

SINUSOID_AMPLITUDE = (0.1, 5.0)
SINUSOID_PHASE = (0.0, math.pi)
SINUSOID_X = (-5.0, 5.0)


@dataclass(frozen=True)
class SinusoidTasks:
    """A batch of sinusoid tasks with their support and query sets.

    Shapes: ``support_x``/``support_y`` are ``(tasks, k_shot, 1)``,
    ``query_x``/``query_y`` are ``(tasks, n_query, 1)``,
    ``amplitude``/``phase`` are ``(tasks,)``. All float32.
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
        """The ``i``-th task (0..len-1) as a batch of one."""
        i = _check_count("i", i, 0, len(self) - 1)
        s = slice(i, i + 1)
        return SinusoidTasks(
            *(
                t[s]
                for t in (
                    self.support_x,
                    self.support_y,
                    self.query_x,
                    self.query_y,
                    self.amplitude,
                    self.phase,
                )
            )
        )

    def curve(self, x: torch.Tensor) -> torch.Tensor:
        """The true functions at ``x`` (shape ``(points,)``):
        ``(tasks, points)``."""
        return self.amplitude[:, None] * torch.sin(
            x[None, :] - self.phase[:, None]
        )


def sample_sinusoid_tasks(
    n_tasks: int,
    k_shot: int,
    n_query: int | None = None,
    *,
    seed: int | np.random.Generator | None = None,
) -> SinusoidTasks:
    """Draw ``n_tasks`` sinusoid regression tasks ``y = A sin(x - phi)``.

    As in Finn et al. (2017): A ~ U[0.1, 5.0], phi ~ U[0, pi]; support and
    query inputs are drawn independently from U[-5, 5]. ``n_query`` defaults
    to ``k_shot``. The same ``seed`` gives the same tasks.
    """
    n_tasks = _check_count("n_tasks", n_tasks)
    k_shot = _check_count("k_shot", k_shot)
    n_query = k_shot if n_query is None else _check_count("n_query", n_query)
    rng = _generator(seed)
    amp = rng.uniform(*SINUSOID_AMPLITUDE, size=n_tasks)
    phase = rng.uniform(*SINUSOID_PHASE, size=n_tasks)
    xs = rng.uniform(*SINUSOID_X, size=(n_tasks, k_shot + n_query, 1))
    ys = amp[:, None, None] * np.sin(xs - phase[:, None, None])

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float32)

    return SinusoidTasks(
        support_x=t(xs[:, :k_shot]),
        support_y=t(ys[:, :k_shot]),
        query_x=t(xs[:, k_shot:]),
        query_y=t(ys[:, k_shot:]),
        amplitude=t(amp),
        phase=t(phase),
    )


# ---------------------------------------------------------------------------
# Omniglot files: which the book needs, where they live, how to check them
# ---------------------------------------------------------------------------


class DataMissingError(FileNotFoundError):
    """A data file the book needs is absent (and could not be fetched).

    The message names every missing file, the folder they belong in and
    what to do; it is short enough to print as ``error: <message>``.
    """


class DataCorruptError(ValueError):
    """A data file is there but is not what it should be (checksum or
    content). The message names the file and says what to do."""


_UPSTREAM = (
    "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
)
OMNIGLOT_URLS = {
    "background": _UPSTREAM + "images_background.zip",
    "evaluation": _UPSTREAM + "images_evaluation.zip",
}
OMNIGLOT_MD5 = {  # as torchvision checks them
    "background": "68d2efa1b9178cc56df9314c21c6e718",
    "evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}
LAKE_RUNS_URL = _UPSTREAM + "one-shot-classification/all_runs.zip"
LAKE_RUNS_SHA256 = (
    "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325"
)

_N_CHARS = {"background": 964, "evaluation": 659}
_FIRST_ID = {"background": 1, "evaluation": 965}
DRAWINGS = 20
FULL_SIZE = 105


@dataclass(frozen=True)
class DataFile:
    """One file the book can use: what it is, how to get and check it.

    ``need`` is the key of :data:`DATA_NEEDS` that the file satisfies (one
    of several files may satisfy a need); ``url`` is ``None`` for a file
    that cannot be downloaded; ``size`` is in bytes, ``None`` where unknown.
    """

    name: str
    need: str
    what: str
    url: str | None
    md5: str | None
    sha256: str | None
    size: int | None

    @property
    def algorithm(self) -> str:
        """The digest the file is checked with: sha256 if known, else
        md5."""
        return "sha256" if self.sha256 else "md5"

    @property
    def digest(self) -> str:
        """The expected digest (hex) for :attr:`algorithm`."""
        return self.sha256 or self.md5 or ""


# What the book needs; each is satisfied by one of the files of DATA_FILES
# with that need, the earlier ones preferred.
DATA_NEEDS: dict[str, str] = {
    "background": "Omniglot's 30 background alphabets (964 characters)",
    "evaluation": "Omniglot's 20 evaluation alphabets (659 characters)",
    "lake-runs": "Lake et al.'s 20 official one-shot runs",
}

# Sizes and digests of the npz copies and all_runs.zip measured on the
# verified copies (their sha256 as in the data README); of the official
# archives only the md5 is known.
DATA_FILES: dict[str, DataFile] = {
    f.name: f
    for f in (
        DataFile(
            "images_background.npz",
            "background",
            "compact copy of the background alphabets (boolean arrays)",
            None,
            "042c0a3e1688c4f4dc9d7213db63ee80",
            "8bf84167413cd00beacdce3fe582f780"
            "ab538d8dbef043a6d688f2527bbce199",
            3340794,
        ),
        DataFile(
            "images_background.zip",
            "background",
            "official archive of the background alphabets (PNG files)",
            OMNIGLOT_URLS["background"],
            OMNIGLOT_MD5["background"],
            None,
            None,
        ),
        DataFile(
            "images_evaluation.npz",
            "evaluation",
            "compact copy of the evaluation alphabets (boolean arrays)",
            None,
            "a6277b6770b9241c6906fa797456e652",
            "0b84c7ffd94c4841c0040e529c86a82e"
            "aaccb986d8eadad5673f7991b7475276",
            2415269,
        ),
        DataFile(
            "images_evaluation.zip",
            "evaluation",
            "official archive of the evaluation alphabets (PNG files)",
            OMNIGLOT_URLS["evaluation"],
            OMNIGLOT_MD5["evaluation"],
            None,
            None,
        ),
        DataFile(
            "all_runs.zip",
            "lake-runs",
            "official 20 runs of 20-way within-alphabet one-shot "
            "classification",
            LAKE_RUNS_URL,
            "e8996daecdf12afeeb4a53a179f06b19",
            LAKE_RUNS_SHA256,
            352787,
        ),
    )
}


def _files_of(need: str) -> list[DataFile]:
    return [f for f in DATA_FILES.values() if f.need == need]


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$MLKIT_DATA``, else
    ``~/.cache/mlkit``."""
    if root is not None:
        if not isinstance(root, (str, os.PathLike)) or str(root) == "":
            raise ValueError(
                f"root must be a folder path (str or Path) or "
                f"None, got {root!r}"
            )
        return Path(root).expanduser()
    env = os.environ.get("MLKIT_DATA")
    if env:
        return Path(env).expanduser()
    return _user_cache()


def _user_cache() -> Path:
    """``~/.cache/mlkit``: the default for both the data and the cache."""
    return Path.home() / ".cache" / "mlkit"


def omniglot_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder that holds (or will hold) the Omniglot files:
    ``<root>/omniglot``."""
    return data_root(root) / "omniglot"


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_key(path: Path) -> tuple[str, int, int]:
    """Path, size and mtime: a changed file gets a new key."""
    st = os.stat(path)
    return str(Path(path).resolve()), st.st_size, st.st_mtime_ns


# (path, size, mtime_ns, algorithm) -> hex digest: each file is hashed once
# per process, unless it changes.
_DIGESTS: dict[tuple[str, int, int, str], str] = {}


def _cached_digest(path: Path, algorithm: str) -> str:
    key = (*_file_key(path), algorithm)
    if key not in _DIGESTS:
        _DIGESTS[key] = _digest(path, algorithm)
    return _DIGESTS[key]


def _verify(path: Path, entry: DataFile) -> None:
    """Check ``path`` against the registry entry's digest (memoised)."""
    got = _cached_digest(path, entry.algorithm)
    if got != entry.digest:
        raise DataCorruptError(
            f"{path} is corrupt: {entry.algorithm} {got}, expected "
            f"{entry.digest}.\nDelete it and run `{FETCH_COMMAND}`, or put "
            f"a good copy there."
        )


def _verify_if_known(path: Path, verify: bool) -> None:
    entry = DATA_FILES.get(Path(path).name)
    if verify and entry is not None:
        _verify(Path(path), entry)


def _clear_caches() -> None:
    """Forget every memoised digest and loaded array (for tests)."""
    _DIGESTS.clear()
    _read_raw.cache_clear()
    _load_resized.cache_clear()


def _cause(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"URLError: {e.reason}"
    return f"{type(e).__name__}: {e}"


def _missing_error(
    folder: Path, need: str, cause: str | None = None
) -> DataMissingError:
    files = _files_of(need)
    names = " or ".join(f.name for f in files)
    urls = ", ".join(f"{f.name} from {f.url}" for f in files if f.url)
    failed = f" (download failed: {cause})" if cause else ""
    return DataMissingError(
        f"{DATA_NEEDS[need]}: no {names} in {folder}{failed}.\n"
        f"Run `{FETCH_COMMAND}`, or put {names} there ({urls}), or set "
        f"MLKIT_DATA to a folder whose omniglot/ holds them."
    )


def _options(need: str) -> list[dict[str, Any]]:
    return [dataclasses.asdict(f) for f in _files_of(need)]


def _row_message(row: dict[str, Any]) -> str:
    need, status = row["need"], row["status"]
    if status == "verified":
        entry = DATA_FILES[row["file"]]
        return f"{need}: ok, {row['path']} ({entry.algorithm} verified)"
    if status == "corrupt":
        return f"{need}: CORRUPT, {row['problem']}"
    lines = [f"{need}: MISSING, put one of these in {row['folder']}:"]
    for f in row["options"]:
        digest = f"sha256 {f['sha256']}" if f["sha256"] else f"md5 {f['md5']}"
        size = f", {f['size']} bytes" if f["size"] else ""
        where = f["url"] or "not downloadable"
        lines.append(f"  {f['name']}: {where} ({digest}{size})")
    return "\n".join(lines)


def check_data(root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Which of the files the book needs are present and sound.

    One row per need of :data:`DATA_NEEDS`, in that order, as a dict:
    ``need``, ``what``, ``folder``, ``status`` (``"verified"``,
    ``"corrupt"`` or ``"missing"``), ``present`` and ``verified`` (bools),
    ``file`` and ``path`` (the file that satisfies the need, the first
    present one in :data:`DATA_FILES` order, else ``None``), ``problem``
    (why a present file is refused, else ``None``), ``options`` (for a need
    not verified: every file that would satisfy it, as dicts of
    :class:`DataFile` fields, with URLs, checksums and sizes; else ``[]``)
    and ``message`` (a human-readable summary, one or a few lines). Checksums
    are computed once per process per file.
    """
    folder = omniglot_dir(root)
    rows = []
    for need, what in DATA_NEEDS.items():
        row: dict[str, Any] = {
            "need": need,
            "what": what,
            "folder": str(folder),
            "status": "missing",
            "present": False,
            "verified": False,
            "file": None,
            "path": None,
            "problem": None,
            "options": _options(need),
        }
        for entry in _files_of(need):
            path = folder / entry.name
            if not path.is_file():
                continue
            row.update(file=entry.name, path=str(path), present=True)
            try:
                _verify(path, entry)
            except DataCorruptError as e:
                row.update(status="corrupt", problem=str(e))
            except OSError as e:
                row.update(
                    status="corrupt",
                    problem=f"{path} is unreadable: {_cause(e)}",
                )
            else:
                row.update(status="verified", verified=True, options=[])
            break
        row["message"] = _row_message(row)
        rows.append(row)
    return rows


def fetch_data(
    root: str | os.PathLike | None = None, *, progress: bool = True
) -> list[Path]:
    """Download the official archives of every need that is missing.

    Each download is written atomically into ``<root>/omniglot`` and
    checked against its checksum; a failed one leaves no file and no folder
    behind. Returns the paths downloaded (``[]`` when nothing was missing).
    Raises :class:`DataMissingError` naming every file that could not be
    fetched (an unreachable network stops after the first try), and
    :class:`DataCorruptError` if a file already present is corrupt (it is
    never overwritten: delete it first).
    """
    progress = _check_flag("progress", progress)
    folder = omniglot_dir(root)
    rows = check_data(root)
    fetched: list[Path] = []
    failed: list[tuple[DataFile, str]] = []
    offline: str | None = None
    for row in rows:
        if row["status"] != "missing":
            continue
        entry = next(f for f in _files_of(row["need"]) if f.url)
        if offline is not None:
            failed.append((entry, offline))
            continue
        try:
            fetched.append(
                download_file(
                    entry.url,
                    folder / entry.name,
                    md5=entry.md5,
                    sha256=entry.sha256,
                    progress=progress,
                )
            )
        except (urllib.error.HTTPError, DataCorruptError) as e:
            failed.append((entry, _cause(e)))
        except (urllib.error.URLError, TimeoutError) as e:
            offline = _cause(e)  # no network: do not wait on each file
            failed.append((entry, offline))
        except OSError as e:
            failed.append((entry, _cause(e)))
    corrupt = [r["problem"] for r in rows if r["status"] == "corrupt"]
    if failed:
        lines = [f"could not download into {folder}:"]
        lines += [f"  {f.name} from {f.url} ({why})" for f, why in failed]
        compact = [
            g.name
            for f, _ in failed
            for g in _files_of(f.need)
            if g.url is None
        ]
        alt = f" (or {', '.join(compact)})" if compact else ""
        lines.append(
            f"Put them{alt} there yourself, or set MLKIT_DATA to "
            f"a folder whose omniglot/ holds them."
        )
        lines += [f"Also: {p.splitlines()[0]}" for p in corrupt]
        raise DataMissingError("\n".join(lines))
    if corrupt:
        raise DataCorruptError("\n".join(corrupt))
    return fetched


def _make_dirs(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created."""
    missing = []
    p = Path(folder)
    while not p.exists() and p.parent != p:
        missing.append(p)
        p = p.parent
    created: list[Path] = []
    try:
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                continue
            created.append(d)
    except BaseException:
        _remove_dirs(created)
        raise
    return created


def _remove_dirs(created: list[Path]) -> None:
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            pass


def _check_digest_arg(name: str, value: str | None, length: int) -> None:
    if value is None:
        return
    if (
        not isinstance(value, str)
        or len(value) != length
        or not re.fullmatch(r"[0-9a-fA-F]+", value)
    ):
        raise ValueError(
            f"{name} must be None or {length} hex digits, got {value!r}"
        )


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Fetch ``url`` to ``dest`` atomically and check its digest.

    The bytes go to a temporary file in the same folder, are checked, and
    only then renamed to ``dest``: no half-written or corrupt file is ever
    left under the final name, and on any failure the temporary file and
    the folders this call created are removed. A digest mismatch is a
    :class:`DataCorruptError` (a ``ValueError``); an unreachable network is
    an ``OSError`` (``urllib.error.URLError``).
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"url must be a non-empty string, got {url!r}")
    if not isinstance(dest, (str, os.PathLike)) or str(dest) == "":
        raise ValueError(f"dest must be a file path, got {dest!r}")
    _check_digest_arg("md5", md5, 32)
    _check_digest_arg("sha256", sha256, 64)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not timeout > 0
        or not math.isfinite(timeout)
    ):
        raise ValueError(
            f"timeout must be a number of seconds > 0, got {timeout!r}"
        )
    progress = _check_flag("progress", progress)
    dest = Path(dest)
    created = _make_dirs(dest.parent)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=dest.name + ".", suffix=".part", dir=dest.parent
        )
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=timeout) as resp,
        ):
            total = int(resp.headers.get("Content-Length") or 0) or None
            from tqdm.auto import tqdm

            hide = not progress or (total is not None and total < (1 << 20))
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=dest.name,
                disable=hide,
            ) as bar:
                for block in iter(lambda: resp.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
        for algorithm, expected in (("md5", md5), ("sha256", sha256)):
            if expected is not None:
                got = _digest(Path(tmp), algorithm)
                if got != expected.lower():
                    raise DataCorruptError(
                        f"download of {url} is corrupt: {algorithm} {got}, "
                        f"expected {expected}; nothing was kept"
                    )
        os.replace(tmp, dest)
        tmp = None
    except BaseException:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        _remove_dirs(created)
        raise
    return dest


# ---------------------------------------------------------------------------
# Alphabets
# ---------------------------------------------------------------------------

# Official character-id ranges of the 50 alphabets (data README,
# "Alphabets by character id").
ALPHABETS: tuple[tuple[str, int, int], ...] = (
    ("Arcadian", 1, 26),
    ("Armenian", 27, 67),
    ("Asomtavruli (Georgian)", 68, 107),
    ("Balinese", 108, 131),
    ("Bengali", 132, 177),
    ("Blackfoot (Canadian Aboriginal Syllabics)", 178, 191),
    ("Braille", 192, 217),
    ("Cyrillic", 218, 250),
    ("Early Aramaic", 251, 272),
    ("Syriac (Estrangelo)", 273, 295),
    ("Anglo-Saxon Futhorc", 296, 324),
    ("Futurama", 325, 350),
    ("Grantha", 351, 393),
    ("Greek", 394, 417),
    ("Gujarati", 418, 465),
    ("Hebrew", 466, 487),
    ("Japanese (hiragana)", 488, 539),
    ("Inuktitut (Canadian Aboriginal Syllabics)", 540, 555),
    ("Malay (Jawi - Arabic)", 556, 595),
    ("Japanese (katakana)", 596, 642),
    ("Korean", 643, 682),
    ("Latin", 683, 708),
    ("Alphabet of the Magi", 709, 728),
    ("Mkhedruli (Georgian)", 729, 769),
    ("Burmese (Myanmar)", 770, 803),
    ("N_Ko", 804, 836),
    ("Ojibwe (Canadian Aboriginal Syllabics)", 837, 850),
    ("Sanskrit", 851, 892),
    ("Tagalog", 893, 909),
    ("Tifinagh", 910, 964),
    ("Angelic", 965, 984),
    ("Atemayar Qelisayer", 985, 1010),
    ("Atlantean", 1011, 1036),
    ("Aurek-Besh", 1037, 1062),
    ("Avesta", 1063, 1088),
    ("Ge_ez", 1089, 1114),
    ("Glagolitic", 1115, 1159),
    ("Gurmukhi", 1160, 1204),
    ("Kannada", 1205, 1245),
    ("Keble", 1246, 1271),
    ("Malayalam", 1272, 1318),
    ("Manipuri", 1319, 1358),
    ("Mongolian", 1359, 1388),
    ("Old Church Slavonic (Cyrillic)", 1389, 1433),
    ("Oriya", 1434, 1479),
    ("Syriac (Serto)", 1480, 1502),
    ("Sylheti", 1503, 1530),
    ("Tengwar", 1531, 1555),
    ("Tibetan", 1556, 1597),
    ("ULOG", 1598, 1623),
)
_ALPHABET_STARTS = np.array([a[1] for a in ALPHABETS])
N_CHARACTERS = 1623


def alphabet_of(char_id: int) -> str:
    """The alphabet of an official Omniglot character id (1..1623)."""
    char_id = _check_count("char_id", char_id, 1, N_CHARACTERS)
    row = int(np.searchsorted(_ALPHABET_STARTS, char_id, side="right")) - 1
    return ALPHABETS[row][0]


# ---------------------------------------------------------------------------
# Reading the files
# ---------------------------------------------------------------------------

_ID_RE = re.compile(r"(\d{4})_(\d{2})\.png$")
# What a damaged archive or image raises while being read.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    KeyError,
    ValueError,
    IndexError,
    AttributeError,
)


def read_omniglot_zip(
    path: str | os.PathLike, *, verify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Parse an official Omniglot archive
    (``images_*/<Alphabet>/characterNN/<id>_<k>.png``).

    Returns ``(images, char_ids)``: a boolean array
    ``(characters, 20, 105, 105)`` with ``True`` for the white background,
    as in the official PNGs, and the official ids, sorted. Works for the
    full archives and partial ones (``images_background_small1.zip``). A
    file named as one of :data:`DATA_FILES` is first checked against its
    checksum unless ``verify=False``; a damaged archive is a
    :class:`DataCorruptError`.
    """
    from PIL import Image

    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise ValueError(f"path must be a file path, got {path!r}")
    verify = _check_flag("verify", verify)
    path = Path(path)
    if not path.is_file():
        raise DataMissingError(f"{path} does not exist")
    _verify_if_known(path, verify)
    found: dict[int, dict[int, np.ndarray]] = {}
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                m = _ID_RE.search(name)
                if not m:
                    continue
                with Image.open(io.BytesIO(z.read(name))) as im:
                    img = np.asarray(im.convert("1"), dtype=bool)
                if img.shape != (FULL_SIZE, FULL_SIZE):
                    raise ValueError(f"{name} is {img.shape}, not 105x105")
                found.setdefault(int(m.group(1)), {})[int(m.group(2))] = img
    except _READ_ERRORS as e:
        raise DataCorruptError(
            f"{path} is not a valid Omniglot archive ({_cause(e)}); "
            f"delete it and run `{FETCH_COMMAND}`"
        ) from None
    if not found:
        raise DataCorruptError(f"{path} holds no Omniglot images")
    ids = np.array(sorted(found))
    images = np.ones((len(ids), DRAWINGS, FULL_SIZE, FULL_SIZE), dtype=bool)
    for row, cid in enumerate(ids):
        if sorted(found[cid]) != list(range(1, DRAWINGS + 1)):
            raise DataCorruptError(
                f"{path}: character {cid:04d} lacks "
                f"some of its 20 drawings"
            )
        for k, img in found[cid].items():
            images[row, k - 1] = img
    return images, ids


def _atomic_write(path: Path, write: Any) -> bool:
    """``write(file)`` into a temporary file renamed to ``path``, so that a
    reader never sees half a file; False (and nothing left) when the folder
    cannot be written: the callers only cache, so they carry on."""
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=path.name + ".", suffix=".part", dir=path.parent
        )
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
        return True
    except OSError:
        return False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    _atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def _subset_shape(subset: str) -> tuple[int, ...]:
    return (_N_CHARS[subset], DRAWINGS, FULL_SIZE, FULL_SIZE)


def _read_npz(path: Path, subset: str) -> np.ndarray:
    try:
        with np.load(path) as d:
            images = d["images"]
    except _READ_ERRORS + (TypeError,) as e:
        raise DataCorruptError(
            f"{path} is not a readable Omniglot npz ({_cause(e)}); delete it "
            f"and run `{FETCH_COMMAND}`"
        ) from None
    if images.shape != _subset_shape(subset) or images.dtype != bool:
        raise DataCorruptError(
            f"{path} has shape {images.shape} and dtype {images.dtype}; "
            f"expected {_subset_shape(subset)} bool. Delete it and run "
            f"`{FETCH_COMMAND}`"
        )
    return images


def _parsed_cache(path: Path) -> Path:
    """Where the images parsed from an official zip are kept."""
    return path.with_name(path.stem + ".parsed.npz")


def _read_official_zip(path: Path, subset: str) -> np.ndarray:
    md5 = _cached_digest(path, "md5")
    cache = _parsed_cache(path)
    if cache.is_file():
        try:
            with np.load(cache) as d:
                if (
                    str(d["source_md5"]) == md5
                    and d["images"].shape == _subset_shape(subset)
                    and d["images"].dtype == bool
                ):
                    return d["images"]
        except _READ_ERRORS + (TypeError,):
            pass  # a damaged cache is simply rebuilt
    images, ids = read_omniglot_zip(path, verify=False)
    n, first = _N_CHARS[subset], _FIRST_ID[subset]
    if not np.array_equal(ids, np.arange(first, first + n)):
        raise DataCorruptError(
            f"{path} holds {len(ids)} characters; expected {n} (ids "
            f"{first}..{first + n - 1}). Delete it and run "
            f"`{FETCH_COMMAND}`"
        )
    # Parsing 19,280 PNGs takes a while: keep the result beside the archive
    # (tagged with the archive's md5, so that it follows the archive).
    _atomic_savez(
        cache,
        images=images,
        source_md5=np.array(md5),
        labels=np.repeat(np.arange(n)[:, None], DRAWINGS, 1),
    )
    return images


@lru_cache(maxsize=4)
def _read_raw(subset: str, path: str, size: int, mtime_ns: int) -> np.ndarray:
    # size and mtime_ns are part of the cache key only: a changed file is
    # read again.
    p = Path(path)
    images = (
        _read_npz(p, subset)
        if p.suffix == ".npz"
        else _read_official_zip(p, subset)
    )
    images.flags.writeable = False  # shared between callers by the cache
    return images


def _subset_file(
    subset: str, folder: Path, download: bool, verify: bool
) -> Path:
    """The file that provides ``subset`` (downloaded if allowed),
    checked."""
    for entry in _files_of(subset):
        path = folder / entry.name
        if path.is_file():
            if verify:
                _verify(path, entry)
            return path
    if not download:
        raise _missing_error(folder, subset, None)
    entry = next(f for f in _files_of(subset) if f.url)
    try:
        download_file(
            entry.url, folder / entry.name, md5=entry.md5, sha256=entry.sha256
        )
    except OSError as e:
        raise _missing_error(folder, subset, _cause(e)) from None
    return folder / entry.name


def _raw_images(
    subset: str, folder: Path, download: bool, verify: bool
) -> np.ndarray:
    path = _subset_file(subset, folder, download, verify)
    return _read_raw(subset, *_file_key(path))


def _resize(
    images: np.ndarray, size: int | None, chunk: int = 4096
) -> np.ndarray:
    """Boolean ``(..., 105, 105)`` background-True images -> float32 with
    ink 1.0."""
    flat = images.reshape(-1, FULL_SIZE, FULL_SIZE)
    side = FULL_SIZE if size is None else size
    out = np.empty((len(flat), side, side), np.float32)
    for i in range(0, len(flat), chunk):  # keeps the float copy small
        ink = torch.from_numpy(~flat[i : i + chunk]).to(torch.float32)[:, None]
        if side != FULL_SIZE:
            ink = F.interpolate(ink, size=(side, side), mode="area")
        out[i : i + chunk] = ink[:, 0].numpy()
    return out.reshape(*images.shape[:-2], side, side)


def cache_root() -> Path:
    """Where mlkit keeps what it can rebuild from the data (the downsampled
    images): ``$MLKIT_CACHE``, else ``~/.cache/mlkit``. Deleting it is always
    safe."""
    env = os.environ.get("MLKIT_CACHE")
    return Path(env).expanduser() if env else _user_cache()


def _resized_file(
    subset: str, path: str, fsize: int, mtime_ns: int, size: int
) -> Path:
    """The cache file of ``subset`` at ``size``: named after the source
    file's path, then its size and mtime, so that a changed source gets a
    new name and the copies of one source share a prefix."""
    where = hashlib.sha1(path.encode()).hexdigest()[:12]
    version = hashlib.sha1(f"{fsize}|{mtime_ns}".encode()).hexdigest()[:12]
    return (
        cache_root() / "resized" / f"{subset}-{size}px-{where}-{version}.npy"
    )


def _read_resized(file: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        out = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # missing or damaged: rebuilt by the caller
    if out.shape != shape or out.dtype != np.float32:
        return None
    return out


def _write_resized(file: Path, images: np.ndarray) -> None:
    """Write atomically and drop the copies made from older versions of the
    same source file; a folder that cannot be written only costs the
    resizing next time."""
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    if not _atomic_write(
        file, lambda f: np.save(f, images, allow_pickle=False)
    ):
        return
    stem = file.name.rsplit("-", 1)[0]
    for old in file.parent.glob(f"{stem}-*.npy"):
        if old != file:
            try:
                old.unlink(missing_ok=True)
            except OSError:
                pass  # another process's copy in use: left for later


@lru_cache(maxsize=8)
def _load_resized(
    subset: str, path: str, fsize: int, mtime_ns: int, size: int | None
) -> np.ndarray:
    # Reading and downsampling a subset takes seconds; the 28x28 copy is
    # kept in cache_root() (about 60 MB and 40 MB) and read back in
    # milliseconds. Full-size images would take 1.4 GB: never kept.
    file = (
        None
        if size is None
        else _resized_file(subset, path, fsize, mtime_ns, size)
    )
    shape = (_N_CHARS[subset], DRAWINGS, size, size)
    out = None if file is None else _read_resized(file, shape)
    if out is None:
        out = _resize(_read_raw(subset, path, fsize, mtime_ns), size)
        if file is not None:
            _write_resized(file, out)
    out.flags.writeable = False  # shared between callers through the cache
    return out


def load_omniglot(
    subset: str = "background",
    *,
    root: str | os.PathLike | None = None,
    size: int | None = 28,
    download: bool = True,
    verify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """All characters of one of Lake's two subsets, as
    ``(images, char_ids)``.

    ``images`` is float32 ``(characters, 20, size, size)`` with ink 1.0 and
    background 0.0 (the reverse of the PNGs, so that an empty pixel
    contributes nothing to a network); ``size=None`` keeps the full 105x105
    drawings for display. Downsampling averages pixel areas, as Finn et
    al.'s 28x28 inputs do up to the resampling filter. A missing subset is
    downloaded when ``download`` (else :class:`DataMissingError`); the file
    is checked against its known checksum once per process unless
    ``verify=False`` (a mismatch is a :class:`DataCorruptError`).
    """
    subset = _check_choice("subset", subset, list(_N_CHARS))
    size = _check_size(size)
    download = _check_flag("download", download)
    verify = _check_flag("verify", verify)
    folder = omniglot_dir(root).resolve()
    path = _subset_file(subset, folder, download, verify)
    ids = np.arange(_FIRST_ID[subset], _FIRST_ID[subset] + _N_CHARS[subset])
    return _load_resized(subset, *_file_key(path), size), ids


def character_images(
    char_id: int,
    *,
    root: str | os.PathLike | None = None,
    size: int | None = None,
    download: bool = True,
    verify: bool = True,
) -> np.ndarray:
    """The 20 drawings of one character (official id 1..1623),
    ``(20, S, S)``.

    For display: ``size=None`` keeps 105x105. Cheaper than
    :func:`load_omniglot` at full size, which would hold every drawing of a
    subset as float32. ``download`` and ``verify`` as there.
    """
    char_id = _check_count("char_id", char_id, 1, N_CHARACTERS)
    size = _check_size(size)
    download = _check_flag("download", download)
    verify = _check_flag("verify", verify)
    subset = (
        "background" if char_id < _FIRST_ID["evaluation"] else "evaluation"
    )
    raw = _raw_images(subset, omniglot_dir(root).resolve(), download, verify)
    return _resize(raw[char_id - _FIRST_ID[subset]], size)


# ---------------------------------------------------------------------------
# Class pools and splits
# ---------------------------------------------------------------------------


def _check_drawings(which: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    try:
        idx = np.asarray(which)
    except ValueError:
        idx = np.asarray([None])
    if idx.size == 0 and idx.dtype.kind == "f":
        idx = idx.astype(np.intp)
    if idx.dtype.kind not in "iu" or (
        idx.size and (idx.min() < 0 or idx.max() >= n)
    ):
        raise ValueError(
            f"which must be drawing indices in [0, {n - 1}], got {which!r}"
        )
    return idx


@dataclass(frozen=True)
class ClassPool:
    """The classes one split offers, each a character under a rotation.

    ``images`` holds each character once, ``(characters, 20, S, S)``; class
    ``c`` is character ``char_index[c]`` turned by ``rotation[c]`` quarter
    turns (Finn et al. add 90-degree rotations as new classes; Lake's splits
    use rotation 0 only).
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
        """The alphabet of class ``cls`` (0..n_classes-1)."""
        cls = _check_count("cls", cls, 0, len(self) - 1)
        return alphabet_of(int(self.char_ids[self.char_index[cls]]))

    def drawings(
        self, cls: int, which: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """Drawings ``which`` (0..19) of class ``cls`` (0..n_classes-1),
        rotated: ``(len(which), S, S)``."""
        cls = _check_count("cls", cls, 0, len(self) - 1)
        return self._drawings(
            cls, _check_drawings(which, self.images.shape[1])
        )

    def _drawings(self, cls: int, which: np.ndarray) -> np.ndarray:
        imgs = self.images[self.char_index[cls], which]
        k = int(self.rotation[cls])
        return np.rot90(imgs, k=k, axes=(-2, -1)) if k else imgs


SPLITS = (
    "background",
    "evaluation",
    "finn-train",
    "finn-test",
    "background-train",
    "validation",
)
FINN_TRAIN_CHARACTERS = 1200

# Five of the 30 background alphabets held out for model selection: the
# first five of np.random.default_rng(0).permutation(30) over the background
# alphabets in ALPHABETS order (indices 2, 10, 11, 21, 26), fixed here by
# name. 135 characters; "background-train" keeps the other 25 (829).
VALIDATION_ALPHABETS = (
    "Asomtavruli (Georgian)",
    "Anglo-Saxon Futhorc",
    "Futurama",
    "Latin",
    "Ojibwe (Canadian Aboriginal Syllabics)",
)


def _alphabet_ids(names: Sequence[str]) -> np.ndarray:
    ranges = [np.arange(a, b + 1) for name, a, b in ALPHABETS if name in names]
    return np.concatenate(ranges)


def split_char_ids(split: str, seed: int = 0) -> np.ndarray:
    """The official character ids (sorted, int64) of a named split.

    Needs no image data; equals ``omniglot_classes(split, seed=seed)
    .char_ids``. ``seed`` matters only for Finn et al.'s splits, a
    permutation of all 1623 ids (background then evaluation).
    """
    split = _check_choice("split", split, SPLITS)
    seed = _check_count("seed", seed, 0)
    if split in _N_CHARS:
        first = _FIRST_ID[split]
        return np.arange(first, first + _N_CHARS[split], dtype=np.int64)
    if split in ("finn-train", "finn-test"):
        order = np.random.default_rng(seed).permutation(N_CHARACTERS)
        keep = (
            order[:FINN_TRAIN_CHARACTERS]
            if split == "finn-train"
            else order[FINN_TRAIN_CHARACTERS:]
        )
        return np.sort(keep).astype(np.int64) + 1
    held_out = _alphabet_ids(VALIDATION_ALPHABETS).astype(np.int64)
    if split == "validation":
        return held_out
    background = split_char_ids("background")
    return background[~np.isin(background, held_out)]


def check_test_shots(k_shot: int) -> int:
    """``k_shot`` for an Omniglot test task, which keeps at least one of a
    character's :data:`DRAWINGS` drawings as a query; a one-line
    ``ValueError`` naming the command line's ``--shots`` otherwise."""
    if k_shot >= DRAWINGS:
        raise ValueError(
            f"--shots must be below {DRAWINGS} (an Omniglot character has "
            f"{DRAWINGS} drawings, some kept as queries), got {k_shot}"
        )
    return k_shot


def shared_characters(split_a: str, split_b: str, *, seed: int = 0) -> int:
    """How many characters two splits (both drawn with ``seed``) share."""
    return len(
        np.intersect1d(
            split_char_ids(split_a, seed), split_char_ids(split_b, seed)
        )
    )


def omniglot_classes(
    split: str,
    *,
    root: str | os.PathLike | None = None,
    size: int | None = 28,
    rotations: bool | None = None,
    seed: int = 0,
) -> ClassPool:
    """The class pool of a named split (its characters:
    :func:`split_char_ids`).

    * ``"background"`` / ``"evaluation"``: Lake et al.'s split by alphabet
      (964 / 659 characters; 30 / 20 alphabets), no rotations by default.
    * ``"background-train"`` / ``"validation"``: the background alphabets
      split by whole alphabets for model selection: the 5
      :data:`VALIDATION_ALPHABETS` (135 characters) are held out, the other
      25 (829 characters) remain; no rotations by default.
    * ``"finn-train"`` / ``"finn-test"``: Finn et al.'s split, a random
      1200 / 423 of all 1623 characters (shuffled with ``seed``), each under
      0, 90, 180 and 270 degrees as four classes by default (4800 / 1692
      classes).
    """
    split = _check_choice("split", split, SPLITS)
    seed = _check_count("seed", seed, 0)
    size = _check_size(size)
    if rotations is not None:
        rotations = _check_flag("rotations", rotations)
    ids = split_char_ids(split, seed)
    parts = []
    for subset, n in _N_CHARS.items():
        first = _FIRST_ID[subset]
        mine = ids[(ids >= first) & (ids < first + n)]
        if len(mine) == 0:
            continue
        images, _ = load_omniglot(subset, root=root, size=size)
        parts.append(images if len(mine) == n else images[mine - first])
    images = parts[0] if len(parts) == 1 else np.concatenate(parts)
    rot_default = split.startswith("finn")
    turns = 4 if (rot_default if rotations is None else rotations) else 1
    n = len(ids)
    return ClassPool(
        name=split,
        images=images,
        char_ids=ids,
        char_index=np.tile(np.arange(n), turns),
        rotation=np.repeat(np.arange(turns), n),
    )


# ---------------------------------------------------------------------------
# Episodes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot task: support and query sets with labels 0..N-1.

    ``support_x`` is ``(n_way * k_shot, 1, S, S)`` float32 and
    ``support_y`` ``(n_way*k_shot,)`` int64, class-major (all shots of label
    0 first); likewise the query set with ``q_queries`` per class.
    ``classes[j]`` is the pool class that label ``j`` stands for. Batches of
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


def _episode_arrays(
    pool: ClassPool,
    n_way: int,
    k_shot: int,
    q_queries: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, ...]:
    classes = rng.choice(len(pool), size=n_way, replace=False)
    s = pool.image_size
    sx = np.empty((n_way, k_shot, s, s), np.float32)
    qx = np.empty((n_way, q_queries, s, s), np.float32)
    for j, c in enumerate(classes):
        which = rng.choice(DRAWINGS, size=k_shot + q_queries, replace=False)
        imgs = pool._drawings(int(c), which)
        sx[j], qx[j] = imgs[:k_shot], imgs[k_shot:]
    sy = np.repeat(np.arange(n_way), k_shot)
    qy = np.repeat(np.arange(n_way), q_queries)
    return (sx.reshape(-1, 1, s, s), sy, qx.reshape(-1, 1, s, s), qy, classes)


def _check_episode_args(
    pool: ClassPool, n_way: int, k_shot: int, q_queries: int
) -> None:
    if not isinstance(pool, ClassPool):
        raise ValueError(
            f"pool must be a ClassPool (see omniglot_classes), "
            f"got {type(pool).__name__}"
        )
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
    """Draw one N-way K-shot episode with ``q_queries`` queries per class.

    ``n_way`` distinct classes of ``pool``, then ``k_shot + q_queries``
    distinct drawings of each (so ``k_shot + q_queries <= 20``). Labels are
    remapped to 0..n_way-1 in the order drawn.
    """
    _check_episode_args(pool, n_way, k_shot, q_queries)
    sx, sy, qx, qy, classes = _episode_arrays(
        pool, n_way, k_shot, q_queries, _generator(seed)
    )
    return Episode(
        torch.from_numpy(sx),
        torch.from_numpy(sy),
        torch.from_numpy(qx),
        torch.from_numpy(qy),
        classes,
    )


class EpisodeSampler:
    """An endless, reproducible stream of N-way K-shot episodes from a pool.

    ``sampler.batch(t)`` stacks ``t`` episodes: support
    ``(t, n_way*k_shot, 1, S, S)``, etc. Two samplers with the same pool,
    arguments and ``seed`` yield the same episodes.
    """

    def __init__(
        self,
        pool: ClassPool,
        n_way: int,
        k_shot: int,
        q_queries: int,
        *,
        seed: int | np.random.Generator | None = 0,
    ) -> None:
        _check_episode_args(pool, n_way, k_shot, q_queries)
        self.pool, self.n_way = pool, int(n_way)
        self.k_shot, self.q_queries = int(k_shot), int(q_queries)
        self.rng = np.random.default_rng(_generator(seed))

    def __iter__(self) -> Iterator[Episode]:
        while True:
            yield self.episode()

    def episode(self) -> Episode:
        """The next episode."""
        return sample_episode(
            self.pool, self.n_way, self.k_shot, self.q_queries, seed=self.rng
        )

    def batch(self, n_tasks: int) -> Episode:
        """The next ``n_tasks`` episodes, stacked along a new first axis."""
        n_tasks = _check_count("n_tasks", n_tasks)
        parts = [
            _episode_arrays(
                self.pool, self.n_way, self.k_shot, self.q_queries, self.rng
            )
            for _ in range(n_tasks)
        ]

        def stack(i: int) -> torch.Tensor:
            return torch.from_numpy(np.stack([p[i] for p in parts]))

        return Episode(
            stack(0),
            stack(1),
            stack(2),
            stack(3),
            np.stack([p[4] for p in parts]),
        )


# ---------------------------------------------------------------------------
# Lake et al.'s 20 official one-shot runs
# ---------------------------------------------------------------------------

_CLASS_RE = re.compile(r"class(\d+)\.png$")


def _read_lake_runs(path: Path) -> list[tuple[np.ndarray, ...]]:
    """``(support, query, query_labels)`` of each run, raw booleans."""
    from PIL import Image

    runs = []
    with zipfile.ZipFile(path) as z:

        def img(name: str) -> np.ndarray:
            with Image.open(io.BytesIO(z.read(name))) as im:
                out = np.asarray(im.convert("1"), dtype=bool)
            if out.shape != (FULL_SIZE, FULL_SIZE):
                raise ValueError(f"{name} is {out.shape}, not 105x105")
            return out

        for r in range(1, 21):
            base = f"run{r:02d}/"
            support = np.stack(
                [img(f"{base}training/class{j:02d}.png") for j in range(1, 21)]
            )
            text = z.read(base + "class_labels.txt").decode()
            pairs = [
                line.split() for line in text.splitlines() if line.strip()
            ]
            if len(pairs) != 20 or any(len(p) != 2 for p in pairs):
                raise ValueError(
                    f"{base}class_labels.txt does not hold 20 "
                    f"'item class' lines"
                )
            query = np.stack([img(p[0]) for p in pairs])
            labels = np.array(
                [int(_CLASS_RE.search(p[1]).group(1)) - 1 for p in pairs]
            )
            if labels.min() < 0 or labels.max() > 19:
                raise ValueError(
                    f"{base}class_labels.txt names a class "
                    f"outside class01..class20"
                )
            runs.append((support, query, labels))
    return runs


def load_lake_runs(
    *,
    root: str | os.PathLike | None = None,
    size: int | None = 28,
    download: bool = True,
    verify: bool = True,
) -> list[Episode]:
    """Lake et al.'s 20 official 20-way 1-shot runs (``all_runs.zip``).

    One episode per run. In run ``r`` the support set is
    ``training/class01..20.png`` (label ``j`` is ``class{j+1:02d}``) and the
    20 queries ``test/item01..20.png`` carry the label that
    ``class_labels.txt`` gives them. ``classes`` holds 0..19 (the runs name
    no character id). A missing file is downloaded when ``download`` (else
    :class:`DataMissingError`); it is checked against
    :data:`LAKE_RUNS_SHA256` once per process unless ``verify=False``; a
    damaged archive is a :class:`DataCorruptError`.
    """
    size = _check_size(size)
    download = _check_flag("download", download)
    verify = _check_flag("verify", verify)
    folder = omniglot_dir(root)
    entry = DATA_FILES["all_runs.zip"]
    path = folder / entry.name
    if not path.is_file():
        if not download:
            raise _missing_error(folder, entry.need, None)
        try:
            download_file(entry.url, path, md5=entry.md5, sha256=entry.sha256)
        except OSError as e:
            raise _missing_error(folder, entry.need, _cause(e)) from None
    elif verify:
        _verify(path, entry)
    try:
        raw = _read_lake_runs(path)
    except _READ_ERRORS as e:
        raise DataCorruptError(
            f"{path} is not a valid all_runs.zip ({_cause(e)}); delete it "
            f"and run `{FETCH_COMMAND}`"
        ) from None
    runs = []
    for support, query, labels in raw:
        sx, qx = _resize(support, size), _resize(query, size)
        runs.append(
            Episode(
                torch.from_numpy(sx[:, None]),
                torch.arange(20),
                torch.from_numpy(qx[:, None]),
                torch.from_numpy(labels),
                np.arange(20),
            )
        )
    return runs
