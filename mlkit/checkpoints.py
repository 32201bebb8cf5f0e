"""Small checkpoints in the repository, each with a manifest entry, and
resumable run state.

A checkpoint is a plain ``state_dict`` saved with ``torch.save`` and loaded
with ``torch.load(..., weights_only=True)``, so that loading never runs pickled
code. Its entry in ``checkpoints/MANIFEST.json`` records how it was made (the
exact command, seed, iterations, wall time, machine), the configuration needed
to rebuild the network, and its sha256, which :func:`load_checkpoint` checks
before it trusts the file.

Training never writes into the book's ``checkpoints/``: a run keeps its
resumable state (model, optimiser, sampler and random state, history) in
``runs/<name>/state.pt`` and the checkpoint it reaches, with a one-entry
manifest, in ``runs/<name>/`` (:func:`run_dir`; not committed), written
atomically every few minutes, so that ``python -m mlkit train NAME --resume``
continues where a stopped run left off. :func:`promote`
(``train NAME --promote``) copies a finished run's checkpoint into
``checkpoints/``, keeping what the book recorded about the checkpoint it
replaces.

Where the folders are: ``$MLKIT_CHECKPOINTS`` and ``$MLKIT_RUNS`` when set;
otherwise, in the book's clone, its ``checkpoints/`` and ``runs/``; in an
installed package, the checkpoints shipped inside it
(``mlkit/checkpoint_files/``, read-only) and ``./runs``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

__all__ = [
    "CHECKPOINT_DIR",
    "RUN_DIR",
    "CheckpointNotFoundError",
    "check_name",
    "run_dir",
    "promote",
    "manifest",
    "save_checkpoint",
    "record_metrics",
    "load_checkpoint",
    "checkpoint_entry",
    "save_state",
    "load_state",
    "machine_description",
    "begin_session",
    "training_sessions",
    "describe_training",
    "Autosaver",
    "record_evaluation",
    "ResumableRun",
]

MANIFEST = "MANIFEST.json"
_PACKAGE = Path(__file__).resolve().parent
_ROOT = _PACKAGE.parent
# The clone is recognised by its checkpoints next to its pyproject.toml; an
# installed package has neither beside it and reads the copy shipped as package
# data.
_IN_CLONE = (_ROOT / "pyproject.toml").is_file() and (
    _ROOT / "checkpoints" / MANIFEST
).is_file()
CHECKPOINT_DIR = Path(
    os.environ.get("MLKIT_CHECKPOINTS")
    or (_ROOT / "checkpoints" if _IN_CLONE else _PACKAGE / "checkpoint_files")
)
RUN_DIR = Path(
    os.environ.get("MLKIT_RUNS")
    or (_ROOT / "runs" if _IN_CLONE else Path.cwd() / "runs")
)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class CheckpointNotFoundError(KeyError):
    """No checkpoint of that name: the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def check_name(name: str) -> str:
    """Return ``name`` if it can name a checkpoint or a run, else raise
    ``ValueError``.

    A name is a file name, not a path: letters, digits, ``.``, ``_`` and ``-``,
    starting with a letter or digit (so ``../escape`` cannot write outside its
    folder).
    """
    if (
        not isinstance(name, str)
        or not _NAME_RE.fullmatch(name)
        or ".." in name
    ):
        raise ValueError(
            "name must be 1-100 letters, digits, '.', '_' or '-' starting "
            f"with a letter or digit (no path), got {name!r}"
        )
    return name


def run_dir(name: str, directory: Path | None = None) -> Path:
    """The folder of run ``name``: ``<RUN_DIR>/<name>``, where ``train`` writes
    its state and the checkpoint it reaches (never into ``checkpoints/``)."""
    return Path(directory or RUN_DIR) / check_name(name)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=path.name + ".", suffix=".part", dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def machine_description() -> str:
    """A one-line description of this machine: CPU or GPU, cores, torch
    version."""
    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name(0)
    else:
        cpu = platform.processor() or platform.machine()
        dev = f"CPU ({cpu}, {os.cpu_count()} cores)"
    return (
        f"{dev}, torch {torch.__version__}, Python {platform.python_version()}"
    )


