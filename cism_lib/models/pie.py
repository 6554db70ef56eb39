"""Prototype Interactive Enhancement (section 3.1.2, Eq. 6-9)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PrototypeInteraction(nn.Module):
    """Eq. (6): the shared 1×1 transform X = F_1×1(·), initialised to the identity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.transform = nn.Conv2d(dim, dim, 1)
        with torch.no_grad():
            self.transform.weight.copy_(torch.eye(dim)[:, :, None, None])
            self.transform.bias.zero_()

    def forward(self, e_q: torch.Tensor, e_r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Transformed prototype maps X_Q, X_R [B,D,h,w]."""
        return self.transform(e_q), self.transform(e_r)


def normalise_map(a: torch.Tensor, mode: str = "minmax", eps: float = 1e-6) -> torch.Tensor:
    """Map a cosine-similarity map [B,N] to [0, 1]: per-image min-max, or affine (a + 1) / 2."""
    if mode == "affine":
        return (a + 1) / 2
    if mode != "minmax":
        raise ValueError(f"unknown matching-map normalisation {mode!r}; use minmax or affine")
    lo, hi = a.amin(1, keepdim=True), a.amax(1, keepdim=True)
    return (a - lo) / (hi - lo).clamp_min(eps)


def pair_centred(x_q: torch.Tensor, x_r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both maps [B,D,h,w] minus the pair's mean feature (over every position of both images).

    Features in the positive orthant (F_c = σ(·)) have cosines near 1 everywhere; centring
    measures the directions in which positions differ (model.sim_centre, docs/method.md).
    """
    mean = torch.cat([x_q.flatten(2), x_r.flatten(2)], 2).mean(2)[:, :, None, None]
    return x_q - mean, x_r - mean


def matching_maps(x_q: torch.Tensor, x_r: torch.Tensor, mode: str = "minmax",
                  centre: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (7): A_q(p) = max_p' cos(X_Q(p), X_R(p')) and A_r likewise, normalised, [B,h,w] each.

    `centre`: the cosines of the pair-centred maps (pair_centred)."""
    b, _, h, w = x_q.shape
    if centre:
        x_q, x_r = pair_centred(x_q, x_r)
    q = F.normalize(x_q.flatten(2), dim=1)
    r = F.normalize(x_r.flatten(2), dim=1)
    sim = torch.bmm(q.transpose(1, 2), r)  # [B, hw_q, hw_r], one batched product
    a_q = normalise_map(sim.amax(2), mode).view(b, h, w)
    a_r = normalise_map(sim.amax(1), mode).view(b, *x_r.shape[2:])
    return a_q, a_r


def enhance_prototypes(protos: torch.Tensor, x_other: torch.Tensor, a_other: torch.Tensor,
                       region_other: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """Eq. (8)-(9): P' = P + Σ A·X_other / Σ A, pooled per class over region_other (or globally)."""
    weight = a_other.flatten(1)[:, None, :]  # [B,1,hw]
    if region_other is not None:
        weight = weight * region_other.flatten(2)  # [B,K,hw]
    pooled = torch.einsum("bkx,bdx->bkd", weight, x_other.flatten(2))
    return protos + pooled / weight.sum(-1, keepdim=True).clamp_min(eps)
