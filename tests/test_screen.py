"""The real-tile screen of the CISM readings: its rows, its errors and one tiny end-to-end run."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cism_lib import experiments as ex
from cism_lib.cli import main
from cism_lib.errors import ConfigError
from cism_lib.pipeline import run_dir
from tests.fixtures import write_isaid_devkit

TINY = {"model.backbone": "resnet18", "model.weights": None, "data.crop_size": 32, "train.batch_size": 2,
        "data.max_val": 3, "cam.flip": False}


@pytest.fixture
def tiles(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        write_isaid_devkit(tmp_path / "isaid", split, n, 32, rng)
    monkeypatch.setenv(ex.ISAID_ENV, str(tmp_path / "isaid"))
    for module in (ex, ex.screen):  # the CLI names the CSV through the package, run_screen writes it
        monkeypatch.setattr(module, "output_dir", lambda kind, profile: tmp_path / kind / profile)
    return tmp_path


def test_every_screen_row_is_its_own_configuration(tiles) -> None:
    base = ex.screen_config()
    assert base.data.max_train == 600 and base.train.epochs == 1 and base.data.dataset == "isaid"
    # rows that start from another row's checkpoint are named by its weights (tests/test_readings.py)
    rows = [r for r in ex.SCREEN if not str(r.overrides.get("train.init_from", "")).startswith(ex.SCREEN_REF)]
    assert [r.label for r in ex.SCREEN if r not in rows] == ["CISM from the CAM run"]
    configs = [ex.row_config(r, seed=0, base=base, table="screen") for r in rows]
    assert len({run_dir(c) for c in configs}) == len(rows)
    by_label = {r.label: c for r, c in zip(rows, configs)}
    assert by_label["CISM, aux warm-up 0.5"].train.aux_warmup == 0.5 and by_label["CAM, 2 epochs"].train.epochs == 2
    by_label = {label: c.model for label, c in by_label.items()}
    assert by_label["CAM"].method == "cam" and by_label["CIAN + self L_ml"].self_ml
    assert not by_label["CISM, no CIAN affinity"].cross_affinity
    assert by_label["CISM, literal SLSC"].sl_scorer == "cam" and not by_label["CISM, literal SLSC"].sl_detach
    # the converged ablation: CISM less one component each
    assert not by_label["CISM, no PV"].use_pv and by_label["CISM, no PV"].use_pie
    assert not by_label["CISM, no PIE"].use_pie and by_label["CISM, no PIE"].use_pv
    assert not by_label["CISM, no SLSC"].use_slsc and by_label["CISM, no SLSC"].losses == ("ml", "csm", "nsc")
    assert by_label["CISM, no L_csm"].losses == ("ml", "sl", "nsc") and by_label["CISM, no L_nsc"].losses == ("ml", "sl", "csm")
    assert by_label["CISM + MCSG"].method == "cism" and configs[[r.label for r in rows].index("CISM + MCSG")].data.mcsg


def test_screen_needs_the_real_tiles(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(ex.ISAID_ENV, raising=False)
    with pytest.raises(ConfigError, match="CISM_ISAID_ROOT=<unset>: the real-tile screen needs"):
        ex.screen_config()
    monkeypatch.setenv(ex.ISAID_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="nowhere: the real-tile screen needs"):
        ex.screen_config()


def test_unknown_row_is_named(tiles) -> None:
    with pytest.raises(ConfigError, match=r"unknown screen row\(s\) \['CISM v2'\]"):
        ex.run_screen(["CISM v2"], seeds=(0,))


def test_screen_runs_scores_val_and_merges_its_csv(tiles, monkeypatch, capsys) -> None:
    monkeypatch.setattr(ex.screen, "_load_profile", _tmp_runs(ex._load_profile, tiles))  # for screen_config
    assert main(["screen", "--rows", "CAM", "--seeds", "0", "--tiles", "4"]) == 0
    df = ex.run_screen(["CISM"], seeds=(0,), progress=False, cam_sources=("slsc", "product"), **{"data.max_train": 4}, **TINY)
    assert len(df) == 1 and 0 <= df["cam_miou_val"].iloc[0] <= 1
    for source in ("slsc", "product"):  # hypothesis 1: the same run's CAMs from other weights
        assert 0 <= df[f"cam_miou_val_{source}"].iloc[0] <= 1 and 0 <= df[f"cam_miou_train_{source}"].iloc[0] <= 1
        proto = json.loads((tiles / "runs" / df["run"].iloc[0] / "metrics" / f"cam_{source}_val.json").read_text())
        assert proto["protocol"]["cam_source"] == source and proto["protocol"]["threshold_selected_on"] == "train"
    assert {"grad_norm_ml", "grad_cos_sl", "grad_cos_csm", "grad_cos_nsc"} <= set(df.columns)
    table = pd.read_csv(tiles / "results" / "isaid512" / "screen_runs.csv")
    assert sorted(table["row"]) == ["CAM", "CISM"]            # the CLI's CAM line is kept
    assert set(table["eval_split"]) == {"val"} and set(table["threshold_selected_on"]) == {"train"}
    ex.run_screen(["CISM"], seeds=(0,), progress=False, **{"data.max_train": 4}, **TINY)  # reused
    assert len(pd.read_csv(tiles / "results" / "isaid512" / "screen_runs.csv")) == 2
    assert "CAM" in capsys.readouterr().out


def test_a_screen_run_with_a_curve_writes_its_curve_lines(tiles, monkeypatch) -> None:
    """train.curve_epochs: the screen writes the run's curve (each kept epoch and the last) to
    curve_runs.csv beside screen_runs.csv; the last point is the screen line's own score."""
    monkeypatch.setattr(ex.screen, "_load_profile", _tmp_runs(ex._load_profile, tiles))
    df = ex.run_screen(["CAM"], seeds=(0,), progress=False, **{"data.max_train": 4, "train.epochs": 2,
                                                                "train.curve_epochs": "1"}, **TINY)
    curve = pd.read_csv(tiles / "results" / "isaid512" / "curve_runs.csv")
    assert curve["run"].tolist() == [df["run"].iloc[0]] * 2 and curve["epoch"].tolist() == [1, 2]
    assert set(curve["method"]) == {"CAM"} and set(curve["epochs"]) == {2}
    assert curve["cam_miou_val"].iloc[1] == pytest.approx(df["cam_miou_val"].iloc[0], abs=1e-4)
    assert 0 <= curve["cam_miou_val"].iloc[0] <= 1 and curve["steps"].iloc[1] == 2 * curve["steps"].iloc[0]
    assert "curve_epochs" not in df["flags"].iloc[0]  # the curve changes no weight: not a flag of the line


