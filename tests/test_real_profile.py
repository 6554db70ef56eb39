"""The isaid512 notebook profile (`make reproduce PROFILE=isaid512`): its plan, its budgets per
table, the notebooks' extra real-tile cells, and the one-line errors for a missing or wrong folder."""
from __future__ import annotations

import numpy as np
import pytest

from cism_lib import experiments as ex
from cism_lib.errors import ConfigError, DataError
from cism_lib.pipeline import run_dir
from cism_lib.tools.reproduce import PROFILES as REPRODUCE_PROFILES
from cism_lib.tools.reproduce import main as reproduce_main
from tests.fixtures import write_isaid_devkit


def test_reproduce_offers_every_profile_of_the_experiments() -> None:
    assert REPRODUCE_PROFILES == ex.PROFILES and "isaid512" in ex.PROFILES
    assert set(ex.REAL_PROFILES) <= set(ex.PROFILES)


@pytest.mark.parametrize("profile", ex.PROFILES)
def test_every_planned_row_label_exists(profile: str) -> None:
    plan = ex.plan_for(profile)
    for table, labels in plan.rows.items():
        known = {r.label for r in ex.table_rows(table)}
        assert set(labels) <= known, f"{profile}/{table}: {set(labels) - known}"
    assert set(plan.table_overrides) <= set(ex.TABLES)


def test_isaid512_runs_table1_at_the_preset_budget_and_ablations_at_the_screen_budget(tmp_path, monkeypatch) -> None:
    (tmp_path / "train").mkdir()
    monkeypatch.setenv("CISM_ISAID_ROOT", str(tmp_path))
    row = {r.label: r for r in ex.table_rows("table1")}["CISM"]
    full = ex.row_config(row, "isaid512", table="table1")
    assert full.data.dataset == "isaid" and full.data.max_train == 2300 and full.train.epochs == 1
    assert not full.seg.enabled and full.data.crop_size == 384 and full.cam.max_train == 300
    # Table 1's runs are the CISM issue's full-budget screen runs (cism screen --tiles 2300 --cam-tiles 300)
    screen_full = ex.row_config({r.label: r for r in ex.SCREEN}["CISM"], table="screen",
                                base=ex.screen_config(**{"data.max_train": 2300, "cam.max_train": 300}))
    assert run_dir(screen_full) == run_dir(full)
    # ... and DeepLab comes from their chains (CAM and CISM), pseudo-masks of every training tile
    # (each with the CRF that measured best on its own first 300 training tiles)
    assert ex.row_chain("isaid512", "CISM", full) == {**ex.REAL_CHAIN, "crf.unary": "prob"}
    assert ex.REAL_CHAIN["cam.max_train"] is None
    assert ex.row_chain("isaid512", "CIAN", full) is None and ex.row_chain("cpu", "CISM", full) is None
    assert [(c.model.method, chain["crf.unary"]) for c, chain in ex.profile_chains("isaid512")] == [
        ("cam", "label"), ("cism", "prob")]
    stages = {run_dir(c): st for c, st in ex.profile_runs("isaid512")}
    assert stages[run_dir(full)] == ex.CAM_STAGES  # the run itself stops at its CAM scores
    assert ex.table1_report("isaid512") == "val" and ex.table1_report("cpu") == "train"
    ablation = ex.row_config({r.label: r for r in ex.table_rows("table6")}["CISM +SLSC"], "isaid512",
                             table="table6")
    assert ablation.data.max_train == 600 and not ablation.seg.enabled
    # the same CISM row is one run in every ablation table, and it is the screen's CISM run
    again = ex.row_config({r.label: r for r in ex.table_rows("table7")}["CISM"], "isaid512", table="table7")
    assert run_dir(again) == run_dir(ablation) != run_dir(full)
    screen = ex.row_config({r.label: r for r in ex.SCREEN}["CISM"], base=ex.screen_config(), table="screen")
    assert run_dir(screen) == run_dir(ablation)
    # the cpu profile has no per-table budget: its Table 6 row is its Table 1 row
    cpu1 = ex.row_config(row, "cpu", table="table1")
    cpu6 = ex.row_config({r.label: r for r in ex.table_rows("table6")}["CISM +SLSC"], "cpu", table="table6")
    assert run_dir(cpu1) == run_dir(cpu6)


def test_extra_real_cells_run_only_in_synthetic_profiles(monkeypatch) -> None:
    monkeypatch.setenv("CISM_ISAID_ROOT", "/data/isaid512")
    assert str(ex.extra_real_root("cpu")) == "/data/isaid512"
    assert ex.extra_real_root("isaid512") is None and ex.extra_real_root("paper") is None
    monkeypatch.delenv("CISM_ISAID_ROOT")
    assert ex.extra_real_root("smoke") is None


