"""`make reproduce`'s runs ahead of the notebooks: which runs, how many processes, and that a run
trained in a worker process is bit-identical to the same run trained in this one."""
from __future__ import annotations

import json

import pytest
import torch

from cism_lib import experiments, pipeline, runfolder
from cism_lib.config import load_config, replace
from cism_lib.engine import load_checkpoint
from cism_lib.errors import CismError

TINY = {
    "threads": 1, "data.synth_train": 12, "data.synth_val": 6, "data.synth_size": 64,
    "data.crop_size": 64, "model.backbone": "efficientnet_lite0", "model.weights": None,
    "model.proto_dim": 16, "train.epochs": 1, "train.batch_size": 4, "train.lr": 0.001,
    "cam.scales": (1.0,), "cam.thresholds": (0.2, 0.5, 0.8), "seg.enabled": False,
}


def _tiny(tmp_path, out: str, **extra):
    return load_config("configs/smoke.yaml", {**TINY, "out_dir": str(tmp_path / out), **extra})


@pytest.fixture(autouse=True)
def _data_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CISM_DATA_DIR", str(tmp_path / "data"))


def test_runs_of_worker_processes_are_bit_identical_to_runs_made_here(tmp_path, monkeypatch) -> None:
    jobs = [(_tiny(tmp_path, "pool", **{"model.method": m}), experiments.CAM_STAGES) for m in ("cam", "cism")]
    monkeypatch.setattr(experiments.runs, "profile_runs", lambda profile: jobs)
    lines: list[str] = []
    done = experiments.prepare_runs("smoke", 2, log=lines.append)
    assert sorted(done) == sorted(pipeline.run_dir(cfg) for cfg, _ in jobs)
    assert lines[0] == "[smoke] 2 runs in 2 processes of 1 thread(s)" and len(lines) == 3
    assert experiments.prepare_runs("smoke", 2, log=lines.append) == []  # all finished: nothing to do
    for cfg, stages in jobs:
        here = pipeline.run_all(replace(cfg, out_dir=str(tmp_path / "here")), stages=stages, progress=False)
        there = pipeline.run_dir(cfg)
        a, b = (load_checkpoint(rd / "train" / "checkpoint.pt")["model"] for rd in (here, there))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert json.loads((here / "metrics.json").read_text()) == json.loads((there / "metrics.json").read_text())


def test_a_failed_run_stops_with_one_line_naming_its_folder(tmp_path, monkeypatch) -> None:
    bad = _tiny(tmp_path, "pool", **{"model.method": "cam", "model.weights": str(tmp_path / "missing.pth")})
    monkeypatch.setattr(experiments.runs, "profile_runs", lambda profile: [(bad, ("train",))])
    with pytest.raises(CismError, match=rf"^{pipeline.run_dir(bad)}: .*missing\.pth"):
        experiments.prepare_runs("smoke", 2, log=lambda line: None)


def test_the_cpu_profile_runs_each_of_its_19_runs_once_chain_runs_first() -> None:
    jobs = experiments.profile_runs("cpu")
    folders = [pipeline.run_dir(cfg) for cfg, _ in jobs]
    assert len(jobs) == len(set(folders)) == 19
    assert [cfg.model.method for cfg, _ in jobs[:3]] == ["cam", "cian", "cism"]
    assert all(stages == pipeline.STAGES for _, stages in jobs[:3])
    assert all(stages == experiments.CAM_STAGES for _, stages in jobs[3:])
    # 03_train's default run is Table 1's CISM run
    assert pipeline.run_dir(experiments.experiment_config("cpu", **{"model.method": "cism"})) in folders


def test_workers_are_the_cores_over_the_profile_threads(monkeypatch) -> None:
    monkeypatch.setattr(experiments.runs.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(experiments.runs, "_cuda_available", lambda: False)
    assert (experiments.default_workers("cpu"), experiments.default_workers("smoke")) == (2, 1)
    monkeypatch.setattr(experiments.runs.os, "cpu_count", lambda: 8)
    assert (experiments.default_workers("cpu"), experiments.default_workers("smoke")) == (8, 4)
    # the paper profile leaves its threads to torch (every core) and names no device: one run at a time
    assert experiments.runs._load_profile("paper").threads is None
    assert experiments.default_workers("paper") == 1


def test_depthwise_conv_gets_its_own_folder_only_where_it_acts(tmp_path) -> None:
    lite = _tiny(tmp_path, "runs")
    aten = replace(lite, **{"train.depthwise_grad": "aten"})
    assert lite.train.depthwise_grad == "conv"  # the default
    assert runfolder.depthwise_conv_run(lite) and not runfolder.depthwise_conv_run(aten)
    assert pipeline.run_dir(lite) != pipeline.run_dir(aten)
    resnet = replace(lite, **{"model.backbone": "resnet18"})
    assert not runfolder.depthwise_conv_run(resnet)
    assert pipeline.run_dir(resnet) == pipeline.run_dir(replace(resnet, **{"train.depthwise_grad": "aten"}))
    # a ResNet classifier with a Lite0 DeepLab: conv acts on the DeepLab
    assert runfolder.depthwise_conv_run(replace(resnet, **{"seg.enabled": True, "seg.backbone": "efficientnet_lite0"}))


def test_fused_optimizer_is_the_default_and_gets_its_own_folder(tmp_path) -> None:
    fused = _tiny(tmp_path, "runs")
    loop = replace(fused, **{"train.fused_optimizer": False})
    assert fused.train.fused_optimizer
    assert pipeline.run_dir(fused) != pipeline.run_dir(loop)
    # the loop's folder is the one a run had before the option existed (the option leaves the hash)
    assert pipeline.run_dir(loop) == pipeline.run_dir(replace(loop, **{"train.fused_optimizer": False}))
