"""`make reproduce`'s runner: a hung or slow cell is bounded by a timeout and retried once."""
from __future__ import annotations

import nbformat
import pytest

from cism_lib.reproduce import run_notebook


def _notebook(path, source: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_a_cell_past_the_timeout_runs_the_notebook_again(tmp_path) -> None:
    # Sleeps on the first run only (a stand-in for a kernel that stalls once), so the retry passes.
    marker = tmp_path / "ran"
    _notebook(tmp_path / "00_once.ipynb",
              f"import pathlib, time\np = pathlib.Path({str(marker)!r})\n"
              "if not p.exists():\n    p.write_text('1')\n    time.sleep(30)\n")
    run_notebook(tmp_path / "00_once.ipynb", tmp_path / "out", "smoke", cell_timeout=5)
    assert marker.exists() and (tmp_path / "out" / "00_once.ipynb").is_file()


def test_a_cell_that_always_times_out_fails_naming_the_notebook(tmp_path) -> None:
    _notebook(tmp_path / "01_slow.ipynb", "import time\ntime.sleep(30)\n")
    with pytest.raises(SystemExit, match=r"01_slow.ipynb: a cell ran past 3.0 s in each of 2"):
        run_notebook(tmp_path / "01_slow.ipynb", tmp_path / "out", "smoke", cell_timeout=3.0)


def test_an_error_names_the_notebook_and_cell(tmp_path) -> None:
    _notebook(tmp_path / "02_bad.ipynb", "raise ValueError('boom')\n")
    with pytest.raises(SystemExit, match=r"FAILED .*02_bad.ipynb \(cell 1\): ValueError: boom"):
        run_notebook(tmp_path / "02_bad.ipynb", tmp_path / "out", "smoke")
