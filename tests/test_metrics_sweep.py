"""The threshold sweep and evaluate_cams beyond the hand cases of test_cam_metrics: label
values outside the class range, float32 comparisons, no foreground class, the records kept."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cism_lib.cam import cam_to_labels, load_cam, save_cam, write_cam_meta
from cism_lib.classes import ClassSet
from cism_lib.config import CamConfig
from cism_lib.metrics import ConfusionMatrix, _sweep_matrices, evaluate_cams, sweep_threshold, write_metrics
from tests.fixtures import ArrayDataset

BG_ONLY = ClassSet(name="bg", names=("background",), palette=((0, 0, 0),))


def _reference(tmp_path, ds: ArrayDataset, t: float) -> ConfusionMatrix:
    """One ConfusionMatrix.update per image with cam_to_labels at t (the plain rule)."""
    ref = ConfusionMatrix(ds.classes.num_classes)
    for i, sid in enumerate(ds.ids):
        cam, _ = load_cam(tmp_path / f"{sid}.npz", ds.classes.num_foreground)
        ref.update(ds.masks[i], cam_to_labels(cam, t))
    return ref


def test_sweep_skips_ground_truth_values_outside_the_classes_like_the_matrix(tmp_path) -> None:
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 3, (6, 8)).astype(np.uint8)
    mask[0, :3] = 3    # == num_classes: not a class
    mask[1, :2] = 7    # unknown value, not the ignore index
    mask[2, 0] = 255   # the ignore index
    ds = ArrayDataset([mask], split="odd")
    save_cam(tmp_path / f"{ds.ids[0]}.npz", rng.random((2, 6, 8)).astype(np.float32), np.array([1, 1]))
    thresholds = (0.2, 0.6)
    for t, cm in zip(thresholds, _sweep_matrices(tmp_path, ds, thresholds)):
        assert cm.mat.dtype == torch.int64  # integer pixel counts
        assert torch.equal(cm.mat, _reference(tmp_path, ds, t).mat)
        assert int(cm.mat.sum()) == 48 - 6


def test_sweep_compares_in_float32_like_cam_to_labels(tmp_path) -> None:
    # 0.5 - 1e-12 is below 0.5 in float64 but equal to it in float32: a CAM of exactly 0.5 is a
    # tie (background) for cam_to_labels, and must be for the sweep too.
    t = 0.5 - 1e-12
    cam = np.full((2, 2, 3), 0.5, np.float32)
    cam[1, 1] = 0.0
    assert (cam_to_labels(cam, t) == 0).all()
    ds = ArrayDataset([np.zeros((2, 3), np.uint8)], split="tie")
    save_cam(tmp_path / f"{ds.ids[0]}.npz", cam, np.array([1, 1]))
    (cm,) = _sweep_matrices(tmp_path, ds, [t])
    assert torch.equal(cm.mat, _reference(tmp_path, ds, t).mat)
    assert cm.compute()["oa"] == 1.0


def test_sweep_and_evaluation_without_foreground_classes(tmp_path) -> None:
    # Background-only class set: CAM files hold no class; every pixel is background at every
    # threshold, a negative one included (score 0 > -0.5 picks the best class, which is background).
    masks = [np.zeros((3, 4), np.uint8), np.array([[0, 0, 255, 0]] * 2, np.uint8)]
    ds = ArrayDataset(masks, classes=BG_ONLY, split="empty")
    for sid, m in zip(ds.ids, masks):
        save_cam(tmp_path / f"{sid}.npz", np.zeros((0, *m.shape), np.float32), np.zeros(0))
    thresholds = (-0.5, 0.0, 0.5)
    for t, cm in zip(thresholds, _sweep_matrices(tmp_path, ds, thresholds)):
        assert cm.mat.tolist() == [[18]], t
        assert torch.equal(cm.mat, _reference(tmp_path, ds, t).mat)
    result = evaluate_cams(tmp_path, ds, ds, thresholds)
    assert result["miou"] == 1.0 and result["protocol"]["threshold"] == -0.5  # first of the ties
    assert cam_to_labels(np.zeros((0, 2, 2), np.float32), 0.5).dtype == np.uint8
    assert cam_to_labels(np.ones((2, 2, 2), np.float32), 0.5).dtype == np.uint8


def test_sweep_matrices_are_full_confusion_matrices(tmp_path) -> None:
    ds = ArrayDataset([np.array([[0, 1], [2, 1]], np.uint8)], split="acc")
    save_cam(tmp_path / f"{ds.ids[0]}.npz", np.array([[[0.1, 0.9], [0.2, 0.3]],
                                                       [[0.0, 0.1], [0.8, 0.2]]], np.float32), np.array([1, 1]))
    (cm,) = _sweep_matrices(tmp_path, ds, [0.5])
    assert cm.mat.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    cm.update(np.array([0, 2]), np.array([0, 2]))  # they keep accumulating like any matrix
    assert cm.compute()["confusion"] == [[2, 0, 0], [1, 1, 0], [0, 0, 2]]


def test_sweep_table_columns_and_macc(tmp_path) -> None:
    ds = ArrayDataset([np.array([[0, 1], [2, 1]], np.uint8)], split="acc")
    save_cam(tmp_path / f"{ds.ids[0]}.npz", np.array([[[0.1, 0.9], [0.2, 0.3]],
                                                       [[0.0, 0.1], [0.8, 0.2]]], np.float32), np.array([1, 1]))
    sweep = sweep_threshold(tmp_path, ds, (0.25, 0.5))
    assert list(sweep.columns) == ["threshold", "miou", "oa", "macc"]
    # t = 0.25: labels [[0, 1], [2, 1]] (all right); t = 0.5: [[0, 1], [2, 0]] → acc (1, 1/2, 1)
    assert sweep["macc"].tolist() == pytest.approx([1.0, 2.5 / 3])
    empty = sweep_threshold(tmp_path, ds, ())
    assert list(empty.columns) == ["threshold", "miou", "oa", "macc"] and len(empty) == 0


class _NoSplit:
    """A dataset without a `split` attribute (protocol records name its class instead)."""

    def __init__(self, inner: ArrayDataset) -> None:
        self.inner = inner
        self.classes, self.ids, self.labels = inner.classes, inner.ids, inner.labels

    def __len__(self) -> int:
        return len(self.inner)

    def read_mask(self, i: int) -> np.ndarray:
        return self.inner.read_mask(i)


def test_evaluate_cams_records_cam_settings_split_names_and_the_sweep(tmp_path) -> None:
    ds = ArrayDataset([np.array([[0, 1], [2, 1]], np.uint8)], split="acc")
    save_cam(tmp_path / f"{ds.ids[0]}.npz", np.array([[[0.1, 0.9], [0.2, 0.3]],
                                                       [[0.0, 0.1], [0.8, 0.2]]], np.float32), np.array([1, 1]))
    unknown = evaluate_cams(tmp_path, ds, ds, (0.25,))
    assert unknown["protocol"]["scales"] is None and unknown["protocol"]["flip"] is None
    write_cam_meta(tmp_path, CamConfig(scales=(0.5, 1.0), flip=False))
    result = evaluate_cams(tmp_path, _NoSplit(ds), ds, (0.25, 0.5))
    assert result["protocol"]["scales"] == [0.5, 1.0] and result["protocol"]["flip"] is False
    assert result["protocol"]["reported_split"] == "_NoSplit"
    assert result["protocol"]["threshold_selected_on"] == "acc"
    assert [r["threshold"] for r in result["sweep"]] == [0.25, 0.5]
    assert result["sweep"][0]["miou"] == pytest.approx(1.0)


def test_write_metrics_names_classes_by_id_without_class_names(tmp_path) -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1, 2]), np.array([0, 1, 1]))
    _, csv_path = write_metrics(cm.compute(), tmp_path, "m")
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "class_id,class,iou,acc,fp,fn"
    assert [line.split(",")[:2] for line in lines[1:]] == [["0", "0"], ["1", "1"], ["2", "2"]]
    assert math.isclose(float(lines[2].split(",")[2]), 0.5)
    # class 1 predicted on class 2's pixel: half its union false positive; class 2 all false negative
    assert [float(v) for v in lines[2].split(",")[4:]] == [0.5, 0.0]
    assert [float(v) for v in lines[3].split(",")[4:]] == [0.0, 1.0]


# ---------------------------------------------------------------- ConfusionMatrix edges


def test_confusion_matrix_skips_values_outside_the_classes_and_a_custom_ignore_index() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1, 3, 7, 255, 2]), np.array([0, 1, 0, 0, 0, 2]))  # 3 and 7: no class
    assert cm.compute()["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    ignore_one = ConfusionMatrix(3, ignore_index=1)
    ignore_one.update(np.array([0, 1, 2]), np.array([0, 2, 2]))
    assert ignore_one.compute()["confusion"] == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]


def test_confusion_matrix_single_pixel_classes_and_integer_empty_matrix() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 0, 1, 2]), np.array([0, 0, 1, 0]))  # class 1: one pixel, right
    m = cm.compute()
    assert m["iou"] == pytest.approx([2 / 3, 1.0, 0.0]) and m["acc"] == pytest.approx([1.0, 1.0, 0.0])
    empty = ConfusionMatrix(2).compute()["confusion"]
    assert empty == [[0, 0], [0, 0]] and all(type(v) is int for row in empty for v in row)


# ---------------------------------------------------------------- CAM files


def test_cam_file_format_and_tensor_inputs_with_grad(tmp_path) -> None:
    cam = torch.rand(3, 4, 5, requires_grad=True)  # e.g. straight from a model
    save_cam(tmp_path / "c.npz", cam, torch.tensor([1.0, 0.0, 1.0]))
    with np.load(tmp_path / "c.npz") as data:
        assert data["keys"].dtype == np.int16 and data["keys"].tolist() == [1, 3]
        assert data["cams"].dtype == np.float16 and data["cams"].shape == (2, 4, 5)
    loaded, label = load_cam(tmp_path / "c.npz", 3)
    assert label.dtype == bool and label.tolist() == [True, False, True]
    np.testing.assert_allclose(loaded[[0, 2]], cam.detach().numpy()[[0, 2]], atol=5e-4)
