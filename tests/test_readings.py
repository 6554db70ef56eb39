"""Readings added to test why CISM trails its baselines (issue 13): self-paired L_ml, the sum
reduction of the soft-margin losses, and starting a classifier from another one's checkpoint."""
from __future__ import annotations

import math

import pytest
import torch

from cism_lib.config import ModelConfig, RunConfig, replace
from cism_lib.errors import CheckpointError
from cism_lib.losses import multilabel_loss, soft_margin, total_loss
from cism_lib.models import build_model
from tests.fixtures import pair_batch


def test_soft_margin_sum_is_the_sum_over_classes_of_the_hand_bce() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])

    def bce(x: float, y: float) -> float:
        p = 1 / (1 + math.exp(-x))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    per_image = [sum(bce(float(x), float(y)) for x, y in zip(lr, la)) for lr, la in zip(logits, labels)]
    assert float(soft_margin(logits, labels, "sum")) == pytest.approx(sum(per_image) / 2, rel=1e-6)
    assert float(soft_margin(logits, labels)) == pytest.approx(sum(per_image) / 6, rel=1e-6)
    with pytest.raises(ValueError, match="unknown loss reduction"):
        soft_margin(logits, labels, "max")


def test_sum_reduction_scales_ml_csm_nsc_by_k_but_not_sl() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet18", weights=None, proto_dim=8)
    model = build_model(cfg, 3).eval()
    batch = pair_batch(1)
    with torch.no_grad():
        out = model(batch["image_q"], batch["image_r"])
    mean = total_loss(out, batch, cfg)
    summed = total_loss(out, batch, replace(cfg, loss_reduction="sum"))
    for k in ("ml", "csm", "nsc"):
        assert float(summed[k]) == pytest.approx(3 * float(mean[k]), rel=1e-5)
    assert float(summed["sl"]) == pytest.approx(float(mean["sl"]), rel=1e-6)


