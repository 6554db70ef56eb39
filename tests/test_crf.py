"""Dense CRF, CAM → probabilities and the pseudo-mask process pool."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cism_lib.cam import cam_to_labels, save_cam
from cism_lib.config import CrfConfig
from cism_lib.crf import (cam_to_probs, dense_crf, make_pseudo_masks, present_ids, pseudo_mask,
                          read_index_png, score_pseudo_masks)
from cism_lib.errors import DataError
from tests.fixtures import TOY, ArrayDataset


def ToyDataset(images: list[np.ndarray], masks: list[np.ndarray]) -> ArrayDataset:
    """In-memory images and masks with ids img0, img1, ..."""
    return ArrayDataset(masks, images, id_format="img{i}")


def _scene(rng: np.random.Generator, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Black background with a red and a blue rectangle (clean colour edges) and its mask."""
    image, mask = np.zeros((size, size, 3), np.uint8), np.zeros((size, size), np.uint8)
    y, x = rng.integers(2, size // 2 - 2, 2)
    image[y:y + 8, x:x + 8], mask[y:y + 8, x:x + 8] = (255, 0, 0), 1
    image[size - 10:size - 2, 3:size - 3], mask[size - 10:size - 2, 3:size - 3] = (0, 0, 255), 2
    return image, mask


def _noisy_cam(rng: np.random.Generator, mask: np.ndarray, noise: float = 0.55) -> np.ndarray:
    """CAM [2,H,W]: 0.8 on the class's pixels, plus uniform noise everywhere."""
    cam = np.stack([(mask == k) * 0.8 for k in (1, 2)]).astype(np.float32)
    return np.clip(cam + rng.uniform(-noise, noise, cam.shape), 0, 1).astype(np.float32)


def test_dense_crf_cleans_noisy_unary_along_colour_edges() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = (0, 0, 255)
    gt = (np.arange(32)[None, :] >= 16).repeat(32, 0).astype(np.int64)
    p_right = np.where(gt == 1, 0.65, 0.35)
    flip = rng.random(gt.shape) < 0.3
    p_right = np.where(flip, 1 - p_right, p_right)
    probs = np.stack([1 - p_right, p_right]).astype(np.float32)
    refined = dense_crf(image, probs, CrfConfig())
    assert refined.shape == probs.shape and refined.dtype == np.float32
    np.testing.assert_allclose(refined.sum(0), 1.0, atol=1e-4)
    unary_acc = (probs.argmax(0) == gt).mean()
    crf_acc = (refined.argmax(0) == gt).mean()
    assert unary_acc < 0.8 and crf_acc > 0.98


def test_dense_crf_checks_shapes() -> None:
    with pytest.raises(ValueError, match=r"image shape \(4, 5, 3\) does not match probs \(2, 5, 4\)"):
        dense_crf(np.zeros((4, 5, 3), np.uint8), np.full((2, 5, 4), 0.5, np.float32))


def test_cam_to_probs_threshold_and_power() -> None:
    cam = np.array([[[0.0, 0.0]], [[0.6, 0.2]], [[0.2, 0.0]]], dtype=np.float32)  # K=3, [1,2]
    label = np.array([0, 1, 1])
    assert present_ids(label).tolist() == [0, 2, 3]
    p = cam_to_probs(cam, label, bg_threshold=0.2)
    np.testing.assert_allclose(p[:, 0, 0], [0.2, 0.6, 0.2])
    np.testing.assert_allclose(p[:, 0, 1], [0.5, 0.5, 0.0])
    q = cam_to_probs(cam, label, bg_power=2.0)  # background (1 - max cam)^2
    np.testing.assert_allclose(q[:, 0, 0] * (0.16 + 0.8), [0.16, 0.6, 0.2], rtol=1e-5)
    with pytest.raises(ValueError, match="give exactly one of bg_threshold and bg_power"):
        cam_to_probs(cam, label)
    with pytest.raises(ValueError, match="give exactly one of bg_threshold and bg_power"):
        cam_to_probs(cam, label, 0.2, 2.0)


def test_pseudo_mask_without_crf_matches_threshold_labels() -> None:
    rng = np.random.default_rng(1)
    image, mask = _scene(rng)
    cam = _noisy_cam(rng, mask)
    no_crf = pseudo_mask(image, cam, np.array([1, 1]), CrfConfig(enabled=False), bg_threshold=0.4)
    assert np.array_equal(no_crf, cam_to_labels(cam, 0.4))
    refined = pseudo_mask(image, cam, np.array([1, 1]), CrfConfig(), bg_threshold=0.4)
    assert (no_crf == mask).mean() < 0.85 and (refined == mask).mean() > 0.95


def _write_cams(tmp_path, n: int) -> ToyDataset:
    rng = np.random.default_rng(2)
    scenes = [_scene(rng) for _ in range(n)]
    ds = ToyDataset([s[0] for s in scenes], [s[1] for s in scenes])
    for sid, (_, mask), label in zip(ds.ids, scenes, ds.labels):
        save_cam(tmp_path / "cams" / f"{sid}.npz", _noisy_cam(rng, mask), label)
    return ds


def test_make_pseudo_masks_parallel_equals_serial_and_resumes(tmp_path) -> None:
    ds = _write_cams(tmp_path, 4)
    cfg = CrfConfig(iterations=5)
    serial = make_pseudo_masks(tmp_path / "cams", ds, tmp_path / "m1", cfg, 0.4, workers=1, progress=False)
    parallel = make_pseudo_masks(tmp_path / "cams", ds, tmp_path / "m2", cfg, 0.4, workers=2, progress=False)
    assert serial == parallel == ds.ids
    for sid in ds.ids:
        a, b = Image.open(tmp_path / "m1" / f"{sid}.png"), Image.open(tmp_path / "m2" / f"{sid}.png")
        assert a.mode == "P" and a.getpalette()[:9] == [0, 0, 0, 255, 0, 0, 0, 0, 255]
        assert np.array_equal(np.array(a), np.array(b))
    assert make_pseudo_masks(tmp_path / "cams", ds, tmp_path / "m1", cfg, 0.4, workers=1, progress=False) == []
    (tmp_path / "m1" / "img3.png").unlink()
    assert make_pseudo_masks(tmp_path / "cams", ds, tmp_path / "m1", cfg, 0.4, workers=1, progress=False) == ["img3"]
    assert sorted(p.name for p in (tmp_path / "m1").iterdir()) == [f"{s}.png" for s in ds.ids]

    scores = score_pseudo_masks(tmp_path / "m1", ds)
    assert scores["miou"] > 0.9 and scores["class_names"] == list(TOY.names)
    masks = [read_index_png(tmp_path / "m1" / f"{s}.png") for s in ds.ids]
    agree = np.mean([(m == ds.masks[i]).mean() for i, m in enumerate(masks)])
    assert scores["oa"] == pytest.approx(agree)


def test_missing_inputs_raise_data_error(tmp_path) -> None:
    ds = _write_cams(tmp_path, 1)
    with pytest.raises(DataError, match="cism cams"):
        make_pseudo_masks(tmp_path / "nothing", ds, tmp_path / "m", CrfConfig(), 0.4, workers=1, progress=False)
    with pytest.raises(DataError, match=f"^{tmp_path / 'm' / 'img0.png'}"):
        score_pseudo_masks(tmp_path / "m", ds)


def test_kernel_widths_scale_with_the_image_side() -> None:
    from cism_lib.crf import kernel_sxy

    assert kernel_sxy(CrfConfig(), 500, 800) == pytest.approx((3.0, 80.0))
    assert kernel_sxy(CrfConfig(), 192, 192) == pytest.approx((3.0 * 192 / 500, 80.0 * 192 / 500))


def _scene_with_objects(side: int = 160, seed: int = 0):
    """Textured ground with four 20-pixel objects of a similar colour, and a CAM that is
    confident (0.8) on them and soft (0.3) on a ring around them, 0.05 elsewhere."""
    rng = np.random.default_rng(seed)
    image = (rng.normal(120, 12, (side, side, 3))).clip(0, 255).astype(np.uint8)
    gt = np.zeros((side, side), np.uint8)
    cam = np.full((1, side, side), 0.05, np.float32)
    for y, x in ((20, 20), (20, 110), (110, 20), (110, 110)):
        image[y:y + 20, x:x + 20] = (image[y:y + 20, x:x + 20] + np.array([40, 10, -20])).clip(0, 255)
        gt[y:y + 20, x:x + 20] = 1
        cam[0, y - 4:y + 24, x - 4:x + 24] = 0.3
        cam[0, y:y + 20, x:x + 20] = 0.8
    return image, gt, cam


def test_default_crf_keeps_confident_small_objects_on_a_small_image() -> None:
    # Regression: with the VOC-sized bilateral kernel (sxy 80 px) unscaled on a 160² image, the
    # pairwise term swamped the unary and the objects were erased.
    image, gt, cam = _scene_with_objects()
    mask = pseudo_mask(image, cam, np.array([1.0]), CrfConfig(), bg_threshold=0.55)
    kept = (mask[gt == 1] == 1).mean()
    spill = (mask[gt == 0] == 1).mean()
    assert kept > 0.6 and spill < 0.05  # unscaled: kept 0.0


def test_label_probs_is_pydensecrfs_unary_from_labels() -> None:
    from cism_lib.crf import label_probs

    labels = np.array([[0, 2], [1, 0]])
    probs = label_probs(labels, 3, 0.7)
    assert probs.shape == (3, 2, 2) and probs.dtype == np.float32
    np.testing.assert_allclose(probs[:, 0, 1], [0.15, 0.15, 0.7])
    np.testing.assert_allclose(probs[:, 1, 0], [0.15, 0.7, 0.15])
    np.testing.assert_allclose(probs.sum(0), 1.0, rtol=1e-6)
    assert (probs.argmax(0) == labels).all()
    np.testing.assert_array_equal(label_probs(labels * 0, 1, 0.7), np.ones((1, 2, 2)))


def test_label_unary_keeps_objects_whose_cam_barely_passes_the_threshold() -> None:
    # A CAM just above the background score gives a soft unary (p_fg ≈ 0.52) that the pairwise
    # terms outvote; IRN's label unary turns the thresholded argmax into a firm 0.7.
    image, gt, cam = _scene_with_objects()
    weak = np.where(cam > 0.5, 0.6, cam).astype(np.float32)
    soft = pseudo_mask(image, weak, np.array([1.0]), CrfConfig(), bg_threshold=0.55)
    firm = pseudo_mask(image, weak, np.array([1.0]), CrfConfig(unary="label"), bg_threshold=0.55)
    kept_soft, kept_firm = (soft[gt == 1] == 1).mean(), (firm[gt == 1] == 1).mean()
    assert kept_firm > 0.6 and (firm[gt == 0] == 1).mean() < 0.05
    assert kept_firm > kept_soft + 0.2


class _RecordingCRF:
    """Stands in for pydensecrf's DenseCRF2D and records how dense_crf configures it."""

    calls: list = []

    def __init__(self, w: int, h: int, c: int) -> None:
        self.calls.append(("init", w, h, c))
        self.c, self.n = c, w * h

    def setUnaryEnergy(self, unary: np.ndarray) -> None:  # noqa: N802 - pydensecrf's name
        self.calls.append(("unary", unary.copy()))

    def addPairwiseGaussian(self, **kw) -> None:  # noqa: N802
        self.calls.append(("gauss", kw))

    def addPairwiseBilateral(self, **kw) -> None:  # noqa: N802
        self.calls.append(("bilateral", {k: v for k, v in kw.items() if k != "rgbim"}, kw["rgbim"].copy()))

    def inference(self, iterations: int) -> np.ndarray:
        self.calls.append(("inference", iterations))
        return np.full((self.c, self.n), 1.0 / self.c, np.float32)


def test_dense_crf_passes_each_kernel_its_own_width_and_compat(monkeypatch) -> None:
    """A non-square 60 × 90 image (shorter side 60) with every CrfConfig value distinct."""
    import pydensecrf.densecrf as dcrf

    _RecordingCRF.calls = []
    monkeypatch.setattr(dcrf, "DenseCRF2D", _RecordingCRF)
    cfg = CrfConfig(gauss_sxy=2.0, gauss_compat=4.0, bi_sxy=70.0, bi_srgb=9.0, bi_compat=6.0, iterations=7)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    probs = rng.dirichlet(np.ones(3), size=(60, 90)).transpose(2, 0, 1).astype(np.float32)
    probs[0, 0, 0] = 0.0  # clipped at PROB_CLIP in the unary
    dense_crf(image, probs, cfg)
    calls = {c[0]: c[1:] for c in _RecordingCRF.calls}
    assert calls["init"] == (90, 60, 3)
    np.testing.assert_allclose(calls["unary"][0], -np.log(np.clip(probs, 1e-5, 1)).reshape(3, -1), rtol=1e-6)
    assert calls["gauss"][0] == {"sxy": pytest.approx(2.0 * 60 / 500), "compat": 4.0}
    assert calls["bilateral"][0] == {"sxy": pytest.approx(70.0 * 60 / 500), "srgb": 9.0, "compat": 6.0}
    np.testing.assert_array_equal(calls["bilateral"][1], image)
    assert calls["inference"] == (7,)
