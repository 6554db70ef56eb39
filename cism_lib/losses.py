"""The four training losses of CISM and their combination (section 3.4, Eq. 18-27)."""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from cism_lib.config import ModelConfig
from cism_lib.errors import ConfigError
from cism_lib.models.cism import active_losses


def soft_margin(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Multi-label soft-margin (sigmoid BCE) loss (Eq. 19, 24, 27 terms): mean over the batch of
    the mean (`mean`) or, as the equations are written, the sum (`sum`) over classes."""
    per_class = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
    if reduction == "sum":
        return per_class.sum(-1).mean()
    if reduction != "mean":
        raise ValueError(f"unknown loss reduction {reduction!r}; use mean or sum")
    return per_class.mean()


def multilabel_loss(logits_q: torch.Tensor, logits_r: torch.Tensor | None, label_q: torch.Tensor,
                    label_r: torch.Tensor | None, reduction: str = "mean") -> torch.Tensor:
    """Eq. (19)-(20): L_ml, the mean of the query and reference soft-margin losses."""
    loss_q = soft_margin(logits_q, label_q, reduction)
    if logits_r is None:
        return loss_q
    return (loss_q + soft_margin(logits_r, label_r, reduction)) / 2


def single_label_branch(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. (21): softmax cross-entropy averaged over the positive classes; 0 for an image with none.

    scores [B,K,K] ('recam'): row n is scored against target n; [B,K] ('diag'): the one vector.
    The result is the mean over the batch of the per-image losses.
    """
    labels = labels.to(scores.dtype)
    log_p = scores.log_softmax(-1)
    nll = -(log_p.diagonal(dim1=1, dim2=2) if scores.dim() == 3 else log_p)  # [B,K]
    per_image = (labels * nll).sum(1) / labels.sum(1).clamp_min(1)
    return per_image.mean()


def single_label_loss(sl_q: torch.Tensor, sl_r: torch.Tensor, label_q: torch.Tensor,
                      label_r: torch.Tensor) -> torch.Tensor:
    """Eq. (21)-(22): L_sl, the mean of the query and reference single-label losses."""
    return (single_label_branch(sl_q, label_q) + single_label_branch(sl_r, label_r)) / 2


def csm_loss(y_co: torch.Tensor, label_co: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Eq. (24): L_csm, soft-margin loss of the common prediction y_co against l_co."""
    return soft_margin(y_co, label_co, reduction)


def nsc_loss(y_q_nc: torch.Tensor, y_r_nc: torch.Tensor, label_q_nc: torch.Tensor,
             label_r_nc: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Eq. (27): L_nsc, the sum of the query and reference non-common soft-margin losses."""
    return soft_margin(y_q_nc, label_q_nc, reduction) + soft_margin(y_r_nc, label_r_nc, reduction)


def _require(out: Mapping[str, torch.Tensor], keys: tuple[str, ...], loss: str) -> None:
    """Raise ConfigError when the model did not produce what a loss needs."""
    missing = [k for k in keys if k not in out]
    if missing:
        raise ConfigError(f"loss {loss!r} needs model outputs {missing}; check model.method and "
                          f"the use_* switches")


def warmup_scale(step: int, total_steps: int, warmup: float) -> float:
    """The factor on λ at a step: a linear ramp from 0 to 1 over the first `warmup` fraction of
    the schedule (train.aux_warmup), 1 afterwards and always 1 for warmup 0."""
    if warmup <= 0:
        return 1.0
    return min(1.0, step / (warmup * max(total_steps, 1)))


def total_loss(out: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
               cfg: ModelConfig, aux_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Eq. (18): L = L_ml + λ(L_sl + L_csm + L_nsc) over the enabled losses; keys per loss + total.

    `aux_scale` multiplies λ (the warm-up of train.aux_warmup); the reported `lam` includes it.
    """
    losses = active_losses(cfg)
    red = cfg.loss_reduction
    parts: dict[str, torch.Tensor] = {
        "ml": multilabel_loss(out["logits_q"], out.get("logits_r"), batch["label_q"],
                              batch.get("label_r"), red)}
    if "logits_q_self" in out:  # model.self_ml: the cross and the self-paired L_ml, averaged
        parts["ml"] = (parts["ml"] + multilabel_loss(out["logits_q_self"], out["logits_r_self"],
                                                     batch["label_q"], batch["label_r"], red)) / 2
    if "sl" in losses:
        _require(out, ("sl_q", "sl_r"), "sl")
        parts["sl"] = single_label_loss(out["sl_q"], out["sl_r"], batch["label_q"], batch["label_r"])
    if "csm" in losses:
        _require(out, ("y_co",), "csm")
        parts["csm"] = csm_loss(out["y_co"], batch["label_co"], red)
    if "nsc" in losses:
        _require(out, ("y_q_nc", "y_r_nc"), "nsc")
        parts["nsc"] = nsc_loss(out["y_q_nc"], out["y_r_nc"], batch["label_q_nc"], batch["label_r_nc"],
                                red)
    aux = [v for k, v in parts.items() if k != "ml"]
    total = parts["ml"]
    lam = torch.as_tensor(cfg.lam * aux_scale, dtype=total.dtype, device=total.device)
    if aux:
        aux_sum = torch.stack(aux).sum()
        if "aux_log_var" in out:
            # Uncertainty weighting: λ = exp(-s) with the regulariser +s, so λ cannot collapse to 0.
            s = out["aux_log_var"].clamp(-5.0, 5.0)
            lam = torch.exp(-s) * aux_scale
            total = total + lam * aux_sum + s
        else:
            total = total + lam * aux_sum
    return {**parts, "total": total, "lam": lam.detach()}
