"""Committed notebooks are clean (no outputs, parameters cell first, thin) and in sync with their py:percent twins."""
from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest
from jupytext.config import find_jupytext_configuration_file, load_jupytext_configuration_file

FOLDER = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("[0-9][0-9]_*.ipynb"))
TWINS = sorted(FOLDER.glob("[0-9][0-9]_*.py"))
EXPECTED = ["00_quickstart", "01_data_statistics", "02_mcsg", "03_train", "04_table4_prototypes_pie",
            "05_table5_eta", "06_table6_slsc", "07_table7_mcsg", "08_table8_losses",
            "09_table1_comparison", "10_cam_figures", "11_explore", "12_inside_cism", "13_reproduction"]


def test_every_notebook_of_the_issue_exists() -> None:
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name}: no code cells"
    for cell in code:
        assert cell.outputs == [], f"{path.name}: cell {cell.get('id')} has outputs"
        assert cell.execution_count is None, f"{path.name}: cell {cell.get('id')} has an execution count"
    assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: first code cell not tagged parameters"
    assert all("parameters" not in c.metadata.get("tags", []) for c in code[1:])
    assert any("from cism_lib" in c.source or "import cism_lib" in c.source for c in code), \
        f"{path.name}: does not import cism_lib"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


def test_jupytext_pairs_every_notebook_with_its_py_percent_twin() -> None:
    config = load_jupytext_configuration_file(find_jupytext_configuration_file(str(FOLDER)))
    assert config.default_formats(str(NOTEBOOKS[0])) == "ipynb,py:percent"
    assert [p.stem for p in TWINS] == [p.stem for p in NOTEBOOKS], "a .py twin without its .ipynb (or the reverse)"


def _inputs(nb: nbformat.NotebookNode) -> list[tuple[str, str, dict]]:
    """What a paired text file holds of each cell: its type, source and metadata."""
    return [(c.cell_type, c.source, dict(c.metadata)) for c in nb.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_and_its_twin_are_in_sync(path: Path) -> None:
    fix = f"jupytext --sync notebooks/{path.name}"
    twin = path.with_suffix(".py")
    if not twin.is_file():
        pytest.fail(f"{path.name} has no py:percent twin: run {fix}", pytrace=False)
    # The .ipynb as its twin would hold it: jupytext leaves out of text files the cell metadata that
    # JupyterLab adds (collapsed, scrolled, ExecuteTime, ...), so those never count as a difference.
    ipynb = _inputs(jupytext.reads(jupytext.writes(jupytext.read(path), fmt="py:percent"), fmt="py:percent"))
    text = _inputs(jupytext.read(twin))
    if ipynb != text:
        cell = next((i for i, (a, b) in enumerate(zip(ipynb, text)) if a != b), min(len(ipynb), len(text)))
        pytest.fail(f"{twin.name} and {path.name} differ from cell {cell} on: run {fix}", pytrace=False)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_never_calls_the_display_module(path: Path) -> None:
    """A notebook that imports ``cism_lib.display`` shadows IPython's ``display()``; calling it
    raises "'module' object is not callable" only in cells that CI reaches (the real-tile cells)."""
    import ast

    nb = nbformat.read(path, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    imports_module = any(
        isinstance(node, ast.ImportFrom) and node.module == "cism_lib"
        and any(alias.name == "display" and alias.asname is None for alias in node.names)
        for node in ast.walk(tree))
    calls = [node.lineno for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "display"]
    assert not (imports_module and calls), (
        f"{path.name}: calls display(...) on lines {calls} of its code, but `display` is the cism_lib.display "
        "module there; end the cell with the object (or use display.table / display.markdown)")
