"""Which parameters each loss trains, per loss and per SLSC reading, and the learnable λ's gradient.

Each loss is backpropagated alone through a CISMNet with the stub backbone of tests/reference.py
(all layers re-initialised, so no gradient is zero by an identity or zero initialisation), and
the set of parameter groups that receive a non-zero gradient is asserted exactly.
"""
from __future__ import annotations

import math

import pytest
import torch

from cism_lib.config import ModelConfig, replace
from cism_lib.data.pairs import pair_label_sets
from cism_lib.losses import single_label_loss, total_loss
from tests import reference as ref

K = 4
BASE = ModelConfig(backbone="resnet18", weights=None, proto_dim=5, cam_threshold=0.4)
GROUPS = ("classifier", "sl_classifier", "psi", "prototype", "interaction", "affinity", "backbone")


def _batch() -> dict[str, torch.Tensor]:
    label_q = torch.tensor([[1.0, 0, 1, 0], [0, 1, 1, 1]])
    label_r = torch.tensor([[1.0, 1, 0, 0], [0, 1, 0, 1]])
    co, q_nc, r_nc = pair_label_sets(label_q, label_r)
    return {"label_q": label_q, "label_r": label_r, "label_co": co, "label_q_nc": q_nc, "label_r_nc": r_nc}


def _reached(cfg: ModelConfig, loss: str) -> set[str]:
    """Parameter groups given a non-zero gradient by `loss` alone."""
    model = ref.stub_model(cfg, K, channels=16).train()
    gen = torch.Generator().manual_seed(3)
    q, r = torch.randn(2, 3, 12, 16, generator=gen), torch.randn(2, 3, 12, 16, generator=gen)
    torch.manual_seed(0)  # the gate
    total_loss(model(q, r), _batch(), cfg)[loss].backward()
    return {name for name in GROUPS if getattr(model, name) is not None
            and any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model, name).parameters())}


FEATURES = {"affinity", "backbone"}
PAIRED = {"psi", "prototype", "interaction"} | FEATURES


@pytest.mark.parametrize("changes,loss,expected", [
    ({}, "ml", {"classifier"} | FEATURES),
    ({}, "sl", {"sl_classifier", "prototype", "interaction"} | FEATURES),  # defaults: separate, detach
    ({}, "csm", PAIRED),
    ({}, "nsc", PAIRED),
    ({"sl_scorer": "cam"}, "sl", {"classifier", "prototype", "interaction"} | FEATURES),
    ({"sl_detach": False}, "sl", {"classifier", "sl_classifier", "prototype", "interaction"} | FEATURES),
    ({"sl_scorer": "cam", "sl_detach": False}, "sl", {"classifier", "prototype", "interaction"} | FEATURES),
    ({"sl_scorer": "cam", "sl_detach": False}, "ml", {"classifier"} | FEATURES),
    ({"use_pv": False, "use_pie": False}, "sl", {"sl_classifier"} | FEATURES),
    ({"cross_affinity": False}, "csm", PAIRED - {"affinity"}),
], ids=["ml", "sl", "csm", "nsc", "sl-cam-scorer", "sl-no-detach", "sl-cam-no-detach", "ml-cam-no-detach",
        "sl-no-pv", "csm-no-affinity"])
def test_each_loss_reaches_exactly_its_parameters(changes: dict, loss: str, expected: set[str]) -> None:
    assert _reached(replace(BASE, **changes), loss) == expected


def test_sl_detach_removes_exactly_the_mask_and_gamma_path_into_the_cam() -> None:
    """sl_scorer cam: the CAM gets L_sl's gradient through the scores either way; the mask/γ part
    is what detaching drops, so the two classifier gradients differ."""
    grads = {}
    for detach in (True, False):
        cfg = replace(BASE, sl_scorer="cam", sl_detach=detach)
        model = ref.stub_model(cfg, K, channels=16).eval()
        gen = torch.Generator().manual_seed(4)
        out = model(torch.randn(2, 3, 12, 16, generator=gen), torch.randn(2, 3, 12, 16, generator=gen))
        single_label_loss(out["sl_q"], out["sl_r"], _batch()["label_q"], _batch()["label_r"]).backward()
        grads[detach] = model.classifier.weight.grad.clone()
    assert grads[True].abs().sum() > 0
    assert not torch.allclose(grads[True], grads[False], rtol=1e-3, atol=1e-6)


