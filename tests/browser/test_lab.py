"""The slider explorer in JupyterLab, driven by headless Chromium.

A small notebook (written to a temporary folder) shows a static twin and an
explorer. It is executed and signed (trusted), then opened in a JupyterLab
server on 127.0.0.1:
- the stored static twin responds to the keyboard and the mouse with no
  kernel involved (JupyterLab would otherwise take the arrow keys as notebook
  shortcuts);
- after running the cells, the explorer shows the live ipywidgets version,
  and moving its slider recomputes the figure in the kernel.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

BIN = Path(sys.executable).parent

CODE_TWIN = (
    """import matplotlib.pyplot as plt
from mlkit.widgets import Slider, explorer, static_twin
def draw(a, b):
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, a * b])
    ax.set_ylim(-10, 10)
    return fig
S = [Slider("a", [1.0, 2.0, 3.0], 1.0, label="slope", fmt="{:.1f}"), """
    """Slider("b", [1, 2], 1)]
static_twin(draw, S, title="Twin")"""
)
CODE_LIVE = 'explorer(draw, S, title="Live")'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(CODE_TWIN),
        nbformat.v4.new_code_cell(CODE_LIVE),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = root / "demo.ipynb"
    nbformat.write(nb, path)
    # Everything Jupyter writes (signing key, trust database, workspaces,
    # settings) stays in the temporary folder; `jupyter trust` and the server
    # must share the data dir.
    env = dict(
        os.environ,
        JUPYTER_DATA_DIR=str(root / ".data"),
        JUPYTER_RUNTIME_DIR=str(root / ".rt"),
        JUPYTERLAB_WORKSPACES_DIR=str(root / ".ws"),
        JUPYTERLAB_SETTINGS_DIR=str(root / ".settings"),
    )
    subprocess.run(
        [BIN / "jupyter", "execute", "--inplace", "--timeout=120", path],
        check=True,
        env=env,
        capture_output=True,
    )
    subprocess.run(
        [BIN / "jupyter", "trust", path],
        check=True,
        env=env,
        capture_output=True,
    )
    port = _free_port()
    log = open(root / "lab.log", "w")
    proc = subprocess.Popen(
        [
            BIN / "jupyter",
            "lab",
            "--no-browser",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.token=",
            "--ServerApp.password=",
            "--allow-root",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class="
            "jupyterlab.NeverCheckForUpdate",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(
                        "jupyter lab exited: "
                        + (root / "lab.log").read_text()[-2000:]
                    )
                time.sleep(0.5)
        else:
            pytest.fail("jupyter lab did not start in 60 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_explorer_in_jupyterlab(lab, browser):
    shots = Path(__file__).resolve().parents[2] / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    pg = context.new_page()
    try:
        pg.goto(f"{lab}/lab/tree/demo.ipynb")
        twin = pg.locator("div.mlkit-explorer").first
        twin.wait_for(timeout=90_000)
        img = twin.locator("img.mlkit-frame")
        sliders = twin.locator("input.mlkit-slider")
        # the stored, trusted twin: keyboard
        pg.wait_for_function(
            "() => document.querySelector('div.mlkit-explorer')"
            ".dataset.ready === '1'",
            timeout=30_000,
        )
        src = img.get_attribute("src")
        sliders.nth(0).focus()
        pg.keyboard.press("ArrowRight")
        assert (
            sliders.nth(0).input_value() == "1"
        ), "arrow key did not reach the twin's slider"
        assert img.get_attribute("src") != src
        assert (
            twin.locator("output.mlkit-value").nth(0).text_content() == "2.0"
        )
        # ... and mouse: click the right end of the second slider
        src = img.get_attribute("src")
        bb = sliders.nth(1).bounding_box()
        pg.mouse.click(bb["x"] + bb["width"] - 3, bb["y"] + bb["height"] / 2)
        assert sliders.nth(1).input_value() == "1"
        assert img.get_attribute("src") != src
        twin.screenshot(path=str(shots / "jupyterlab__twin.png"))

        # run both cells in the kernel: the explorer becomes the live
        # ipywidgets version
        pg.locator(".jp-CodeCell").nth(0).locator(
            ".jp-InputArea-editor"
        ).click()
        pg.keyboard.press("Shift+Enter")
        pg.keyboard.press("Shift+Enter")
        live = pg.locator(".jp-CodeCell").nth(1)
        handle = live.locator(".noUi-handle").first
        handle.wait_for(timeout=90_000)
        frame = live.locator(".jp-OutputArea img").last
        frame.wait_for(timeout=60_000)
        before = frame.get_attribute("src")
        handle.focus()
        pg.keyboard.press("ArrowRight")
        pg.wait_for_function(
            "before => { const imgs = document.querySelectorAll("
            "'.jp-CodeCell:nth-child(2) .jp-OutputArea img');"
            " return imgs.length && imgs[imgs.length - 1].src !== before; }",
            arg=before,
            timeout=60_000,
        )
        pg.screenshot(path=str(shots / "jupyterlab__live.png"), full_page=True)
    finally:
        context.close()
