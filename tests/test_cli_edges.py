"""Rough edges a new user hits: bad config files and folders give one line, not a traceback;
.ci/run finds the real tiles only where documented; figure files stay small; viz stands alone."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cism_lib import outputs, viz

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- .ci/run
def _ci_root(tmp_path: Path, env_root: str | None = None) -> str:
    """The CISM_ISAID_ROOT line .ci/run prints from a copy of it in tmp_path/repo (make stubbed)."""
    (tmp_path / "repo" / ".ci").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / ".ci" / "run", tmp_path / "repo" / ".ci" / "run")
    (tmp_path / "bin").mkdir(exist_ok=True)
    (tmp_path / "bin" / "make").write_text("#!/bin/sh\necho \"make $*\"\n")
    (tmp_path / "bin" / "make").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CISM_ISAID_ROOT"}
    env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"
    if env_root is not None:
        env["CISM_ISAID_ROOT"] = env_root
    done = subprocess.run(["bash", str(tmp_path / "repo" / ".ci" / "run")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "make test"
    return done.stdout.splitlines()[0]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_ci_run_looks_for_real_tiles_only_beside_the_clone_or_in_the_env(tmp_path: Path) -> None:
    assert _ci_root(tmp_path) == "CISM_ISAID_ROOT=<unset: realdata tests skipped>"
    assert _ci_root(tmp_path, "/some/tiles") == "CISM_ISAID_ROOT=/some/tiles"
    (tmp_path / "shared" / "data" / "isaid512" / "train" / "images").mkdir(parents=True)
    assert _ci_root(tmp_path) == f"CISM_ISAID_ROOT={tmp_path.resolve() / 'shared/data/isaid512'}"
    assert _ci_root(tmp_path, "/some/tiles") == "CISM_ISAID_ROOT=/some/tiles"


# ----------------------------------------------------------------------------- figures
def _smooth_tile(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """An aerial-looking uint8 [size,size,3] tile: smooth colour fields plus a little grain."""
    coarse = rng.uniform(40, 200, (8, 8, 3))
    tile = np.kron(coarse, np.ones((size // 8, size // 8, 1)))
    return (tile + rng.normal(0, 12, tile.shape)).clip(0, 255).astype(np.uint8)


def test_cam_panels_are_saved_small_as_jpeg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            rng: np.random.Generator) -> None:
    monkeypatch.setattr(outputs, "ROOT", tmp_path)
    yy, xx = np.mgrid[0:256, 0:256] / 255.0
    samples = []
    for _ in range(4):  # figure 9's shape: 4 rows of image, ground truth, 4 CAMs, pseudo-mask
        mask = np.zeros((256, 256), dtype=np.uint8)
        mask[40:120, 60:200], mask[150:230, 20:100] = 3, 11
        cams = {f"CAM {k}": np.stack([np.sin(3 * xx + k) * np.cos(2 * yy) ** 2] * 15).astype(np.float32)
                for k in range(4)}
        samples.append({"image": _smooth_tile(rng), "ground truth": mask, **cams, "pseudo-mask": mask})
    stale = tmp_path / "figures" / "smoke" / "panel.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    path = viz.save_figure(viz.cam_panel(samples), "panel", "smoke")
    assert path == tmp_path / "figures" / "smoke" / "panel.jpg" and not stale.exists()
    data = path.read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and len(data) < 300_000
    assert viz.save_figure(viz.cam_panel(samples), "panel", "smoke").read_bytes() == data  # stable bytes
    curves = viz.save_figure(viz.figure5({"toy": np.eye(3, dtype=bool)}), "plot", "smoke")
    assert curves.suffix == ".png"  # line plots stay PNG


def test_committed_figures_are_small_and_referenced_by_their_names() -> None:
    figures = sorted((REPO / "figures").glob("*.*"))
    assert figures and all(f.stat().st_size < 300_000 for f in figures), \
        {f.name: f.stat().st_size for f in figures if f.stat().st_size >= 300_000}
    readme = (REPO / "README.md").read_text()
    for ref in [w.split(")")[0] for w in readme.split("](figures/")[1:]]:
        assert (REPO / "figures" / ref).is_file(), ref


# ----------------------------------------------------------------------------- import circle
def test_viz_imports_without_experiments() -> None:
    code = "import sys, cism_lib.viz; print('cism_lib.experiments' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=REPO, env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.stdout.strip() == "False"
    tree = ast.parse((REPO / "cism_lib" / "viz.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "cism_lib.experiments" not in imported  # not even inside a function