@pytest.mark.parametrize("flags, sources", [([], None), (["--cam-sources"], ("slsc", "product")),
                                            (["--cam-sources", "product"], ["product"])])
def test_cli_cam_sources_flag_picks_the_sources(flags, sources, monkeypatch) -> None:
    seen = {}

    def fake(rows, seeds, cam_sources=None, **overrides):
        seen["sources"] = cam_sources
        return pd.DataFrame({"row": ["CISM"], "seed": [0]})

    monkeypatch.setattr(ex, "run_screen", fake)
    assert main(["screen", "--rows", "CISM", "--seeds", "0", *flags]) == 0
    assert seen["sources"] == sources


def test_cli_cam_sources_rejects_an_unknown_source(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["screen", "--cam-sources", "pixels"])
    assert "invalid choice: 'pixels'" in capsys.readouterr().err


def _tmp_runs(load, tmp_path):
    """_load_profile with run folders under tmp_path and the tiny model of TINY (the CLI has no flags)."""
    from cism_lib.config import replace

    def patched(profile: str):
        return replace(load(profile), out_dir=str(tmp_path / "runs"), **TINY)
    return patched


def test_inside_cism_notebook_path_of_the_isaid512_profile_runs_on_real_tiles(tiles, monkeypatch) -> None:
    """12_inside_cism under PROFILE=isaid512: the CAM figures' CISM run of that profile (real tiles,
    trained here at a tiny budget) through inside_example and every drawing of the notebook."""
    import matplotlib

    matplotlib.use("Agg")
    from cism_lib import viz

    monkeypatch.setattr(ex.profiles, "_load_profile", _tmp_runs(ex._load_profile, tiles))  # for experiment_config
    assert ex.extra_real_root("isaid512") is None          # the notebook takes the figure-run branch
    cfg = ex.figure_runs("figure7", "isaid512")["CISM +SLSC"]
    assert cfg.data.dataset == "isaid" and cfg.model.method == "cism"
    example = ex.inside_example(cfg, "val", 0, progress=False)
    assert example["data"].startswith("iSAID") or "isaid" in example["data"].lower()
    for draw in ("inside_cams", "inside_prototypes", "inside_matching", "inside_similarity", "inside_scores"):
        fig = getattr(viz, draw)(example)
        assert fig.axes, draw