def begin_session(
    rows: list[dict[str, Any]],
    iteration: int,
    wall_time_s: float,
    *,
    earlier_machine: str = "not recorded",
) -> float:
    """Open this machine's row in a run's ``sessions`` list, in place; return
    the wall time that row already holds.

    ``rows`` say which machine trained which iterations
    (``machine, from_iteration, to_iteration, wall_time_s``), so that a run
    resumed on another machine keeps the cost of each part. A run that reached
    ``iteration > 0`` before rows were kept gets one row for its first
    ``iteration`` steps and ``wall_time_s`` seconds, on ``earlier_machine``. A
    row for this machine is appended unless the last row is already this
    machine's (a resume on the same machine goes on adding to it).
    """
    if not rows and iteration:
        rows.append(
            {
                "machine": earlier_machine,
                "from_iteration": 0,
                "to_iteration": iteration,
                "wall_time_s": round(wall_time_s, 1),
            }
        )
    here = machine_description()
    if not rows or rows[-1]["machine"] != here:
        rows.append(
            {
                "machine": here,
                "from_iteration": iteration,
                "to_iteration": iteration,
                "wall_time_s": 0.0,
            }
        )
    return float(rows[-1]["wall_time_s"])


def manifest(directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """The manifest: checkpoint name -> its entry (``{}`` when there is none
    yet)."""
    path = Path(directory or CHECKPOINT_DIR) / MANIFEST
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def checkpoint_entry(
    name: str, directory: Path | None = None
) -> dict[str, Any]:
    """The manifest entry of checkpoint ``name``; a ``KeyError`` lists the
    known names."""
    entries = manifest(directory)
    if name not in entries:
        where = Path(directory or CHECKPOINT_DIR)
        raise CheckpointNotFoundError(
            f"no checkpoint named {name!r} in {where / MANIFEST}; known: "
            f"{', '.join(sorted(entries)) or 'none'}"
        )
    return entries[name]


def save_checkpoint(
    name: str,
    state_dict: dict[str, torch.Tensor],
    *,
    config: dict[str, Any],
    command: str,
    seed: int,
    iterations: int,
    wall_time_s: float,
    metrics: dict[str, Any] | None = None,
    directory: Path | None = None,
) -> Path:
    """Write ``<directory>/<name>.pt`` and its manifest entry (with the file's
    sha256)."""
    directory = Path(directory or CHECKPOINT_DIR)
    path = directory / f"{check_name(name)}.pt"
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with _manifest_lock(directory):
        _atomic_write_bytes(path, lambda f: torch.save(tensors, f))
        _record(
            directory,
            name,
            path,
            command,
            seed,
            iterations,
            wall_time_s,
            config,
            metrics,
        )
    return path


@contextlib.contextmanager
def _manifest_lock(directory: Path):
    # Two training runs may finish at once: serialise the manifest's
    # read-modify-write. filelock works on Linux, macOS and Windows (fcntl is
    # POSIX only).
    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory / ".manifest.lock")):
        yield


def _record(
    directory: Path,
    name: str,
    path: Path,
    command: str,
    seed: int,
    iterations: int,
    wall_time_s: float,
    config: dict[str, Any],
    metrics: dict[str, Any] | None,
) -> None:
    entries = manifest(directory)
    entries[name] = {
        "file": path.name,
        "sha256": _sha256(path),
        "command": command,
        "seed": seed,
        "iterations": iterations,
        "wall_time_s": round(wall_time_s, 1),
        "machine": machine_description(),
        "saved": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "config": config,
        "metrics": metrics or {},
    }
    _write_manifest(directory, entries)


def _write_manifest(
    directory: Path, entries: dict[str, dict[str, Any]]
) -> None:
    text = json.dumps(dict(sorted(entries.items())), indent=2) + "\n"
    _atomic_write_bytes(directory / MANIFEST, lambda f: f.write(text.encode()))


def record_metrics(
    name: str, metrics: dict[str, Any], *, directory: Path | None = None
) -> None:
    """Merge ``metrics`` into the ``"metrics"`` of checkpoint ``name``'s
    manifest entry (for measurements made after training, such as the Siamese
    recipes compared with it).
    """
    directory = Path(directory or CHECKPOINT_DIR)
    checkpoint_entry(name, directory)  # a clear error for an unknown name
    with _manifest_lock(directory):
        entries = manifest(directory)
        entries[name].setdefault("metrics", {}).update(metrics)
        _write_manifest(directory, entries)


