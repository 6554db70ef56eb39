"""models.inside.trace: the intermediates of one CISM forward pass, equal to what forward returns."""
from dataclasses import replace

import pytest
import torch

from cism_lib.config import ModelConfig
from cism_lib.models import build_model
from cism_lib.models.inside import STEPS, pair_labels, trace
from cism_lib.models.slsc import normalise_cam

SMALL = ModelConfig(backbone="resnet18", weights=None, proto_dim=16, method="cism")
READINGS = [
    {},
    {"sl_scorer": "cam", "sl_detach": False, "sl_pool": "masked", "sl_form": "diag"},
    {"pie_pool": "class", "pie_norm": "affine", "sim_centre": True, "gamma_axis": "space"},
]


@pytest.mark.parametrize("reading", READINGS, ids=["default", "literal slsc", "pie class pool"])
def test_trace_equals_the_forward_pass_for_every_output_they_share(reading: dict) -> None:
    torch.manual_seed(0)
    model = build_model(replace(SMALL, **reading), 5).eval()
    q, r = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(q, r)
    steps = trace(model, q, r)
    shared = set(out) & set(steps)
    assert {"cam_q", "cam_r", "logits_q", "sl_q", "sl_r", "y_co", "y_q_nc", "y_r_nc"} <= shared
    for key in shared:
        torch.testing.assert_close(steps[key], out[key], rtol=1e-5, atol=1e-6, msg=key)


def test_trace_keeps_the_intermediates_with_their_defining_properties() -> None:
    torch.manual_seed(1)
    model = build_model(SMALL, 5).eval()
    q = torch.randn(2, 3, 64, 64)
    steps = trace(model, q, torch.randn(2, 3, 64, 64))
    for s in "qr":
        assert torch.equal(steps[f"M_{s}"], normalise_cam(steps[f"cam_{s}"]))
        # R is M above the threshold; the gate is all ones in eval; A lies in [0, 1] with a 0 and a 1
        assert torch.equal(steps[f"R_{s}"], (steps[f"M_{s}"] > model.cam_threshold).float())
        assert torch.equal(steps[f"gate_{s}"], torch.ones_like(steps[f"gate_{s}"]))
        a = steps[f"A_{s}"].flatten(1)
        assert torch.allclose(a.amin(1), torch.zeros(2)) and torch.allclose(a.amax(1), torch.ones(2))
        assert steps[f"P_{s}"].shape == steps[f"P_enh_{s}"].shape == (2, 5, 16)
        assert not torch.allclose(steps[f"P_{s}"], steps[f"P_enh_{s}"])  # PIE changed the prototypes
        assert torch.allclose(steps[f"mask_{s}"], steps[f"M_{s}"] * steps[f"S_{s}"])
        torch.testing.assert_close(steps[f"gamma_{s}"].sum(1), torch.ones(2, 4, 4))  # stride 16
    # pairing an image with itself: both sides' intermediates agree
    same = trace(model, q, q)
    torch.testing.assert_close(same["A_q"], same["A_r"])
    torch.testing.assert_close(same["sl_q"], same["sl_r"])
    assert set(STEPS) >= {k.rsplit("_", 1)[0] for k in steps if k not in ("y_co", "y_q_nc", "y_r_nc")}


def test_trace_refuses_a_model_without_cism_heads_and_pair_labels_split_the_classes() -> None:
    model = build_model(replace(SMALL, method="cian"), 5).eval()
    with pytest.raises(ValueError, match="trace needs a CISM model; this one is 'cian'"):
        trace(model, torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32))
    labels = pair_labels(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 1.0]))
    assert labels["l_co"].tolist() == [0, 1, 0] and labels["l_q_nc"].tolist() == [1, 0, 0]
    assert labels["l_r_nc"].tolist() == [0, 0, 1]
