"""End-to-end chain on tiny SynthAerial: stages, run records, skipping, and resume after a crash."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cism_lib import loop, pipeline
from cism_lib.config import load_config
from cism_lib.errors import ConfigError

TINY = {
    "data.synth_train": 16, "data.synth_val": 8, "data.synth_size": 64, "data.crop_size": 64,
    "model.backbone": "resnet18", "model.weights": None, "model.proto_dim": 16,
    "train.epochs": 2, "train.batch_size": 4, "train.lr": 0.001, "cam.scales": (1.0,),
    "cam.thresholds": (0.2, 0.5, 0.8), "crf.iterations": 2, "crf.workers": 1,
    "seg.backbone": "resnet18", "seg.weights": None, "seg.epochs": 1, "seg.batch_size": 4,
    "seg.crop_size": 64,
}


def tiny_config(tmp_path, **extra):
    """The smoke preset shrunk to seconds, writing under tmp_path."""
    return load_config("configs/smoke.yaml", {**TINY, "out_dir": str(tmp_path / "runs"), **extra})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One SynthAerial folder for the whole module."""
    path = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CISM_DATA_DIR", str(path))
        yield path


@pytest.fixture(autouse=True)
def _data_env(data_dir, monkeypatch):
    monkeypatch.setenv("CISM_DATA_DIR", str(data_dir))


@pytest.fixture(scope="module")
def full_run(data_dir, tmp_path_factory):
    """The uninterrupted whole chain, run once for the module."""
    cfg = tiny_config(tmp_path_factory.mktemp("full"))
    return cfg, pipeline.run_all(cfg, progress=False)


def test_whole_chain_writes_records_and_protocol(full_run):
    cfg, rd = full_run
    for name in ("config.yaml", "versions.json", "metrics.json", "train/checkpoint.pt", "train/log.jsonl"):
        assert (rd / name).is_file(), name
    metrics = pipeline.read_metrics(rd)
    for key in ("cam_miou_train", "cam_miou_val", "pseudo_miou_train", "seg_miou_val"):
        assert 0.0 <= metrics[key] <= 1.0
    cam = json.loads((rd / "metrics" / "cam_train.json").read_text())
    assert cam["protocol"]["threshold_selected_on"] == "val"
    assert cam["protocol"]["reported_split"] == "train"
    assert len(list((rd / "pseudo" / "train").glob("*.png"))) == 16
    assert len(json.loads((rd / "versions.json").read_text())["torch"]) > 0
    seconds = pipeline.stage_seconds(rd)  # every stage's wall time, from its marker
    assert list(seconds) == list(pipeline.STAGES) and all(s >= 0 for s in seconds.values())
    assert seconds["train"] > 0


def test_finished_stages_are_skipped(full_run, monkeypatch):
    cfg, rd = full_run
    for stage in pipeline.STAGES:
        monkeypatch.setitem(pipeline.STAGE_FUNCS, stage, lambda *a, **k: pytest.fail("re-run"))
    monkeypatch.setattr(pipeline, "stage_train", lambda *a, **k: pytest.fail("train re-run"))
    assert pipeline.run_all(cfg, progress=False) == rd


def test_interrupted_run_resumes_to_identical_metrics(full_run, tmp_path, monkeypatch):
    full = pipeline.read_metrics(full_run[1])

    cfg = tiny_config(tmp_path / "b")
    real_epoch = loop.run_epoch
    calls = {"n": 0}

    def crash_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill during epoch 2")
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(loop, "run_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_all(cfg, progress=False)
    monkeypatch.setattr(loop, "run_epoch", real_epoch)
    rd = pipeline.run_dir(cfg)
    assert (rd / "train" / "checkpoint.pt").exists() and not pipeline.stage_done(rd, "train")
    resumed = pipeline.read_metrics(pipeline.run_all(cfg, progress=False))
    assert resumed == pytest.approx(full, abs=1e-9)


def test_unknown_stage_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="stage"):
        pipeline.run_all(tiny_config(tmp_path), stages=("trian",), progress=False)


def test_isaid_without_root_says_how_to_set_it(tmp_path, monkeypatch):
    monkeypatch.delenv("CISM_ISAID_ROOT", raising=False)
    cfg = tiny_config(tmp_path, **{"data.dataset": "isaid"})
    with pytest.raises(ConfigError, match="CISM_ISAID_ROOT"):
        pipeline.data_root(cfg)


def test_train_live_trains_like_the_train_stage(tmp_path, monkeypatch):
    from cism_lib import experiments

    monkeypatch.setenv("MPLBACKEND", "Agg")
    live_rd = experiments.train_live(tiny_config(tmp_path / "live"), progress=False)
    stage_rd = pipeline.run_all(tiny_config(tmp_path / "stage"), stages=("train",), progress=False)
    live, stage = (json.loads((rd / "stages" / "train.json").read_text()) for rd in (live_rd, stage_rd))
    assert live["epochs"] == stage["epochs"] == 2
    assert live["final_loss"] == pytest.approx(stage["final_loss"], rel=1e-6)
    assert experiments.train_live(tiny_config(tmp_path / "live"), progress=False) == live_rd  # reused


def test_cam_max_train_makes_cams_threshold_and_pseudo_masks_of_the_first_tiles_only(full_run, tmp_path):
    cfg, rd = full_run
    sub = pipeline.run_all(tiny_config(tmp_path, **{"cam.max_train": 5}), progress=False)
    assert sub != rd  # its own run folder
    assert len(list((sub / "cams" / "train").glob("*.npz"))) == 5
    assert len(list((sub / "cams" / "val").glob("*.npz"))) == len(list((rd / "cams" / "val").glob("*.npz"))) == 8
    assert len(list((sub / "pseudo" / "train").glob("*.png"))) == 5
    val = json.loads((sub / "metrics" / "cam_val.json").read_text())["protocol"]
    assert (val["images_reported"], val["images_selected_on"]) == (8, 5)
    # the same training as the whole run, so a tile of the subset has the same CAM
    first = sorted((rd / "cams" / "train").glob("*.npz"))[0]
    with np.load(first) as a, np.load(sub / "cams" / "train" / first.name) as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
