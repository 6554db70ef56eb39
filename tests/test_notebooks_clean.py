"""Committed notebooks are clean: no outputs, parameters cell first, thin (they import cism_lib)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

FOLDER = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["00_quickstart", "01_data_statistics", "02_mcsg", "03_train", "04_table4_prototypes_pie",
            "05_table5_eta", "06_table6_slsc", "07_table7_mcsg", "08_table8_losses",
            "09_table1_comparison", "10_cam_figures", "11_explore"]


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


def test_notebooks_match_their_generator() -> None:
    spec = importlib.util.spec_from_file_location("make_notebooks", FOLDER / "make_notebooks.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for name, cells in gen.NOTEBOOKS.items():
        for i, cell in enumerate(cells):
            cell["id"] = f"{name[:2]}-{i:02d}"
        expected = nbformat.writes(gen.build(name, cells))
        assert (FOLDER / f"{name}.ipynb").read_text() == expected + "\n" or \
            (FOLDER / f"{name}.ipynb").read_text() == expected, f"{name}.ipynb is stale: rerun make_notebooks.py"
