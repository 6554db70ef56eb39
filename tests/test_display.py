"""display: what a notebook shows of a table (percent cells, mean ± std, caption, written reading)."""
import math

import pandas as pd
import pytest

from cism_lib import display, experiments
from cism_lib.errors import DataError


def _compare_frame() -> pd.DataFrame:
    """A compare() frame of three rows: a 2-seed baseline, a 2-seed row and a 1-seed row."""
    return pd.DataFrame({
        "row": ["base", "better", "single"],
        "paper mIoU": [20.0, 25.0, 18.0],
        "ours mIoU": [30.0, 33.0, 29.0],
        "ours mIoU std": [0.3, 0.4, math.nan],
        "n_seeds": [2, 2, 1],
        "data": ["SynthAerial (synthetic)"] * 3,
        "protocol": ["train split, threshold selected on val, 2 seeds", "train split, threshold selected on val, "
                     "2 seeds", "train split, threshold selected on val, 1 seed"],
    })


def test_view_merges_std_into_mean_cells_and_shows_missing_values_as_a_dash() -> None:
    df = _compare_frame()
    df.loc[2, "paper mIoU"] = math.nan
    cells = display.view(df)
    assert list(cells.columns) == ["row", "paper mIoU", "ours mIoU", "seeds"]
    assert cells["ours mIoU"].tolist() == ["30.0 ± 0.3", "33.0 ± 0.4", "29.0"]
    assert cells["paper mIoU"].tolist() == ["20.0", "25.0", display.DASH]
    assert cells["seeds"].tolist() == ["2", "2", "1"]


def test_view_drops_rows_without_any_number_and_keeps_every_class_column() -> None:
    cols = {c: [math.nan, 12.345] for c in ["BG", "SH", "ST", "BD", "TC", "BC", "GTF", "BR", "LV", "SV", "HC",
                                            "SP", "RA", "SBF", "PL", "HA", "mIoU"]}
    df = pd.DataFrame({"model": ["CAM", "CAM"], "source": ["paper", "ours"],
                       "data": ["iSAID (paper)", "SynthAerial (synthetic)"],
                       "protocol": ["as published", "train split, 1 seed"], "n_seeds": [math.nan, 1], **cols})
    cells = display.view(df)
    assert len(cells) == 1 and cells["source"].item() == "ours"
    assert "HA" in cells.columns and cells["GTF"].item() == "12.3"
    assert "data" not in cells.columns  # one dataset among the rows we ran: it goes to the caption
    assert display.caption_of(df) == "ours: SynthAerial (synthetic) — train split"
    html = display.table(df).to_html()
    assert "…" not in html and ">HA<" in html and "ours: SynthAerial" in html


def test_view_keeps_the_data_column_when_the_rows_ran_on_different_data() -> None:
    df = _compare_frame()
    df.loc[1, "data"] = "iSAID tiles (real)"
    assert display.view(df)["data"].tolist() == ["SynthAerial (synthetic)", "iSAID tiles (real)",
                                                 "SynthAerial (synthetic)"]


def test_caption_leaves_out_rows_not_run_and_the_per_row_seed_count() -> None:
    df = _compare_frame()
    df.loc[2, ["data", "protocol"]] = ["not run", "not run"]
    assert display.caption_of(df) == "ours: SynthAerial (synthetic) — train split, threshold selected on val"


def test_reading_states_each_rows_change_direction_and_whether_it_beats_the_seed_spread() -> None:
    text = display.reading(_compare_frame())
    # better: paper +5.0, ours +3.0; noise = hypot(0.3, 0.4) = 0.5, |3.0| > 2 * 0.5
    assert "**better**: paper +5.0, ours +3.0 (same direction); beyond the seed spread (±0.5)." in text
    # single: paper -2.0, ours -1.0 with one seed
    assert "**single**: paper -2.0, ours -1.0 (same direction); one seed on a side" in text
    df = _compare_frame()
    df.loc[1, "ours mIoU"] = 30.8  # +0.8 < 2 * 0.5: noise
    df.loc[1, "paper mIoU"] = 15.0
    assert "paper -5.0, ours +0.8 (opposite direction); within the seed spread (±0.5)." in display.reading(df)


