"""Experiment tables, summaries, paper comparison and deterministic figures (no training)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cism_lib import experiments as ex
from cism_lib.config import RunConfig
from cism_lib.errors import ConfigError
from cism_lib.pipeline import run_dir


@pytest.mark.parametrize("profile", ex.PROFILES)
def test_profile_config_anchors_folders_at_the_repo(profile: str) -> None:
    cfg = ex.profile_config(profile)
    assert isinstance(cfg, RunConfig) and cfg.name == profile
    assert Path(cfg.out_dir) == ex.repo_root() / "runs"
    if cfg.data.dataset == "synthetic":
        assert Path(cfg.data.root).is_absolute()
        assert Path(cfg.data.root).name == (f"synth-{cfg.data.synth_size}-s{cfg.data.synth_seed}-"
                                            f"{cfg.data.synth_train}-{cfg.data.synth_val}")
    assert (profile in ex.REAL_PROFILES) == (cfg.data.dataset == "isaid")


def test_unknown_profile_and_table_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="no such preset"):
        ex.profile_config("nope")
    with pytest.raises(ConfigError, match="unknown table"):
        ex.table_rows("table3")
    with pytest.raises(ConfigError, match="unknown profile"):
        ex.experiment_config("isaid1024")


def test_experiment_config_follows_synth_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CISM_DATA_DIR", raising=False)
    cfg = ex.experiment_config("smoke", **{"data.synth_train": 10})
    assert cfg.train.epochs == 2 and cfg.data.max_train == 48   # the smoke plan's budget
    d = cfg.data
    assert d.root.endswith(f"synth-{d.synth_size}-s{d.synth_seed}-10-{d.synth_val}")


@pytest.mark.parametrize("profile", ex.PROFILES)
def test_every_row_builds_a_consistent_config(profile: str) -> None:
    from cism_lib.models.cism import build_model  # noqa: F401  (the switch check lives there)

    for table, rows in ex.TABLES.items():
        dirs = set()
        for row in rows:
            cfg = ex.row_config(row, profile, seed=1, table=table)
            assert cfg.train.seed == 1 and cfg.name == f"{table}-{row.label}"
            m = cfg.model
            assert not (m.method == "cism" and "sl" in m.losses and not m.use_slsc), row.label
            dirs.add(run_dir(cfg))
        assert len(dirs) == len(rows), f"{table}: two rows are the same configuration"


def test_rows_shared_between_tables_reuse_one_run() -> None:
    def rd(table: str, label: str) -> Path:
        row = next(r for r in ex.TABLES[table] if r.label == label)
        return run_dir(ex.row_config(row, "cpu", table=table))

    assert rd("table4", "Baseline (CIAN)") == rd("table6", "CIAN") == rd("table1", "CIAN")
    assert rd("table4", "+PV+PIE") == rd("table6", "CISM")
    assert rd("table5", "eta=0.3") == rd("table6", "CISM +SLSC") == rd("table7", "CISM") == rd("table1", "CISM")
    assert rd("table7", "CISM +MCSG") == rd("table8", "ml+sl+csm+nsc")
    t8 = {r.label: ex.row_config(r, "cpu").model for r in ex.TABLES["table8"]}
    assert t8["ml+sl+nsc"].losses == ("ml", "sl", "nsc") and not t8["ml"].use_slsc


def test_plans_pick_rows_and_seeds() -> None:
    cpu = {r.label: seeds for r, seeds in ex.planned_rows("table6", "cpu")}
    assert cpu["CIAN"] == [0, 1] and cpu["RPNet-like"] == [0] and len(cpu) == 6
    smoke = ex.planned_rows("table6", "smoke")
    assert [(r.label, s) for r, s in smoke] == [("CIAN", [0]), ("CISM", [0]), ("CISM +SLSC", [0])]
    smoke_runs = {run_dir(ex.row_config(r, "smoke", s[0], table=t)) for t in ex.TABLES
                  for r, s in ex.planned_rows(t, "smoke")}
    assert len(smoke_runs) == 4                       # every smoke notebook shares these runs
    assert all(len(s) == 3 for _, s in ex.planned_rows("table5", "paper"))


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"row": ["b", "a", "b", "a", "a"], "seed": [0, 0, 1, 1, 2],
                         "cam_miou_train": [0.30, 0.20, 0.50, 0.40, 0.60],
                         "cam_oa_train": [0.7, 0.8, 0.9, 0.8, 0.8], "data": "SynthAerial (synthetic)",
                         "eval_split": "train", "threshold_selected_on": "val", "scales": "1.0,1.5",
                         "flip": True, "crf": False})


def test_summarise_mean_and_sample_std_in_row_order() -> None:
    s = ex.summarise(_frame(), ["cam_miou_train", "cam_oa_train"])
    assert list(s["row"]) == ["b", "a"]
    assert list(s["n_seeds"]) == [2, 3]
    assert s["cam_miou_train"].tolist() == pytest.approx([0.4, 0.4])
    assert s["cam_miou_train_std"].tolist() == pytest.approx([math.sqrt(0.02), 0.2])
    assert s["cam_oa_train_std"].iloc[1] == pytest.approx(0.0)
    one = ex.summarise(_frame().iloc[:1], ["cam_miou_train"])
    assert math.isnan(one["cam_miou_train_std"].iloc[0])
    with pytest.raises(KeyError, match="seg_miou_val"):
        ex.summarise(_frame(), ["seg_miou_val"])


def test_compare_puts_paper_beside_ours_with_nan_for_rows_not_run() -> None:
    ours = _frame().replace({"row": {"a": "+PV"}})
    ours = ours[ours["row"] == "+PV"]
    table = ex.compare("table4", ours)
    assert list(table["row"]) == ["Baseline (CIAN)", "+PV", "+PV+PIE"]
    assert table["paper mIoU"].tolist() == [23.9, 24.6, 28.4]
    assert table["paper OA"].tolist() == [77.2, 73.5, 79.3]
    pv = table.set_index("row").loc["+PV"]
    assert pv["ours mIoU"] == pytest.approx(40.0) and pv["ours mIoU std"] == pytest.approx(20.0)
    assert pv["n_seeds"] == 3 and pv["data"] == "SynthAerial (synthetic)"
    assert pv["protocol"] == "train split, threshold selected on val, scales 1.0,1.5 + flip, no CRF, 3 seeds"
    base = table.set_index("row").loc["Baseline (CIAN)"]
    assert math.isnan(base["ours mIoU"]) and base["n_seeds"] == 0 and base["data"] == "not run"
    empty = ex.compare("table8", pd.DataFrame())
    assert empty["ours mIoU"].isna().all() and empty["paper mIoU"].tolist()[-1] == 34.1


def _fake_run(folder: Path, miou: float) -> Path:
    """A run folder as the pipeline leaves it after the eval stage."""
    (folder / "metrics").mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({"cam_miou_train": miou, "cam_oa_train": 0.9,
                                                     "cam_threshold_train": 0.25}))
    from cism_lib.classes import ISAID
    iou = [0.5 + 0.01 * k for k in range(ISAID.num_classes)]
    iou[3] = None                                     # a class absent from the split (NaN → null)
    (folder / "metrics" / "cam_train.json").write_text(json.dumps({
        "iou": iou, "class_names": list(ISAID.names),
        "protocol": {"reported_split": "train", "threshold_selected_on": "val", "scales": [1.0],
                     "flip": False, "crf": False}}))
    return folder


def test_run_rows_runs_the_plan_through_the_pipeline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = []

    def fake_run_all(cfg: RunConfig, stages, progress: bool = True) -> Path:
        seen.append((cfg.model.method, cfg.train.seed, tuple(stages)))
        return _fake_run(tmp_path / f"{cfg.model.method}-{cfg.train.seed}", 0.1 * (cfg.train.seed + 1))

    monkeypatch.setattr("cism_lib.experiments.runs.run_all", fake_run_all)
    df = ex.run_rows("table1", "cpu", progress=False)      # the cpu plan: seed 0 through the chain
    assert seen == [(m, 0, ex.CAM_STAGES) for m in ("cam", "cian", "cism")]
    seen.clear()
    df = ex.run_rows("table1", "cpu", seeds=[0, 1, 2], progress=False)
    assert seen == [(m, s, ex.CAM_STAGES) for m in ("cam", "cian", "cism") for s in range(3)]
    assert list(df["row"]) == ["CAM"] * 3 + ["CIAN"] * 3 + ["CISM"] * 3
    assert df["cam_miou_train"].tolist()[3:6] == pytest.approx([0.1, 0.2, 0.3])
    assert set(df["scales"]) == {"1.0"} and not df["flip"].any()
    df = ex.per_class_iou(df)
    assert df["BG"].iloc[0] == pytest.approx(0.5) and df["HA"].iloc[0] == pytest.approx(0.65)
    assert df["BD"].isna().all()                      # class id 3 = baseball_diamond
    t1 = ex.compare("table1", df).set_index(["model", "source"])
    assert t1.loc[("CIAN", "paper"), "GTF"] == 21.9
    assert t1.loc[("CIAN", "ours"), "mIoU"] == pytest.approx(20.0)
    assert t1.loc[("CIAN", "ours"), "n_seeds"] == 3
    assert math.isnan(t1.loc[("CAM", "paper"), "mIoU"])
    t2 = ex.compare("table2", df).set_index("model")
    assert t2.loc["CISM", "paper DeepLab mIoU"] == 35.8 and t2["ours DeepLab mIoU"].isna().all()


def test_write_table_and_figures_go_to_the_profile_folders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cism_lib import outputs, viz

    monkeypatch.setattr(outputs, "ROOT", tmp_path)
    assert ex.write_table(pd.DataFrame({"a": [1 / 3]}), "t", "smoke") == tmp_path / "results/smoke/t.csv"
    assert (tmp_path / "results/smoke/t.csv").read_text() == "a\n0.3333\n"
    assert ex.write_table(pd.DataFrame({"a": [1]}), "t", "cpu") == tmp_path / "results/t.csv"
    labels = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=bool)
    paths = [viz.save_figure(viz.figure5({"toy": labels}), f"f{i}", "smoke") for i in range(2)]
    data = [p.read_bytes() for p in paths]
    assert paths[0] == tmp_path / "figures/smoke/f0.png"
    assert data[0] == data[1] and data[0][:8] == b"\x89PNG\r\n\x1a\n" and b"Software" not in data[0]


def test_cam_panel_renders_cams_and_masks_with_notes_a_legend_and_a_colour_bar() -> None:
    from cism_lib import viz

    image = np.full((8, 8, 3), 100, dtype=np.uint8)
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[:4] = 1
    overlay = viz.mask_overlay(image, mask, alpha=1.0)
    assert (overlay[:4] == viz.display_palette()[1]).all() and (overlay[4:] == 100).all()
    cam = np.zeros((8, 8), dtype=np.float32)
    fig = viz.cam_panel([{"image": image, "ground truth": mask, "CAM": cam, "notes": {"CAM": "ship: IoU 12.5"}}])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["image", "ground truth", "CAM\nship: IoU 12.5"]
    assert len(fig.axes) == 4  # three panels and the colour bar
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ship"]


def test_display_palette_keeps_every_pair_of_classes_apart_unlike_the_official_one() -> None:
    from skimage.color import rgb2lab

    from cism_lib import viz
    from cism_lib.classes import ISAID, VOC

    def closest(pal: np.ndarray) -> float:
        """The smallest CIE76 colour difference between two foreground colours."""
        lab = rgb2lab(pal[None, 1:] / 255.0)[0]
        d = np.sqrt(((lab[:, None] - lab[None]) ** 2).sum(-1))
        return float(d[~np.eye(len(d), dtype=bool)].min())

    for classes in (ISAID, VOC):
        pal = viz.display_palette(classes)
        assert pal.shape == (classes.num_classes, 3) and (pal[0] == 0).all()
    assert closest(viz.display_palette(ISAID)) > 25 > 12 > closest(ISAID.palette_array)
    assert closest(viz.display_palette(VOC)) > 15  # 20 colours: the last two are nearer the first


def test_focus_class_is_the_labelled_class_with_the_largest_ground_truth_area() -> None:
    gt = np.zeros((4, 4), np.uint8)
    gt[0, :3] = 2
    gt[1:, :] = 5
    gt[0, 3] = 7  # class 7 in the mask but not in the label: not offered
    label = np.zeros(15, bool)
    label[[1, 4]] = True  # classes 2 and 5
    assert ex.focus_class(label, gt) == 5
    label[4] = False
    assert ex.focus_class(label, gt) == 2
    assert ex.focus_class(np.zeros(15, bool), gt) == 0


def test_image_iou_of_a_class_and_the_image_miou_by_hand() -> None:
    gt = np.array([[0, 0, 1, 1]], np.uint8)
    pred = np.array([[0, 1, 1, 0]], np.uint8)
    assert ex.image_iou(gt, pred, 3, 1) == pytest.approx(1 / 3)  # |{2}| / |{1,2,3}|
    assert ex.image_iou(gt, pred, 3) == pytest.approx(1 / 3)     # background also 1/3; class 2 absent


def test_run_paths_in_tables_are_repo_relative_so_committed_csvs_name_no_machine(tmp_path) -> None:
    assert ex._portable(ex.ROOT / "runs" / "cism-0123456789") == "runs/cism-0123456789"
    assert ex._portable(tmp_path / "runs" / "x") == str((tmp_path / "runs" / "x").resolve())


def test_interactive_follows_the_flag_then_the_headless_variable(monkeypatch) -> None:
    monkeypatch.delenv("CISM_HEADLESS", raising=False)
    assert ex.interactive() is True and ex.interactive(False) is False
    monkeypatch.setenv("CISM_HEADLESS", "1")
    assert ex.interactive() is False and ex.interactive(True) is True


def test_progress_bars_are_off_in_headless_runs_so_executed_notebooks_keep_no_widgets(monkeypatch) -> None:
    from cism_lib.runtime import progress_bar

    monkeypatch.setenv("CISM_HEADLESS", "1")
    bar = progress_bar(range(3), desc="x")
    assert bar.disable and list(bar) == [0, 1, 2]  # still iterates
    monkeypatch.delenv("CISM_HEADLESS")
    bar = progress_bar(range(3), desc="x", disable=False)
    assert not bar.disable
    bar.close()
