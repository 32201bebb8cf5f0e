"""The package outside the clone: build the wheel, install it into a fresh
virtual environment, and execute a chapter from an empty folder with a fresh
home folder.

The fresh environment gets the book's dependencies from the running one
through a ``.pth`` line (installing torch again would take minutes), but its
``mlkit`` is the wheel's: the test checks that the kernel imported it from
there and that the chapter found the checkpoints shipped inside the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from mlkit import data

ROOT = Path(__file__).resolve().parents[1]
# Chapter 3 loads three checkpoints and reads Omniglot: the wheel must ship
# the one and find the other through MLKIT_DATA.
CHAPTER = ROOT / "chapters" / "03_maml.ipynb"


def _have_omniglot() -> bool:
    folder = data.omniglot_dir()
    return all(
        (folder / f"images_{s}.npz").exists()
        or (folder / f"images_{s}.zip").exists()
        for s in ("background", "evaluation")
    )


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
    )
    wheels = list(dist.glob("opening_the_box-*.whl"))
    assert len(wheels) == 1, wheels
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [
                str(python),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "_book_dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            "-q",
            str(wheels[0]),
        ],
        check=True,
    )
    home = base / "home"
    home.mkdir()
    work = base / "empty"
    work.mkdir()
    return {"python": python, "site": site, "home": home, "work": work}


def _env(fresh: dict[str, Path]) -> dict[str, str]:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLKIT_", "JUPYTER", "PYTHON", "VIRTUAL_ENV"))
    }
    keep.update(
        HOME=str(fresh["home"]),
        MLKIT_NO_LIVE_WIDGETS="1",
        MPLBACKEND="Agg",
        MLKIT_DATA=str(data.data_root()),
    )
    return keep


def test_wheel_ships_mlkit_and_its_checkpoints(
    fresh_env: dict[str, Path],
) -> None:
    code = (
        "import mlkit, mlkit.checkpoints as c; "
        "print(mlkit.__file__); print(c.CHECKPOINT_DIR); "
        "print(sorted(c.manifest()))"
    )
    out = subprocess.run(
        [str(fresh_env["python"]), "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=fresh_env["work"],
        env=_env(fresh_env),
    ).stdout.splitlines()
    assert Path(out[0]).is_relative_to(fresh_env["site"]), out[0]
    assert Path(out[1]) == fresh_env["site"] / "mlkit" / "checkpoint_files"
    assert "maml-sinusoid" in out[2] and "siamese-omniglot" in out[2]


def test_wheel_command_line_refuses_bad_input(
    fresh_env: dict[str, Path],
) -> None:
    run = subprocess.run(
        [
            str(fresh_env["python"]),
            "-m",
            "mlkit",
            "evaluate",
            "maml-sinusoid",
            "--tasks",
            "0",
        ],
        capture_output=True,
        text=True,
        cwd=fresh_env["work"],
        env=_env(fresh_env),
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "--tasks" in run.stderr


@pytest.mark.skipif(
    not _have_omniglot(), reason="no Omniglot copy: set MLKIT_DATA"
)
def test_chapter_executes_from_the_wheel_in_an_empty_folder(
    fresh_env: dict[str, Path],
) -> None:
    notebook = fresh_env["work"] / CHAPTER.name
    shutil.copy(CHAPTER, notebook)
    # the kernel is the fresh environment's Python (the native python3 kernel)
    code = (
        "import sys, nbformat, nbclient; "
        "nb = nbformat.read(sys.argv[1], as_version=4); "
        "nbclient.NotebookClient(nb, timeout=600, kernel_name='python3', "
        "resources={'metadata': {'path': '.'}}).execute()"
    )
    run = subprocess.run(
        [str(fresh_env["python"]), "-c", code, notebook.name],
        capture_output=True,
        text=True,
        cwd=fresh_env["work"],
        env=_env(fresh_env),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    # nothing was written beside the notebook (no runs/, no data, no
    # checkpoints)
    assert sorted(p.name for p in fresh_env["work"].iterdir()) == [
        CHAPTER.name
    ]
