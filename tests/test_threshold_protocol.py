"""The background-threshold protocol's edge cases: mIoU (not OA) picks the threshold, and CAM
values exactly on a threshold are background in the sweep, cam_to_labels and the pseudo-masks."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cism_lib.cam import cam_to_labels, save_cam
from cism_lib.config import CrfConfig
from cism_lib.crf import make_pseudo_masks, pseudo_mask, score_pseudo_masks
from cism_lib.metrics import evaluate_cams, sweep_threshold
from tests.fixtures import ArrayDataset


def Split(masks: list[np.ndarray], split: str) -> ArrayDataset:
    """A two-foreground-class split over in-memory masks (black images, ids `<split>_0`, ...)."""
    return ArrayDataset(masks, split=split, id_format="{split}_{i}")


def _miou_oa_disagree(tmp_path, split: str) -> Split:
    """10 × 10: row 0 is red (CAM 0.5); 12 background pixels are confusers (CAM 0.4); blue nowhere.

    t = 0.3: 22 pixels red, 10 right → IoU bg 78/90, red 10/22; mIoU 0.661, OA 0.88.
    t = 0.95: all background → IoU bg 0.9, red 0; mIoU 0.45, OA 0.90. OA prefers 0.95, mIoU 0.3.
    """
    mask = np.zeros((10, 10), np.uint8)
    mask[0] = 1
    cam = np.zeros((2, 10, 10), np.float32)
    cam[0, 0] = 0.5
    cam[0, 1], cam[0, 2, :2] = 0.4, 0.4
    ds = Split([mask], split)
    save_cam(tmp_path / f"{ds.ids[0]}.npz", cam, np.array([1, 1]))
    return ds


def test_threshold_is_chosen_by_miou_where_oa_peaks_elsewhere(tmp_path) -> None:
    select, report = _miou_oa_disagree(tmp_path, "val"), _miou_oa_disagree(tmp_path, "test")
    thresholds = (0.3, 0.95)
    sweep = sweep_threshold(tmp_path, select, thresholds)
    assert sweep["miou"].tolist() == pytest.approx([(78 / 90 + 10 / 22) / 2, 0.45])
    assert sweep["oa"].tolist() == pytest.approx([0.88, 0.90])
    assert sweep["oa"].idxmax() != sweep["miou"].idxmax()
    result = evaluate_cams(tmp_path, report, select, thresholds)
    assert result["protocol"]["threshold"] == 0.3
    assert result["miou"] == pytest.approx((78 / 90 + 10 / 22) / 2) and result["oa"] == pytest.approx(0.88)
    assert math.isnan(result["iou"][2])  # blue: in neither gt nor prediction
    assert result["all_background_miou"] == pytest.approx(0.45)


# ---------------------------------------------------------------- ties go to background

# CAM values on an fp16-exact grid, so storage does not move them off the thresholds.
GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
THRESHOLDS = (0.25, 0.5, 0.75)


def _tied_cam(seed: int) -> np.ndarray:
    """[2, 6, 7] CAM on GRID with ties between the two classes and with every threshold."""
    rng = np.random.default_rng(seed)
    cam = rng.choice(GRID, size=(2, 6, 7)).astype(np.float32)
    cam[:, 0, 0] = 0.5   # both classes exactly on 0.5
    cam[:, 0, 1] = 0.25  # both on 0.25
    cam[0, 0, 2], cam[1, 0, 2] = 0.75, 0.25
    return cam


def test_cam_to_labels_ties_hand_values() -> None:
    cam = np.array([[[0.5, 0.25, 0.75]], [[0.5, 0.5, 0.1]]], np.float32)
    assert cam_to_labels(cam, 0.5).tolist() == [[0, 0, 1]]      # == threshold → background
    assert cam_to_labels(cam, 0.25).tolist() == [[1, 2, 1]]     # tie between classes → the first
    assert cam_to_labels(cam[:0], 0.25).tolist() == [[0, 0, 0]]  # no class present


@pytest.mark.parametrize("t", THRESHOLDS)
def test_ties_give_identical_labels_in_sweep_labels_and_pseudo_masks(tmp_path, t: float) -> None:
    cams = [_tied_cam(s) for s in range(3)]
    expected = [cam_to_labels(c, t) for c in cams]
    assert all((c.max(0) == t).any() and not (e[c.max(0) == t]).any() for c, e in zip(cams, expected))
    ds = Split(expected, "sel")  # ground truth = the labels cam_to_labels promises at t
    label = np.array([1, 1])
    for sid, cam in zip(ds.ids, cams):
        save_cam(tmp_path / f"{sid}.npz", cam, label)
    sweep = sweep_threshold(tmp_path, ds, THRESHOLDS).set_index("threshold")["oa"]
    assert sweep[t] == 1.0 and (sweep.drop(t) < 1.0).all()  # same labels at t, and only at t
    off = CrfConfig(enabled=False)
    for cam, want in zip(cams, expected):
        np.testing.assert_array_equal(pseudo_mask(np.zeros((6, 7, 3), np.uint8), cam, label, off, t), want)
    out = tmp_path / "masks"
    make_pseudo_masks(tmp_path, ds, out, off, t, workers=1, progress=False)
    assert score_pseudo_masks(out, ds)["oa"] == 1.0
