"""The pseudo-mask and DeepLab options of the real-tile chain: IRN's confident band (crf.band),
scoring that skips uncertain pixels, and class-weighted cross-entropy (seg.class_weights)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cism_lib.classes import IGNORE_INDEX
from cism_lib.config import CrfConfig, SegConfig, replace, validate
from cism_lib.crf import _palette, pseudo_mask, score_pseudo_masks, write_index_png
from cism_lib.errors import ConfigError, DataError
from cism_lib.segment import PseudoMaskDataset, class_weights
from tests.fixtures import TOY, ArrayDataset

PLAIN = CrfConfig(enabled=False)  # argmax of the CAM distribution: hand-computable


def _cam(red: list[float], blue: list[float]) -> np.ndarray:
    """A [2, 1, W] CAM of TOY's two foreground classes over one row of pixels."""
    return np.array([[red], [blue]], dtype=np.float32)


def test_band_keeps_confident_foreground_and_background_and_ignores_the_rest() -> None:
    # threshold 0.2, band (0.5, 1.5): foreground needs a CAM above 0.3, background below 0.1.
    cam = _cam([0.05, 0.15, 0.35, 0.60, 0.25], [0.0, 0.0, 0.0, 0.70, 0.0])
    label = np.array([1, 1])
    image = np.zeros((1, 5, 3), np.uint8)
    banded = pseudo_mask(image, cam, label, replace(PLAIN, band=(0.5, 1.5)), bg_threshold=0.2)
    assert banded.tolist() == [[0, IGNORE_INDEX, 1, 2, IGNORE_INDEX]]
    # the band's two masks are the plain masks at 0.1 and 0.3
    assert pseudo_mask(image, cam, label, PLAIN, bg_threshold=0.3).tolist() == [[0, 0, 1, 2, 0]]
    assert pseudo_mask(image, cam, label, PLAIN, bg_threshold=0.1).tolist() == [[0, 1, 1, 2, 1]]


def test_band_one_one_is_the_single_mask_and_ties_stay_background() -> None:
    cam = _cam([0.2, 0.3, 0.1], [0.0, 0.0, 0.25])
    label, image = np.array([1, 1]), np.zeros((1, 3, 3), np.uint8)
    one = pseudo_mask(image, cam, label, PLAIN, bg_threshold=0.2)
    assert one.tolist() == [[0, 1, 2]]  # 0.2 exactly on the threshold is background
    assert np.array_equal(pseudo_mask(image, cam, label, replace(PLAIN, band=(1.0, 1.0)), bg_threshold=0.2), one)
    # a value exactly on the low edge (0.5 x 0.2 = 0.1) is still background there
    banded = pseudo_mask(image, _cam([0.1, 0.3, 0.4], [0, 0, 0]), label, replace(PLAIN, band=(0.5, 1.5)), 0.2)
    assert banded.tolist() == [[0, IGNORE_INDEX, 1]]


def test_band_must_bracket_one() -> None:
    for band in ((1.2, 2.0), (0.5, 0.9), (0.0, 1.0), (0.5,)):
        with pytest.raises(ConfigError, match="band must be"):
            validate(CrfConfig(band=band))
    validate(CrfConfig(band=(0.25, 2.0)))


def test_scoring_skips_uncertain_pixels_and_reports_coverage(tmp_path) -> None:
    gt = np.array([[0, 1, 1, 0], [2, 2, 0, 0]], np.uint8)
    gt_ignored = gt.copy()
    gt_ignored[1, 3] = IGNORE_INDEX  # not scored at all: neither in the matrix nor in coverage
    pred = np.array([[0, IGNORE_INDEX, 1, 1], [2, IGNORE_INDEX, 0, 2]], np.uint8)
    ds = ArrayDataset([gt_ignored])
    write_index_png(tmp_path / f"{ds.ids[0]}.png", pred, _palette(TOY))
    m = score_pseudo_masks(tmp_path, ds)
    # scored pixels: (0,0) bg->bg, (0,2) red->red, (0,3) bg->red, (1,0) blue->blue, (1,2) bg->bg
    assert m["coverage"] == pytest.approx(5 / 7)
    assert m["iou"] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert m["oa"] == pytest.approx(4 / 5)