# ---------------------------------------------------------------- learnable λ (losses.total_loss)

def _fake_outputs(s: float) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(7)
    b = _batch()
    out = {k: torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)
           for k, shape in {"logits_q": (2, K), "logits_r": (2, K), "sl_q": (2, K, K), "sl_r": (2, K, K),
                            "y_co": (2, K), "y_q_nc": (2, K), "y_r_nc": (2, K)}.items()}
    out["aux_log_var"] = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    return out, {k: v.double() for k, v in b.items()}


@pytest.mark.parametrize("s", [-4.2, -0.8, 0.0, 1.7, 4.9])
def test_learnable_lambda_gradient_closed_form(s: float) -> None:
    """L = L_ml + e^{-s} A + s, A = L_sl + L_csm + L_nsc: ∂L/∂s = 1 − e^{-s} A, ∂L/∂Z̃ = e^{-s} ∂L_sl/∂Z̃."""
    out, batch = _fake_outputs(s)
    cfg = ModelConfig(lam_learnable=True)
    losses = total_loss(out, batch, cfg)
    aux = (losses["sl"] + losses["csm"] + losses["nsc"]).item()
    losses["total"].backward()
    assert out["aux_log_var"].grad.item() == pytest.approx(1 - math.exp(-s) * aux, rel=1e-10)
    sl_grad = out["sl_q"].grad.clone()
    out2, _ = _fake_outputs(s)
    single_label_loss(out2["sl_q"], out2["sl_r"], batch["label_q"], batch["label_r"]).backward()
    torch.testing.assert_close(sl_grad, math.exp(-s) * out2["sl_q"].grad, rtol=1e-10, atol=1e-12)
    assert out["logits_q"].grad.abs().sum() > 0


@pytest.mark.parametrize("s,bound", [(-6.5, -5.0), (5.5, 5.0), (30.0, 5.0)])
def test_learnable_lambda_is_clamped(s: float, bound: float) -> None:
    """Beyond [−5, 5] λ stays at e^{∓5}, the regulariser at ±5, and s gets no gradient."""
    out, batch = _fake_outputs(s)
    losses = total_loss(out, batch, ModelConfig(lam_learnable=True))
    aux = (losses["sl"] + losses["csm"] + losses["nsc"]).item()
    assert losses["lam"].item() == pytest.approx(math.exp(-bound), rel=1e-12)
    assert losses["total"].item() == pytest.approx(losses["ml"].item() + math.exp(-bound) * aux + bound, rel=1e-12)
    losses["total"].backward()
    assert out["aux_log_var"].grad.item() == 0.0


def test_model_lambda_starts_at_lam_and_trains() -> None:
    cfg = replace(BASE, lam=2.5, lam_learnable=True)
    model = ref.stub_model(cfg, K, channels=16).train()
    assert model.aux_log_var.item() == pytest.approx(-math.log(2.5))
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(0)
    out = model(torch.randn(2, 3, 12, 16, generator=gen), torch.randn(2, 3, 12, 16, generator=gen))
    losses = total_loss(out, _batch(), cfg)
    assert losses["lam"].item() == pytest.approx(2.5, rel=1e-6)
    aux = (losses["sl"] + losses["csm"] + losses["nsc"]).item()
    losses["total"].backward()
    assert model.aux_log_var.grad.item() == pytest.approx(1 - 2.5 * aux, rel=1e-5)


@pytest.mark.parametrize("method", ["cam", "cian"])
def test_baselines_have_no_learnable_lambda(method: str) -> None:
    """cam and cian train L_ml only, so there is no auxiliary loss for λ to weight."""
    model = ref.stub_model(replace(BASE, method=method, lam_learnable=True), K, channels=16)
    assert model.aux_log_var is None and model.psi is None and model.sl_classifier is None
