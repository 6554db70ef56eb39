"""The classifier of all three methods (cam, cian, cism) behind one interface; see docs/method.md."""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from cism_lib.config import CAM_SOURCES, ModelConfig
from cism_lib.errors import ConfigError
from cism_lib.models.backbones import build_backbone
from cism_lib.models.cian import CrossImageAffinity
from cism_lib.models.pie import PrototypeInteraction, enhance_prototypes, matching_maps
from cism_lib.models.prototypes import (PrototypeGenerator, gate_map, high_confidence_regions,
                                        masked_average_pooling)
from cism_lib.models.slsc import (normalise_cam, pixel_confidence, prototype_similarity,
                                  secondary_scores)



def _no_autocast(t: torch.Tensor):
    """A context in which the CISM heads run in fp32 under an outer bf16 autocast (autocast knows
    no "meta" device: the FLOP counter runs the model there)."""
    kind = t.device.type
    return torch.autocast(kind, enabled=False) if kind in ("cpu", "cuda") else nullcontext()


def _full(t: torch.Tensor) -> torch.Tensor:
    """A half-precision tensor as fp32 (fp32 and fp64 pass unchanged)."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def active_losses(cfg: ModelConfig) -> tuple[str, ...]:
    """The losses a config trains with: cam and cian use L_ml only, cism uses cfg.losses."""
    return ("ml",) if cfg.method in ("cam", "cian") else tuple(cfg.losses)


class CISMNet(nn.Module):
    """Siamese classifier: backbone (+ CIAN affinity) → CAM classifier, plus the CISM heads."""

    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        super().__init__()
        self.cfg, self.num_classes = cfg, num_classes
        losses = active_losses(cfg)
        cism = cfg.method == "cism"
        self.use_slsc = cism and cfg.use_slsc
        self.use_csm, self.use_nsc = "csm" in losses, "nsc" in losses
        self.cam_threshold, self.eta = cfg.cam_threshold, cfg.eta
        self.backbone = build_backbone(cfg.backbone, cfg.weights, cfg.output_stride)
        c = self.backbone.out_channels
        cross = cfg.method == "cian" or (cism and cfg.cross_affinity)
        self.affinity = CrossImageAffinity(c) if cross else None
        self.classifier = nn.Conv2d(c, num_classes, 1, bias=False)  # W_c of Eq. (10)-(13)
        # ReCAM scores its class-specific features with a classifier of its own (sl_scorer separate).
        separate = self.use_slsc and cfg.sl_scorer == "separate"
        self.sl_classifier = nn.Conv2d(c, num_classes, 1, bias=False) if separate else None
        paired = self.use_csm or self.use_nsc
        pv = cism and cfg.use_pv and (self.use_slsc or paired)
        self.prototype = PrototypeGenerator(c, cfg.proto_dim) if pv else None
        e_dim = cfg.proto_dim if pv else c
        pie = cism and cfg.use_pie and ((self.use_slsc and pv) or paired)
        self.interaction = PrototypeInteraction(e_dim) if pie else None
        self.psi = nn.Conv2d(e_dim, num_classes, 1) if paired else None  # Ψ of Eq. (23), (25)-(26)
        aux = [k for k in losses if k != "ml"]
        self.aux_log_var = (nn.Parameter(torch.tensor(-math.log(cfg.lam)))
                            if cfg.lam_learnable and aux else None)

    def features(self, image_q: torch.Tensor, image_r: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """F_n^q, F_n^r after the CIAN affinity (both directions), and the backbone's raw maps."""
        raw_q, raw_r = self.backbone(torch.cat([image_q, image_r])).chunk(2)
        if self.affinity is None:
            return raw_q, raw_r, raw_q, raw_r
        f_q, f_r = self.affinity.forward_pair(raw_q, raw_r)
        return f_q, f_r, raw_q, raw_r

    def forward(self, image_q: torch.Tensor, image_r: torch.Tensor | None = None,
                keep: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The output dict of docs/design.md; a lone image is paired with itself (not for cam).

        `keep`: a dict that receives the CISM heads' intermediates (F_c, X, A, R, Γ, P, P', S,
        M ⊙ S, γ per image; models.inside.trace); None in training and inference.
        """
        if image_r is None and self.cfg.method == "cam":
            cam_q = self.classifier(self.backbone(image_q))
            return {"logits_q": cam_q.mean((2, 3)), "cam_q": cam_q}
        f_q, f_r, raw_q, raw_r = self.features(image_q, image_q if image_r is None else image_r)
        cam_q, cam_r = self.classifier(f_q), self.classifier(f_r)
        out = {"logits_q": cam_q.mean((2, 3)), "logits_r": cam_r.mean((2, 3)),  # Eq. (10)-(11)
               "cam_q": cam_q, "cam_r": cam_r}
        if self.cfg.self_ml and self.affinity is not None and image_r is not None:
            # The path model.cam takes at test time (an image as its own reference), trained too.
            raw = torch.cat([raw_q, raw_r])
            self_logits = self.classifier(self.affinity(raw, raw)).mean((2, 3))
            out["logits_q_self"], out["logits_r_self"] = self_logits.chunk(2)
        if self.cfg.method == "cism":
            # The CISM heads (PV, PIE, SLSC, CSM, NSC) run in fp32 even under bf16 autocast: with
            # them in bf16 the cpu profile's full CISM lost CAM mIoU (docs/results.md, bf16 parity); they
            # cost little next to the backbone.
            with _no_autocast(f_q):
                out.update(self._cism_heads(*(_full(t) for t in (f_q, f_r, cam_q, cam_r)), keep=keep))
        if self.aux_log_var is not None:
            out["aux_log_var"] = self.aux_log_var
        return out

    def _cism_heads(self, f_q: torch.Tensor, f_r: torch.Tensor, cam_q: torch.Tensor,
                    cam_r: torch.Tensor, keep: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """PV, PIE, SLSC, CSM and NSC outputs, each only when a switch needs it (`keep`: see forward)."""
        out: dict[str, torch.Tensor] = {}
        e_q, e_r = (self.prototype(f_q), self.prototype(f_r)) if self.prototype else (f_q, f_r)
        x_q = x_r = a_q = a_r = None
        if self.interaction is not None or self.psi is not None:
            x_q, x_r = self.interaction(e_q, e_r) if self.interaction else (e_q, e_r)
            a_q, a_r = matching_maps(x_q, x_r, self.cfg.pie_norm, self.cfg.sim_centre)
        if keep is not None:
            if self.prototype is not None:
                keep.update(F_c_q=e_q, F_c_r=e_r)
            if a_q is not None:
                keep.update(X_q=x_q, X_r=x_r, A_q=a_q, A_r=a_r)
        if self.use_slsc:
            keep_q, keep_r = ({}, {}) if keep is not None else (None, None)
            out["sl_q"] = self._slsc(f_q, cam_q, e_q, (cam_r, x_r, a_r), keep_q)
            out["sl_r"] = self._slsc(f_r, cam_r, e_r, (cam_q, x_q, a_q), keep_r)
            if keep is not None:
                keep.update({f"{k}_q": v for k, v in keep_q.items()} | {f"{k}_r": v for k, v in keep_r.items()})
        if self.use_csm:  # Eq. (23)
            out["y_co"] = (self.psi(a_q[:, None] * x_q).mean((2, 3))
                           + self.psi(a_r[:, None] * x_r).mean((2, 3)))
        if self.use_nsc:  # Eq. (25)-(26)
            out["y_q_nc"] = self.psi((1 - a_q[:, None]) * x_q).mean((2, 3))
            out["y_r_nc"] = self.psi((1 - a_r[:, None]) * x_r).mean((2, 3))
        return out

    def _slsc(self, f: torch.Tensor, cam: torch.Tensor, e: torch.Tensor,
              other: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None],
              keep: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Z̃ of one image (Eq. 14-17) with prototypes (Eq. 3-4) enhanced by the other image (Eq. 8-9).

        With sl_detach the mask M and γ are computed from a detached CAM, so L_sl trains the
        scorer and the features but does not push the CAM through its own weighting. `keep`
        receives R, gate, P, P_enh, S, mask and gamma (the keys of models.inside.STEPS).
        """
        keep = {} if keep is None else keep
        scores = cam if self.sl_classifier is None else self.sl_classifier(f)
        if self.cfg.sl_detach:
            cam = cam.detach()
        m = normalise_cam(cam)
        mask = m
        if self.prototype is not None:
            region = high_confidence_regions(m, self.cam_threshold)
            gate = gate_map(e, self.eta, self.training)
            protos = masked_average_pooling(e, region * gate)
            keep.update(R=region, gate=gate, P=protos)
            cam_o, x_o, a_o = other
            if self.interaction is not None:
                region_o = (high_confidence_regions(normalise_cam(cam_o), self.cam_threshold)
                            if self.cfg.pie_pool == "class" else None)
                protos = enhance_prototypes(protos, x_o, a_o, region_o)
                keep["P_enh"] = protos
            keep["S"] = prototype_similarity(protos, e, self.cfg.sim_centre)
            mask = m * keep["S"]
        gamma = pixel_confidence(cam, self.cfg.gamma_axis)
        keep.update(mask=mask, gamma=gamma)
        return secondary_scores(scores, mask, gamma, self.cfg.sl_form, self.cfg.sl_pool)

    cam_source = "classifier"  # what cam() scores the features with (CAM_SOURCES; hypothesis 1)

    def cam(self, images: torch.Tensor) -> torch.Tensor:
        """Single-image CAMs ReLU(W^T F_n) [B,K,h,w]; CIAN's affinity pairs an image with itself.

        W is W_c (`cam_source` "classifier", the paper's), the separate SLSC scorer ("slsc") or,
        as ReCAM's final CAMs, the element-wise product of the two weights ("product").
        """
        feats = self.backbone(images)
        if self.affinity is not None:
            feats = self.affinity(feats, feats)
        if self.cam_source == "classifier":
            return torch.relu(self.classifier(feats))
        if self.cam_source not in CAM_SOURCES:
            raise ConfigError(f"cam source must be one of {CAM_SOURCES}, got {self.cam_source!r}")
        if self.cam_source == "specific":
            return self._specific_cam(feats)
        if self.sl_classifier is None:
            raise ConfigError(f"cam source {self.cam_source!r} needs the separate SLSC scorer "
                              "(model.use_slsc with sl_scorer: separate)")
        weight = self.sl_classifier.weight
        if self.cam_source == "product":
            weight = weight * self.classifier.weight
        return torch.relu(F.conv2d(feats, weight))

    def _specific_cam(self, feats: torch.Tensor) -> torch.Tensor:
        """M ⊙ S of Eq. 14 [B,K,h,w]: W_c's normalised CAM weighted by each pixel's similarity to
        the class prototypes, the image its own reference (PIE enhances them with itself); M alone
        without PV. The CISM heads' precision: fp32."""
        if self.cfg.method != "cism":
            raise ConfigError("cam source 'specific' is CISM's class-specific weighting (Eq. 14); "
                              f"this run's method is {self.cfg.method}")
        with _no_autocast(feats):
            f = _full(feats)
            cam = self.classifier(f)
            e = self.prototype(f) if self.prototype else f
            x = a = None
            if self.interaction is not None:
                x = self.interaction.transform(e)  # the image is both sides of the pair
                a, _ = matching_maps(x, x, self.cfg.pie_norm, self.cfg.sim_centre)
            keep: dict[str, torch.Tensor] = {}
            self._slsc(f, cam, e, (cam, x, a), keep)
            return keep["mask"]

    def param_groups(self, lr: float, backbone_lr_mult: float) -> list[dict]:
        """Optimizer groups: the pretrained backbone at lr × mult, every new layer at lr."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        ids = {id(p) for p in backbone}
        new = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": backbone, "lr": lr * backbone_lr_mult, "name": "backbone"},
                {"params": new, "lr": lr, "name": "new"}]


def build_model(cfg: ModelConfig, num_classes: int) -> CISMNet:
    """The classifier for a ModelConfig, after checking the switches are consistent."""
    if cfg.method == "cism" and "sl" in cfg.losses and not cfg.use_slsc:
        raise ConfigError("model.losses contains 'sl' but model.use_slsc is false; L_sl needs the "
                          "SLSC scores (set use_slsc: true or drop 'sl')")
    if cfg.lam <= 0:
        raise ConfigError(f"model.lam must be > 0, got {cfg.lam}")
    return CISMNet(cfg, num_classes)
