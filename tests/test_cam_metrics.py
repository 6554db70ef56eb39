"""CAM inference and storage, the confusion matrix and the honest threshold protocol."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cism_lib.cam import cam_to_labels, load_cam, make_cams, multiscale_cam, save_cam
from cism_lib.config import CamConfig
from cism_lib.errors import ConfigError, DataError
from cism_lib.metrics import ConfusionMatrix, evaluate_cams, stored_metrics, sweep_threshold, write_metrics
from tests.fixtures import TOY, ArrayDataset


class ToyDataset(ArrayDataset):
    """In-memory images and masks (ids `<split>_000`, ...)."""

    def __init__(self, images: list[np.ndarray], masks: list[np.ndarray], split: str = "toy") -> None:
        super().__init__(masks, images, split)


class PoolCam(nn.Module):
    """Fake classifier: CAM of class k = relu(channel k) average-pooled at stride 16."""

    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.k, self.calls, self.sizes = k, 0, []

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.sizes.append(tuple(x.shape))
        return F.avg_pool2d(F.relu(x[:, : self.k]), 16)


class RampCam(nn.Module):
    """Fake classifier whose CAM is a left-to-right ramp regardless of the image."""

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        ramp = torch.linspace(0, 1, w // 16).expand(b, 1, h // 16, w // 16)
        return ramp.repeat(1, 2, 1, 1)


# ---------------------------------------------------------------- ConfusionMatrix

GT = np.array([0, 0, 0, 1, 1, 2, 2, 2, 255])
PRED = np.array([0, 0, 1, 1, 1, 2, 0, 2, 1])


def test_confusion_matrix_hand_computed() -> None:
    cm = ConfusionMatrix(3)
    cm.update(GT, PRED)
    m = cm.compute()
    assert m["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]  # the ignored pixel is dropped
    # IoU: class 0: 2/(3+3-2); class 1: 2/(2+3-2); class 2: 2/(3+2-2)
    assert m["iou"] == pytest.approx([0.5, 2 / 3, 2 / 3])
    assert m["miou"] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    assert m["oa"] == pytest.approx(6 / 8)
    assert m["acc"] == pytest.approx([2 / 3, 1.0, 2 / 3])
    assert m["macc"] == pytest.approx(7 / 9)
    # error shares of each union: class 0 one pixel each way of 4; class 1 one false positive of 3;
    # class 2 one false negative of 3
    assert m["fp"] == pytest.approx([1 / 4, 1 / 3, 0.0]) and m["fn"] == pytest.approx([1 / 4, 0.0, 1 / 3])
    assert m["mfp"] == pytest.approx((1 / 4 + 1 / 3) / 3) and m["mfn"] == pytest.approx((1 / 4 + 1 / 3) / 3)
    assert m["miou"] + m["mfp"] + m["mfn"] == pytest.approx(1.0)


def test_a_stored_matrix_computes_the_same_metrics() -> None:
    cm = ConfusionMatrix(3)
    cm.update(GT, PRED)
    stored = cm.compute()
    again = ConfusionMatrix.of(stored["confusion"]).compute()
    assert again["confusion"] == stored["confusion"]
    for key in ("miou", "oa", "macc", "mfp", "mfn"):
        assert again[key] == stored[key], key


def test_confusion_matrix_accumulates_torch_input() -> None:
    cm = ConfusionMatrix(3)
    cm.update(torch.from_numpy(GT[:4]), torch.from_numpy(PRED[:4]))
    cm.update(GT[4:].reshape(1, -1), PRED[4:].reshape(1, -1))
    assert cm.compute()["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    cm.reduce_from_all_processes()  # not distributed: unchanged
    assert cm.compute()["oa"] == pytest.approx(0.75)


def test_confusion_matrix_absent_classes() -> None:
    cm = ConfusionMatrix(4)
    cm.update(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1]))
    m = cm.compute()
    # class 3: in neither gt nor prediction → NaN, left out; class 2: predicted only → IoU 0, counts.
    assert math.isnan(m["iou"][3]) and m["iou"][2] == 0.0
    assert m["iou"][:2] == pytest.approx([0.5, 1.0])
    assert m["miou"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert math.isnan(m["acc"][2]) and m["macc"] == pytest.approx(0.75)
    # predicted only: all of its union is false positive; absent everywhere: no share at all
    assert (m["fp"][2], m["fn"][2]) == (1.0, 0.0) and math.isnan(m["fp"][3]) and math.isnan(m["fn"][3])
    assert m["miou"] + m["mfp"] + m["mfn"] == pytest.approx(1.0)


def test_confusion_matrix_rejects_bad_input() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"predictions must lie in \[0, 3\), got 0\.\.3"):
        cm.update(np.array([0, 1]), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"gt shape \(2, 2\) != prediction shape \(4,\)"):
        cm.update(np.zeros((2, 2)), np.zeros(4))
    empty = ConfusionMatrix(2).compute()
    assert math.isnan(empty["miou"]) and math.isnan(empty["oa"])


# ---------------------------------------------------------------- multiscale CAM


def test_multiscale_cam_shapes_normalisation_absent_classes() -> None:
    torch.manual_seed(0)
    model = PoolCam()
    image = torch.randn(2, 3, 64, 48)
    label = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    cam = multiscale_cam(model, image, label, scales=(0.5, 1.0, 1.5), flip=True)
    assert cam.shape == (2, 2, 64, 48) and cam.dtype == torch.float32
    assert cam.min() >= 0 and cam.max() <= 1
    assert torch.all(cam[0, 1] == 0)  # absent class
    peaks = cam.amax(dim=(2, 3))
    assert torch.allclose(peaks[label > 0], torch.ones(3), atol=1e-4)
    # one call per scale, each with the image and its mirror in one batch
    assert model.sizes == [(4, 3, 32, 24), (4, 3, 64, 48), (4, 3, 96, 72)]


def test_multiscale_cam_single_image_and_constant_input() -> None:
    image = torch.full((3, 32, 32), 2.0)
    cam = multiscale_cam(PoolCam(), image, torch.tensor([0.0, 1.0]), scales=(1.0, 2.0))
    assert cam.shape == (1, 2, 32, 32)
    assert torch.all(cam[0, 0] == 0)
    assert torch.allclose(cam[0, 1], torch.full((32, 32), 1 / (1 + 1e-5)))


def test_flip_of_equivariant_model_changes_nothing() -> None:
    torch.manual_seed(1)
    image, label = torch.randn(1, 3, 64, 64), torch.ones(1, 2)
    with_flip = multiscale_cam(PoolCam(), image, label, scales=(0.5, 1.0), flip=True)
    without = multiscale_cam(PoolCam(), image, label, scales=(0.5, 1.0), flip=False)
    assert torch.allclose(with_flip, without, atol=1e-5)


def test_flip_cam_is_flipped_back() -> None:
    image, label = torch.zeros(1, 3, 64, 64), torch.ones(1, 2)
    without = multiscale_cam(RampCam(), image, label, scales=(1.0,), flip=False)
    with_flip = multiscale_cam(RampCam(), image, label, scales=(1.0,), flip=True)
    assert without[0, 0, 0, -1] > 0.99 and without[0, 0, 0, 0] < 0.01
    # ramp + mirrored ramp is constant across the width
    assert torch.allclose(with_flip, torch.full_like(with_flip, with_flip.max().item()), atol=1e-5)


# ---------------------------------------------------------------- storage


def test_save_load_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    cam = rng.random((2, 9, 11)).astype(np.float32)
    save_cam(tmp_path / "a.npz", torch.from_numpy(cam), np.array([0, 1]))
    loaded, label = load_cam(tmp_path / "a.npz", 2)
    assert loaded.dtype == np.float32 and loaded.shape == (2, 9, 11)
    assert label.tolist() == [False, True]
    assert np.all(loaded[0] == 0)
    np.testing.assert_allclose(loaded[1], cam[1], atol=5e-4)
    with np.load(tmp_path / "a.npz") as data:
        assert data["keys"].tolist() == [2] and data["cams"].dtype == np.float16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


def test_save_without_classes_keeps_size(tmp_path) -> None:
    save_cam(tmp_path / "e.npz", np.ones((2, 5, 7)), np.zeros(2))
    loaded, label = load_cam(tmp_path / "e.npz", 2)
    assert loaded.shape == (2, 5, 7) and not loaded.any() and not label.any()


def test_failed_write_leaves_no_file(tmp_path, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_cam(tmp_path / "b.npz", np.ones((2, 4, 4)), np.array([1, 1]))
    assert list(tmp_path.iterdir()) == []


def test_load_cam_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=f"^{bad}"):
        load_cam(bad, 2)
    with pytest.raises(DataError, match="cism cams"):
        load_cam(tmp_path / "missing.npz", 2)
    save_cam(tmp_path / "c.npz", np.ones((3, 2, 2)), np.array([0, 0, 1]))
    with pytest.raises(DataError, match="foreground classes"):
        load_cam(tmp_path / "c.npz", 2)


def test_cam_to_labels() -> None:
    cam = np.array([[[0.9, 0.2, 0.5]], [[0.1, 0.3, 0.6]]], dtype=np.float32)  # [K=2, 1, 3]
    assert cam_to_labels(cam, 0.4).tolist() == [[1, 0, 2]]
    assert cam_to_labels(cam, 0.95).tolist() == [[0, 0, 0]]
    assert cam_to_labels(cam, 0.0).tolist() == [[1, 2, 2]]


def _toy_images(n: int, size: int = 32, split: str = "toy") -> ToyDataset:
    rng = np.random.default_rng(len(split))
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    masks = [np.full((size, size), 1 + i % 2, dtype=np.uint8) for i in range(n)]
    return ToyDataset(images, masks, split)


def test_make_cams_writes_and_resumes(tmp_path) -> None:
    ds, model = _toy_images(3), PoolCam()
    cfg = CamConfig(scales=(1.0,), flip=False, batch_size=2)
    assert make_cams(model, ds, tmp_path, cfg, "cpu", progress=False) == ds.ids
    assert model.calls == 2  # batches of 2 + 1
    assert json.loads((tmp_path / "cam_meta.json").read_text()) == {"scales": [1.0], "flip": False}
    cam, label = load_cam(tmp_path / f"{ds.ids[1]}.npz", 2)
    assert label.tolist() == [False, True]
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = (torch.from_numpy(ds.images[1]).permute(2, 0, 1) / 255 - mean[:, None, None]) / std[:, None, None]
    expected = multiscale_cam(PoolCam(), x, torch.tensor([0.0, 1.0]), (1.0,), flip=False)[0]
    np.testing.assert_allclose(cam, expected.numpy(), atol=1e-3)

    model.calls = 0
    assert make_cams(model, ds, tmp_path, cfg, "cpu", progress=False) == []
    assert model.calls == 0
    (tmp_path / f"{ds.ids[2]}.npz").unlink()
    assert make_cams(model, ds, tmp_path, cfg, "cpu", progress=False) == [ds.ids[2]]
    assert model.calls == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ConfigError, match="cam_meta.json"):  # resuming with other scales
        make_cams(model, ds, tmp_path, CamConfig(scales=(0.5, 1.0)), "cpu", progress=False)


# ---------------------------------------------------------------- threshold protocol


def _ramp_split(tmp_path, split: str, gt_threshold: float) -> ToyDataset:
    """One-class images whose CAM is a column ramp 0.05..0.95 and whose gt is cam > gt_threshold."""
    ramp = np.tile(np.arange(10) * 0.1 + 0.05, (4, 1)).astype(np.float32)
    mask = np.where(ramp > gt_threshold, 1, 0).astype(np.uint8)
    ds = ToyDataset([np.zeros((4, 10, 3), np.uint8)] * 2, [mask, mask], split)
    for sid in ds.ids:
        save_cam(tmp_path / f"{sid}.npz", np.stack([ramp, np.zeros_like(ramp)]), np.array([1, 0]))
    return ds


def test_threshold_chosen_on_selection_split(tmp_path) -> None:
    select = _ramp_split(tmp_path, "val", gt_threshold=0.7)
    report = _ramp_split(tmp_path, "test", gt_threshold=0.3)
    thresholds = (0.1, 0.3, 0.5, 0.7, 0.9)
    sweep_sel, sweep_rep = sweep_threshold(tmp_path, select, thresholds), sweep_threshold(tmp_path, report, thresholds)
    assert list(sweep_sel.columns[:2]) == ["threshold", "miou"] and len(sweep_sel) == 5
    assert sweep_sel.loc[sweep_sel.miou.idxmax(), "threshold"] == 0.7
    assert sweep_rep.loc[sweep_rep.miou.idxmax(), "threshold"] == 0.3  # the splits disagree

    result = evaluate_cams(tmp_path, report, select, thresholds)
    assert result["protocol"]["threshold"] == 0.7
    assert result["protocol"]["threshold_selected_on"] == "val"
    assert result["protocol"]["reported_split"] == "test"
    assert result["protocol"]["crf"] is False
    # at 0.7 on the report split: 7 gt-foreground columns, 3 predicted → IoU 3/7 for both classes;
    # class 2 appears nowhere and is left out.
    assert result["iou"][:2] == pytest.approx([3 / 7, 3 / 7], abs=1e-6) and math.isnan(result["iou"][2])
    assert result["miou"] == pytest.approx(3 / 7)
    assert result["oa"] == pytest.approx(0.6)
    assert result["iou_by_class"]["red"] == pytest.approx(3 / 7)
    assert result["miou"] < sweep_rep.miou.max()  # the honest number is below the peeked one
    # all background: background IoU 3/10 (3 of 10 columns), class 1 IoU 0 → mIoU 0.15
    assert result["all_background_miou"] == pytest.approx(0.15)


def test_one_pass_sweep_equals_one_confusion_matrix_per_threshold(tmp_path) -> None:
    """The histogram sweep against the plain rule: per threshold, label = best class where score > t."""
    from cism_lib.metrics import _sweep_matrices

    rng = np.random.default_rng(0)
    masks, cams = [], []
    for _ in range(3):
        mask = rng.integers(0, 3, (9, 11)).astype(np.uint8)
        mask[rng.random(mask.shape) < 0.1] = 255  # ignored pixels
        # CAM values on a 0.1 grid, so many lie exactly on a threshold (ties are background)
        cams.append(np.round(rng.random((2, 9, 11)), 1).astype(np.float32))
        masks.append(mask)
    ds = ArrayDataset(masks, split="mix")
    for i, cam in enumerate(cams):
        save_cam(tmp_path / f"{ds.ids[i]}.npz", cam, np.array([1, 1]))
    thresholds = (0.5, 0.1, 0.3, 0.3, 0.95, math.inf, 0.0)  # unsorted, a repeat, inf
    for t, cm in zip(thresholds, _sweep_matrices(tmp_path, ds, thresholds)):
        ref = ConfusionMatrix(3)
        for i in range(len(ds)):
            cam, _ = load_cam(tmp_path / f"{ds.ids[i]}.npz", 2)
            ref.update(masks[i], np.where(cam.max(0) > t, cam.argmax(0) + 1, 0))
        assert torch.equal(cm.mat, ref.mat), t


def test_write_metrics(tmp_path) -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1, 1]), np.array([0, 1, 0]))
    metrics = {**cm.compute(), "class_names": list(TOY.names)}
    json_path, csv_path = write_metrics(metrics, tmp_path / "out", "cam_eval")
    data = json.loads(json_path.read_text())
    assert data["iou"][2] is None and data["iou"][1] == pytest.approx(0.5)
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "class_id,class,iou,acc,fp,fn" and lines[2] == "1,red,0.5,0.5,0.0,0.5"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cam_eval.json", "cam_eval_per_class.csv"]
    # computed again from the file's confusion matrix: the same figures, the class names kept
    again = stored_metrics(json_path)
    assert again["class_names"] == list(TOY.names) and again["confusion"] == metrics["confusion"]
    assert again["miou"] == metrics["miou"]
    for key in ("iou", "fp", "fn"):  # class 2 is in neither truth nor prediction: NaN in both
        assert again[key] == pytest.approx(metrics[key], nan_ok=True), key


def test_json_safe_is_strict_json(tmp_path) -> None:
    from pathlib import Path

    from cism_lib.runtime import json_safe, write_json_atomic

    data = {"a": np.float32(0.5), "b": [math.nan, np.inf, np.int64(3)], 2: np.array([1, 2]),
            "p": Path("x/y"), "t": (True, None), "m": np.bool_(False)}
    assert json_safe(data) == {"a": 0.5, "b": [None, None, 3], "2": [1, 2], "p": "x/y",
                               "t": [True, None], "m": False}
    write_json_atomic(tmp_path / "r.json", data)
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text and "Infinity" not in text and json.loads(text)["b"] == [None, None, 3]


def test_atomic_writes_get_the_umask_mode_not_mkstemps_0600(tmp_path) -> None:
    import os
    import stat

    from cism_lib.runtime import write_json_atomic

    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temporary left behind