def test_check_profile_data_names_the_problem(tmp_path, monkeypatch) -> None:
    ex.check_profile_data("cpu")  # SynthAerial: nothing to check
    monkeypatch.delenv("CISM_ISAID_ROOT", raising=False)
    with pytest.raises(ConfigError, match="CISM_ISAID_ROOT"):
        ex.check_profile_data("isaid512")
    monkeypatch.setenv("CISM_ISAID_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="nowhere"):
        ex.check_profile_data("isaid512")
    rng = np.random.default_rng(0)
    write_isaid_devkit(tmp_path / "only_train", "train", 2, 32, rng)
    monkeypatch.setenv("CISM_ISAID_ROOT", str(tmp_path / "only_train"))
    with pytest.raises(DataError, match="val"):
        ex.check_profile_data("isaid512")
    write_isaid_devkit(tmp_path / "only_train", "val", 2, 32, rng)
    ex.check_profile_data("isaid512")


def test_reproduce_stops_before_any_notebook_on_a_wrong_folder(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CISM_ISAID_ROOT", str(tmp_path / "nowhere"))
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "00_never.ipynb").write_text("not a notebook: never opened")
    assert reproduce_main(["--profile", "isaid512", "--notebooks", str(tmp_path / "nb"),
                           "--out", str(tmp_path / "build")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("make reproduce PROFILE=isaid512: ") and "nowhere" in err and "\n" not in err
    assert not (tmp_path / "build").exists()


def test_isaid512_table1_chain_end_to_end_on_tiny_tiles(tmp_path, monkeypatch) -> None:
    """The profile's Table 1 path, shrunk: prepare_runs trains the classifiers and then their
    chains; run_rows finds everything done and reports the chains' pseudo-masks and DeepLab."""
    import dataclasses

    from cism_lib import pipeline

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        write_isaid_devkit(tmp_path / "isaid", split, n, 32, rng)
    monkeypatch.setenv("CISM_ISAID_ROOT", str(tmp_path / "isaid"))
    tiny = {"model.backbone": "resnet18", "model.weights": None, "data.crop_size": 32, "train.batch_size": 2,
            "cam.flip": False, "cam.scales": (1.0,), "out_dir": str(tmp_path / "runs"), "threads": 1,
            "device": "cpu"}
    chain = {"cam.max_train": None, "crf.enabled": False, "seg.backbone": "resnet18", "seg.weights": None,
             "seg.crop_size": 32, "seg.batch_size": 2, "seg.epochs": 1, "seg.curve_images": 2}
    plan = dataclasses.replace(ex.PLANS["isaid512"], overrides=tiny, chain=chain, chain_rows={"CAM": {}, "CISM": {}},
                               rows={"table1": ("CAM", "CISM")},
                               table_overrides={"table1": {**ex.FULL_BUDGET, "data.max_train": 6,
                                                           "cam.max_train": 3}})
    monkeypatch.setitem(ex.PLANS, "isaid512", plan)
    monkeypatch.setattr(ex.runs, "TABLES", {"table1": ex.TABLES["table1"]})  # what profile_runs reads
    lines: list[str] = []
    done = ex.prepare_runs("isaid512", 1, log=lines.append)
    assert lines[0] == "[isaid512] 2 runs in 1 processes of 1 thread(s)"
    assert lines[3] == "[isaid512] 2 chains (pseudo-masks and DeepLab) in 1 processes of 1 thread(s)"
    assert len(done) == 4 and all(p.parent.name == "chain" for p in done[2:])
    monkeypatch.setattr(pipeline, "stage_train", lambda *a, **k: pytest.fail("classifier retrained"))
    monkeypatch.setitem(pipeline.CHAIN_FUNCS, "segment", lambda *a: pytest.fail("DeepLab retrained"))
    runs = ex.run_rows("table1", "isaid512", stages=pipeline.STAGES, progress=False)
    assert list(runs["row"]) == ["CAM", "CISM"] and set(runs["eval_split"]) == {"val"}
    assert runs["chain_dir"].str.contains("/chain/").all() and runs["pseudo_images"].eq(6).all()
    t2 = ex.compare("table2", runs, report="val").set_index("model")
    assert t2.loc["CISM", "ours DeepLab mIoU"] == pytest.approx(100 * runs["seg_miou_val"].iloc[1])
    assert t2.loc["CAM", "ours CAM mIoU"] == pytest.approx(100 * runs["cam_miou_val"].iloc[0])
    assert np.isnan(t2.loc["CIAN", "ours pseudo mIoU"])  # not planned here
    figure = ex.chain_figure_runs(runs)
    assert list(figure) == ["CAM", "CISM"] and figure["CISM"][1].parent.name == "chain"
    # 03_train's run is Table 1's CISM run (no extra classifier in the profile)
    assert pipeline.run_dir(ex.training_config("isaid512")) == pipeline.run_dir(figure["CISM"][0])
