"""The classifier's learning curve (train.curve_epochs, pipeline.score_curve, `cism curve`) and the
anchors' order of training (train.aux_from_epoch)."""
from __future__ import annotations

import json

import pytest
import torch

from cism_lib import pipeline
from cism_lib.cli import main as cli_main
from cism_lib.config import replace
from cism_lib.engine import snapshot_name
from cism_lib.errors import ConfigError
from tests.test_pipeline import _data_env, data_dir, tiny_config  # noqa: F401 (the module's SynthAerial fixtures)

STAGES = ("train", "cams", "eval")


@pytest.fixture(scope="module")
def curved(data_dir, tmp_path_factory):  # noqa: F811 (the imported fixture)
    """A three-epoch run keeping its weights after epochs 1 and 3, CAMs and eval done."""
    cfg = tiny_config(tmp_path_factory.mktemp("curve"), **{"seg.enabled": False, "train.epochs": 3,
                                                           "train.curve_epochs": (1, 3)})
    return cfg, pipeline.run_all(cfg, stages=STAGES, progress=False)


def test_the_curve_does_not_change_the_runs_identity(tmp_path):
    plain = tiny_config(tmp_path, **{"train.epochs": 3})
    assert pipeline.run_dir(replace(plain, **{"train.curve_epochs": (1, 2)})) == pipeline.run_dir(plain)


def test_curve_epochs_outside_the_schedule_are_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="curve_epochs must lie between 1 and train.epochs"):
        tiny_config(tmp_path, **{"train.epochs": 2, "train.curve_epochs": (3,)})
    with pytest.raises(ConfigError, match="aux_from_epoch must lie between 1 and epochs"):
        tiny_config(tmp_path, **{"train.epochs": 2, "train.aux_from_epoch": 0})


def test_snapshots_are_scored_during_training_and_the_last_epoch_is_the_runs_own(curved):
    cfg, rd = curved
    assert (rd / "train" / snapshot_name(1)).is_file() and not (rd / "train" / snapshot_name(2)).exists()
    # epoch 1 was scored by the training process, its CAM files removed; epoch 3 is the eval stage's
    assert (rd / "curve" / "epoch_1" / "metrics.json").is_file() and not (rd / "curve" / "epoch_1" / "cams").exists()
    assert not (rd / "curve" / "epoch_3").exists()
    table = pipeline.score_curve(cfg, rd, progress=False)
    assert table["epoch"].tolist() == [1, 3]
    last = table.set_index("epoch").loc[3]
    run = pipeline.read_metrics(rd)
    assert last["cam_miou_val"] == run["cam_miou_val"] and last["cam_threshold_val"] == run["cam_threshold_val"]
    proto = json.loads((rd / "curve" / "epoch_1" / "metrics" / "cam_val.json").read_text())["protocol"]
    assert proto["threshold_selected_on"] == "train" and proto["reported_split"] == "val"
    log = [json.loads(line) for line in (rd / "train" / "log.jsonl").read_text().splitlines()]
    assert table.set_index("epoch").loc[1, "loss_ml"] == log[0]["ml"]
    assert table["steps"].tolist() == [log[0]["steps"], log[2]["steps"]]
    # each epoch's error shares, from the confusion matrices its scores keep: with the mIoU, all
    # of the union of every class counted
    for split in ("train", "val"):
        total = table[f"cam_miou_{split}"] + table[f"cam_fp_{split}"] + table[f"cam_fn_{split}"]
        assert total.tolist() == pytest.approx([1.0, 1.0]), split
    # the reported split's per-class IoU, whose mean over the classes scored is the mIoU
    per_class = table.filter(like="cam_iou_val_")
    assert per_class.shape[1] == len(json.loads((rd / "metrics" / "cam_val.json").read_text())["class_names"])
    assert per_class.mean(axis=1, skipna=True).tolist() == pytest.approx(table["cam_miou_val"].tolist())


def test_a_snapshot_scores_as_the_run_would_at_that_epoch(curved, tmp_path):
    """Epoch 3's snapshot, scored as a snapshot, gives the figures of the run's own eval stage."""
    cfg, rd = curved
    out = tmp_path / "copy"
    (out / "train").mkdir(parents=True)
    for name in (snapshot_name(3), "log.jsonl"):
        (out / "train" / name).write_bytes((rd / "train" / name).read_bytes())
    table = pipeline.score_curve(cfg, out, progress=False).set_index("epoch")
    run = pipeline.read_metrics(rd)
    for key in ("cam_miou_train", "cam_miou_val", "cam_oa_val", "cam_threshold_train"):
        assert table.loc[3, key] == pytest.approx(run[key], abs=1e-12), key


