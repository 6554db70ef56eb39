"""`make reproduce`'s runner: a hung or slow cell is bounded by a timeout and retried once; the HTML report."""
from __future__ import annotations

import nbformat
import pytest

from cism_lib.tools.reproduce import run_notebook, write_report


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
    # papermill marked the executed copy, and the report says so
    assert "<td>failed</td>" in write_report(tmp_path / "out").read_text()


def _executed(path, text: str, duration: float, failed: bool = False) -> None:
    """A notebook as papermill leaves it: a cell with its output and papermill's run metadata."""
    output = nbformat.v4.new_output("stream", name="stdout", text=text.upper() + "\n")
    cell = nbformat.v4.new_code_cell(f"print({text!r}.upper())", execution_count=1, outputs=[output])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A tiny notebook"), cell])
    nb.metadata["papermill"] = {"duration": duration, "exception": True if failed else None,
                                "end_time": "2026-12-02T18:00:00"}
    nbformat.write(nb, path)


def test_the_report_links_every_executed_notebook_with_its_run_time(tmp_path) -> None:
    _executed(tmp_path / "00_tiny.ipynb", "hello from the tiny notebook", duration=90.0)
    _executed(tmp_path / "01_broken.ipynb", "it broke", duration=3.0, failed=True)
    index = write_report(tmp_path)
    assert index == tmp_path / "index.html"
    assert "HELLO FROM THE TINY NOTEBOOK" in (tmp_path / "00_tiny.html").read_text()  # its output
    assert "A tiny notebook" in (tmp_path / "01_broken.html").read_text()
    rows = [line for line in index.read_text().splitlines() if line.startswith("<tr><td>")]
    assert rows == ['<tr><td><a href="00_tiny.html">00_tiny</a></td><td>1.5 min</td><td>ok</td>'
                    "<td>2026-12-02 18:00:00</td></tr>",
                    '<tr><td><a href="01_broken.html">01_broken</a></td><td>3 s</td><td>failed</td>'
                    "<td>2026-12-02 18:00:00</td></tr>"]
