"""The README's and the reproduction report's tables are what cism_lib.report renders from results/."""
from __future__ import annotations

import pandas as pd
import pytest

from cism_lib import display, report
from cism_lib.outputs import ROOT


@pytest.mark.parametrize("name", report.FILES)
def test_committed_tables_equal_what_results_render(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    assert report.BLOCK.search(text), f"{name} has no <!-- table:NAME --> block"
    assert text == report.render(text), (
        f"{name}'s tables differ from results/: run `python -m cism_lib.report` and commit both")


def test_every_table_is_used_by_a_committed_file() -> None:
    used = {m.group("name") for f in report.FILES for m in report.BLOCK.finditer((ROOT / f).read_text())}
    assert used == set(report.TABLES)


def test_render_replaces_only_the_block_body_and_names_an_unknown_table(tmp_path) -> None:
    text = "before\n<!-- table:real -->\nstale | table\n<!-- /table -->\nafter\n"
    out = report.render(text)
    assert out.startswith("before\n<!-- table:real -->\n| method |") and out.endswith("<!-- /table -->\nafter\n")
    assert "18.0 ± 0.6" in out  # the plain CAM's two full-budget seeds, from screen_runs.csv
    with pytest.raises(KeyError, match="unknown table 'nope'"):
        report.render("<!-- table:nope -->\n<!-- /table -->\n")


def test_markdown_aligns_numbers_right_and_text_left() -> None:
    df = pd.DataFrame({"row": ["a", "b"], "mIoU": ["23.4 ± 0.1", "–"], "note": ["x", "1 seed"]})
    assert display.markdown_table(df).splitlines()[:2] == ["| row | mIoU | note |", "|---|---:|---|"]


@pytest.mark.parametrize(("paper", "ours", "spread", "seeds", "expected"), [
    (3.8, -2.4, 0.0, 1, "opposite direction (one seed)"),
    (1.3, 1.4, 0.0, 1, "same direction (one seed)"),
    (1.0, 2.0, 0.4, 2, "reproduced"),
    (1.0, -2.0, 0.4, 2, "not reproduced"),
    (1.0, 0.5, 0.4, 2, "within the seed spread"),
    (float("nan"), 0.5, 0.0, 1, "not testable"),
])
def test_verdict(paper: float, ours: float, spread: float, seeds: int, expected: str) -> None:
    assert report.verdict(paper, ours, spread, seeds) == expected


def test_the_real_chain_lines_name_their_source() -> None:
    chains = report.chain_runs()
    assert chains["source"].str.startswith("docs/results.md").all()
    assert (chains["source"].str.contains("cism chain")).all()


def test_the_sections_the_real_chain_lines_cite_exist() -> None:
    headings = [line for line in (ROOT / "docs" / "results.md").read_text().splitlines() if line.startswith("#")]
    for section in report.chain_runs()["source"].str.extract(r'"([^"]+)"')[0]:
        assert any(section in h for h in headings), f"docs/results.md has no section {section!r}"


def test_the_curves_per_class_iou_averages_to_their_miou() -> None:
    """Each committed curve line's per-class val IoU, averaged over the classes, is its val mIoU
    (both from the same confusion matrix), and the per-class report has the curve table's lines."""
    lines = report.results_csv("isaid512/curve_runs")
    per_class = lines.filter(like="cam_iou_val_")
    assert per_class.shape[1] == 16 and per_class.notna().all().all()
    assert per_class.mean(axis=1).tolist() == pytest.approx(lines["cam_miou_val"].tolist(), abs=1e-4)
    keys = ["method", "schedule (epochs)", "after epoch", "seeds"]
    assert report.learning_curve_per_class()[keys].equals(report.learning_curve_table()[keys])
