"""Every equation of section 3 against its slow loop reference (tests/reference.py) on general inputs.

General means: B = 2 images, K = 3..4 classes, D = 4..5 channels, a non-square 3 × 4 grid,
features that are not unit-length and not in [0, 1], soft (non-binary) regions and masks, and
several pixels per class, so that no wrong formula coincides with the right one by accident.
Each reading that is a config option is checked separately.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cism_lib.config import ModelConfig
from cism_lib.data.pairs import pair_label_sets
from cism_lib.errors import ConfigError
from cism_lib.losses import (csm_loss, multilabel_loss, nsc_loss, single_label_branch, single_label_loss,
                             soft_margin, total_loss)
from cism_lib.models.pie import PrototypeInteraction, enhance_prototypes, matching_maps, normalise_map
from cism_lib.models.prototypes import (PrototypeGenerator, gate_map, high_confidence_regions,
                                        masked_average_pooling)
from cism_lib.models.slsc import normalise_cam, pixel_confidence, prototype_similarity, secondary_scores
from tests import reference as ref

B, K, D, H, W = 2, 3, 5, 3, 4
TOL = {"rtol": 1e-9, "atol": 1e-10}
FAST = settings(max_examples=15, deadline=None, derandomize=True)


def rand(*shape: int, seed: int = 0, scale: float = 1.5, shift: float = 0.0) -> torch.Tensor:
    """float64 normal noise × scale + shift (not unit-length, signs mixed)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift


def soft_region(*shape: int, seed: int = 0) -> torch.Tensor:
    """Values in [0, 1] with about a third exact zeros: a soft region, several pixels per class."""
    r = torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.where(r < 0.33, torch.zeros_like(r), r)


def close(got: torch.Tensor, want: np.ndarray, **tol: float) -> None:
    np.testing.assert_allclose(ref.arr(got), want, **(tol or TOL))


# ---------------------------------------------------------------- Eq. (1)-(5)

def test_prototype_generator_eq1_2() -> None:
    torch.manual_seed(0)
    gen = PrototypeGenerator(6, D).double()
    with torch.no_grad():
        gen.proj.bias.normal_()
    feats = rand(B, 6, H, W, scale=3.0)
    w, b = ref.conv_weight(gen.proj)
    close(gen(feats).flatten(2), ref.prototype_maps(ref.flat(feats), w, b))


def test_high_confidence_regions_strict_threshold() -> None:
    m = torch.tensor([0.2, 0.5, 0.50001, 1.0, 0.0, 0.7], dtype=torch.float64).view(1, 2, 1, 3)
    got = high_confidence_regions(m, 0.5)
    close(got.flatten(2), ref.high_confidence_regions(ref.flat(m), 0.5))
    assert got.flatten().tolist() == [0, 0, 1, 1, 0, 1]  # exactly 0.5 is not high-confidence


def test_masked_average_pooling_eq3_4_soft_regions() -> None:
    feats, region = rand(B, D, H, W, seed=1, shift=0.5), soft_region(B, K, H, W, seed=2)
    region[1, 2] = 0  # one empty region → a zero prototype
    got = masked_average_pooling(feats, region)
    close(got, ref.masked_average_pooling(ref.flat(feats), ref.flat(region)))
    assert torch.equal(got[1, 2], torch.zeros(D, dtype=torch.float64))


