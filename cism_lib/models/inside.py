"""One forward pass of CISMNet that keeps every intermediate of section 3 (for teaching figures).

`trace(model, image_q, image_r)` runs `CISMNet.forward` with a `keep` dict that the CISM heads
fill, and returns a dict of every step with the paper's names: the CAMs and their
normalisation M (Eq. 10-13), the prototype maps F_c (Eq. 1-2), the confident regions R and the
gate Γ (Eq. 5), the prototypes P (Eq. 3-4), the PIE transform X (Eq. 6), the matching maps A
(Eq. 7), the enhanced prototypes P' (Eq. 8-9), the prototype similarity of Eq. 14, γ (Eq. 16), the
SLSC scores Z̃ (Eq. 17) and the common / non-common predictions y_co, y_q\\co, y_r\\co (Eq. 23,
25-26), beside the forward pass's own outputs; it works without gradients and in the model's
current mode (eval: Γ is all ones).
"""
from __future__ import annotations

from typing import Any

import torch

from cism_lib.models.cism import CISMNet
from cism_lib.models.slsc import normalise_cam

# The steps `trace` returns, in the order of section 3, with the equation each comes from.
STEPS: dict[str, str] = {
    "cam": "Eq. 10-11: W_c^T F_n, the raw class activation maps [B,K,h,w]",
    "logits": "Eq. 10-11: global average of the CAMs, the multi-label scores [B,K]",
    "M": "Eq. 12-13: ReLU(CAM) / its spatial maximum, per class [B,K,h,w]",
    "F_c": "Eq. 1-2: prototype maps σ(W F_n) [B,D,h,w]",
    "R": "Eq. 3: confident regions M_k > τ [B,K,h,w]",
    "gate": "Eq. 5: the dropout gate Γ (all ones in eval) [B,1,h,w]",
    "P": "Eq. 3-4: prototypes, masked average of F_c over R·Γ [B,K,D]",
    "X": "Eq. 6: the shared 1×1 transform of F_c [B,D,h,w]",
    "A": "Eq. 7: matching map, max cosine to the other image, normalised [B,h,w]",
    "P_enh": "Eq. 8-9: prototypes enhanced by the other image, P + Σ A·X / Σ A [B,K,D]",
    "S": "Eq. 14: ReLU(cos(P'_k, F_c(x))), the prototype similarity [B,K,h,w]",
    "mask": "Eq. 14: M ⊙ S, the class-specific weighting [B,K,h,w]",
    "gamma": "Eq. 16: γ, softmax of the CAMs over classes [B,K,h,w]",
    "sl": "Eq. 17: Z̃, scores of the class-specific features [B,K,K] (recam) or [B,K] (diag)",
    "y_co": "Eq. 23: Ψ of the common (A-weighted) features of both images [B,K]",
    "y_nc": "Eq. 25-26: Ψ of each image's non-common ((1 − A)-weighted) features [B,K]",
}


@torch.no_grad()
def trace(model: CISMNet, image_q: torch.Tensor, image_r: torch.Tensor) -> dict[str, Any]:
    """Every intermediate of one forward pass of a pair (see STEPS); keys end in _q or _r per image.

    The forward pass is the model's own (`CISMNet.forward` with `keep`), so its outputs and the
    intermediates come from the same computation; M is added from the raw CAMs (Eq. 12-13).
    Raises ValueError for a model that is not a CISM model (CAM and CIAN have no such steps).
    """
    if model.cfg.method != "cism":
        raise ValueError(f"trace needs a CISM model; this one is {model.cfg.method!r} (no PV, PIE or SLSC)")
    keep: dict[str, torch.Tensor] = {}
    out = dict(model(image_q, image_r, keep=keep))
    out.update(keep)
    for s in "qr":
        out[f"M_{s}"] = normalise_cam(out[f"cam_{s}"].float())
    return out


def pair_labels(label_q: torch.Tensor, label_r: torch.Tensor) -> dict[str, torch.Tensor]:
    """l_q, l_r, l_co, l_q\\co and l_r\\co (Eq. 23-27) of a pair of multi-hot labels."""
    from cism_lib.data.pairs import pair_label_sets

    l_co, l_q_nc, l_r_nc = pair_label_sets(label_q, label_r)
    return {"l_q": label_q, "l_r": label_r, "l_co": l_co, "l_q_nc": l_q_nc, "l_r_nc": l_r_nc}


__all__ = ["trace", "pair_labels", "STEPS"]
