"""The precision policy (runtime.precision_for): selection, bf16 training and CAM parity, records."""
from __future__ import annotations

import json

import pytest
import torch

from cism_lib import runtime
from cism_lib.cam import multiscale_cam
from cism_lib.config import ModelConfig, RunConfig, TrainConfig, load_config, replace
from cism_lib.engine import fp32_outputs
from cism_lib.losses import total_loss
from cism_lib.models import build_model
from cism_lib.runtime import Precision, precision_for
from tests.fixtures import pair_batch

BF16 = Precision("cpu", torch.bfloat16, channels_last=True)
FP32 = Precision("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_cpu_policy_follows_the_capability_check(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: native)
    p = precision_for("cpu")
    assert (p.name, p.channels_last) == (("bf16", True) if native else ("fp32", False))
    assert p.record() == {"precision": p.name,
                          "memory_format": "channels_last" if native else "contiguous"}
    off = precision_for("cpu", amp=False)  # train.amp false: exactly the fp32 contiguous path
    assert (off.name, off.channels_last, off.dtype) == ("fp32", False, None)
    assert precision_for("cpu", channels_last=False).channels_last is False


def test_autocast_contexts_do_what_the_policy_says() -> None:
    x, lin = torch.randn(2, 4), torch.nn.Linear(4, 3)
    with BF16.autocast():
        assert lin(x).dtype == torch.bfloat16
    with FP32.autocast():
        assert lin(x).dtype == torch.float32
    img = torch.randn(2, 3, 5, 5)
    assert BF16.images(img).is_contiguous(memory_format=torch.channels_last)
    assert FP32.images(img).is_contiguous()


def _grads(precision: Precision, method: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    cfg = ModelConfig(method=method, backbone="resnet18", weights=None, proto_dim=8)
    model = precision.model(build_model(cfg, 3).train())
    batch = pair_batch()
    with precision.autocast():
        out = model(precision.images(batch["image_q"]), precision.images(batch["image_r"]))
    losses = total_loss(fp32_outputs(out), batch, cfg)
    losses["total"].backward()
    return losses, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", ["cam", "cism"])
def test_bf16_step_gives_finite_fp32_losses_and_the_same_gradient_set(method: str) -> None:
    l16, g16 = _grads(BF16, method)
    l32, g32 = _grads(FP32, method)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in l16.values())
    assert set(g16) == set(g32) and len(g32) > 10
    assert all(torch.isfinite(g).all() for g in g16.values())
    # Same starting point, so the losses agree to bf16's resolution (8 mantissa bits, ~0.4 %
    # per rounding, accumulated over the network): 3 % relative is far below a real bug.
    for k in l32:
        assert float(l16[k].detach()) == pytest.approx(float(l32[k].detach()), rel=0.03, abs=1e-3)


def test_cams_in_bf16_agree_with_fp32_on_a_fixed_model(monkeypatch) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(method="cam", backbone="resnet18", weights=None), 3).eval()
    images, labels = torch.randn(2, 3, 64, 64), torch.ones(2, 3)
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: True)
    cam16 = multiscale_cam(model, images, labels, (1.0, 0.5), True, amp=True)
    cam32 = multiscale_cam(model, images, labels, (1.0, 0.5), True, amp=False)
    assert cam16.dtype == cam32.dtype == torch.float32
    # CAMs are max-normalised to [0, 1]; bf16 activations move them by about 1e-2 (a 256-level
    # quantisation of each activation, averaged by the 1x1 classifier), never by a threshold step
    # of the sweep (0.05).
    assert (cam16 - cam32).abs().max() < 0.05
    assert (cam16 - cam32).abs().mean() < 0.01


def test_checkpoint_trained_in_bf16_loads_and_infers_in_fp32(tmp_path, monkeypatch) -> None:
    from cism_lib.engine import load_classifier, train_classifier

    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: True)
    cfg = replace(RunConfig(), **{"device": "cpu", "threads": 1, "model.method": "cam",
                                  "model.backbone": "resnet18", "model.weights": None,
                                  "train.epochs": 1, "train.batch_size": 2})

    class Items(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> dict:
            b = pair_batch(i)
            return {"image_q": b["image_q"][0], "label_q": b["label_q"][0]}

    train_classifier(cfg, Items(), 3, tmp_path, progress=False)
    log = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert (log["precision"], log["memory_format"]) == ("bf16", "channels_last")
    model = load_classifier(cfg, 3, tmp_path / "checkpoint.pt", torch.device("cpu"))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    cam = multiscale_cam(model, pair_batch()["image_q"], torch.ones(2, 3), (1.0,), False, amp=False)
    assert torch.isfinite(cam).all() and cam.amax() > 0.99


def test_run_folder_and_record_carry_precision_and_threads(tmp_path, monkeypatch) -> None:
    from cism_lib import pipeline

    cfg = load_config(None, {"device": "cpu", "threads": 1, "out_dir": str(tmp_path)})
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: True)
    bf16_dir = pipeline.run_dir(cfg)
    assert pipeline.run_dir(replace(cfg, **{"train.amp": False})) != bf16_dir
    pipeline.write_run_record(cfg, bf16_dir)
    record = json.loads((bf16_dir / "versions.json").read_text())
    assert (record["precision"], record["memory_format"], record["torch_threads"]) == (
        "bf16", "channels_last", 1)
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: False)
    assert pipeline.run_dir(cfg) != bf16_dir  # fp32 on this CPU: the folder of the fp32 era
    assert TrainConfig().amp is True


def test_threads_must_be_positive() -> None:
    from cism_lib.errors import ConfigError

    with pytest.raises(ConfigError, match="threads must be >= 1"):
        load_config(None, {"threads": 0})