@FAST
@given(b=st.integers(1, 3), k=st.integers(1, 4), d=st.integers(1, 5), h=st.integers(1, 4),
       w=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_masked_average_pooling_property(b: int, k: int, d: int, h: int, w: int, seed: int) -> None:
    feats, region = rand(b, d, h, w, seed=seed), soft_region(b, k, h, w, seed=seed + 1)
    close(masked_average_pooling(feats, region), ref.masked_average_pooling(ref.flat(feats), ref.flat(region)),
          rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("eta", [0.3, 0.7])
def test_gate_map_eq5_drop_rate_is_eta(eta: float) -> None:
    """Γ = dropout(1, η): a fraction η of zeros (5 binomial sigmas over 12 800 pixels: ±0.020 at
    η = 0.3, so the swapped rate 1 − η or a rate shared by whole images fails), kept pixels 1/(1 − η)."""
    torch.manual_seed(0)
    gate = gate_map(torch.zeros(8, 5, 40, 40), eta, training=True)
    assert gate.shape == (8, 1, 40, 40)
    kept = gate[gate != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - eta)))
    n = gate.numel()
    drop = (gate == 0).double().mean().item()
    assert abs(drop - eta) < 5 * math.sqrt(eta * (1 - eta) / n)
    per_image = (gate == 0).double().flatten(1).mean(1)  # independent per pixel, not per image
    assert (per_image - eta).abs().max() < 5 * math.sqrt(eta * (1 - eta) / 1600)
    assert not torch.equal(gate[0], gate[1])
    assert torch.equal(gate_map(torch.zeros(2, 3, 4, 4), eta, training=False), torch.ones(2, 1, 4, 4))


# ---------------------------------------------------------------- Eq. (6)-(9)

def test_prototype_interaction_eq6_starts_as_identity() -> None:
    module = PrototypeInteraction(D).double()
    e_q, e_r = rand(B, D, H, W, seed=3), rand(B, D, H, W, seed=4)
    x_q, x_r = module(e_q, e_r)
    assert torch.equal(x_q, e_q) and torch.equal(x_r, e_r)
    with torch.no_grad():
        module.transform.weight.normal_()
        module.transform.bias.normal_()
    w, b = ref.conv_weight(module.transform)
    x_q, x_r = module(e_q, e_r)
    close(x_q.flatten(2), ref.conv1x1(ref.flat(e_q), w, b))
    close(x_r.flatten(2), ref.conv1x1(ref.flat(e_r), w, b))


@pytest.mark.parametrize("mode", ["minmax", "affine"])
def test_matching_maps_eq7(mode: str) -> None:
    x_q, x_r = rand(B, D, H, W, seed=5, shift=0.3), rand(B, D, 2, 5, seed=6, shift=0.3)  # grids differ
    a_q, a_r = matching_maps(x_q, x_r, mode)
    want_q, want_r = ref.matching_maps(ref.flat(x_q), ref.flat(x_r), mode)
    assert a_q.shape == (B, H, W) and a_r.shape == (B, 2, 5)
    close(a_q.flatten(1), want_q)
    close(a_r.flatten(1), want_r)
    if mode == "minmax":  # every image spans [0, 1] exactly
        assert torch.allclose(a_q.flatten(1).amin(1), torch.zeros(B, dtype=torch.float64))
        assert torch.allclose(a_q.flatten(1).amax(1), torch.ones(B, dtype=torch.float64))


