"""Run-time setup: the allocator setting changes speed only, never a number."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cism_lib import runtime

ROOT = Path(__file__).resolve().parents[1]

# Three training steps of a small random Lite0 classifier in bf16 + channels_last with the conv
# depthwise backward, large enough (2 pairs at 96²) for activations above glibc's mmap threshold;
# prints a digest of every trained parameter.
TRAIN = """
import hashlib, sys, torch
from cism_lib import runtime
if sys.argv[1] == "retain":
    assert runtime.retain_freed_memory()
torch.set_num_threads(1)
from cism_lib.tools.bench import random_pair_batch
from cism_lib.config import ModelConfig, TrainConfig
from cism_lib.engine import build_optimizer, fp32_outputs, to_device
from cism_lib.losses import total_loss
from cism_lib.models import build_model
from cism_lib.models.backbones import set_depthwise_grad
torch.manual_seed(0)
cfg = ModelConfig(method="cism", backbone="efficientnet_lite0", weights=None, proto_dim=16)
model = build_model(cfg, 15).to(memory_format=torch.channels_last).train()
set_depthwise_grad(model, "conv")
opt = build_optimizer(model, TrainConfig(lr=1e-3))
batch = to_device(random_pair_batch(2, 96), torch.device("cpu"), True)
for _ in range(3):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch["image_q"], batch["image_r"])
    loss = total_loss(fp32_outputs(out), batch, cfg)["total"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
h = hashlib.sha256()
for p in model.parameters():
    h.update(p.detach().numpy().tobytes())
print(h.hexdigest())
"""


def test_retain_freed_memory_is_idempotent_and_set_on_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runtime.DEFAULT_MALLOC_ENV, raising=False)
    monkeypatch.setattr(runtime, "_RETAINED", [])
    first = runtime.retain_freed_memory()
    assert runtime.retain_freed_memory() is first
    if sys.platform.startswith("linux"):
        assert first  # glibc's mallopt accepted both settings


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_training_is_bit_identical_with_and_without_the_allocator_setting() -> None:
    digests = [subprocess.run([sys.executable, "-c", TRAIN, mode], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip() for mode in ("default", "retain")]
    assert len(digests[0]) == 64 and digests[0] == digests[1]


def test_default_malloc_env_leaves_the_allocator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.DEFAULT_MALLOC_ENV, "1")
    monkeypatch.setattr(runtime, "_RETAINED", [])
    assert runtime.retain_freed_memory() is False


def test_versions_name_the_processor(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # bf16 numbers depend on the processor's kernels (AMX vs AVX512-BF16): every record names it
    info = runtime.versions()
    assert info["cpu"] and info["cpu"] == runtime.cpu_model() and info["cpu_isa"]
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU 9000 @ 3 GHz\nflags\t: avx512_bf16\n")
    real_path = runtime.Path
    monkeypatch.setattr(runtime, "Path", lambda p: real_path(cpuinfo) if p == "/proc/cpuinfo" else real_path(p))
    assert runtime.cpu_model() == "Test CPU 9000 @ 3 GHz"


def test_results_lines_carry_threads_precision_depthwise_and_cpu(tmp_path) -> None:
    import json

    from cism_lib import experiments

    (tmp_path / "versions.json").write_text(json.dumps({"torch_threads": 1, "precision": "bf16",
                                                        "depthwise_grad": "conv", "fused_optimizer": True,
                                                        "cpu": "Test CPU"}))
    assert experiments._compute_columns(tmp_path) == {"threads": 1, "precision": "bf16",
                                                      "depthwise_grad": "conv", "fused_optimizer": True,
                                                      "cpu": "Test CPU"}
    (tmp_path / "versions.json").write_text(json.dumps({"torch_threads": 2}))  # a record of an older run
    assert experiments._compute_columns(tmp_path) == {"threads": 2, "precision": "fp32",
                                                      "depthwise_grad": "aten", "fused_optimizer": False,
                                                      "cpu": None}
