"""Cross-image affinity module of CIAN (Fan et al., AAAI 2020), the paper's baseline."""
from __future__ import annotations

import math

import torch
from torch import nn


class CrossImageAffinity(nn.Module):
    """Query positions attend over reference (+ own) positions; the result is added residually."""

    def __init__(self, channels: int, reduction: int = 2) -> None:
        super().__init__()
        inter = max(channels // reduction, 1)
        self.query = nn.Conv2d(channels, inter, 1)
        self.key = nn.Conv2d(channels, inter, 1)
        self.value = nn.Conv2d(channels, inter, 1)
        self.out = nn.Sequential(nn.Conv2d(inter, channels, 1, bias=False), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.out[1].weight)  # starts as the identity map, like a non-local block

    def forward(self, f_q: torch.Tensor, f_r: torch.Tensor) -> torch.Tensor:
        """f_q + W_z(Σ_p' softmax_p'(θ(f_q)·φ(f_ref)) g(f_ref)), f_ref = reference ∪ query itself."""
        b, _, h, w = f_q.shape
        src = torch.cat([f_r, f_q], dim=3)  # self-affinity too, so a lone image at test time fits
        q = self.query(f_q).flatten(2)                       # [B,i,hw]
        k = self.key(src).flatten(2)                         # [B,i,2hw]
        v = self.value(src).flatten(2)                       # [B,i,2hw]
        affinity = torch.bmm(q.transpose(1, 2), k).div(math.sqrt(q.shape[1])).softmax(-1)
        retrieved = torch.bmm(v, affinity.transpose(1, 2)).view(b, -1, h, w)
        return f_q + self.out(retrieved)
