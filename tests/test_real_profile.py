"""The isaid512 notebook profile (`make reproduce PROFILE=isaid512`): its plan, its budgets per
table, the notebooks' extra real-tile cells, and the one-line errors for a missing or wrong folder."""
from __future__ import annotations

import numpy as np
import pytest

from cism_lib import experiments as ex
from cism_lib.errors import ConfigError, DataError
from cism_lib.pipeline import run_dir
from cism_lib.reproduce import PROFILES as REPRODUCE_PROFILES
from cism_lib.reproduce import main as reproduce_main
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
    assert ex.row_chain("isaid512", "CISM", full) == ex.REAL_CHAIN and ex.REAL_CHAIN["cam.max_train"] is None
    assert ex.row_chain("isaid512", "CIAN", full) is None and ex.row_chain("cpu", "CISM", full) is None
    assert [(c.model.method, chain) for c, chain in ex.profile_chains("isaid512")] == [
        ("cam", ex.REAL_CHAIN), ("cism", ex.REAL_CHAIN)]
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