def test_normalise_map_constant_map_and_bad_mode() -> None:
    a = torch.full((2, 5), 0.3, dtype=torch.float64)
    assert torch.equal(normalise_map(a, "minmax"), torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown matching-map normalisation 'l2'"):
        normalise_map(a, "l2")


@pytest.mark.parametrize("pool", ["class", "global"])
def test_enhance_prototypes_eq8_9(pool: str) -> None:
    protos = rand(B, K, D, seed=7)
    x_o, a_o = rand(B, D, H, W, seed=8), torch.rand(B, H, W, generator=torch.Generator().manual_seed(9),
                                                    dtype=torch.float64)
    region_o = soft_region(B, K, H, W, seed=10) if pool == "class" else None
    got = enhance_prototypes(protos, x_o, a_o, region_o)
    want = ref.enhance_prototypes(ref.arr(protos), ref.flat(x_o), ref.arr(a_o).reshape(B, -1),
                                  None if region_o is None else ref.flat(region_o))
    close(got, want)


# ---------------------------------------------------------------- Eq. (12)-(17)

def test_normalise_cam_eq12_13() -> None:
    cam = rand(B, K, H, W, seed=11, scale=4.0, shift=1.0)
    cam[0, 1] = -torch.rand(H, W, dtype=torch.float64)  # a class with no positive activation → all 0
    got = normalise_cam(cam)
    close(got.flatten(2), ref.normalise_cam(ref.flat(cam)))
    assert torch.equal(got[0, 1], torch.zeros(H, W, dtype=torch.float64))


def test_prototype_similarity_eq14_otimes() -> None:
    protos, feats = rand(B, K, D, seed=12), rand(B, D, H, W, seed=13, shift=0.2)
    close(prototype_similarity(protos, feats).flatten(2),
          ref.prototype_similarity(ref.arr(protos), ref.flat(feats)))


@pytest.mark.parametrize("axis", ["class", "space"])
def test_pixel_confidence_eq16(axis: str) -> None:
    cam = rand(B, K, H, W, seed=14, scale=3.0)
    close(pixel_confidence(cam, axis).flatten(2), ref.pixel_confidence(ref.flat(cam), axis))


def test_pixel_confidence_bad_axis() -> None:
    with pytest.raises(ValueError, match="unknown gamma axis 'channel'"):
        pixel_confidence(rand(1, 2, 2, 2), "channel")


@pytest.mark.parametrize("form", ["recam", "diag"])
@pytest.mark.parametrize("pool", ["gamma", "masked"])
@pytest.mark.parametrize("axis", ["class", "space"])
def test_secondary_scores_eq14_17_with_class_specific_features(form: str, pool: str, axis: str) -> None:
    """The library's shortcut Σ w_k cam_j equals scoring the built F̃_k = mask_k ⊙ F_n (Eq. 14-17)."""
    c = 6
    feats = rand(B, c, H, W, seed=15, shift=0.4)
    scorer = rand(K, c, seed=16)
    cam = torch.einsum("kc,bchw->bkhw", scorer, feats)  # the linear scorer's map
    mask, gamma = soft_region(B, K, H, W, seed=17), pixel_confidence(rand(B, K, H, W, seed=18), axis)
    got = secondary_scores(cam, mask, gamma, form, pool)
    want = ref.secondary_scores(ref.flat(feats), ref.arr(scorer), ref.flat(mask), ref.flat(gamma), form, pool)
    assert got.shape == ((B, K, K) if form == "recam" else (B, K))
    close(got, want)


@FAST
@given(b=st.integers(1, 3), k=st.integers(1, 4), n=st.integers(1, 6), form=st.sampled_from(["recam", "diag"]),
       pool=st.sampled_from(["gamma", "masked"]), seed=st.integers(0, 10_000))
def test_secondary_scores_property(b: int, k: int, n: int, form: str, pool: str, seed: int) -> None:
    c = 3
    feats, scorer = rand(b, c, 1, n, seed=seed), rand(k, c, seed=seed + 1)
    cam = torch.einsum("kc,bchw->bkhw", scorer, feats)
    mask, gamma = soft_region(b, k, 1, n, seed=seed + 2), pixel_confidence(rand(b, k, 1, n, seed=seed + 3))
    want = ref.secondary_scores(ref.flat(feats), ref.arr(scorer), ref.flat(mask), ref.flat(gamma), form, pool)
    close(secondary_scores(cam, mask, gamma, form, pool), want, rtol=1e-7, atol=1e-8)


def test_secondary_scores_defaults_are_recam_and_gamma() -> None:
    cam, mask, gamma = rand(B, K, H, W, seed=19), soft_region(B, K, H, W, seed=20), soft_region(B, K, H, W, seed=21)
    assert torch.equal(secondary_scores(cam, mask, gamma), secondary_scores(cam, mask, gamma, "recam", "gamma"))
    assert torch.equal(pixel_confidence(cam), pixel_confidence(cam, "class"))
    assert torch.equal(normalise_map(cam.flatten(1)), normalise_map(cam.flatten(1), "minmax"))


def test_secondary_scores_bad_readings() -> None:
    x = rand(1, 2, 2, 2)
    with pytest.raises(ValueError, match="unknown SLSC pooling 'mean'"):
        secondary_scores(x, x, x, "recam", "mean")
    with pytest.raises(ValueError, match="unknown SLSC score form 'full'"):
        secondary_scores(x, x, x, "full", "gamma")


# ---------------------------------------------------------------- Eq. (18)-(27)

def _labels(seed: int, k: int = K, b: int = B) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    lab = (torch.rand(b, k, generator=gen) < 0.5).double()
    lab[0, 0] = 1.0  # at least one positive and, with b>=2, an image with several
    lab[-1, :2] = 1.0
    return lab


@pytest.mark.parametrize("red", ["mean", "sum"])
def test_multilabel_loss_eq19_20_and_csm_eq24(red: str) -> None:
    z_q, z_r, l_q, l_r = rand(B, K, seed=20, scale=3), rand(B, K, seed=21, scale=3), _labels(1), _labels(2)
    want = ref.multilabel_loss(*(ref.arr(t) for t in (z_q, z_r, l_q, l_r)), red)
    assert multilabel_loss(z_q, z_r, l_q, l_r, red).item() == pytest.approx(want, rel=1e-12)
    one = ref.soft_margin(ref.arr(z_q), ref.arr(l_q), red)
    assert multilabel_loss(z_q, None, l_q, None, red).item() == pytest.approx(one, rel=1e-12)
    assert csm_loss(z_q, l_q, red).item() == pytest.approx(one, rel=1e-12)
    assert soft_margin(z_r, l_r, red).item() == pytest.approx(ref.soft_margin(ref.arr(z_r), ref.arr(l_r), red),
                                                              rel=1e-12)


def test_soft_margin_bad_reduction() -> None:
    with pytest.raises(ValueError, match="unknown loss reduction 'max'"):
        soft_margin(rand(2, 3), _labels(0), "max")


@pytest.mark.parametrize("form", ["recam", "diag"])
def test_single_label_loss_eq21_22(form: str) -> None:
    shape = (B, K, K) if form == "recam" else (B, K)
    z_q, z_r, l_q, l_r = rand(*shape, seed=22, scale=2), rand(*shape, seed=23, scale=2), _labels(3), _labels(4)
    l_r[0] = 0  # an image without positives contributes 0 to the batch mean
    want = ref.single_label_loss(*(ref.arr(t) for t in (z_q, z_r, l_q, l_r)))
    assert single_label_loss(z_q, z_r, l_q, l_r).item() == pytest.approx(want, rel=1e-12)
    assert single_label_branch(z_r, l_r).item() == pytest.approx(ref.single_label_branch(ref.arr(z_r), ref.arr(l_r)))


@pytest.mark.parametrize("red", ["mean", "sum"])
def test_pair_labels_and_nsc_loss_eq25_27(red: str) -> None:
    l_q, l_r = _labels(5, k=5, b=3), _labels(6, k=5, b=3)
    co, q_nc, r_nc = pair_label_sets(l_q, l_r)
    for i in range(3):
        want = ref.pair_label_sets(l_q[i].int().tolist(), l_r[i].int().tolist())
        assert [co[i].int().tolist(), q_nc[i].int().tolist(), r_nc[i].int().tolist()] == list(want)
    y_q, y_r = rand(3, 5, seed=24, scale=2), rand(3, 5, seed=25, scale=2)
    want = ref.soft_margin(ref.arr(y_q), ref.arr(q_nc), red) + ref.soft_margin(ref.arr(y_r), ref.arr(r_nc), red)
    assert nsc_loss(y_q, y_r, q_nc, r_nc, red).item() == pytest.approx(want, rel=1e-12)


def _outputs(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    out = {"logits_q": rand(B, K, seed=seed), "logits_r": rand(B, K, seed=seed + 1),
           "sl_q": rand(B, K, K, seed=seed + 2), "sl_r": rand(B, K, K, seed=seed + 3),
           "y_co": rand(B, K, seed=seed + 4), "y_q_nc": rand(B, K, seed=seed + 5), "y_r_nc": rand(B, K, seed=seed + 6)}
    l_q, l_r = _labels(seed), _labels(seed + 1)
    co, q_nc, r_nc = pair_label_sets(l_q, l_r)
    return out, {"label_q": l_q, "label_r": l_r, "label_co": co, "label_q_nc": q_nc, "label_r_nc": r_nc}


def _ref_parts(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], red: str = "mean") -> dict[str, float]:
    o, b = {k: ref.arr(v) for k, v in out.items()}, {k: ref.arr(v) for k, v in batch.items()}
    ml = ref.multilabel_loss(o["logits_q"], o["logits_r"], b["label_q"], b["label_r"], red)
    if "logits_q_self" in o:  # self_ml: the mean of the cross-paired and the self-paired L_ml
        ml = (ml + ref.multilabel_loss(o["logits_q_self"], o["logits_r_self"], b["label_q"], b["label_r"], red)) / 2
    return {"ml": ml,
            "sl": ref.single_label_loss(o["sl_q"], o["sl_r"], b["label_q"], b["label_r"]),
            "csm": ref.soft_margin(o["y_co"], b["label_co"], red),
            "nsc": ref.soft_margin(o["y_q_nc"], b["label_q_nc"], red) + ref.soft_margin(o["y_r_nc"], b["label_r_nc"], red)}


@pytest.mark.parametrize("red", ["mean", "sum"])
@pytest.mark.parametrize("self_ml", [False, True])
@pytest.mark.parametrize("losses", [("ml",), ("ml", "sl"), ("ml", "csm", "nsc"), ("ml", "sl", "csm", "nsc")])
def test_total_loss_eq18(losses: tuple[str, ...], self_ml: bool, red: str) -> None:
    out, batch = _outputs(30)
    if self_ml:
        out["logits_q_self"], out["logits_r_self"] = rand(B, K, seed=50), rand(B, K, seed=51)
    cfg = ModelConfig(losses=losses, use_slsc="sl" in losses, lam=0.37, self_ml=self_ml, loss_reduction=red)
    got = total_loss(out, batch, cfg)
    parts = {k: v for k, v in _ref_parts(out, batch, red).items() if k in losses}
    assert set(got) == set(losses) | {"total", "lam"}
    for k, v in parts.items():
        assert got[k].item() == pytest.approx(v, rel=1e-12), k
    assert got["total"].item() == pytest.approx(ref.total_loss(parts, 0.37), rel=1e-12)


@pytest.mark.parametrize("s", [-7.0, -1.3, 0.0, 2.2, 5.0, 6.5])
def test_total_loss_learnable_lambda_value(s: float) -> None:
    out, batch = _outputs(40)
    out["aux_log_var"] = torch.tensor(s, dtype=torch.float64)
    got = total_loss(out, batch, ModelConfig(lam_learnable=True))
    parts = _ref_parts(out, batch)
    assert got["total"].item() == pytest.approx(ref.total_loss(parts, 1.0, s), rel=1e-12)
    assert got["lam"].item() == pytest.approx(math.exp(-min(max(s, -5), 5)), rel=1e-12)


def test_losses_accept_bool_labels_and_name_the_missing_loss() -> None:
    z, zz, lab = rand(B, K, seed=60), rand(B, K, K, seed=61), _labels(7)
    assert soft_margin(z, lab.bool()).item() == pytest.approx(soft_margin(z, lab).item(), rel=1e-12)
    assert soft_margin(z.float(), lab.bool(), "sum").item() == pytest.approx(soft_margin(z, lab, "sum").item(), rel=1e-6)
    assert single_label_branch(zz, lab.bool()).item() == pytest.approx(single_label_branch(zz, lab).item(), rel=1e-12)
    out, batch = _outputs(70)
    for loss, key in (("sl", "sl_q"), ("csm", "y_co"), ("nsc", "y_r_nc")):
        with pytest.raises(ConfigError, match=f"loss '{loss}' needs model outputs \\['{key}'\\]"):
            total_loss({k: v for k, v in out.items() if k != key}, batch, ModelConfig())


def test_high_confidence_regions_keep_the_cam_dtype() -> None:
    m = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    assert high_confidence_regions(m, 0.5).dtype == torch.float64
    assert high_confidence_regions(m.float(), 0.5).dtype == torch.float32