def test_an_unscored_snapshot_is_scored_on_the_next_call_and_only_when_asked(curved):
    cfg, rd = curved
    first = json.loads((rd / "curve" / "epoch_1" / "metrics.json").read_text())
    (rd / "curve" / "epoch_1" / "metrics.json").unlink()  # as if the process died while scoring it
    assert pipeline.score_curve(cfg, rd, progress=False, score=()).set_index("epoch").index.tolist() == [3]
    again = pipeline.score_curve(cfg, rd, progress=False).set_index("epoch")
    assert again.loc[1, "cam_miou_val"] == first["cam_miou_val"]


def test_a_resumed_run_scores_its_unscored_snapshot_before_it_trains_on(tmp_path):
    """A run stopped while its epoch-1 snapshot was being scored gets that point first when it
    resumes, so a session that resumes it commits the point without waiting for the next one."""
    cfg = tiny_config(tmp_path, **{"seg.enabled": False, "train.epochs": 2, "train.curve_epochs": (1,)})
    rd = pipeline.run_dir(cfg)

    def stop_after_epoch_1(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.stage_train(cfg, rd, progress=False, on_epoch=stop_after_epoch_1)
    scored = rd / "curve" / "epoch_1" / "metrics.json"
    first = json.loads(scored.read_text())
    scored.unlink()  # as if the stop had come while it was scored
    seen = []
    pipeline.stage_train(cfg, rd, progress=False, on_epoch=lambda record: seen.append(scored.is_file()))
    assert seen == [True]  # epoch 2's record: epoch 1 was scored before it trained
    assert json.loads(scored.read_text())["cam_miou_val"] == first["cam_miou_val"]


def test_cism_curve_prints_the_table(curved, capsys):
    _, rd = curved
    assert cli_main(["curve", str(rd), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| epoch |" in out and "cam_miou_val" in out and out.count("\n| 1 |") + out.count("\n| 3 |") == 2


def test_aux_losses_wait_for_their_epoch(tmp_path):
    """Before train.aux_from_epoch the auxiliary losses are computed and logged but carry λ = 0,
    so the weights follow L_ml alone; from it on, every loss trains."""
    from cism_lib.engine import train_classifier
    from cism_lib.pipeline import num_foreground, pair_dataset

    cfg = tiny_config(tmp_path, **{"seg.enabled": False, "train.epochs": 2, "train.aux_from_epoch": 2})
    _, (first, second) = train_classifier(cfg, pair_dataset(cfg, progress=False), num_foreground(cfg), tmp_path / "a",
                             progress=False)
    assert first["lam"] == 0.0 and second["lam"] == pytest.approx(cfg.model.lam)
    assert first["sl"] > 0 and first["total"] == pytest.approx(first["ml"], rel=1e-6)
    # the same first epoch as a run that trains L_ml alone
    ml_only = replace(cfg, **{"model.losses": ("ml",), "train.aux_from_epoch": 1})
    _, other = train_classifier(ml_only, pair_dataset(ml_only, progress=False), num_foreground(cfg),
                             tmp_path / "b", progress=False)
    assert other[0]["ml"] == pytest.approx(first["ml"], abs=1e-6)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["history"]
    assert [r["epoch"] for r in a] == [0, 1]


def test_the_curves_figure_has_a_line_per_method_and_a_band_over_seeds():
    import pandas as pd

    from cism_lib import viz

    def curve(values):
        return pd.DataFrame({"epoch": [1, 2, 4], "cam_miou_val": values})

    fig = viz.learning_curves({"CAM": [curve([0.10, 0.15, 0.2]), curve([0.12, 0.17, 0.2])],
                               "CISM": [curve([0.08, 0.1, 0.12])]}, paper={"CISM": 32.2})
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["CAM (2 seeds)"].get_ydata().tolist() == pytest.approx([11.0, 16.0, 20.0])
    assert lines["CISM (1 seed)"].get_xdata().tolist() == [1, 2, 4]
    assert len(ax.collections) == 1  # one band: the method with two seeds
    assert any(line.get_ydata()[0] == 32.2 for line in ax.get_lines())  # the paper's mark
    assert any("paper: CISM 32.2" in t.get_text() for t in ax.texts)
    # a seed still training (one epoch so far): the legend says the count varies by epoch
    fig = viz.learning_curves({"CISM": [curve([0.08, 0.1, 0.12]), curve([0.09, 0.11, 0.13]).head(1)]})
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert lines["CISM (1-2 seeds by epoch)"].get_ydata().tolist() == pytest.approx([8.5, 10.0, 12.0])


def test_cism_curve_draws_the_figure(curved, monkeypatch, tmp_path, capsys):
    from cism_lib import viz

    _, rd = curved
    monkeypatch.setattr(viz, "output_dir", lambda kind, profile: tmp_path / kind / profile)
    assert cli_main(["curve", str(rd), "--quiet", "--figure", "lc", "--profile", "smoke"]) == 0
    assert (tmp_path / "figures" / "smoke" / "lc.png").is_file()
    assert "written:" in capsys.readouterr().out


def test_cism_curve_writes_its_lines_and_replaces_its_own(curved, tmp_path):
    import pandas as pd

    _, rd = curved
    path = tmp_path / "curve_runs.csv"
    pd.DataFrame([{"run": "other-run", "epoch": 1, "cam_miou_val": 0.5}]).to_csv(path, index=False)
    for _ in range(2):  # the second call replaces the run's lines, keeps the others
        assert cli_main(["curve", str(rd), "--quiet", "--csv", str(path)]) == 0
    table = pd.read_csv(path)
    assert sorted(table["run"]) == sorted(["other-run", rd.name, rd.name])
    mine = table[table["run"] == rd.name].set_index("epoch")
    assert mine.loc[3, "cam_miou_val"] == round(pipeline.read_metrics(rd)["cam_miou_val"], 4)  # as every results CSV
    assert set(mine["method"]) == {"CISM"} and "threshold chosen on train" in mine["protocol"].iloc[0]


def test_cism_curve_draws_every_line_of_its_csv(curved, monkeypatch, tmp_path):
    """With --csv, the figure is the file's lines (what is committed), grouped by method and
    schedule: the same method trained to another length is another curve."""
    import pandas as pd

    from cism_lib import viz

    _, rd = curved
    path = tmp_path / "curve_runs.csv"
    assert cli_main(["curve", str(rd), "--quiet", "--csv", str(path)]) == 0
    lines = pd.read_csv(path)
    longer = lines.assign(run="cism-longer", epochs=8, cam_miou_val=lines["cam_miou_val"] + 0.1)
    pd.concat([lines, longer]).to_csv(path, index=False)
    drawn = {}
    monkeypatch.setattr(viz, "save_figure", lambda fig, name, profile: drawn.update(fig=fig) or tmp_path / "x.png")
    assert cli_main(["curve", "--csv", str(path), "--figure", "lc"]) == 0  # no run named: the file's lines
    labels = {line.get_label(): line for line in drawn["fig"].axes[0].get_lines()}
    assert set(labels) >= {"CISM, 3-epoch schedule (1 seed)", "CISM, 8-epoch schedule (1 seed)"}
    assert labels["CISM, 8-epoch schedule (1 seed)"].get_ydata().tolist() == pytest.approx(
        (100 * longer["cam_miou_val"]).tolist())
    assert cli_main(["curve", "--figure", "lc"]) == 2  # nothing to draw: a one-line error
    assert cli_main(["curve", "--csv", str(tmp_path / "none.csv"), "--figure", "lc"]) == 2


def test_a_curve_is_named_by_its_method_and_the_anchors_practices(tmp_path):
    plain = tiny_config(tmp_path, **{"train.epochs": 3})
    assert pipeline.curve_label(plain) == "CISM"
    practices = replace(plain, **{"train.aux_from_epoch": 2, "data.pair_sampling": "class", "train.freeze_bn": True,
                                  "train.frozen_stages": 3})
    assert pipeline.curve_label(practices) == ("CISM, aux losses from epoch 2, class-first pairs, "
                                               "frozen stem + 3 stages, frozen BN")
    assert pipeline.curve_label(replace(plain, **{"model.method": "cam"})) == "CAM"


def test_the_error_shares_script_reads_every_scored_epoch(curved, capsys):
    """docs/scripts/error_shares.py: one column per scored epoch (the snapshot's and the run's
    own), each class's IoU and shares adding to 100 (rounding aside)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "scripts" / "error_shares.py"
    spec = importlib.util.spec_from_file_location("error_shares", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    _, rd = curved
    assert list(script.scored_epochs(rd, "val")) == [1, 3]
    for file in script.scored_epochs(rd, "val").values():
        t = script.shares_table(file).dropna()
        assert len(t) and ((t.sum(axis=1) - 100).abs() <= 0.15 + 1e-9).all()
    script.main([str(rd)])
    out = capsys.readouterr().out
    assert f"{rd.name} e1" in out and f"{rd.name} e3" in out
    with pytest.raises(SystemExit, match="no scored epoch"):
        script.main([str(rd), "--split", "nosuch"])
