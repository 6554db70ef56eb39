"""CRF pseudo-masks beyond tests/test_crf.py: input dtypes and layouts pydensecrf needs, the
AffinityNet background reaching every path, the worker count, the pool's bound and PNG I/O."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import cism_lib.crf as crf
import cism_lib.runtime as runtime
from cism_lib.cam import load_cam
from cism_lib.config import CrfConfig
from cism_lib.crf import (_map_bounded, cam_to_probs, dense_crf, label_probs, make_pseudo_masks,
                          pseudo_mask, read_index_png, write_index_png)
from cism_lib.errors import DataError
from tests.test_crf import _RecordingCRF, _write_cams

CFG = CrfConfig(iterations=3)


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    probs = rng.dirichlet(np.ones(3), size=(10, 12)).transpose(2, 0, 1).astype(np.float32)
    return image, probs


def test_dense_crf_accepts_float64_probs_and_other_image_dtypes_and_layouts() -> None:
    image, probs = _inputs()
    ref = dense_crf(image, probs, CFG)
    np.testing.assert_allclose(dense_crf(image, probs.astype(np.float64), CFG), ref, atol=1e-5)
    np.testing.assert_array_equal(dense_crf(image.astype(np.int64), probs, CFG), ref)
    transposed = np.ascontiguousarray(image.transpose(1, 0, 2)).transpose(1, 0, 2)  # not C-ordered
    assert not transposed.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(dense_crf(transposed, probs, CFG), ref)


def test_cam_to_probs_without_present_classes_is_all_background() -> None:
    cam = np.ones((2, 3, 4), np.float32)
    for kw in ({"bg_threshold": 0.3}, {"bg_power": 2.0}):
        p = cam_to_probs(cam, np.array([0, 0]), **kw)
        assert p.shape == (1, 3, 4) and (p == 1.0).all()
    with pytest.raises(ValueError, match="^give exactly one of bg_threshold and bg_power$"):
        cam_to_probs(cam, np.array([0, 1]))


def test_pseudo_mask_with_affinitynet_background_and_its_crf_settings(monkeypatch) -> None:
    cam = np.array([[[0.9, 0.5, 0.1]], [[0.0, 0.6, 0.2]]], np.float32)  # [K=2, 1, 3]
    off = CrfConfig(enabled=False)
    # background (1 - max)^2: 0.01, 0.16, 0.64 → labels 1, 2, background
    mask = pseudo_mask(np.zeros((1, 3, 3), np.uint8), cam, np.array([1, 1]), off, bg_power=2.0)
    assert mask.dtype == np.uint8 and mask.tolist() == [[1, 2, 0]]
    import pydensecrf.densecrf as dcrf

    _RecordingCRF.calls = []
    monkeypatch.setattr(dcrf, "DenseCRF2D", _RecordingCRF)
    pseudo_mask(np.zeros((1, 3, 3), np.uint8), cam, np.array([1, 1]), CrfConfig(iterations=7, bi_srgb=5.0),
                bg_threshold=0.3)
    calls = {c[0]: c[1:] for c in _RecordingCRF.calls}
    assert calls["inference"] == (7,) and calls["bilateral"][0]["srgb"] == 5.0


def test_label_probs_of_one_channel_is_float32_ones() -> None:
    probs = label_probs(np.zeros((2, 3), np.int64), 1, 0.7)
    assert probs.dtype == np.float32 and probs.shape == (1, 2, 3) and (probs == 1).all()


def test_make_pseudo_masks_with_affinitynet_background(tmp_path) -> None:
    ds = _write_cams(tmp_path, 2)
    off = CrfConfig(enabled=False)
    out = tmp_path / "deep" / "masks"  # parent folders are created
    assert make_pseudo_masks(tmp_path / "cams", ds, out, off, None, workers=1, progress=False,
                             bg_power=1.5) == ds.ids
    for i, sid in enumerate(ds.ids):
        cam, label = load_cam(tmp_path / "cams" / f"{sid}.npz", 2)
        expected = pseudo_mask(ds.images[i], cam, label, off, bg_power=1.5)
        np.testing.assert_array_equal(read_index_png(out / f"{sid}.png"), expected)


def _serial_recording(seen: list):
    def run(fn, jobs, workers):
        seen.append(workers)
        return map(fn, jobs)
    return run


def test_make_pseudo_masks_worker_count(tmp_path, monkeypatch) -> None:
    ds = _write_cams(tmp_path, 1)
    seen: list = []
    monkeypatch.setattr(crf, "_map_bounded", _serial_recording(seen))
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    for cfg_workers, workers in ((3, None), (3, 0), (3, 1), (3, 2), (0, None)):
        make_pseudo_masks(tmp_path / "cams", ds, tmp_path / "m", CrfConfig(enabled=False, workers=cfg_workers),
                          0.4, workers=workers, progress=False, skip_done=False)
    # None → cfg.workers; 0 → os.cpu_count(); otherwise as given
    assert seen == [3, 7, 1, 2, 7]


def _pid_of(job: int) -> tuple[int, int]:
    """(job, the id of the process that ran it)."""
    return job, os.getpid()


def test_map_bounded_runs_one_worker_here_and_more_in_a_pool() -> None:
    here = os.getpid()
    # a lambda cannot be pickled: one worker must not need a pool
    assert list(_map_bounded(lambda j: (j, os.getpid()), range(3), 1)) == [(0, here), (1, here), (2, here)]
    out = list(_map_bounded(_pid_of, range(6), 2))
    assert sorted(j for j, _ in out) == list(range(6)) and all(pid != here for _, pid in out)


def test_map_bounded_keeps_at_most_two_jobs_per_worker_in_flight() -> None:
    pulled: list[int] = []

    def jobs():
        for i in range(12):
            pulled.append(i)
            yield i

    results = _map_bounded(_pid_of, jobs(), 2)
    next(results)
    # 4 jobs submitted, the 5th read and held until one of them is done
    assert len(pulled) == 5
    assert len(list(results)) == 11


def test_make_pseudo_masks_progress_bar_counts_images(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv(runtime.HEADLESS_ENV, raising=False)
    ds = _write_cams(tmp_path, 2)
    off = CrfConfig(enabled=False)
    make_pseudo_masks(tmp_path / "cams", ds, tmp_path / "a", off, 0.4, workers=1)  # progress by default
    err = capsys.readouterr().err
    assert "pseudo-masks: 100%" in err and "2/2" in err
    make_pseudo_masks(tmp_path / "cams", ds, tmp_path / "b", off, 0.4, workers=1, progress=False)
    assert capsys.readouterr().err == ""


def test_index_png_round_trips_any_integer_mask_and_reads_greyscale(tmp_path) -> None:
    palette = [0, 0, 0, 255, 0, 0, 0, 0, 255] + [255] * (3 * 253)
    write_index_png(tmp_path / "m.png", np.array([[0, 1], [2, 0]], np.int64), palette)
    with Image.open(tmp_path / "m.png") as img:
        assert img.mode == "P" and img.getpalette()[:9] == palette[:9]
    back = read_index_png(tmp_path / "m.png")
    assert back.dtype == np.uint8 and back.tolist() == [[0, 1], [2, 0]]
    Image.fromarray(np.array([[3, 4]], np.uint8), mode="L").save(tmp_path / "g.png")
    assert read_index_png(tmp_path / "g.png").tolist() == [[3, 4]]
    Image.fromarray(np.zeros((1, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match="expected a palette or greyscale PNG, got mode RGB"):
        read_index_png(tmp_path / "rgb.png")


def test_band_keeps_confident_labels_and_leaves_the_rest_uncertain() -> None:
    cam = np.array([[[0.7, 0.5, 0.3, 0.1]]], np.float32)  # one class, [1, 1, 4]
    image, label = np.zeros((1, 4, 3), np.uint8), np.array([1])
    band = CrfConfig(enabled=False, band=(0.5, 1.5))
    # t = 0.4: foreground above 0.6, background below 0.2 (both rules as cam_to_labels), else 255
    assert pseudo_mask(image, cam, label, band, bg_threshold=0.4).tolist() == [[1, 255, 255, 0]]
    upper = CrfConfig(enabled=False, band=(1.0, 2.0))
    assert pseudo_mask(image, cam, label, upper, bg_threshold=0.3).tolist() == [[1, 255, 0, 0]]
    # the band needs a threshold: with AffinityNet's background it is the plain mask
    plain = pseudo_mask(image, cam, label, CrfConfig(enabled=False), bg_power=1.0)
    np.testing.assert_array_equal(pseudo_mask(image, cam, label, band, bg_power=1.0), plain)


def test_scoring_skips_uncertain_pixels_and_reports_coverage(tmp_path) -> None:
    from tests.fixtures import ArrayDataset

    gt = np.array([[0, 1], [2, 255]], np.uint8)
    ds = ArrayDataset([gt], id_format="img{i}")
    palette = [0] * 768
    write_index_png(tmp_path / "img0.png", np.array([[0, 255], [2, 0]], np.uint8), palette)
    scores = crf.score_pseudo_masks(tmp_path, ds)
    assert scores["coverage"] == pytest.approx(2 / 3)  # 3 scored ground-truth pixels, 2 labelled
    assert scores["confusion"] == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]
    ignored = ArrayDataset([np.full((2, 2), 255, np.uint8)], id_format="img{i}")
    assert np.isnan(crf.score_pseudo_masks(tmp_path, ignored)["coverage"])


def test_band_masks_refine_with_the_image_and_are_uint8() -> None:
    image, probs = _inputs()
    cam = probs[1:]  # two classes, [2, 10, 12]
    label = np.array([1, 1])
    band = CrfConfig(iterations=3, band=(0.5, 1.5))
    out = pseudo_mask(image, cam, label, band, bg_threshold=0.4)
    assert out.dtype == np.uint8
    confident = pseudo_mask(image, cam, label, CrfConfig(iterations=3), bg_threshold=0.6)
    loose = pseudo_mask(image, cam, label, CrfConfig(iterations=3), bg_threshold=0.2)
    expected = np.where(confident > 0, confident, 255)
    expected[(confident == 0) & (loose == 0)] = 0
    np.testing.assert_array_equal(out, expected)


def test_coverage_adds_up_over_images(tmp_path) -> None:
    from tests.fixtures import ArrayDataset

    ds = ArrayDataset([np.zeros((1, 2), np.uint8), np.zeros((1, 3), np.uint8)], id_format="img{i}")
    palette = [0] * 768
    write_index_png(tmp_path / "img0.png", np.array([[0, 255]], np.uint8), palette)
    write_index_png(tmp_path / "img1.png", np.array([[0, 0, 0]], np.uint8), palette)
    assert crf.score_pseudo_masks(tmp_path, ds)["coverage"] == pytest.approx(4 / 5)
