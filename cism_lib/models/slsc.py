"""CAM normalisation (Eq. 12-13) and Single-Label Secondary Classification (section 3.2.2, Eq. 14-17)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def normalise_cam(cam: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Eq. (12)-(13): M = ReLU(W_c^T F_n) / max_xy ReLU(W_c^T F_n), per image and class."""
    cam = F.relu(cam)
    return cam / (cam.amax((2, 3), keepdim=True) + eps)


def prototype_similarity(protos: torch.Tensor, feats: torch.Tensor, centre: bool = False) -> torch.Tensor:
    """The ⊗ of Eq. (14): ReLU(cos(P'_k, F_c(x))) per class and pixel, [B,K,h,w].

    `centre`: prototypes and features minus the image's mean feature before the cosine."""
    if centre:
        mean = feats.mean((2, 3))
        protos, feats = protos - mean[:, None, :], feats - mean[:, :, None, None]
    p = F.normalize(protos, dim=2)
    f = F.normalize(feats.flatten(2), dim=1)
    sim = torch.einsum("bkd,bdx->bkx", p, f)
    return F.relu(sim).view(*sim.shape[:2], *feats.shape[2:])


def pixel_confidence(cam: torch.Tensor, axis: str = "class") -> torch.Tensor:
    """γ of Eq. (16): softmax of the raw CAMs over classes (per pixel) or over space (per class)."""
    if axis == "class":
        return cam.softmax(1)
    if axis == "space":
        return cam.flatten(2).softmax(2).view_as(cam)
    raise ValueError(f"unknown gamma axis {axis!r}; use class or space")


def secondary_scores(cam: torch.Tensor, mask: torch.Tensor, gamma: torch.Tensor,
                     form: str = "recam", pool: str = "gamma") -> torch.Tensor:
    """Eq. (14)-(17): classifier scores of the γ-pooled class-specific features (mask_k ⊙ F_n).

    Row k of the 'recam' form [B,K,K] holds all K class scores of the class-k-specific feature
    Σ_x γ_k mask_k F_n / Σ_x γ_k; the classifier is linear, so this equals
    Σ_x w_k(x) cam_j(x) and F̃ [B,K,C,h,w] is never built. 'diag' keeps Z̃[k] = row k, column k.
    `cam` is the linear classifier applied to F_n: W_c's CAM, or a separate scorer's map.
    pool 'gamma' divides by Σ_x γ_k (Eq. 16 with R the whole image); 'masked' by Σ_x γ_k mask_k
    (R the masked region), a true weighted mean whose scale does not shrink with the mask's area.
    """
    num = (gamma * mask).flatten(2)
    if pool == "gamma":
        den = gamma.flatten(2).sum(-1, keepdim=True)
    elif pool == "masked":
        den = num.sum(-1, keepdim=True)
    else:
        raise ValueError(f"unknown SLSC pooling {pool!r}; use gamma or masked")
    weight = num / den.clamp_min(1e-6)
    scores = torch.einsum("bkx,bjx->bkj", weight, cam.flatten(2))
    if form == "recam":
        return scores
    if form == "diag":
        return scores.diagonal(dim1=1, dim2=2)
    raise ValueError(f"unknown SLSC score form {form!r}; use recam or diag")
