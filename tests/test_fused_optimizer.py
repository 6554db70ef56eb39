"""train.fused_optimizer: Adam / SGD as one fused kernel, the same updates as PyTorch's loop."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cism_lib.config import SegConfig, TrainConfig
from cism_lib.engine import build_optimizer
from cism_lib.segment import _optimizer as seg_optimizer


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1)).double()


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int = 5) -> nn.Module:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(2, 3, 9, 9, generator=gen, dtype=torch.float64)
        opt.zero_grad()
        (model(x) ** 2).mean().backward()
        opt.step()
    return model


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_classifier_fused_optimizer_is_the_default_and_matches_the_loop(optimizer: str) -> None:
    cfg = TrainConfig(optimizer=optimizer, lr=0.05, weight_decay=1e-3)
    a, b = _net(), _net()
    fused = build_optimizer(a, cfg)
    loop = build_optimizer(b, TrainConfig(optimizer=optimizer, lr=0.05, weight_decay=1e-3, fused_optimizer=False))
    assert fused.defaults["fused"] is True and not loop.defaults["fused"]
    _train(a, fused), _train(b, loop)
    moved = [pa for pa, p0 in zip(a.parameters(), _net().parameters(), strict=True) if not torch.equal(pa, p0)]
    assert moved  # the steps changed the weights
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-8, atol=1e-10)  # fp64, rounding of another order


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_segmenter_fused_optimizer_matches_the_loop_and_resumes_its_state(optimizer: str) -> None:
    class Seg(nn.Module):  # the two parameter groups segment._optimizer expects
        def __init__(self) -> None:
            super().__init__()
            net = _net()
            self.backbone, self.head = net[:3], net[3:]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.backbone(x))

    cfg = SegConfig(optimizer=optimizer, lr=0.01, head_lr_mult=5.0)
    a, b = Seg(), Seg()
    fused, _ = seg_optimizer(a, cfg, 10, fused=True)
    loop, _ = seg_optimizer(b, cfg, 10)
    _train(a, fused), _train(b, loop)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-8, atol=1e-10)  # fp64, rounding of another order
    # a checkpoint of the loop (every run before the option) resumes under the fused kernel
    c = copy.deepcopy(b)
    resumed, _ = seg_optimizer(c, cfg, 10, fused=True)
    resumed.load_state_dict(copy.deepcopy(loop.state_dict()))  # as read back from a file
    _train(c, resumed, 3), _train(b, loop, 3)
    for pc, pb in zip(c.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pc, pb, rtol=1e-8, atol=1e-10)  # fp64, rounding of another order
