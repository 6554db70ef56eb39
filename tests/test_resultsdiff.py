"""The exact-reproduction check of the speed issue: results folders compared CSV by CSV."""
from __future__ import annotations

from pathlib import Path

import pytest

from cism_lib.tools.resultsdiff import diff_csv, diff_folders, main

CSV = "row,seed,run,cam_miou_val\nCAM,0,cam-aa,0.2384\nCISM,0,cism-bb,\n"


def _write(folder: Path, text: str, name: str = "table_runs.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder


def test_identical_folders_pass_and_nan_equals_nan(tmp_path, capsys) -> None:
    a, b = _write(tmp_path / "a", CSV), _write(tmp_path / "b", CSV)
    assert main([str(a), str(b)]) == 0
    assert "table_runs.csv: identical" in capsys.readouterr().out


def test_a_numeric_change_in_the_4th_decimal_is_found_with_its_place(tmp_path) -> None:
    a = _write(tmp_path / "a", CSV)
    b = _write(tmp_path / "b", CSV.replace("0.2384", "0.2385"))
    d = diff_csv(a / "table_runs.csv", b / "table_runs.csv")
    assert d.status == "differs" and d.cells == 1
    assert d.max_abs == pytest.approx(1e-4) and "row 0, column 'cam_miou_val'" in d.where
    assert diff_csv(a / "table_runs.csv", b / "table_runs.csv", tol=2e-4).status == "identical"


def test_a_number_against_nan_a_text_change_and_a_missing_file_all_count(tmp_path, capsys) -> None:
    a = _write(tmp_path / "a", CSV)
    _write(a, "x\n1\n", "extra.csv")
    b = _write(tmp_path / "b", CSV.replace("cism-bb,", "cism-cc,0.3"))
    d = diff_folders(a, b)
    by_name = {x.name: x for x in d}
    assert by_name["extra.csv"].status == "missing"
    assert by_name["table_runs.csv"].cells == 2 and by_name["table_runs.csv"].max_abs == float("inf")
    assert main([str(a), str(b)]) == 1
    assert "0 of 2 CSV files identical" in capsys.readouterr().out


def test_other_columns_or_rows_are_a_shape_difference(tmp_path) -> None:
    a = _write(tmp_path / "a", CSV)
    b = _write(tmp_path / "b", CSV + "CIAN,0,cian-dd,0.1\n")
    assert diff_csv(a / "table_runs.csv", b / "table_runs.csv").status == "shape"


def test_an_empty_reference_folder_is_one_line(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(SystemExit, match="no CSV files to compare"):
        diff_folders(tmp_path / "a", tmp_path / "b")
