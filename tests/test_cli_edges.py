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

from cism_lib import cli, outputs, viz
from cism_lib.config import load_config
from cism_lib.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def _error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run `cism argv`, expect exit code 2, and return its single stderr line."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize(("text", "where"), [
    ("data:\n  root: [a,\nmodel:\n  eta: 0.3\n", "line 4, column 6"),   # unclosed flow sequence
    ("model:\n\teta: 0.3\n", "line 2, column 1"),                        # a tab indent
    ("model: eta: 0.3\n", "line 1, column 11"),                          # mapping inside a scalar
    ("model:\n  eta: 0.3\x07\n", "line 2, column 11"),                   # a control character
])
def test_malformed_yaml_is_one_line_with_file_line_and_column(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    line = _error_line(capsys, ["train", str(bad)])
    assert line.startswith(f"error: {bad}: invalid YAML at {where}: "), line
    if "[" in text:  # where the unclosed bracket opened, too
        assert line.endswith("(while parsing a flow sequence that starts at line 2, column 9)"), line


@pytest.mark.parametrize(("content", "message"), [
    (b"- a\n- b\n", "a config file must be a YAML mapping of sections, not a list"),
    (b"just words\n", "a config file must be a YAML mapping of sections, not a str"),
    (b"\xff\xfe\x00m", "not a UTF-8 text file"),
])
def test_config_file_that_is_not_a_mapping_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert _error_line(capsys, ["train", str(path)]) == f"error: {path}: {message}"


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_config_file_is_an_error_not_the_defaults(tmp_path: Path, text: str) -> None:
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"c\.yaml: empty config file"):
        load_config(tmp_path / "c.yaml")


def test_missing_config_and_bad_override_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _error_line(capsys, ["train", str(tmp_path / "nope.yaml")]) == \
        f"error: {tmp_path / 'nope.yaml'}: config file not found"
    line = _error_line(capsys, ["train", str(REPO / "configs/smoke.yaml"), "--train.epochs", "many"])
    assert line == "error: train.epochs: cannot read 'many' as int"


def test_runs_of_a_missing_or_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _error_line(capsys, ["runs", str(tmp_path / "nope")]).startswith(
        f"error: {tmp_path / 'nope'}: no such runs folder")
    assert cli.main(["runs", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"no runs in {tmp_path} yet\n"


def test_unwritable_output_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "synth"
    line = _error_line(capsys, ["data", "synth", "--out", str(out), "--train", "1", "--val", "1", "--size", "32"])
    assert line == f"error: {out}: Not a directory"


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