def test_rescore_remakes_a_runs_cams_at_other_scales_and_its_own_scales_reproduce_its_eval(tiles, monkeypatch,
                                                                                          capsys) -> None:
    monkeypatch.setattr(ex.screen, "_load_profile", _tmp_runs(ex._load_profile, tiles))
    df = ex.run_screen(["CAM"], seeds=(0,), progress=False, **{"data.max_train": 4}, **TINY)
    rd = tiles / "runs" / df["run"].iloc[0]
    own = json.loads((rd / "metrics.json").read_text())
    csv = tiles / "rescore.csv"
    assert main(["rescore", str(rd), "--scales", "1.0", "--quiet", "--csv", str(csv)]) == 0
    assert main(["rescore", str(rd), "--scales", "0.5", "1.0", "--quiet", "--csv", str(csv)]) == 0
    assert main(["rescore", str(rd), "--scales", "1.0", "--quiet", "--csv", str(csv)]) == 0  # replaces its line
    lines = pd.read_csv(csv).set_index("scales")
    assert sorted(lines.index) == ["0.5/1", "1"] and set(lines["source"]) == {"classifier"}
    # the run's own scales (1.0, no flip) made again: its eval stage's figures exactly
    for key in ("cam_miou_val", "cam_miou_train", "cam_threshold_val", "cam_oa_val"):
        assert lines.loc["1", key] == pytest.approx(own[key], abs=1e-4), key
    meta = json.loads((rd / "metrics" / "cam_classifier_scales0.5-1_val.json").read_text())["protocol"]
    assert meta["scales"] == [0.5, 1.0] and meta["cam_source"] == "classifier" and meta["threshold_selected_on"] == "train"
    assert not (rd / "cams_classifier_scales0.5-1").exists()       # CAM files go once scored
    assert "CAM source classifier, scales 0.5/1.0, no CRF" in lines.loc["0.5/1", "protocol"] and lines.loc["0.5/1", "seed"] == 0
    capsys.readouterr()
    assert main(["rescore", str(rd), "--quiet"]) == 2                # the run's own CAMs: nothing to rescore
    assert "scored by its eval stage" in capsys.readouterr().err
    assert main(["rescore", str(tiles), "--scales", "1.0"]) == 2      # not a run
    assert "not a trained run" in capsys.readouterr().err


def test_a_screen_line_names_the_flags_it_ran_with_and_the_summary_keeps_them_apart() -> None:
    from cism_lib.experiments.screen import screen_flags

    given = {"data.max_train": 2300, "train.epochs": 2, "cam.max_train": 300, "threads": 1,
             "train.curve_epochs": (1,), "train.aux_from_epoch": 2, "model.eta": 0.1}
    assert screen_flags(given) == "model.eta=0.1; train.aux_from_epoch=2"  # budget and scoring-only left out
    assert screen_flags({"cam.scales": (0.5, 1.0)}) == "cam.scales=0.5,1.0"
    base = {"table": "screen", "row": "CISM", "tiles": 2300, "epochs": 2, "cam_tiles": 300,
            "cam_miou_train": 0.2, "all_background_miou_val": 0.05}
    runs = pd.DataFrame([{**base, "seed": 0, "cam_miou_val": 0.18, "flags": "train.aux_from_epoch=2"},
                         {**base, "seed": 1, "cam_miou_val": 0.16, "flags": "train.aux_from_epoch=2"},
                         {**base, "seed": 0, "cam_miou_val": 0.14, "flags": None}])  # a line from before flags
    summary = ex.screen_summary(runs).set_index("row")
    assert list(summary.index) == ["CISM", "CISM [train.aux_from_epoch=2]"]
    assert summary.loc["CISM [train.aux_from_epoch=2]", "seeds"] == "0, 1" and summary.loc["CISM", "seeds"] == "0"


def test_screen_merge_takes_a_clones_lines_each_replacing_its_runs_line(tiles, capsys) -> None:
    ours = ex.output_dir("results", "isaid512") / "screen_runs.csv"
    ex.write_csv(pd.DataFrame({"row": ["CAM", "CISM"], "seed": [0, 0], "run": ["cam-a", "cism-b"],
                               "cam_miou_val": [0.2, 0.1]}), ours)
    clone = tiles / "clone.csv"
    ex.write_csv(pd.DataFrame({"row": ["CISM", "CIAN"], "seed": [0, 0], "run": ["cism-b", "cian-c"],
                               "cam_miou_val": [0.15, 0.18], "flags": ["train.aux_from_epoch=2", ""]}), clone)
    assert main(["screen", "--merge", str(clone)]) == 0
    merged = pd.read_csv(ours).set_index("run")
    assert sorted(merged.index) == ["cam-a", "cian-c", "cism-b"]
    assert merged.loc["cism-b", "cam_miou_val"] == 0.15 and merged.loc["cam-a", "cam_miou_val"] == 0.2
    assert merged.loc["cism-b", "flags"] == "train.aux_from_epoch=2"
    assert "2 lines merged" in capsys.readouterr().out
    assert main(["screen", "--merge", str(tiles / "nosuch.csv")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nosuch.csv: no such screen CSV" in err[0]