def training_sessions(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Where a checkpoint was trained: one row per machine,
    ``{"machine", "from_iteration", "to_iteration", "wall_time_s"}``, from its
    manifest entry.

    Entries written before the rows were kept give one row (the machine and
    wall time the entry names, for all its iterations).
    """
    rows = (entry.get("metrics") or {}).get("sessions") or []
    if rows:
        return [dict(r) for r in rows]
    return [
        {
            "machine": entry["machine"],
            "from_iteration": 0,
            "to_iteration": entry["iterations"],
            "wall_time_s": entry["wall_time_s"],
        }
    ]


def describe_training(entry: dict[str, Any]) -> str:
    """One line per :func:`training_sessions` row, e.g. ``iterations 0-8,496:
    1.51 h on CPU (x86_64, 2 cores), torch 2.13.0+cpu, ...``."""
    return "\n".join(
        f"iterations {r['from_iteration']:,}-{r['to_iteration']:,}: "
        f"{r['wall_time_s'] / 3600:.2f} h on {r['machine']}"
        for r in training_sessions(entry)
    )


def record_evaluation(
    name: str,
    result: dict[str, Any],
    *,
    command: str,
    directory: Path | None = None,
) -> None:
    """Keep an evaluation of checkpoint ``name`` in its manifest entry, under
    ``evaluations``.

    ``result`` holds ``metric, mean, ci95, tasks`` (``median`` and ``iqr`` kept
    where given) and ``settings`` (split, ways, shots, steps, alpha, ...); a
    new result with the same settings replaces the old one. The chapters read
    these numbers instead of re-running long evaluations while a reader waits.
    """
    directory = Path(directory or CHECKPOINT_DIR)
    checkpoint_entry(name, directory)  # a clear error for an unknown name
    with _manifest_lock(directory):
        entries = manifest(directory)
        entry = entries[name]
        row = {
            k: result[k]
            for k in ("metric", "mean", "ci95", "median", "iqr", "tasks")
            if k in result
        }
        row["settings"] = result.get("settings", {})
        row["command"] = command
        row["sha256"] = entry["sha256"]  # which weights were evaluated
        row["date"] = time.strftime("%Y-%m-%d")
        kept = [
            e
            for e in entry.get("evaluations", [])
            if e["settings"] != row["settings"]
        ]
        entry["evaluations"] = kept + [row]
        _write_manifest(directory, entries)


def promote(
    name: str, *, runs: Path | None = None, directory: Path | None = None
) -> dict[str, Any]:
    """Copy run ``name``'s checkpoint (``runs/<name>/``) into the book's
    ``checkpoints/``.

    The new manifest entry is the run's, with what the book recorded about the
    checkpoint it replaces kept: its ``evaluations`` (each row names the sha256
    of the weights it measured, so rows of the old weights stay recognisable
    until ``evaluate --record`` replaces them) and any ``metrics`` the run does
    not have (such as measurements of other runs beside it). Returns
    ``{"path", "entry", "stale"}``, ``stale`` being the evaluation rows
    measured on other weights than the promoted ones.
    """
    source = run_dir(name, runs)
    new = dict(checkpoint_entry(name, source))
    directory = Path(directory or CHECKPOINT_DIR)
    src = source / new["file"]
    if _sha256(src) != new["sha256"]:
        raise ValueError(
            f"run checkpoint {src} does not match its manifest's sha256: "
            f"train {name} --resume to write it again"
        )
    dest = directory / f"{name}.pt"
    with _manifest_lock(directory):
        entries = manifest(directory)
        old = entries.get(name, {})
        _atomic_write_bytes(dest, lambda f: f.write(src.read_bytes()))
        new["file"] = dest.name
        metrics = dict(new.get("metrics") or {})
        for key, value in (old.get("metrics") or {}).items():
            metrics.setdefault(key, value)
        new["metrics"] = metrics
        evaluations = list(new.get("evaluations", []))
        mine = [e["settings"] for e in evaluations]
        evaluations += [
            e for e in old.get("evaluations", []) if e["settings"] not in mine
        ]
        new["evaluations"] = evaluations
        entries[name] = new
        _write_manifest(directory, entries)
    stale = [e for e in new["evaluations"] if e.get("sha256") != new["sha256"]]
    return {"path": dest, "entry": new, "stale": stale}


def load_checkpoint(
    name: str, directory: Path | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load checkpoint ``name`` as ``(state_dict, manifest entry)`` after
    checking its sha256."""
    directory = Path(directory or CHECKPOINT_DIR)
    entry = checkpoint_entry(name, directory)
    path = directory / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint file {path} is missing, though the manifest "
            f"lists it: restore it (git checkout -- {path.name})"
        )
    got = _sha256(path)
    if got != entry["sha256"]:
        raise ValueError(
            f"checkpoint {path} has sha256 {got}, but the manifest says "
            f"{entry['sha256']}: the file changed since it was recorded"
        )
    return torch.load(path, map_location="cpu", weights_only=True), entry


def save_state(
    name: str, state: dict[str, Any], directory: Path | None = None
) -> Path:
    """Atomically write the resumable training state of run ``name``."""
    path = Path(directory or RUN_DIR) / check_name(name) / "state.pt"
    _atomic_write_bytes(path, lambda f: torch.save(state, f))
    return path


