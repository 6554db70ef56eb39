"""Slow, obviously-correct references of the paper's equations (section 3), written as plain loops.

Every function takes and returns float64 numpy arrays and loops over images, classes, channels
and pixels the way the equation reads; the library's vectorised functions are tested against
them (tests/test_reference_math.py, tests/test_gradients.py). Pixels are one flat index p over
the h × w grid: maps are [B, K or D, N] with N = h·w. Readings of the paper that are config
options follow docs/method.md (each function says which one it implements).
"""
from __future__ import annotations

import math
from unittest import mock

import numpy as np
import torch
from torch import nn

from cism_lib.models.backbones import Backbone


def arr(t: torch.Tensor | np.ndarray) -> np.ndarray:
    """A tensor or array as float64 numpy."""
    if isinstance(t, torch.Tensor):
        return t.detach().double().cpu().numpy()
    return np.asarray(t, dtype=np.float64)


def flat(t: torch.Tensor | np.ndarray) -> np.ndarray:
    """[B, C, h, w] → float64 [B, C, h·w]."""
    a = arr(t)
    return a.reshape(a.shape[0], a.shape[1], -1)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def dot(u: list[float] | np.ndarray, v: list[float] | np.ndarray) -> float:
    return sum(float(a) * float(b) for a, b in zip(u, v))


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    """cos(u, v) = u·v / (|u| |v|)."""
    return dot(u, v) / (math.sqrt(dot(u, u)) * math.sqrt(dot(v, v)))


