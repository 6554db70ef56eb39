"""One golden forward pass of CISMNet per reading: every output against the loop references.

The backbone is a tiny deterministic stub (tests/reference.py: 3×3 conv + 4×4 average pool,
16 channels), every layer is re-initialised with non-trivial weights (no identity PIE, no
zero-weight CIAN output), and the images give a non-square 3 × 4 feature grid.
"""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch

from cism_lib.config import ModelConfig, replace
from tests import reference as ref

K = 3
BASE = ModelConfig(backbone="resnet18", weights=None, proto_dim=5, cam_threshold=0.4)
READINGS = {
    "defaults": {},
    "literal": {"pie_norm": "affine", "pie_pool": "global", "sl_form": "diag", "sl_pool": "gamma",
                "gamma_axis": "space", "sl_scorer": "cam", "sl_detach": False},
    "mixed_a": {"pie_pool": "global", "sl_pool": "gamma", "gamma_axis": "space", "sl_detach": False},
    "mixed_b": {"pie_norm": "affine", "sl_form": "diag", "sl_scorer": "cam"},
    "no_affinity_no_pie": {"cross_affinity": False, "use_pie": False},
    "no_pv": {"use_pv": False, "use_pie": False, "lam_learnable": True},
    "self_ml": {"self_ml": True, "loss_reduction": "sum"},
}


def _images(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 3, 12, 16, generator=gen, dtype=torch.float64),
            torch.randn(2, 3, 12, 16, generator=gen, dtype=torch.float64))


def _check(out: dict[str, torch.Tensor], want: dict[str, np.ndarray]) -> None:
    for key, value in want.items():
        got = ref.arr(out[key])
        got = got.reshape(got.shape[0], got.shape[1], -1) if key.startswith("cam") else got
        np.testing.assert_allclose(got, value, rtol=1e-8, atol=1e-9, err_msg=key)


@pytest.mark.parametrize("reading", list(READINGS))
def test_golden_forward_eval(reading: str) -> None:
    cfg = replace(BASE, **READINGS[reading])
    model = ref.stub_model(cfg, K, channels=16).double().eval()
    q, r = _images()
    with torch.no_grad():
        out = model(q, r)
        want = ref.forward(model, q, r)
    expected_keys = {"logits_q", "logits_r", "cam_q", "cam_r", "sl_q", "sl_r", "y_co", "y_q_nc", "y_r_nc"}
    if cfg.self_ml:
        expected_keys |= {"logits_q_self", "logits_r_self"}
    if cfg.lam_learnable:
        expected_keys.add("aux_log_var")
        assert out["aux_log_var"] is model.aux_log_var
    assert set(out) == expected_keys == set(want) | ({"aux_log_var"} if cfg.lam_learnable else set())
    assert out["sl_q"].shape == ((2, K, K) if cfg.sl_form == "recam" else (2, K))
    _check(out, want)
    # the inputs are general: several high-confidence pixels per class, non-trivial matching maps
    m = ref.normalise_cam(ref.arr(out["cam_q"]).reshape(2, K, -1))
    assert ((m > cfg.cam_threshold).sum(2) >= 2).mean() > 0.5


def test_golden_forward_training_with_a_fixed_gate() -> None:
    """In training the gate Γ multiplies the MAP region (Eq. 3-5); a fixed Γ makes the pass golden."""
    cfg = replace(BASE, cross_affinity=False)  # train-mode BatchNorm in CIAN is torch's, not under test
    model = ref.stub_model(cfg, K, channels=16).double().train()
    q, r = _images(1)
    gen = torch.Generator().manual_seed(5)
    keep = (torch.rand(4, 1, 3, 4, generator=gen) > cfg.eta).double() / (1 - cfg.eta)
    calls = []

    def fixed_gate(like: torch.Tensor, eta: float, training: bool) -> torch.Tensor:
        calls.append((eta, training))
        return keep[:2] if len(calls) == 1 else keep[2:]  # _slsc runs for the query, then the reference

    with mock.patch("cism_lib.models.cism.gate_map", fixed_gate), torch.no_grad():
        out = model(q, r)
        want = ref.forward(model, q, r, gate=ref.flat(keep))
    assert calls == [(cfg.eta, True)] * 2
    _check(out, want)
    with torch.no_grad():
        ungated = ref.forward(model, q, r)
    assert not np.allclose(ungated["sl_q"], want["sl_q"])  # the gate mattered


def test_lone_image_is_paired_with_itself() -> None:
    # affine: paired with itself every pixel matches (cos 1), so a min-max A is 0/0 (rounding noise)
    model = ref.stub_model(replace(BASE, pie_norm="affine"), K, channels=16).double().eval()
    q, _ = _images(2)
    with torch.no_grad():
        out, twice, want = model(q), model(q, q), ref.forward(model, q, q)
    _check(out, want)
    for key, value in out.items():
        assert torch.equal(value, twice[key]), key