def test_reading_of_a_row_not_run_says_so() -> None:
    df = _compare_frame()
    df.loc[2, "ours mIoU"] = math.nan
    assert "**single**: paper -2.0; ours not run in this profile." in display.reading(df)


def test_runs_view_shows_fractions_in_percent_with_short_headers() -> None:
    runs = pd.DataFrame({"row": ["CAM"], "seed": [0], "run": ["cam-1"], "run_dir": ["runs/cam-1"],
                         "cam_miou_train": [0.23456], "cam_threshold_train": [0.65], "cam_miou_val": [0.2]})
    view = display.runs_view(runs)
    assert list(view.columns) == ["row", "seed", "run", "BG thr, train", "CAM mIoU train", "CAM mIoU val"]
    assert view.iloc[0].tolist()[3:] == ["0.65", "23.5", "20.0"]


@pytest.mark.parametrize("table", ["table4", "table8"])
def test_styled_compare_frames_of_the_library_render_with_their_protocol_caption(table: str) -> None:
    runs = pd.DataFrame([{
                          "row": experiments.table_rows(table)[0].label, "seed": s, "data": "SynthAerial (synthetic)",
                          "eval_split": "train", "threshold_selected_on": "val", "scales": "1.0", "flip": True,
                          "crf": False, "cam_miou_train": 0.2 + 0.01 * s, "cam_oa_train": 0.8} for s in (0, 1)])
    frame = experiments.compare(table, runs)
    html = experiments.styled(frame).to_html()
    assert "20.5 ± 0.7" in html  # mean 20.5, sample std of (20, 21) = 0.707
    assert "train split, threshold selected on val, scales 1.0 + flip, no CRF" in html


def test_screen_summary_gives_mean_std_over_seeds_in_screen_order_and_markdown_renders_it() -> None:
    runs = pd.DataFrame({
        "row": ["CISM", "CAM", "CAM"], "seed": [0, 1, 0],
        "cam_miou_val": [0.08, 0.07, 0.05], "cam_miou_train": [0.09, 0.07, 0.07],
        "all_background_miou_val": [0.057, 0.057, 0.057], "grad_norm_ml": [0.4, 0.3, 0.5],
        "grad_norm_sl": [2.0, math.nan, math.nan]})
    summary = experiments.screen_summary(runs)
    assert summary["row"].tolist() == ["CAM", "CISM"]  # the order of experiments.SCREEN
    cam = summary.iloc[0]
    assert (cam["seeds"], cam["val mIoU"], cam["train mIoU"]) == ("0, 1", "6.0 ± 1.4", "7.0 ± 0.0")
    assert cam["val − all-BG"] == "+0.3" and cam["norm_ml"] == "0.40" and cam["norm_sl"] == "–"
    assert summary.iloc[1]["val mIoU"] == "8.0" and summary.iloc[1]["norm_sl"] == "2.00"
    text = display.markdown_table(summary[["row", "val mIoU"]])
    assert text.splitlines() == ["| row | val mIoU |", "|---|---:|", "| CAM | 6.0 ± 1.4 |", "| CISM | 8.0 |"]


def test_screen_summary_keeps_budgets_apart_and_shows_the_product_cams_where_scored() -> None:
    runs = pd.DataFrame({
        "row": ["CISM", "CISM", "CISM", "CAM"], "seed": [0, 1, 0, 0], "tiles": [600, 600, 2300, math.nan],
        "epochs": [1, 1, 1, math.nan], "cam_miou_val": [0.08, 0.06, 0.15, 0.07],
        "cam_miou_train": [0.09, 0.07, 0.16, 0.07], "all_background_miou_val": [0.057] * 4,
        "cam_miou_val_product": [0.10, 0.08, math.nan, math.nan]})
    summary = experiments.screen_summary(runs)
    # a line without a budget is the screen's 600 × 1; the full budget comes after every screen line
    assert summary[["row", "tiles × epochs", "seeds"]].values.tolist() == [
        ["CAM", "600 × 1", "0"], ["CISM", "600 × 1", "0, 1"], ["CISM", "2300 × 1", "0"]]
    assert summary.iloc[1]["val mIoU"] == "7.0 ± 1.4" and summary.iloc[1]["val mIoU, product CAM"] == "9.0 ± 1.4"
    assert summary.iloc[0]["val mIoU, product CAM"] == "–" and summary.iloc[2]["val mIoU"] == "15.0"