def conv1x1(feats: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """A 1×1 convolution: out[b, o, p] = Σ_c W[o, c] F[b, c, p] + bias[o]; feats [B,C,N], W [O,C]."""
    b_, c_, n_ = feats.shape
    out = np.zeros((b_, weight.shape[0], n_))
    for b in range(b_):
        for o in range(weight.shape[0]):
            for p in range(n_):
                s = 0.0 if bias is None else float(bias[o])
                for c in range(c_):
                    s += weight[o, c] * feats[b, c, p]
                out[b, o, p] = s
    return out


def conv_weight(conv: nn.Conv2d) -> tuple[np.ndarray, np.ndarray | None]:
    """(W [O, C], bias [O] or None) of a 1×1 conv."""
    w = arr(conv.weight)[:, :, 0, 0]
    return w, None if conv.bias is None else arr(conv.bias)


# ---------------------------------------------------------------- section 3.1.1, Eq. (1)-(5)

def prototype_maps(feats: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Eq. (1)-(2): F_c(p) = σ(W F_n(p))."""
    lin = conv1x1(feats, weight, bias)
    return np.vectorize(sigmoid)(lin)


def high_confidence_regions(m: np.ndarray, threshold: float) -> np.ndarray:
    """R_k(p) = 1 where the normalised CAM M_k(p) > threshold (strictly), else 0."""
    out = np.zeros_like(m)
    for b in range(m.shape[0]):
        for k in range(m.shape[1]):
            for p in range(m.shape[2]):
                out[b, k, p] = 1.0 if m[b, k, p] > threshold else 0.0
    return out


def masked_average_pooling(feats: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Eq. (3)-(4): P_k = Σ_p F_c(p) R_k(p) / Σ_p R_k(p), [B,K,D]; an empty region gives 0."""
    b_, d_, n_ = feats.shape
    k_ = region.shape[1]
    out = np.zeros((b_, k_, d_))
    for b in range(b_):
        for k in range(k_):
            den = sum(region[b, k, p] for p in range(n_))
            for d in range(d_):
                num = sum(feats[b, d, p] * region[b, k, p] for p in range(n_))
                out[b, k, d] = num / den if den > 0 else 0.0
    return out


# ---------------------------------------------------------------- section 3.1.2, Eq. (6)-(9)

def normalise_map(a: list[float], mode: str) -> list[float]:
    """A of one image to [0, 1]: min-max over its pixels, or (a + 1) / 2 (pie_norm)."""
    if mode == "affine":
        return [(v + 1) / 2 for v in a]
    lo, hi = min(a), max(a)
    return [(v - lo) / max(hi - lo, 1e-6) for v in a]


def matching_maps(x_q: np.ndarray, x_r: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Eq. (7): A_q(p) = max_p' cos(X_Q(p), X_R(p')), A_r(p') = max_p cos(X_R(p'), X_Q(p)), [B,N]."""
    b_, _, n_q = x_q.shape
    n_r = x_r.shape[2]
    a_q, a_r = np.zeros((b_, n_q)), np.zeros((b_, n_r))
    for b in range(b_):
        raw_q = [max(cosine(x_q[b, :, p], x_r[b, :, s]) for s in range(n_r)) for p in range(n_q)]
        raw_r = [max(cosine(x_r[b, :, s], x_q[b, :, p]) for p in range(n_q)) for s in range(n_r)]
        a_q[b], a_r[b] = normalise_map(raw_q, mode), normalise_map(raw_r, mode)
    return a_q, a_r


def enhance_prototypes(protos: np.ndarray, x_o: np.ndarray, a_o: np.ndarray,
                       region_o: np.ndarray | None) -> np.ndarray:
    """Eq. (8)-(9): P'_k = P_k + Σ_p A(p) w_k(p) X_o(p) / Σ_p A(p) w_k(p).

    pie_pool 'class': w_k = R_k of the other image; 'global' (region_o None): w_k = 1.
    """
    b_, k_, d_ = protos.shape
    n_ = x_o.shape[2]
    out = protos.copy()
    for b in range(b_):
        for k in range(k_):
            w = [a_o[b, p] * (1.0 if region_o is None else region_o[b, k, p]) for p in range(n_)]
            den = sum(w)
            for d in range(d_):
                num = sum(w[p] * x_o[b, d, p] for p in range(n_))
                out[b, k, d] += num / max(den, 1e-6)  # the library's eps: Σ A w_k ≈ 0 adds ≈ 0
    return out


# ---------------------------------------------------------------- section 3.2, Eq. (10)-(17)

def gap(maps: np.ndarray) -> np.ndarray:
    """Global average pooling [B,K,N] → [B,K] (Eq. 10-11: Z = GAP of the 1×1 classifier map)."""
    out = np.zeros(maps.shape[:2])
    for b in range(maps.shape[0]):
        for k in range(maps.shape[1]):
            out[b, k] = sum(maps[b, k]) / maps.shape[2]
    return out


def normalise_cam(cam: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Eq. (12)-(13): M_k(p) = ReLU(cam_k(p)) / (max_p' ReLU(cam_k(p')) + eps), per image and class."""
    out = np.zeros_like(cam)
    for b in range(cam.shape[0]):
        for k in range(cam.shape[1]):
            peak = max(max(v, 0.0) for v in cam[b, k])
            for p in range(cam.shape[2]):
                out[b, k, p] = max(cam[b, k, p], 0.0) / (peak + eps)
    return out


