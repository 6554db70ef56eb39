"""Prototype vectors (section 3.1.1, Eq. 1-5): F_c = σ(W F_n), a dropout gate Γ, masked average pooling."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PrototypeGenerator(nn.Module):
    """Eq. (1)-(2): the channel-unifying 1×1 conv + sigmoid, F_c = σ(W F_n)."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Initial prototype maps F_c [B,D,h,w] in (0, 1)."""
        return torch.sigmoid(self.proj(feats))


def gate_map(like: torch.Tensor, eta: float, training: bool) -> torch.Tensor:
    """Eq. (5): Γ = Φ(1^{h×w}, η), dropout of an all-ones map per image [B,1,h,w]; ones in eval."""
    ones = like.new_ones(like.shape[0], 1, *like.shape[2:])
    if not training or eta <= 0:
        return ones
    return F.dropout(ones, p=eta, training=True)


def high_confidence_regions(cam_norm: torch.Tensor, threshold: float) -> torch.Tensor:
    """Binary per-class regions (M_k > threshold) [B,K,h,w], detached (a selection, not a weight)."""
    return (cam_norm.detach() > threshold).to(cam_norm.dtype)


def masked_average_pooling(feats: torch.Tensor, region: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Eq. (3)-(4): P_k = Σ F_c·R_k / Σ R_k for every class k → [B,K,D]; an empty region gives 0."""
    region = region.flatten(2)
    num = torch.einsum("bkx,bdx->bkd", region, feats.flatten(2))
    return num / region.sum(-1, keepdim=True).clamp_min(eps)
