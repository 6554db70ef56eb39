"""One forward pass of CISMNet that keeps every intermediate of section 3 (for teaching figures).

`trace(model, image_q, image_r)` runs the same layers and primitives as `CISMNet.forward`, in the
same order, and returns a dict of every step with the paper's names: the CAMs and their
normalisation M (Eq. 10-13), the prototype maps F_c (Eq. 1-2), the confident regions R and the
gate Γ (Eq. 5), the prototypes P (Eq. 3-4), the PIE transform X (Eq. 6), the matching maps A
(Eq. 7), the enhanced prototypes P' (Eq. 8-9), the prototype similarity of Eq. 14, γ (Eq. 16), the
SLSC scores Z̃ (Eq. 17) and the common / non-common predictions y_co, y_q\\co, y_r\\co (Eq. 23,
25-26). Its outputs that `forward` also returns are equal to them (tested); it works without
gradients and in the model's current mode (eval: Γ is all ones).
"""
from __future__ import annotations

from typing import Any

import torch

from cism_lib.models.cism import CISMNet
from cism_lib.models.pie import enhance_prototypes, matching_maps
from cism_lib.models.prototypes import gate_map, high_confidence_regions, masked_average_pooling
from cism_lib.models.slsc import normalise_cam, pixel_confidence, prototype_similarity, secondary_scores

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

    Raises ValueError for a model that is not a CISM model (CAM and CIAN have no such steps).
    """
    if model.cfg.method != "cism":
        raise ValueError(f"trace needs a CISM model; this one is {model.cfg.method!r} (no PV, PIE or SLSC)")
    cfg = model.cfg
    f_q, f_r, _, _ = model.features(image_q, image_r)
    f_q, f_r = f_q.float(), f_r.float()
    out: dict[str, Any] = {}
    cams = {"q": model.classifier(f_q), "r": model.classifier(f_r)}
    feats = {"q": f_q, "r": f_r}
    for s in "qr":
        out[f"cam_{s}"] = cams[s]
        out[f"logits_{s}"] = cams[s].mean((2, 3))
        out[f"M_{s}"] = normalise_cam(cams[s])
    e = {s: model.prototype(feats[s]) if model.prototype else feats[s] for s in "qr"}
    x = {"q": None, "r": None}
    a = {"q": None, "r": None}
    if model.prototype is not None:
        out["F_c_q"], out["F_c_r"] = e["q"], e["r"]
    if model.interaction is not None or model.psi is not None:
        x["q"], x["r"] = model.interaction(e["q"], e["r"]) if model.interaction else (e["q"], e["r"])
        a["q"], a["r"] = matching_maps(x["q"], x["r"], cfg.pie_norm, cfg.sim_centre)
        for s in "qr":
            out[f"X_{s}"], out[f"A_{s}"] = x[s], a[s]
    if model.use_slsc:
        for s, o in (("q", "r"), ("r", "q")):
            out.update(_slsc_steps(model, s, feats[s], cams[s], e[s], cams[o], x[o], a[o]))
    if model.use_csm:
        out["y_co"] = (model.psi(a["q"][:, None] * x["q"]).mean((2, 3))
                       + model.psi(a["r"][:, None] * x["r"]).mean((2, 3)))
    if model.use_nsc:
        out["y_q_nc"] = model.psi((1 - a["q"][:, None]) * x["q"]).mean((2, 3))
        out["y_r_nc"] = model.psi((1 - a["r"][:, None]) * x["r"]).mean((2, 3))
    return out


def _slsc_steps(model: CISMNet, s: str, f: torch.Tensor, cam: torch.Tensor, e: torch.Tensor,
                cam_o: torch.Tensor, x_o: torch.Tensor | None, a_o: torch.Tensor | None) -> dict[str, Any]:
    """The SLSC steps of image `s` (as CISMNet._slsc computes them), keyed with the suffix _s."""
    cfg = model.cfg
    steps: dict[str, Any] = {}
    scores = cam if model.sl_classifier is None else model.sl_classifier(f)
    m = normalise_cam(cam)
    mask = m
    if model.prototype is not None:
        region = high_confidence_regions(m, model.cam_threshold)
        gate = gate_map(e, model.eta, model.training)
        protos = masked_average_pooling(e, region * gate)
        steps.update({f"R_{s}": region, f"gate_{s}": gate, f"P_{s}": protos})
        if model.interaction is not None:
            region_o = (high_confidence_regions(normalise_cam(cam_o), model.cam_threshold)
                        if cfg.pie_pool == "class" else None)
            protos = enhance_prototypes(protos, x_o, a_o, region_o)
            steps[f"P_enh_{s}"] = protos
        sim = prototype_similarity(protos, e, cfg.sim_centre)
        steps[f"S_{s}"] = sim
        mask = m * sim
    steps[f"mask_{s}"] = mask
    gamma = pixel_confidence(cam, cfg.gamma_axis)
    steps[f"gamma_{s}"] = gamma
    steps[f"sl_{s}"] = secondary_scores(scores, mask, gamma, cfg.sl_form, cfg.sl_pool)
    return steps


def pair_labels(label_q: torch.Tensor, label_r: torch.Tensor) -> dict[str, torch.Tensor]:
    """l_q, l_r, l_co, l_q\\co and l_r\\co (Eq. 23-27) of a pair of multi-hot labels."""
    from cism_lib.data.pairs import pair_label_sets

    l_co, l_q_nc, l_r_nc = pair_label_sets(label_q, label_r)
    return {"l_q": label_q, "l_r": label_r, "l_co": l_co, "l_q_nc": l_q_nc, "l_r_nc": l_r_nc}


__all__ = ["trace", "pair_labels", "STEPS"]
