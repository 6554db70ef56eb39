"""Cross-image affinity module of CIAN (Fan et al., AAAI 2020), the paper's baseline."""
from __future__ import annotations

import math

import torch
from torch import nn


class CrossImageAffinity(nn.Module):
    """Query positions attend over reference (+ own) positions; the result is added residually.

    The inner width is channels // reduction (8 by default, as in non-local blocks on wide
    backbones): at 2048 channels a reduction of 2 made the module cost half a ResNet-50.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        inter = max(channels // reduction, 1)
        self.query = nn.Conv2d(channels, inter, 1)
        self.key = nn.Conv2d(channels, inter, 1)
        self.value = nn.Conv2d(channels, inter, 1)
        self.out = nn.Sequential(nn.Conv2d(inter, channels, 1, bias=False), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.out[1].weight)  # starts as the identity map, like a non-local block

    def project(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """θ(f), φ(f), g(f) flattened to [B,i,hw]."""
        return self.query(f).flatten(2), self.key(f).flatten(2), self.value(f).flatten(2)

    def attend(self, f: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """f + W_z(Σ_p' softmax_p'(θ·φ / √i) g) for queries q over keys k and values v."""
        b, _, h, w = f.shape
        affinity = torch.bmm(q.transpose(1, 2), k).div(math.sqrt(q.shape[1])).softmax(-1)
        return f + self.out(torch.bmm(v, affinity.transpose(1, 2)).view(b, -1, h, w))

    def forward(self, f_q: torch.Tensor, f_r: torch.Tensor) -> torch.Tensor:
        """Enhanced query features; the sources are the reference and the query itself.

        Self-affinity is included so that a lone image (paired with itself) fits at test time.
        """
        q, k_q, v_q = self.project(f_q)
        _, k_r, v_r = self.project(f_r)
        return self.attend(f_q, q, torch.cat([k_r, k_q], 2), torch.cat([v_r, v_q], 2))

    def forward_pair(self, f_q: torch.Tensor, f_r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(forward(f_q, f_r), forward(f_r, f_q)) with each projection computed once."""
        q_q, k_q, v_q = self.project(f_q)
        q_r, k_r, v_r = self.project(f_r)
        k, v = torch.cat([k_r, k_q], 2), torch.cat([v_r, v_q], 2)
        return (self.attend(f_q, q_q, k, v),
                self.attend(f_r, q_r, torch.cat([k_q, k_r], 2), torch.cat([v_q, v_r], 2)))