def test_reading_table2_gives_both_orderings_and_whether_deeplab_rose_above_its_masks() -> None:
    nan = math.nan
    df = pd.DataFrame({"model": ["CAM", "CIAN", "CISM"], "paper DeepLab mIoU": [nan, 23.9, 35.8],
                       "ours pseudo mIoU": [34.1, 32.1, 29.0], "ours DeepLab mIoU": [14.9, 35.0, 10.7],
                       "n_seeds": [1, 1, 1]})
    text = display.reading_table2(df)
    assert "**CAM** 34.1 / 14.9 (–)" in text and "**CISM** 29.0 / 10.7 (35.8)" in text
    assert "ranks the pseudo-masks CISM < CIAN < CAM" in text
    assert "ranks the DeepLab CISM < CAM < CIAN" in text
    assert "DeepLab above the pseudo-masks it learned from for 1 of 3 models (CIAN)" in text
    assert "One seed per model" in text
    assert "One seed" not in display.reading_table2(df.assign(n_seeds=2))
    unrun = df.assign(**{"ours pseudo mIoU": nan, "ours DeepLab mIoU": nan})
    assert display.reading_table2(unrun) == "*No model ran the whole chain in this profile.*"
    assert "lacks" in display.reading_table2(df.drop(columns=["ours DeepLab mIoU"]))


def test_category_shift_is_wide_in_percent_and_its_reading_follows_the_mass() -> None:
    cats = [0, 1, 2, 3, 4, "5+"]  # as statistics_tables writes them: counts, then "5+"
    long = pd.DataFrame({"n_categories": cats * 2, "images": [0] * 12,
                         "fraction": [0, .3, .4, .2, .05, .05, 0, .2, .3, .2, .1, .2],
                         "dataset": ["before MCSG"] * 6 + ["with MCSG"] * 6})
    wide = display.category_shift(long)
    assert list(wide.columns) == ["before MCSG", "with MCSG"] and len(wide) == 6
    assert wide.loc[1, "before MCSG"] == pytest.approx(30.0) and wide.loc["5+", "with MCSG"] == pytest.approx(20.0)
    text = display.reading_figure6(long)
    assert "1-2 categories: 70.0 % before MCSG → 50.0 % with MCSG" in text
    assert "4 or more: 10.0 % → 30.0 %" in text and "moves mass towards" in text
    flat = long.assign(fraction=[0, .3, .4, .2, .05, .05] * 2)
    assert "does not add multi-category queries" in display.reading_figure6(flat)


def test_screen_per_class_reads_each_runs_val_iou_and_last_epoch_ml(tmp_path) -> None:
    import json

    rd = tmp_path / "runs" / "cism-abc"
    (rd / "metrics").mkdir(parents=True)
    (rd / "train").mkdir()
    (rd / "metrics" / "cam_val.json").write_text(json.dumps(
        {"miou": 0.1234, "iou": [0.8, 0.05, 0.0], "class_names": ["background", "ship", "plane"]}))
    (rd / "train" / "log.jsonl").write_text('{"epoch": 0, "ml": 0.25}\n{"epoch": 1, "ml": 0.2049}\n')
    runs = pd.DataFrame({"row": ["CISM"], "seed": [1], "run": ["cism-abc"], "run_dir": ["runs/cism-abc"],
                         "tiles": [2300], "epochs": [2]})
    table = experiments.screen_per_class(runs, root=tmp_path)
    assert table.iloc[0].to_dict() == {"row": "CISM", "seed": 1, "tiles × epochs": "2300 × 2", "val mIoU": 12.3,
                                       "L_ml": 0.205, "background": 80.0, "ship": 5.0, "plane": 0.0}
    old_line = runs.assign(tiles=math.nan, epochs=math.nan)  # a line from before the budget columns
    assert experiments.screen_per_class(old_line, root=tmp_path).iloc[0]["tiles × epochs"] == "600 × 1"
    with pytest.raises(DataError, match="cism-xyz"):
        experiments.screen_per_class(runs.assign(run="cism-xyz", run_dir="runs/cism-xyz"), root=tmp_path)
