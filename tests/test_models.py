"""CISM modules on hand-computed tensors, and the whole classifier's contract and switches."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cism_lib.config import ModelConfig, RunConfig, replace
from cism_lib.errors import ConfigError
from cism_lib.losses import total_loss
from cism_lib.experiments import TABLES
from cism_lib.models import build_model
from cism_lib.models.cian import CrossImageAffinity
from cism_lib.models.pie import enhance_prototypes, matching_maps
from cism_lib.models.prototypes import gate_map, high_confidence_regions, masked_average_pooling
from cism_lib.models.slsc import (normalise_cam, pixel_confidence, prototype_similarity,
                                  secondary_scores)

torch.set_num_threads(1)
K = 4
SMALL = ModelConfig(backbone="resnet18", weights=None, proto_dim=16)


def _maps(vectors: list[tuple[float, float]]) -> torch.Tensor:
    """Feature vectors [N,2] as a [1,2,1,N] map."""
    return torch.tensor(vectors, dtype=torch.float32).T[None, :, None, :]


def test_matching_maps_max_cosine() -> None:
    x_q = _maps([(1, 0), (0, 1), (1, 1)])
    x_r = _maps([(1, 0), (-1, 0)])
    a_q, a_r = matching_maps(x_q, x_r)  # raw maxima: q [1, 0, 1/√2], r [1, 0]
    assert torch.allclose(a_q.flatten(), torch.tensor([1.0, 0.0, 1 / math.sqrt(2)]), atol=1e-5)
    assert torch.allclose(a_r.flatten(), torch.tensor([1.0, 0.0]), atol=1e-5)
    a_q, _ = matching_maps(x_q, x_r, "affine")
    assert torch.allclose(a_q.flatten(), torch.tensor([1.0, 0.5, (1 + 1 / math.sqrt(2)) / 2]), atol=1e-5)


def test_masked_average_pooling_with_fixed_gate() -> None:
    feats = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]]).view(1, 2, 2, 2)
    cam = torch.tensor([[0.9, 0.8, 0.1, 0.6], [0.0, 0.2, 0.3, 0.4]]).view(1, 2, 2, 2)
    region = high_confidence_regions(cam, 0.5)  # class 0: pixels 0,1,3; class 1: none
    gate = torch.tensor([2.0, 0.0, 2.0, 2.0]).view(1, 1, 2, 2)  # dropout drops pixel 1
    protos = masked_average_pooling(feats, region * gate)
    assert torch.allclose(protos[0, 0], torch.tensor([2.5, 25.0]))  # mean of pixels 0 and 3
    assert torch.equal(protos[0, 1], torch.zeros(2))  # empty region → zero prototype


def test_gate_map_only_in_training() -> None:
    like = torch.zeros(3, 5, 8, 8)
    assert torch.equal(gate_map(like, 0.3, training=False), torch.ones(3, 1, 8, 8))
    gate = gate_map(like, 0.5, training=True)
    assert gate.shape == (3, 1, 8, 8) and set(gate.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(gate_map(like, 0.0, training=True), torch.ones(3, 1, 8, 8))


def test_enhance_prototypes_weighted_by_matching_map() -> None:
    protos = torch.ones(1, 1, 1)
    x_other = torch.tensor([2.0, 4.0]).view(1, 1, 1, 2)
    a_other = torch.tensor([1.0, 0.5]).view(1, 1, 2)
    assert torch.allclose(enhance_prototypes(protos, x_other, a_other), torch.tensor(1 + 4 / 1.5))
    region = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    assert torch.allclose(enhance_prototypes(protos, x_other, a_other, region), torch.tensor(5.0))


def test_normalise_cam_and_similarity() -> None:
    cam = torch.tensor([-1.0, 2.0, 4.0]).view(1, 1, 1, 3)
    assert torch.allclose(normalise_cam(cam).flatten(), torch.tensor([0.0, 0.5, 1.0]), atol=1e-4)
    sim = prototype_similarity(torch.tensor([[[1.0, 0.0]]]), _maps([(1, 0), (0, 1), (-1, 0)]))
    assert torch.allclose(sim.flatten(), torch.tensor([1.0, 0.0, 0.0]))


def test_pixel_confidence_axes() -> None:
    cam = torch.randn(2, 3, 4, 5)
    assert torch.allclose(pixel_confidence(cam, "class").sum(1), torch.ones(2, 4, 5))
    assert torch.allclose(pixel_confidence(cam, "space").sum((2, 3)), torch.ones(2, 3))


def test_secondary_scores_weighting() -> None:
    cam = torch.tensor([[1.0, 3.0], [2.0, 0.0]]).view(1, 2, 1, 2)
    mask = torch.tensor([[1.0, 0.0], [0.5, 1.0]]).view(1, 2, 1, 2)
    gamma = torch.tensor([[0.5, 0.5], [0.25, 0.75]]).view(1, 2, 1, 2)
    # weights w_0 = [0.5, 0], w_1 = [0.125, 0.75]; Z̃[k, j] = Σ_x w_k(x) cam_j(x)
    expected = torch.tensor([[0.5, 1.0], [0.125 + 2.25, 0.25]])
    assert torch.allclose(secondary_scores(cam, mask, gamma, "recam")[0], expected)
    assert torch.allclose(secondary_scores(cam, mask, gamma, "diag")[0], torch.tensor([0.5, 0.25]))
    # pool "masked": divide by Σ γ_k mask_k (0.5 and 0.875) instead of Σ γ_k (1 and 1)
    masked = torch.tensor([[1.0, 2.0], [(0.125 + 2.25) / 0.875, 0.25 / 0.875]])
    assert torch.allclose(secondary_scores(cam, mask, gamma, "recam", "masked")[0], masked)


def test_cian_self_pair_is_self_attention() -> None:
    torch.manual_seed(0)
    module = CrossImageAffinity(6, reduction=2).eval()
    f = torch.randn(2, 6, 3, 3)
    assert torch.allclose(module(f, torch.randn_like(f)), f)  # zero-initialised residual branch
    torch.nn.init.ones_(module.out[1].weight)
    q, k, v = (m(f).flatten(2) for m in (module.query, module.key, module.value))
    attn = (q.transpose(1, 2) @ k / math.sqrt(3)).softmax(-1)
    expected = f + module.out((v @ attn.transpose(1, 2)).view(2, 3, 3, 3))
    assert torch.allclose(module(f, f), expected, atol=1e-5)


def test_cian_pair_equals_both_directions() -> None:
    torch.manual_seed(0)
    module = CrossImageAffinity(16).eval()
    torch.nn.init.normal_(module.out[1].weight)
    f_q, f_r = torch.randn(2, 16, 3, 4), torch.randn(2, 16, 3, 4)
    out_q, out_r = module.forward_pair(f_q, f_r)
    assert torch.allclose(out_q, module(f_q, f_r), atol=1e-6)
    assert torch.allclose(out_r, module(f_r, f_q), atol=1e-6)
    assert not torch.allclose(out_q, f_q)


def _pair(batch: int = 2, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(batch, 3, size, size), torch.randn(batch, 3, size, size)


def _batch() -> dict[str, torch.Tensor]:
    label_q = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]])
    label_r = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]])
    co = label_q * label_r
    return {"label_q": label_q, "label_r": label_r, "label_co": co,
            "label_q_nc": label_q - co, "label_r_nc": label_r - co}


def test_outputs_and_swap_symmetry_in_eval() -> None:
    torch.manual_seed(0)
    model = build_model(SMALL, K).eval()
    q, r = _pair()
    with torch.no_grad():
        a, b = model(q, r), model(r, q)
    assert a["logits_q"].shape == (2, K) and a["cam_q"].shape == (2, K, 4, 4)
    assert a["sl_q"].shape == (2, K, K) and a["y_co"].shape == (2, K)
    for x, y in (("logits_q", "logits_r"), ("cam_q", "cam_r"), ("sl_q", "sl_r"), ("y_q_nc", "y_r_nc")):
        assert torch.allclose(a[x], b[y], atol=1e-5), x
    assert torch.allclose(a["y_co"], b["y_co"], atol=1e-5)


def test_eval_is_deterministic_and_training_gate_is_random() -> None:
    torch.manual_seed(0)
    model = build_model(SMALL, K)
    q, r = _pair()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(q, r)["sl_q"], model(q, r)["sl_q"])
    model.train()
    with torch.no_grad():
        torch.manual_seed(1)
        one = model(q, r)
        torch.manual_seed(2)
        two = model(q, r)
    assert torch.equal(one["logits_q"], two["logits_q"])  # the gate never touches L_ml's path
    assert not torch.equal(one["sl_q"], two["sl_q"])


# Which parameters each loss reaches, per loss and reading: tests/test_gradients.py.


def _sl_grads(cfg: ModelConfig) -> dict[str, float]:
    """Gradient norms that L_sl alone sends to W_c, the separate scorer and the backbone."""
    torch.manual_seed(0)
    model = build_model(cfg, K)
    out = model(*_pair())
    loss = sum(F.cross_entropy(out[k].flatten(0, 1), torch.arange(K).repeat(2)) for k in ("sl_q", "sl_r"))
    loss.backward()

    def norm(m: torch.nn.Module | None) -> float:
        return 0.0 if m is None else float(sum(p.grad.norm() for p in m.parameters() if p.grad is not None))

    return {"classifier": norm(model.classifier), "scorer": norm(model.sl_classifier),
            "backbone": norm(model.backbone)}


def test_slsc_scorer_and_detach_route_the_single_label_gradient() -> None:
    shared = _sl_grads(replace(SMALL, sl_scorer="cam", sl_detach=False))
    assert shared["classifier"] > 0 and shared["scorer"] == 0.0
    separate = _sl_grads(replace(SMALL, sl_scorer="separate", sl_detach=False))
    assert separate["classifier"] > 0 and separate["scorer"] > 0  # W_c still shapes M and γ
    isolated = _sl_grads(replace(SMALL, sl_scorer="separate", sl_detach=True))
    assert isolated["classifier"] == 0.0 and isolated["scorer"] > 0 and isolated["backbone"] > 0
    assert _sl_grads(SMALL) == isolated  # the defaults
    with pytest.raises(ConfigError, match="sl_scorer"):
        replace(SMALL, sl_scorer="mlp")


def test_switches_change_what_is_computed() -> None:
    q, r = _pair()
    keys = {}
    for name, changes in {"cam": {"method": "cam"}, "cian": {"method": "cian"},
                          "no_slsc": {"use_slsc": False, "losses": ("ml", "csm", "nsc")},
                          "no_csm": {"losses": ("ml", "sl", "nsc")}, "full": {}}.items():
        model = build_model(replace(SMALL, **changes), K).eval()
        with torch.no_grad():
            keys[name] = set(model(q, r))
    base = {"logits_q", "logits_r", "cam_q", "cam_r"}
    assert keys["cam"] == keys["cian"] == base
    assert keys["no_slsc"] == base | {"y_co", "y_q_nc", "y_r_nc"}
    assert keys["no_csm"] == base | {"sl_q", "sl_r", "y_q_nc", "y_r_nc"}
    assert keys["full"] == keys["no_slsc"] | {"sl_q", "sl_r"}
    assert build_model(replace(SMALL, method="cam"), K).affinity is None
    assert build_model(replace(SMALL, method="cian"), K).prototype is None
    assert build_model(replace(SMALL, use_pv=False), K).prototype is None
    assert build_model(replace(SMALL, use_pie=False), K).interaction is None
    torch.manual_seed(0)
    with_pv = build_model(SMALL, K).eval()
    torch.manual_seed(0)
    without_pv = build_model(replace(SMALL, use_pv=False, use_pie=False), K).eval()
    with torch.no_grad():
        assert not torch.allclose(with_pv(q, r)["sl_q"], without_pv(q, r)["sl_q"])
    with pytest.raises(ConfigError, match="use_slsc"):
        build_model(replace(SMALL, use_slsc=False), K)


def test_single_image_forward_and_cam() -> None:
    q, _ = _pair()
    cam_model = build_model(replace(SMALL, method="cam"), K).eval()
    with torch.no_grad():
        out = cam_model(q)
        assert set(out) == {"logits_q", "cam_q"}
        assert torch.allclose(cam_model.cam(q), out["cam_q"].clamp_min(0))
    model = build_model(SMALL, K).eval()
    with torch.no_grad():
        out = model(q)  # paired with itself
        cams = model.cam(q)
    assert torch.allclose(out["logits_q"], out["logits_r"])
    assert torch.allclose(cams, out["cam_q"].clamp_min(0), atol=1e-5) and cams.min() >= 0


def test_param_groups_partition_parameters() -> None:
    model = build_model(SMALL, K)
    groups = model.param_groups(0.01, 0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert groups[0]["lr"] == pytest.approx(0.001) and groups[1]["lr"] == 0.01
    assert {id(p) for p in model.backbone.parameters()} == {id(p) for p in groups[0]["params"]}


def test_learnable_lambda_gets_its_closed_form_gradient() -> None:
    cfg = replace(SMALL, lam_learnable=True)
    model = build_model(cfg, K)
    losses = total_loss(model(*_pair()), _batch(), cfg)
    assert losses["lam"].item() == pytest.approx(1.0)
    aux = (losses["sl"] + losses["csm"] + losses["nsc"]).item()
    losses["total"].backward()
    # L = L_ml + e^{-s} aux + s at s = 0: ∂L/∂s = 1 - aux (more in tests/test_gradients.py)
    assert model.aux_log_var.grad.item() == pytest.approx(1 - aux, rel=1e-4)


def _ablation_rows() -> list[tuple[str, str, dict]]:
    return [(t, row.label, dict(row.overrides)) for t, rows in TABLES.items() for row in rows]


@pytest.mark.parametrize("table,row,overrides", _ablation_rows(),
                         ids=[f"{t}:{r}" for t, r, _ in _ablation_rows()])
def test_ablation_rows_train_two_steps(table: str, row: str, overrides: dict) -> None:
    run = replace(RunConfig(model=SMALL), **overrides)
    torch.manual_seed(0)
    model = build_model(run.model, K).train()
    opt = torch.optim.Adam(model.param_groups(1e-3, 0.1))
    for _ in range(2):
        losses = total_loss(model(*_pair()), _batch(), run.model)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        assert torch.isfinite(losses["total"]), (table, row)
