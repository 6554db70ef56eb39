"""CISMNet details beyond tests/test_models.py: the heads' fp32 under bf16 autocast, the centred
similarity reaching Z̃, the intermediates kept without PIE, parameter-group names, build errors."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from cism_lib.config import ModelConfig
from cism_lib.errors import ConfigError
from cism_lib.models import build_model
from cism_lib.models.inside import trace

K = 3
SMALL = ModelConfig(backbone="resnet18", weights=None, proto_dim=16, method="cism")


def _pair(seed: int = 0, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 32, 48, generator=g), torch.randn(batch, 3, 32, 48, generator=g)


def test_cism_heads_run_in_fp32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    model = build_model(SMALL, K).eval()
    q, r = _pair()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(q, r)
    assert out["cam_q"].dtype == torch.bfloat16  # the backbone and W_c under autocast
    for key in ("sl_q", "sl_r", "y_co", "y_q_nc", "y_r_nc"):
        assert out[key].dtype == torch.float32, key


def test_centred_similarity_changes_the_slsc_scores() -> None:
    q, r = _pair(1)
    outs = []
    for centre in (False, True):
        torch.manual_seed(0)
        model = build_model(replace(SMALL, sim_centre=centre), K).eval()
        with torch.no_grad():
            outs.append(model(q, r))
    assert torch.equal(outs[0]["cam_q"], outs[1]["cam_q"])
    assert not torch.allclose(outs[0]["sl_q"], outs[1]["sl_q"])


def test_trace_without_pie_or_paired_losses_has_prototypes_but_no_matching_maps() -> None:
    torch.manual_seed(0)
    model = build_model(replace(SMALL, use_pie=False, losses=("ml", "sl")), K).eval()
    steps = trace(model, *_pair())
    assert {"F_c_q", "R_q", "gate_q", "P_q", "S_q", "mask_q", "gamma_q"} <= set(steps)
    assert not {"X_q", "A_q", "P_enh_q"} & set(steps)


def test_param_group_names() -> None:
    groups = build_model(SMALL, K).param_groups(0.01, 0.1)
    assert [g["name"] for g in groups] == ["backbone", "new"]


def test_build_model_errors_say_what_to_change() -> None:
    with pytest.raises(ConfigError, match=r"^model.losses contains 'sl' but model.use_slsc is false; "
                                          r"L_sl needs the SLSC scores \(set use_slsc: true or drop 'sl'\)$"):
        build_model(replace(SMALL, use_slsc=False), K)
    with pytest.raises(ConfigError, match=r"^model.lam must be > 0, got 0.0$"):
        build_model(replace(SMALL, lam=0.0), K)
    assert build_model(replace(SMALL, lam=1e-3), K).num_classes == K


def test_centred_readings_are_cosines_of_centred_features() -> None:
    """sim_centre: Eq. 14's S on features minus the image's mean, Eq. 7's A on the pair-centred X."""
    import torch.nn.functional as F

    from cism_lib.models.inside import trace

    torch.manual_seed(0)
    model = build_model(replace(SMALL, sim_centre=True), K).eval()
    steps = trace(model, *_pair(2))
    for s, o in ("q", "r"), ("r", "q"):
        fc = steps[f"F_c_{s}"]
        mean = fc.mean((2, 3))
        p = F.normalize(steps[f"P_enh_{s}"] - mean[:, None, :], dim=2)
        f = F.normalize(fc - mean[:, :, None, None], dim=1)
        torch.testing.assert_close(steps[f"S_{s}"], torch.einsum("bkd,bdhw->bkhw", p, f).clamp_min(0))
        x_s, x_o = steps[f"X_{s}"], steps[f"X_{o}"]
        pair_mean = torch.cat([x_s.flatten(2), x_o.flatten(2)], 2).mean(2)[:, :, None]
        a = torch.einsum("bdx,bdy->bxy", F.normalize(x_s.flatten(2) - pair_mean, dim=1),
                         F.normalize(x_o.flatten(2) - pair_mean, dim=1)).amax(2)
        a = (a - a.amin(1, keepdim=True)) / (a.amax(1, keepdim=True) - a.amin(1, keepdim=True))
        torch.testing.assert_close(steps[f"A_{s}"], a.view_as(steps[f"A_{s}"]))


def test_aux_scale_multiplies_lambda_fixed_and_learnable() -> None:
    from cism_lib.losses import total_loss

    label_q = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 0]])
    label_r = torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 1, 0]])
    co = label_q * label_r
    batch = {"label_q": label_q, "label_r": label_r, "label_co": co,
             "label_q_nc": label_q - co, "label_r_nc": label_r - co}
    for learnable in (False, True):
        torch.manual_seed(0)
        cfg = replace(SMALL, lam=2.0, lam_learnable=learnable)
        model = build_model(cfg, K).eval()
        with torch.no_grad():
            out = model(*_pair(3, batch=3))  # an odd batch: q and r split evenly
            if learnable:
                model.aux_log_var.fill_(0.5)
                out["aux_log_var"] = model.aux_log_var
            losses = total_loss(out, batch, cfg, aux_scale=0.25)
        lam = (torch.exp(torch.tensor(-0.5)) if learnable else torch.tensor(2.0)) * 0.25
        aux = losses["sl"] + losses["csm"] + losses["nsc"]
        assert float(losses["lam"]) == pytest.approx(float(lam), rel=1e-6)
        expected = losses["ml"] + lam * aux + (0.5 if learnable else 0.0)
        assert float(losses["total"]) == pytest.approx(float(expected), rel=1e-6)


def test_pair_labels_keep_both_image_labels() -> None:
    from cism_lib.models.inside import pair_labels

    l_q, l_r = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    labels = pair_labels(l_q, l_r)
    assert labels["l_q"] is l_q and labels["l_r"] is l_r


def test_odd_batches_split_into_query_and_reference_and_cam_logits_are_means() -> None:
    torch.manual_seed(0)
    q, r = _pair(4, batch=3)
    cian = build_model(replace(SMALL, method="cian", self_ml=True), K).eval()
    with torch.no_grad():
        out = cian(q, r)
    for key in ("logits_q", "logits_r", "logits_q_self", "logits_r_self"):
        assert out[key].shape == (3, K), key
    cam_model = build_model(replace(SMALL, method="cam"), K).eval()
    with torch.no_grad():
        single = cam_model(q)
    torch.testing.assert_close(single["logits_q"], single["cam_q"].mean((2, 3)))


def test_model_config_reaches_the_backbone_and_pie_follows_its_consumers(tmp_path) -> None:
    import torchvision.models as tvm

    torch.manual_seed(0)
    torch.save(tvm.resnet18(weights=None).state_dict(), tmp_path / "w.pth")
    model = build_model(replace(SMALL, weights=str(tmp_path / "w.pth"), output_stride=8), K)
    saved = torch.load(tmp_path / "w.pth", weights_only=True)
    assert torch.equal(model.backbone.body.conv1.weight, saved["conv1.weight"])
    assert model.backbone.output_stride == 8
    with torch.no_grad():
        assert model.eval().cam(torch.randn(1, 3, 32, 48)).shape == (1, K, 4, 6)
    # PIE is built when SLSC uses prototypes, even without a paired loss; not without prototypes
    assert build_model(replace(SMALL, losses=("ml", "sl")), K).interaction is not None
    assert build_model(replace(SMALL, losses=("ml", "sl"), use_pv=False), K).interaction is None