@pytest.mark.parametrize("method", ["cian", "cism"])
def test_self_ml_averages_the_cross_and_the_test_time_self_paired_loss(method: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(method=method, backbone="resnet18", weights=None, proto_dim=8, self_ml=True,
                      losses=("ml",))
    model = build_model(cfg, 3).train()
    with torch.no_grad():  # a non-identity affinity, so self and cross pairs differ
        model.affinity.out[1].weight.fill_(0.5)
    batch = pair_batch(1)
    out = model(batch["image_q"], batch["image_r"])
    cross = multilabel_loss(out["logits_q"], out["logits_r"], batch["label_q"], batch["label_r"])
    own = multilabel_loss(out["logits_q_self"], out["logits_r_self"], batch["label_q"], batch["label_r"])
    assert not torch.allclose(cross, own)
    loss = total_loss(out, batch, cfg)
    assert float(loss["ml"].detach()) == pytest.approx(float((cross + own).detach() / 2), rel=1e-6)
    loss["total"].backward()
    assert model.affinity.query.weight.grad.abs().sum() > 0
    plain = build_model(replace(cfg, self_ml=False), 3).train()
    assert "logits_q_self" not in plain(batch["image_q"], batch["image_r"])


def test_init_from_copies_the_shared_layers_of_a_cam_checkpoint(tmp_path) -> None:
    from cism_lib.engine import CKPT_NAME, init_from_checkpoint, train_classifier

    base = replace(RunConfig(), **{"device": "cpu", "threads": 1, "model.method": "cam",
                                   "model.backbone": "resnet18", "model.weights": None,
                                   "train.epochs": 1, "train.batch_size": 2, "train.amp": False})

    class Items(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> dict:
            b = pair_batch(1)
            return {"image_q": b["image_q"][i % 2], "label_q": b["label_q"][i % 2]}

    cam, _ = train_classifier(base, Items(), 3, tmp_path, progress=False)
    cism = build_model(replace(base.model, method="cism", proto_dim=8), 3)
    copied = init_from_checkpoint(cism, tmp_path / CKPT_NAME)
    assert "classifier.weight" in copied and any(k.startswith("backbone.") for k in copied)
    assert not any(k.startswith(("prototype.", "psi.", "affinity.")) for k in copied)
    for name, value in cam.state_dict().items():
        assert torch.equal(cism.state_dict()[name], value)
    other = build_model(ModelConfig(method="cam", backbone="resnet34", weights=None), 3)
    with pytest.raises(CheckpointError, match="shares no classifier weights"):
        init_from_checkpoint(replace_classifier(other), tmp_path / CKPT_NAME)


def replace_classifier(model: torch.nn.Module) -> torch.nn.Module:
    """A model whose classifier has another width, so nothing named classifier.* fits."""
    model.classifier = torch.nn.Conv2d(7, 3, 1, bias=False)
    return model


class _Pairs(torch.utils.data.Dataset):
    """Four pair items cut from pair_batch(1)."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        return {k: v[i % 2] for k, v in pair_batch(1).items()}


def test_gradient_probe_measures_each_loss_and_leaves_training_unchanged(tmp_path) -> None:
    from cism_lib.engine import gradient_probe, train_classifier
    from cism_lib.runtime import precision_for

    cfg = replace(RunConfig(), **{"device": "cpu", "threads": 1, "model.method": "cism",
                                  "model.backbone": "resnet18", "model.weights": None, "model.proto_dim": 8,
                                  "train.epochs": 2, "train.batch_size": 2, "train.amp": False})
    plain, _ = train_classifier(cfg, _Pairs(), 3, tmp_path / "plain", progress=False)
    probed, probed_history = train_classifier(replace(cfg, **{"train.grad_probe": True}), _Pairs(), 3, tmp_path / "probed",
                              progress=False)
    for (name, a), b in zip(plain.state_dict().items(), probed.state_dict().values()):
        assert torch.equal(a, b), name  # same weights and BatchNorm statistics after 2 epochs
    record = probed_history[-1]
    assert {f"grad_cos_{k}" for k in ("sl", "csm", "nsc")} <= record.keys() and "grad_cos_ml" not in record
    # the norm of L_ml's backbone gradient, computed by hand on a batch
    batch = pair_batch(2)
    model = probed.train()
    loss_fn = lambda out, b: total_loss(out, b, cfg.model)  # noqa: E731
    probe = gradient_probe(model, batch, loss_fn, precision_for("cpu", False))
    model.zero_grad()  # (L_ml does not depend on the gate's random draw)
    loss_fn(model(batch["image_q"], batch["image_r"]), batch)["ml"].backward()
    by_hand = torch.cat([p.grad.reshape(-1) for p in model.backbone.parameters() if p.grad is not None]).norm()
    assert probe["grad_norm_ml"] == pytest.approx(float(by_hand), rel=1e-4)
    assert -1 <= probe["grad_cos_sl"] <= 1 and probe["grad_norm_sl"] > 0


def test_centred_similarities_ignore_a_shared_offset_and_plain_ones_do_not() -> None:
    from cism_lib.models.pie import matching_maps, pair_centred
    from cism_lib.models.slsc import prototype_similarity

    g = torch.Generator().manual_seed(0)
    x_q, x_r = torch.randn(2, 5, 3, 4, generator=g), torch.randn(2, 5, 4, 3, generator=g)
    shift = 3 * torch.rand(2, 5, 1, 1, generator=g)  # one offset per pair, as sigma(.) adds
    cq, cr = pair_centred(x_q, x_r)
    assert torch.allclose(torch.cat([cq.flatten(2), cr.flatten(2)], 2).mean(2), torch.zeros(2, 5), atol=1e-6)
    for a, b in zip(matching_maps(x_q, x_r, "affine", centre=True),
                    matching_maps(x_q + shift, x_r + shift, "affine", centre=True)):
        assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(matching_maps(x_q, x_r, "affine")[0], matching_maps(x_q + shift, x_r + shift, "affine")[0])
    protos = torch.randn(2, 3, 5, generator=g)
    centred = prototype_similarity(protos, x_q, centre=True)
    assert torch.allclose(centred, prototype_similarity(protos + shift[:, None, :, 0, 0], x_q + shift, centre=True),
                          atol=1e-5)
    # by hand: pixel (0, 0), class 1 of image 0
    mean = x_q[0].mean((1, 2))
    cos = torch.nn.functional.cosine_similarity(protos[0, 1] - mean, x_q[0, :, 0, 0] - mean, dim=0)
    assert float(centred[0, 1, 0, 0]) == pytest.approx(max(float(cos), 0.0), abs=1e-6)


def test_sim_centre_changes_the_cism_heads_only() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(method="cism", backbone="resnet18", weights=None, proto_dim=8)
    plain = build_model(cfg, 3).eval()
    centred = build_model(replace(cfg, sim_centre=True), 3).eval()
    centred.load_state_dict(plain.state_dict())
    b = pair_batch(3)
    with torch.no_grad():
        p, c = plain(b["image_q"], b["image_r"]), centred(b["image_q"], b["image_r"])
    assert torch.equal(p["cam_q"], c["cam_q"]) and not torch.allclose(p["y_co"], c["y_co"])
    assert not torch.allclose(p["sl_q"], c["sl_q"])


def test_warmup_scale_ramps_linearly_then_stays_one() -> None:
    from cism_lib.losses import warmup_scale

    assert [warmup_scale(s, 10, 0.5) for s in (0, 1, 4, 5, 9)] == pytest.approx([0.0, 0.2, 0.8, 1.0, 1.0])
    assert warmup_scale(0, 10, 0.0) == 1.0 and warmup_scale(3, 10, 1.0) == pytest.approx(0.3)
    from cism_lib.config import TrainConfig, validate
    from cism_lib.errors import ConfigError

    with pytest.raises(ConfigError, match="aux_warmup must be in"):
        validate(TrainConfig(aux_warmup=1.5))


def test_aux_scale_multiplies_lambda_only() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet18", weights=None, proto_dim=8, lam=0.8)
    model = build_model(cfg, 3).eval()
    batch = pair_batch(1)
    with torch.no_grad():
        out = model(batch["image_q"], batch["image_r"])
    full, off, half = (total_loss(out, batch, cfg, aux_scale=a) for a in (1.0, 0.0, 0.5))
    aux = sum(float(full[k]) for k in ("sl", "csm", "nsc"))
    assert float(off["total"]) == pytest.approx(float(full["ml"]), rel=1e-6)
    assert float(half["total"]) == pytest.approx(float(full["ml"]) + 0.4 * aux, rel=1e-5)
    assert float(half["lam"]) == pytest.approx(0.4) and float(full["lam"]) == pytest.approx(0.8)


def test_training_with_warmup_logs_the_ramped_lambda(tmp_path) -> None:
    """Over one epoch of T = 2 steps with aux_warmup 1, λ is 0 then λ/2: the logged mean is λ/4."""
    from cism_lib.engine import train_classifier

    cfg = replace(RunConfig(), **{"device": "cpu", "threads": 1, "model.method": "cism",
                                  "model.backbone": "resnet18", "model.weights": None, "model.proto_dim": 8,
                                  "model.lam": 0.8, "train.epochs": 1, "train.batch_size": 2,
                                  "train.amp": False, "train.aux_warmup": 1.0})
    _, history = train_classifier(cfg, _Pairs(), 3, tmp_path, progress=False)
    assert history[0]["lam"] == pytest.approx(0.2)
    _, plain = train_classifier(replace(cfg, **{"train.aux_warmup": 0.0}), _Pairs(), 3, tmp_path / "p", progress=False)
    assert plain[0]["lam"] == pytest.approx(0.8)


def test_init_from_runs_are_named_by_the_starting_weights_not_their_path(tmp_path) -> None:
    import shutil

    from cism_lib.engine import CKPT_NAME, train_classifier
    from cism_lib.pipeline import run_dir

    base = replace(RunConfig(), **{"device": "cpu", "threads": 1, "model.method": "cam",
                                   "model.backbone": "resnet18", "model.weights": None,
                                   "train.epochs": 1, "train.batch_size": 2, "train.amp": False,
                                   "out_dir": str(tmp_path / "runs")})
    train_classifier(base, _Pairs(), 3, tmp_path / "a", progress=False)
    shutil.copy(tmp_path / "a" / CKPT_NAME, tmp_path / "copy.pt")
    train_classifier(replace(base, **{"train.seed": 1}), _Pairs(), 3, tmp_path / "b", progress=False)
    cism = replace(base, **{"model.method": "cism", "model.proto_dim": 8})
    at = {name: run_dir(replace(cism, **{"train.init_from": str(path)}))
          for name, path in (("a", tmp_path / "a" / CKPT_NAME), ("copy", tmp_path / "copy.pt"),
                             ("b", tmp_path / "b" / CKPT_NAME))}
    assert at["a"] == at["copy"] != at["b"] and at["a"] != run_dir(cism)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        run_dir(replace(cism, **{"train.init_from": str(tmp_path / "missing.pt")}))


def test_screen_row_from_another_row_trains_that_row_first(tmp_path, monkeypatch) -> None:
    from cism_lib import experiments as ex
    from cism_lib.config import load_config
    from cism_lib.engine import CKPT_NAME
    from cism_lib.pipeline import run_dir

    monkeypatch.setenv("CISM_DATA_DIR", str(tmp_path / "data"))
    base = load_config("configs/smoke.yaml", {
        "data.synth_train": 8, "data.synth_val": 4, "data.synth_size": 64, "data.crop_size": 64,
        "model.backbone": "resnet18", "model.weights": None, "model.proto_dim": 8, "train.epochs": 1,
        "train.batch_size": 4, "train.amp": False, "threads": 1, "out_dir": str(tmp_path / "runs")})
    known = {r.label: r for r in ex.SCREEN}
    cfg = ex._screen_row_config(known["CISM from the CAM run"], 0, base, known, progress=False)
    cam_rd = run_dir(ex.row_config(known["CAM"], seed=0, base=base, table="screen"))
    assert cfg.train.init_from == str(cam_rd / "train" / CKPT_NAME) and (cam_rd / "train" / CKPT_NAME).is_file()
    assert cfg.model.method == "cism" and cfg.train.seed == 0
    bad = ex.Row("loop", {"model.method": "cism", "train.init_from": "@screen:loop"})
    with pytest.raises(ex.ConfigError, match="names no other screen row"):
        ex._screen_row_config(bad, 0, base, {**known, "loop": bad}, progress=False)


def test_cam_sources_score_the_features_with_wc_the_scorer_or_their_product() -> None:
    import torch.nn.functional as F

    from cism_lib.errors import ConfigError

    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet18", weights=None, proto_dim=8, sl_scorer="separate")
    model = build_model(cfg, 3).eval()
    images = pair_batch(1)["image_q"]
    with torch.no_grad():
        feats = model.backbone(images)
        feats = model.affinity(feats, feats)
        w_c, w_s = model.classifier.weight, model.sl_classifier.weight
        assert not torch.allclose(w_c, w_s)
        expect = {"classifier": F.conv2d(feats, w_c), "slsc": F.conv2d(feats, w_s),
                  "product": F.conv2d(feats, w_c * w_s)}
        for source, value in expect.items():
            model.cam_source = source
            got = model.cam(images)
            assert torch.allclose(got, value.clamp_min(0), atol=1e-6), source
            assert (got == 0).any() and (got > 0).any()  # the ReLU acted
        model.cam_source = "mean"
        with pytest.raises(ConfigError, match="cam source must be one of"):
            model.cam(images)
    literal = build_model(replace(cfg, sl_scorer="cam"), 3).eval()
    literal.cam_source = "slsc"
    with pytest.raises(ConfigError, match="needs the separate SLSC scorer"):
        literal.cam(images)


@pytest.mark.parametrize("pv, pie", [(True, True), (True, False), (False, False)])
def test_specific_cam_is_the_eq14_weighting_of_an_image_paired_with_itself(pv, pie) -> None:
    from cism_lib.errors import ConfigError
    from cism_lib.models.slsc import normalise_cam

    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet18", weights=None, proto_dim=8, use_pv=pv, use_pie=pie)
    model = build_model(cfg, 3).eval()
    images = pair_batch(2)["image_q"]
    keep: dict = {}
    with torch.no_grad():
        out = model(images, images, keep=keep)  # the training path, the image as its own reference
        model.cam_source = "specific"
        got = model.cam(images)
    assert got.shape == out["cam_q"].shape
    assert torch.allclose(got, keep["mask_q"], atol=1e-6)
    m = normalise_cam(out["cam_q"])
    if pv:  # M weighted by a similarity in [0, 1]: never above M, below it somewhere
        assert (got <= m + 1e-6).all() and (got < m - 1e-3).any()
    else:  # without prototypes Eq. 14's weighting is M itself
        assert torch.allclose(got, m, atol=1e-6)
    plain = build_model(replace(cfg, method="cam"), 3).eval()
    plain.cam_source = "specific"
    with pytest.raises(ConfigError, match="cam source 'specific' is CISM's"):
        plain.cam(images)


def test_balanced_ratio_is_the_ratio_of_the_backbone_gradient_norms() -> None:
    from cism_lib.engine import balanced_ratio

    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet18", weights=None, proto_dim=8)
    model = build_model(cfg, 3).train()
    batch = pair_batch(1)
    losses = total_loss(model(batch["image_q"], batch["image_r"]), batch, cfg)
    params = [p for p in model.backbone.parameters() if p.requires_grad]

    def norm(v: torch.Tensor) -> float:
        grads = torch.autograd.grad(v, params, retain_graph=True, allow_unused=True)
        return float(torch.cat([g.reshape(-1).double() for g in grads if g is not None]).norm())

    expect = norm(losses["ml"]) / norm(losses["sl"] + losses["csm"] + losses["nsc"])
    assert balanced_ratio(losses, model) == pytest.approx(expect, rel=1e-4)
    assert expect != pytest.approx(1.0, rel=0.05)
    losses["total"].backward()  # the step's own graph is still there
    assert balanced_ratio({"ml": losses["ml"].detach()}, model) == 1.0


def test_training_with_a_balanced_lambda_logs_the_ratio_and_scales_lambda(tmp_path) -> None:
    from cism_lib.engine import train_classifier
    from cism_lib.errors import ConfigError

    cfg = replace(RunConfig(), **{"device": "cpu", "threads": 1, "model.method": "cism",
                                  "model.backbone": "resnet18", "model.weights": None, "model.proto_dim": 8,
                                  "model.lam": 0.5, "train.epochs": 1, "train.batch_size": 2,
                                  "train.amp": False, "train.lam_balance_every": 1})
    record = train_classifier(cfg, _Pairs(), 3, tmp_path, progress=False)[1][0]
    assert record["lam_ratio"] > 0 and record["lam_ratio"] != pytest.approx(1.0, rel=0.01)
    # measured every step: the logged λ is 0.5 x the ratio at each step (means over the 2 steps)
    assert record["lam"] == pytest.approx(0.5 * record["lam_ratio"], rel=1e-5)
    with pytest.raises(ConfigError, match="choose one"):
        train_classifier(replace(cfg, **{"model.lam_learnable": True}), _Pairs(), 3, tmp_path / "x", progress=False)
