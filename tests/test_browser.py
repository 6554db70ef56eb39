"""The notebooks in a real browser: JupyterLab on a local port, driven in headless Chromium.

Behind the `browser` marker (`make test-browser`): needs the Debian package `chromium`
(/usr/bin/chromium, or $CISM_CHROMIUM) and the PyPI package `playwright` (its own browsers are
never downloaded: the system Chromium is launched through `executable_path`). The notebooks run on
copies in a temporary folder with the smoke profile, so the repository's notebooks stay clean.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CISM_CHROMIUM", "/usr/bin/chromium")
# The flags the machine notes give for Chromium as root on a closed network.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
TOKEN = "cism-browser-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, folder) of a JupyterLab serving copies of the notebooks, smoke profile."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM}: no Chromium (apt-get install chromium, or set CISM_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
    folder = tmp_path_factory.mktemp("lab")
    for name in ("00_quickstart.ipynb", "11_explore.ipynb"):
        shutil.copy(ROOT / "notebooks" / name, folder / name)
    port = _free_port()
    env = {**os.environ, "CISM_PROFILE": "smoke", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    env.pop("CISM_HEADLESS", None)  # a person at the browser: widgets on
    log = open(folder / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
                             "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
                             f"--ServerApp.root_dir={folder}", "--allow-root",
                             f"--LabApp.workspaces_dir={folder / 'workspaces'}",
                             "--LabApp.news_url=", "--LabApp.expose_app_in_browser=True",
                             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"JupyterLab did not start on port {port}: {(folder / 'lab.log').read_text()[-2000:]}")
    yield base, folder
    proc.terminate()
    proc.wait(20)
    log.close()


@pytest.fixture(scope="module")
def browser(lab: tuple[str, Path]) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def _open_and_run_all(browser: object, base: str, name: str) -> object:
    """Open a notebook in JupyterLab, wait for its kernel, Run All Cells; returns the page."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(120_000)
    page.goto(f"{base}/lab/tree/{name}?reset&token={TOKEN}")  # reset: no other notebook restored
    print(f"opened {name}", flush=True)
    page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
    page.wait_for_function("window.jupyterapp !== undefined", timeout=60_000)
    # the notebook is the current widget and its kernel is ready
    page.wait_for_function("""() => { const w = window.jupyterapp.shell.currentWidget;
        const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
        return !!k && k.status === 'idle'; }""", timeout=120_000)
    # started, not awaited (the command's promise can outlive the cells); _wait_until_done watches
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    page.wait_for_function("""() => [...document.querySelectorAll('.jp-InputPrompt')]
        .some(e => /\\[(\\*|\\d+)\\]/.test(e.textContent))""", timeout=60_000)
    print(f"ran all cells of {name}", flush=True)
    return page


def _wait_until_done(base: str, timeout_s: float = 300, quiet_s: float = 5) -> None:
    """Until every kernel of the server has been idle for `quiet_s` seconds (the server's own
    record of execution_state, not the page's prompts, which windowed notebooks may not render)."""
    import json

    deadline, quiet_since = time.time() + timeout_s, None
    time.sleep(2)
    while time.time() < deadline:
        with urllib.request.urlopen(f"{base}/api/kernels?token={TOKEN}", timeout=5) as r:
            states = [k["execution_state"] for k in json.load(r)]
        if states and all(st == "idle" for st in states):
            quiet_since = quiet_since or time.time()
            if time.time() - quiet_since >= quiet_s:
                return
        else:
            quiet_since = None
        time.sleep(1)
    raise AssertionError(f"kernels still busy after {timeout_s:.0f} s")


def _saved(page: object, path: Path) -> nbformat.NotebookNode:
    """Save the notebook from the browser (Ctrl+S) and read the file the server wrote."""
    before = path.stat().st_mtime
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    deadline = time.time() + 120
    while path.stat().st_mtime == before and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(1)  # the server writes the file atomically; give a slow disk a moment
    return nbformat.read(path, as_version=4)


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    return [f"cell {i}: {o.get('ename')}: {o.get('evalue')}" for i, c in enumerate(nb.cells)
            if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]


def test_quickstart_runs_every_cell_without_an_error_in_jupyterlab(browser: object, lab: tuple[str, Path]) -> None:
    base, folder = lab
    page = _open_and_run_all(browser, base, "00_quickstart.ipynb")
    # On a loaded machine the kernel can sit idle for seconds between queued cells, and a save
    # can land late: wait and save again until every code cell has run (or the deadline passes).
    deadline = time.time() + 600
    while True:
        _wait_until_done(base)
        nb = _saved(page, folder / "00_quickstart.ipynb")
        code = [c for c in nb.cells if c.cell_type == "code"]
        not_run = [i for i, c in enumerate(code) if not c.execution_count]
        if not not_run or time.time() > deadline:
            break
    assert not _errors(nb)
    assert not not_run, f"code cells {not_run} of {len(code)} did not run"
    assert page.locator(".jp-OutputArea-output img").count() >= 1  # the CAM panel was drawn
    page.close()


def test_explore_view_redraws_when_a_slider_moves(browser: object, lab: tuple[str, Path]) -> None:
    base, folder = lab
    page = _open_and_run_all(browser, base, "11_explore.ipynb")
    slider = page.locator(".widget-slider", has_text="index").first
    slider.wait_for(timeout=300_000)
    view = page.locator(".widget-output img").first
    view.wait_for(timeout=120_000)
    text = page.locator(".widget-output", has_text="classes present").first
    first_image, first_text = view.get_attribute("src"), text.inner_text()
    assert "classes present" in first_text and "nan" not in first_text
    handle = slider.locator(".noUi-handle, .ui-slider-handle").first
    handle.focus()
    handle.press("ArrowRight")
    deadline = time.time() + 120
    while time.time() < deadline and view.get_attribute("src") == first_image:
        time.sleep(0.5)
    assert view.get_attribute("src") != first_image, "the view did not redraw after the index slider moved"
    assert text.inner_text() != first_text  # another image: another id and classes
    _wait_until_done(base)
    assert not _errors(_saved(page, folder / "11_explore.ipynb"))
    page.close()
