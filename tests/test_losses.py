"""The four losses against their formulas written out by hand, and their combination (Eq. 18)."""
from __future__ import annotations

import math

import pytest
import torch

from cism_lib.config import ModelConfig
from cism_lib.errors import ConfigError
from cism_lib.losses import (csm_loss, multilabel_loss, nsc_loss, single_label_branch,
                             single_label_loss, total_loss)


def _bce(z: float, y: float) -> float:
    """-[y log σ(z) + (1 - y) log(1 - σ(z))]."""
    s = 1 / (1 + math.exp(-z))
    return -(y * math.log(s) + (1 - y) * math.log(1 - s))


def test_multilabel_loss_eq19_20() -> None:
    zq, zr = torch.tensor([[0.0, 2.0]]), torch.tensor([[-1.0, 1.0]])
    lq, lr = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    q = (_bce(0, 1) + _bce(2, 0)) / 2
    r = (_bce(-1, 0) + _bce(1, 1)) / 2
    assert multilabel_loss(zq, zr, lq, lr).item() == pytest.approx((q + r) / 2, rel=1e-5)
    assert multilabel_loss(zq, None, lq, None).item() == pytest.approx(q, rel=1e-5)


def _nll(row: list[float], target: int) -> float:
    return -(row[target] - math.log(sum(math.exp(v) for v in row)))


def test_single_label_loss_eq21_recam_form() -> None:
    rows = [[2.0, 0.0, 1.0], [0.5, 0.5, 0.5], [0.0, -1.0, 3.0]]
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    expected = (_nll(rows[0], 0) + _nll(rows[2], 2)) / 2  # rows of positive classes only
    got = single_label_branch(torch.tensor([rows]), labels)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_single_label_loss_eq21_diag_form_and_mean_of_branches() -> None:
    z = [1.0, 2.0, -1.0]
    labels = torch.tensor([[0.0, 1.0, 1.0]])
    expected = (_nll(z, 1) + _nll(z, 2)) / 2
    assert single_label_branch(torch.tensor([z]), labels).item() == pytest.approx(expected, rel=1e-5)
    z_r = [0.0, 0.0, 0.0]
    both = single_label_loss(torch.tensor([z]), torch.tensor([z_r]), labels, torch.tensor([[1.0, 0, 0]]))
    assert both.item() == pytest.approx((expected + math.log(3)) / 2, rel=1e-5)


def test_single_label_loss_without_positives_is_zero() -> None:
    scores = torch.randn(2, 3, 3, requires_grad=True)
    labels = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    loss = single_label_branch(scores, labels)
    assert loss.item() == pytest.approx(_nll(scores[1, 1].tolist(), 1) / 2, rel=1e-5)
    loss.backward()
    assert torch.isfinite(scores.grad).all() and scores.grad[0].abs().sum() == 0
    zero = single_label_branch(scores, torch.zeros(2, 3))
    assert zero.item() == 0.0


def test_csm_loss_eq24() -> None:
    y, l_co = torch.tensor([[1.5, -0.5]]), torch.tensor([[1.0, 0.0]])
    assert csm_loss(y, l_co).item() == pytest.approx((_bce(1.5, 1) + _bce(-0.5, 0)) / 2, rel=1e-5)


def test_nsc_loss_eq27_with_empty_non_common_set() -> None:
    yq, yr = torch.tensor([[0.3, -2.0]]), torch.tensor([[1.0, 0.0]])
    lq, lr = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]])  # query has nothing non-common
    expected = (_bce(0.3, 0) + _bce(-2, 0)) / 2 + (_bce(1, 1) + _bce(0, 0)) / 2
    loss = nsc_loss(yq, yr, lq, lr)
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(expected, rel=1e-5)


def _out_and_batch() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    out = {k: torch.randn(2, 3) for k in ("logits_q", "logits_r", "y_co", "y_q_nc", "y_r_nc")}
    out["sl_q"], out["sl_r"] = torch.randn(2, 3, 3), torch.randn(2, 3, 3)
    lq = torch.tensor([[1.0, 1, 0], [0, 1, 0]])
    lr = torch.tensor([[1.0, 0, 1], [0, 1, 1]])
    co = lq * lr
    return out, {"label_q": lq, "label_r": lr, "label_co": co, "label_q_nc": lq - co,
                 "label_r_nc": lr - co}


def test_total_loss_eq18() -> None:
    out, batch = _out_and_batch()
    cfg = ModelConfig(lam=0.5)
    got = total_loss(out, batch, cfg)
    assert set(got) == {"ml", "sl", "csm", "nsc", "total", "lam"}
    expected = got["ml"] + 0.5 * (got["sl"] + got["csm"] + got["nsc"])
    assert torch.allclose(got["total"], expected)
    sub = total_loss(out, batch, ModelConfig(losses=("ml", "csm")))
    assert set(sub) == {"ml", "csm", "total", "lam"}
    assert torch.allclose(sub["total"], sub["ml"] + sub["csm"])
    cian = total_loss(out, batch, ModelConfig(method="cian"))  # baselines train with L_ml only
    assert torch.allclose(cian["total"], cian["ml"]) and "sl" not in cian


def test_total_loss_learnable_lambda_and_missing_outputs() -> None:
    out, batch = _out_and_batch()
    out["aux_log_var"] = torch.tensor(math.log(2.0))  # λ = 1/2
    got = total_loss(out, batch, ModelConfig(lam_learnable=True))
    aux = got["sl"] + got["csm"] + got["nsc"]
    assert torch.allclose(got["total"], got["ml"] + 0.5 * aux + math.log(2.0))
    assert got["lam"].item() == pytest.approx(0.5)
    del out["y_co"]
    with pytest.raises(ConfigError, match="csm"):
        total_loss(out, batch, ModelConfig())