def load_state(
    name: str, directory: Path | None = None
) -> dict[str, Any] | None:
    """The saved training state of run ``name``, or ``None`` when there is
    none."""
    path = Path(directory or RUN_DIR) / check_name(name) / "state.pt"
    if not path.exists():
        return None
    # Our own file, holding numpy random states and plain Python history as
    # well as tensors.
    return torch.load(path, map_location="cpu", weights_only=False)


class Autosaver:
    """Calls ``save()`` when ``every_s`` seconds have passed since the last
    save."""

    def __init__(self, every_s: float = 120.0) -> None:
        self.every_s = every_s
        self.last = time.monotonic()

    def due(self) -> bool:
        if time.monotonic() - self.last >= self.every_s:
            self.last = time.monotonic()
            return True
        return False


class ResumableRun:
    """The bookkeeping of a resumable training loop: model, optimiser, random
    streams, history.

    With ``resume=True`` and a state saved under ``runs/<name>/`` it restores
    the model, the optimiser, the sampler's numpy generator ``rng``, torch's
    random state, the history and the iteration reached, so the loop continues
    exactly where it stopped; without a saved state (a fresh clone) it starts
    from the committed checkpoint ``name``'s weights and iteration. ``history``
    is a dict whose ``"wall_time_s"`` accumulates over resumed sessions and
    whose ``"sessions"`` rows say which machine trained which iterations.
    :meth:`save` writes the state atomically (nothing when ``name`` is None);
    :meth:`due` says when ``save_every`` seconds have passed since the last
    save; :meth:`out_of_time` when ``time_limit_s`` seconds have passed since
    this object was made (never when it is None).
    """

    def __init__(
        self,
        name: str | None,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        rng: Any,
        history: dict[str, Any],
        *,
        resume: bool = False,
        save_every: float = 120.0,
        time_limit_s: float | None = None,
    ) -> None:
        if time_limit_s is not None and not (0 < time_limit_s < float("inf")):
            raise ValueError(
                f"time_limit_s must be positive and finite, got {time_limit_s}"
            )
        self.time_limit_s, self._started = time_limit_s, time.monotonic()
        self.name, self.model, self.optimizer, self.rng = (
            name,
            model,
            optimizer,
            rng,
        )
        self.history, self.iteration = history, 0
        state = load_state(name) if (resume and name) else None
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            rng.bit_generator.state = state["sampler_rng"]
            torch.set_rng_state(state["torch_rng"])
            self.history, self.iteration = state["history"], state["iteration"]
        elif resume and name and name in manifest():
            self._from_checkpoint(name)
        # A state saved before the sessions rows were kept takes its machine
        # from the manifest.
        self._session_wall = begin_session(
            self.history.setdefault("sessions", []),
            self.iteration,
            self.history["wall_time_s"],
            earlier_machine=manifest()
            .get(name or "", {})
            .get("machine", "not recorded"),
        )
        self._saver = Autosaver(save_every)
        self._t0 = time.monotonic() - self.history["wall_time_s"]

    def _from_checkpoint(self, name: str) -> None:
        # runs/ is not committed: on a fresh clone, resume from the committed
        # checkpoint's weights and iteration (so a learning-rate schedule goes
        # on where it was), with a fresh optimiser state and a new sampler
        # stream; the earlier per-iteration history is not in the checkpoint,
        # only its wall time and sessions rows.
        weights, entry = load_checkpoint(name)
        self.model.load_state_dict(weights)
        self.iteration = int(entry["iterations"])
        self.rng.bit_generator.state = np.random.default_rng(
            [int(entry.get("seed", 0)), self.iteration]
        ).bit_generator.state
        self.history["wall_time_s"] = float(entry["wall_time_s"])
        self.history["sessions"] = training_sessions(entry)
        print(
            f"no saved state for {name} in runs/: resuming from the committed "
            f"checkpoint at iteration {self.iteration} (fresh optimiser "
            "state; earlier history not kept)"
        )

    def due(self) -> bool:
        """Whether ``save_every`` seconds have passed since the last save."""
        return self._saver.due()

    def out_of_time(self) -> bool:
        """Whether this session's ``time_limit_s`` is spent."""
        return (
            self.time_limit_s is not None
            and time.monotonic() - self._started >= self.time_limit_s
        )

    def save(self, iteration: int, config: dict[str, Any]) -> None:
        """Record the wall time and write the state reached after ``iteration``
        steps."""
        self.history["wall_time_s"] = time.monotonic() - self._t0
        self.history["sessions"][-1].update(
            to_iteration=iteration,
            wall_time_s=round(
                self._session_wall + time.monotonic() - self._started, 1
            ),
        )
        if self.name:
            save_state(
                self.name,
                {
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "sampler_rng": self.rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "history": self.history,
                    "iteration": iteration,
                    "config": config,
                },
            )