def prototype_similarity(protos: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """The ⊗ of Eq. (14): ReLU(cos(P'_k, F_c(p))), [B,K,N]."""
    b_, k_, _ = protos.shape
    out = np.zeros((b_, k_, feats.shape[2]))
    for b in range(b_):
        for k in range(k_):
            for p in range(feats.shape[2]):
                out[b, k, p] = max(cosine(protos[b, k], feats[b, :, p]), 0.0)
    return out


def softmax(values: list[float]) -> list[float]:
    top = max(values)
    e = [math.exp(v - top) for v in values]
    return [v / sum(e) for v in e]


def pixel_confidence(cam: np.ndarray, axis: str) -> np.ndarray:
    """γ of Eq. (16): softmax of the raw CAM over classes at each pixel ('class') or over pixels ('space')."""
    b_, k_, n_ = cam.shape
    out = np.zeros_like(cam)
    for b in range(b_):
        if axis == "class":
            for p in range(n_):
                out[b, :, p] = softmax([cam[b, k, p] for k in range(k_)])
        else:
            for k in range(k_):
                out[b, k, :] = softmax([cam[b, k, p] for p in range(n_)])
    return out


def secondary_scores(feats: np.ndarray, weight: np.ndarray, mask: np.ndarray, gamma: np.ndarray,
                     form: str, pool: str) -> np.ndarray:
    """Eq. (14)-(17) with the class-specific features built: F̃_k(p) = mask_k(p) F_n(p) ∈ R^C.

    Z̃[k, j] = Σ_p γ_k(p) (W_j · F̃_k(p)) / den_k, den_k = Σ_p γ_k(p) (sl_pool 'gamma') or
    Σ_p γ_k(p) mask_k(p) ('masked'); W [K, C] is the scorer. 'recam' returns [B,K,K], 'diag' [B,K].
    """
    b_, c_, n_ = feats.shape
    k_ = mask.shape[1]
    out = np.zeros((b_, k_, k_))
    for b in range(b_):
        for k in range(k_):
            f_tilde = [[mask[b, k, p] * feats[b, c, p] for c in range(c_)] for p in range(n_)]
            if pool == "gamma":
                den = sum(gamma[b, k, p] for p in range(n_))
            else:
                den = sum(gamma[b, k, p] * mask[b, k, p] for p in range(n_))
            for j in range(k_):
                num = sum(gamma[b, k, p] * dot(weight[j], f_tilde[p]) for p in range(n_))
                out[b, k, j] = num / max(den, 1e-6)
    if form == "diag":
        return np.stack([[out[b, k, k] for k in range(k_)] for b in range(b_)])
    return out


# ---------------------------------------------------------------- section 3.4, Eq. (18)-(27)

def soft_margin(z: np.ndarray, labels: np.ndarray, reduction: str = "mean") -> float:
    """Multi-label soft margin −[l log σ(z) + (1 − l) log(1 − σ(z))] per image, summed over classes
    (loss_reduction 'sum', Eq. 19/24/27 as written) or averaged over them ('mean', as
    MultiLabelSoftMarginLoss); then the mean over images."""
    total = 0.0
    for b in range(z.shape[0]):
        per_image = 0.0
        for c in range(z.shape[1]):
            s, y = sigmoid(z[b, c]), labels[b, c]
            per_image -= y * math.log(s) + (1 - y) * math.log(1 - s)
        total += per_image if reduction == "sum" else per_image / z.shape[1]
    return total / z.shape[0]


def multilabel_loss(z_q: np.ndarray, z_r: np.ndarray, l_q: np.ndarray, l_r: np.ndarray,
                    reduction: str = "mean") -> float:
    """Eq. (19)-(20): L_ml = (L_ml^q + L_ml^r) / 2."""
    return (soft_margin(z_q, l_q, reduction) + soft_margin(z_r, l_r, reduction)) / 2


def single_label_branch(z: np.ndarray, labels: np.ndarray) -> float:
    """Eq. (21): −(1/Σ_i l[i]) Σ_n l[n] log softmax(Z̃)[n], mean over images (0 for no positive).

    'recam' Z̃ [B,K,K]: the target n is scored by row n; 'diag' [B,K]: one vector for every n.
    """
    per_image = []
    for b in range(z.shape[0]):
        k_ = labels.shape[1]
        total = 0.0
        for n in range(k_):
            row = z[b, n] if z.ndim == 3 else z[b]
            total -= labels[b, n] * math.log(softmax(list(row))[n])
        per_image.append(total / max(sum(labels[b]), 1))
    return sum(per_image) / len(per_image)


def single_label_loss(z_q: np.ndarray, z_r: np.ndarray, l_q: np.ndarray, l_r: np.ndarray) -> float:
    """Eq. (21)-(22): L_sl = (L_sl^q + L_sl^r) / 2."""
    return (single_label_branch(z_q, l_q) + single_label_branch(z_r, l_r)) / 2


def psi_gap(weight_map: np.ndarray, x: np.ndarray, psi_w: np.ndarray, psi_b: np.ndarray) -> np.ndarray:
    """GAP(Ψ(A × X)): mean_p [Σ_d Ψ[k, d] A(p) X[d, p] + Ψ_bias[k]], [B,K] (Eq. 23, 25, 26)."""
    b_, d_, n_ = x.shape
    out = np.zeros((b_, psi_w.shape[0]))
    for b in range(b_):
        for k in range(psi_w.shape[0]):
            out[b, k] = sum(sum(psi_w[k, d] * weight_map[b, p] * x[b, d, p] for d in range(d_)) + psi_b[k]
                            for p in range(n_)) / n_
    return out


def pair_label_sets(l_q: list[int], l_r: list[int]) -> tuple[list[int], list[int], list[int]]:
    """l_co = l_q ∧ l_r, l_q\\co, l_r\\co per class (Eq. 23-27 labels)."""
    co = [int(a and b) for a, b in zip(l_q, l_r)]
    return co, [int(a and not c) for a, c in zip(l_q, co)], [int(b and not c) for b, c in zip(l_r, co)]


def total_loss(parts: dict[str, float], lam: float, log_var: float | None = None) -> float:
    """Eq. (18): L_ml + λ Σ aux; learnable: L_ml + exp(−s) Σ aux + s with s clamped to [−5, 5]."""
    aux = sum(v for k, v in parts.items() if k != "ml")
    if log_var is None:
        return parts["ml"] + lam * aux
    s = min(max(log_var, -5.0), 5.0)
    return parts["ml"] + math.exp(-s) * aux + s


# ---------------------------------------------------------------- CIAN (the paper's baseline)

def batch_norm_eval(x: np.ndarray, bn: nn.BatchNorm2d) -> np.ndarray:
    """BatchNorm2d in eval mode: (x − running mean) / √(running var + eps) · weight + bias."""
    out = np.zeros_like(x)
    rm, rv, w, b = (arr(t) for t in (bn.running_mean, bn.running_var, bn.weight, bn.bias))
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            for p in range(x.shape[2]):
                out[i, c, p] = (x[i, c, p] - rm[c]) / math.sqrt(rv[c] + bn.eps) * w[c] + b[c]
    return out


def cross_image_affinity(module: nn.Module, f_q: np.ndarray, f_r: np.ndarray) -> np.ndarray:
    """Each query pixel attends over the reference's then its own pixels: f + W_z(Σ softmax(θ·φ/√i) g)."""
    theta_w, theta_b = conv_weight(module.query)
    phi_w, phi_b = conv_weight(module.key)
    g_w, g_b = conv_weight(module.value)
    theta = conv1x1(f_q, theta_w, theta_b)
    keys = np.concatenate([conv1x1(f_r, phi_w, phi_b), conv1x1(f_q, phi_w, phi_b)], 2)
    values = np.concatenate([conv1x1(f_r, g_w, g_b), conv1x1(f_q, g_w, g_b)], 2)
    inner = theta.shape[1]
    attended = np.zeros_like(theta)
    for b in range(f_q.shape[0]):
        for p in range(f_q.shape[2]):
            att = softmax([dot(theta[b, :, p], keys[b, :, s]) / math.sqrt(inner) for s in range(keys.shape[2])])
            for i in range(inner):
                attended[b, i, p] = sum(att[s] * values[b, i, s] for s in range(keys.shape[2]))
    out_w, _ = conv_weight(module.out[0])
    return f_q + batch_norm_eval(conv1x1(attended, out_w), module.out[1])


# ---------------------------------------------------------------- the whole classifier

class StubBody(nn.Module):
    """A tiny deterministic backbone body: 3×3 conv (3 → C) then 4×4 average pooling (stride 4)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.pool = nn.AvgPool2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


def stub_model(cfg, num_classes: int, channels: int = 6, seed: int = 0):  # noqa: ANN001, ANN201
    """build_model(cfg) with the backbone replaced by StubBody (C channels, output stride 4).

    Every layer is re-initialised from `seed` with non-trivial values (the CIAN output BN's zero
    weight and PIE's identity init would hide terms), so no path is an identity.
    """
    from cism_lib.models import build_model

    torch.manual_seed(seed)
    stub = Backbone(StubBody(channels), channels, 4)
    with mock.patch("cism_lib.models.cism.build_backbone", lambda *a, **k: stub):
        model = build_model(cfg, num_classes)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "aux_log_var":
                continue
            p.copy_(torch.randn(p.shape, generator=gen) * (0.6 if p.dim() > 1 else 0.3))
        if model.affinity is not None:
            bn = model.affinity.out[1]
            bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=gen) * 0.1)
            bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=gen) + 0.5)
    return model


def forward(model, image_q: torch.Tensor, image_r: torch.Tensor,  # noqa: ANN001
            gate: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every output of CISMNet.forward from the references; `gate` [2B,1,N] (query gates, then
    reference gates), or ones (eval). Affinity BN in eval mode only."""
    cfg = model.cfg
    feats = flat(model.backbone(torch.cat([image_q, image_r])))  # the stub itself is not under test
    b_ = image_q.shape[0]
    f_q, f_r = feats[:b_], feats[b_:]
    w_c, _ = conv_weight(model.classifier)
    out = {}
    if model.affinity is not None:
        if getattr(cfg, "self_ml", False):  # each image with itself as reference: the test-time path
            out["logits_q_self"] = gap(conv1x1(cross_image_affinity(model.affinity, f_q, f_q), w_c))
            out["logits_r_self"] = gap(conv1x1(cross_image_affinity(model.affinity, f_r, f_r), w_c))
        f_q, f_r = cross_image_affinity(model.affinity, f_q, f_r), cross_image_affinity(model.affinity, f_r, f_q)
    cam_q, cam_r = conv1x1(f_q, w_c), conv1x1(f_r, w_c)
    out.update({"logits_q": gap(cam_q), "logits_r": gap(cam_r), "cam_q": cam_q, "cam_r": cam_r})
    if cfg.method != "cism":
        return out
    if model.prototype is not None:
        pw, pb = conv_weight(model.prototype.proj)
        e_q, e_r = prototype_maps(f_q, pw, pb), prototype_maps(f_r, pw, pb)
    else:
        e_q, e_r = f_q, f_r
    if model.interaction is not None:
        tw, tb = conv_weight(model.interaction.transform)
        x_q, x_r = conv1x1(e_q, tw, tb), conv1x1(e_r, tw, tb)
    else:
        x_q, x_r = e_q, e_r
    a_q, a_r = matching_maps(x_q, x_r, cfg.pie_norm)
    gate = np.ones((2 * b_, 1, f_q.shape[2])) if gate is None else gate
    if model.use_slsc:
        sides = ((f_q, cam_q, e_q, gate[:b_], cam_r, x_r, a_r), (f_r, cam_r, e_r, gate[b_:], cam_q, x_q, a_q))
        out["sl_q"], out["sl_r"] = (_slsc(model, *side) for side in sides)
    if model.psi is not None:
        psi_w, psi_b = conv_weight(model.psi)
        if model.use_csm:
            out["y_co"] = psi_gap(a_q, x_q, psi_w, psi_b) + psi_gap(a_r, x_r, psi_w, psi_b)
        if model.use_nsc:
            out["y_q_nc"] = psi_gap(1 - a_q, x_q, psi_w, psi_b)
            out["y_r_nc"] = psi_gap(1 - a_r, x_r, psi_w, psi_b)
    return out


def _slsc(model, f, cam, e, gate, cam_o, x_o, a_o) -> np.ndarray:  # noqa: ANN001
    """Z̃ of one image: mask = M · ReLU(cos(P', F_c)) with P' from MAP over R ∧ Γ, enhanced (Eq. 8)."""
    cfg = model.cfg
    m = normalise_cam(cam)
    mask = m
    if model.prototype is not None:
        region = high_confidence_regions(m, cfg.cam_threshold)
        protos = masked_average_pooling(e, region * gate)
        if model.interaction is not None:
            region_o = high_confidence_regions(normalise_cam(cam_o), cfg.cam_threshold) \
                if cfg.pie_pool == "class" else None
            protos = enhance_prototypes(protos, x_o, a_o, region_o)
        mask = m * prototype_similarity(protos, e)
    scorer = model.classifier if model.sl_classifier is None else model.sl_classifier
    w_s, _ = conv_weight(scorer)
    return secondary_scores(f, w_s, mask, pixel_confidence(cam, cfg.gamma_axis), cfg.sl_form, cfg.sl_pool)
