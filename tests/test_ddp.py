"""Distributed training on CPU: two processes on the gloo backend, as torchrun would launch them."""
from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from cism_lib import engine, pipeline
from cism_lib.config import load_config

SETTINGS = {
    "data.synth_train": 16, "data.synth_val": 4, "data.synth_size": 64, "data.crop_size": 64,
    "model.backbone": "resnet18", "model.weights": None, "model.proto_dim": 16,
    "train.epochs": 2, "train.batch_size": 2, "train.lr": 0.001,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str, data: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), CISM_DATA_DIR=data)
    torch.set_num_threads(1)
    cfg = load_config("configs/smoke.yaml", {**SETTINGS, "out_dir": out, "device": "cpu"})
    pairs = pipeline.pair_dataset(cfg, progress=False)
    model, history = engine.train_classifier(cfg, pairs, 15, f"{out}/train", progress=False)
    params = {k: v.detach() for k, v in model.named_parameters()}
    torch.save({"state": params, "history": history}, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_train_in_lockstep(tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("CISM_DATA_DIR", str(data))
    cfg = load_config("configs/smoke.yaml", {**SETTINGS, "out_dir": str(tmp_path)})
    pipeline.data_root(cfg, progress=False)  # generate once, before the workers start
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), str(data)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    # Gradients are all-reduced, so the weights stay identical (BN running stats are per rank
    # unless train.sync_bn is on, hence parameters only).
    for name, value in r0["state"].items():
        assert torch.equal(value, r1["state"][name]), f"{name} differs between ranks"
    # 16 images, 2 ranks, batch 2 per rank: 4 optimizer steps per epoch.
    assert [h["steps"] for h in r0["history"]] == [4, 8]
    assert (tmp_path / "train" / "checkpoint.pt").exists() and (tmp_path / "train" / "log.jsonl").exists()
    ckpt = torch.load(tmp_path / "train" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(ckpt["model"][k], v) for k, v in r0["state"].items())  # rank 0 wrote it