def _mask_dataset(tmp_path, masks: list[np.ndarray]) -> PseudoMaskDataset:
    ds = ArrayDataset(masks)
    for sid, mask in zip(ds.ids, masks, strict=True):
        write_index_png(tmp_path / f"{sid}.png", mask, _palette(TOY))
    return PseudoMaskDataset(ds, tmp_path)


def test_class_weights_by_hand(tmp_path) -> None:
    # 12 labelled pixels: background 9, red 2, blue 1; 4 pixels ignored (never counted)
    a = np.array([[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 2], [255, 255, 255, 255]], np.uint8)
    ds = _mask_dataset(tmp_path, [a])
    f = np.array([9, 2, 1]) / 12
    assert class_weights(ds, "none") is None
    inv = class_weights(ds, "inverse_sqrt").numpy()
    expect = f ** -0.5 / (f * f ** -0.5).sum()
    assert inv == pytest.approx(expect, rel=1e-6)
    assert (f * inv).sum() == pytest.approx(1.0)
    med = class_weights(ds, "median_frequency").numpy()
    raw = (2 / 12) / f  # the median of (9, 2, 1)/12 is red's frequency
    assert med == pytest.approx(raw / (f * raw).sum(), rel=1e-6)
    assert med[1] / med[0] == pytest.approx(4.5) and inv[2] / inv[0] == pytest.approx(3.0)


def test_class_weights_absent_class_and_all_ignored(tmp_path) -> None:
    ds = _mask_dataset(tmp_path / "a", [np.array([[0, 0, 0, 1]], np.uint8)])
    w = class_weights(ds, "median_frequency").numpy()
    assert w[2] == 0.0 and (np.array([0.75, 0.25, 0.0]) * w).sum() == pytest.approx(1.0)
    empty = _mask_dataset(tmp_path / "b", [np.full((2, 2), 255, np.uint8)])
    with pytest.raises(DataError, match="label no pixel"):
        class_weights(empty, "inverse_sqrt")
    with pytest.raises(ConfigError, match="class_weights must be one of"):
        validate(SegConfig(class_weights="balanced"))


def test_training_step_uses_the_weights_as_a_weighted_mean_over_labelled_pixels() -> None:
    """pixel_loss: Σ w_y·(−log p_y) / Σ w_y over the pixels that are not 255; the loop's epoch
    mean of it is what a DeepLab epoch records."""
    from cism_lib.loop import run_epoch
    from cism_lib.runtime import precision_for
    from cism_lib.segment import pixel_loss

    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 3, 1)
    x, y = torch.randn(1, 3, 2, 3), torch.tensor([[[0, 1, 255], [2, 0, 0]]])
    w = torch.tensor([0.5, 2.0, 3.0])
    with torch.no_grad():
        logp = model(x).log_softmax(1)[0]
    terms = [(w[c] * -logp[c, i, j], w[c]) for i in range(2) for j in range(3)
             if (c := int(y[0, i, j])) != IGNORE_INDEX]
    expect = sum(t for t, _ in terms).item() / sum(v for _, v in terms).item()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    batches = [{"image": x, "mask": y}]
    cpu = torch.device("cpu")
    precision = precision_for(cpu, False)
    weighted = {"loss": run_epoch(model, batches, lambda b: pixel_loss(model, b, cpu, precision, w), opt, sched,
                                  progress=False).losses["total"]}
    plain = {"loss": run_epoch(model, batches, lambda b: pixel_loss(model, b, cpu, precision), opt, sched,
                               progress=False).losses["total"]}
    assert weighted["loss"] == pytest.approx(expect, rel=1e-5)
    unweighted = -sum(logp[c, i, j] for i in range(2) for j in range(3)
                      if (c := int(y[0, i, j])) != IGNORE_INDEX).item() / 5
    assert plain["loss"] == pytest.approx(unweighted, rel=1e-5)
    assert not math.isclose(weighted["loss"], plain["loss"], rel_tol=1e-3)
