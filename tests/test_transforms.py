"""Tests of cism_lib.data.transforms: alignment of image and mask, crop/padding, determinism."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cism_lib.classes import IGNORE_INDEX
from cism_lib.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform,
                                      denormalize, normalization_for)
from cism_lib.errors import ConfigError
from tests.fixtures import interior

# Pixel colour encodes the class, so alignment can be checked from the image alone.
PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)


def block_mask(h: int, w: int, block: int = 6) -> np.ndarray:
    """A mask of block x block squares with classes 0..4 in an irregular pattern."""
    yy, xx = np.mgrid[:h, :w]
    return (((yy // block) * 3 + (xx // block) * 2 + (yy // block) * (xx // block)) % 5).astype(np.uint8)


def test_normalization_for_backbones() -> None:
    assert normalization_for("resnet50") == (IMAGENET_MEAN, IMAGENET_STD)
    assert normalization_for("resnet18") == (IMAGENET_MEAN, IMAGENET_STD)
    mean, std = normalization_for("efficientnet_lite0")
    np.testing.assert_allclose(mean, (0.498,) * 3, atol=5e-4)
    np.testing.assert_allclose(std, (0.502,) * 3, atol=5e-4)
    # (x - mean) / std on x/255 must equal (x*255 - 127)/128 on raw values.
    x = np.array([0.0, 127.0, 255.0])
    np.testing.assert_allclose((x / 255 - mean[0]) / std[0], (x - 127) / 128, atol=1e-12)
    with pytest.raises(ConfigError, match="vgg16"):
        normalization_for("vgg16")


def test_eval_transform_normalises_hand_pixel() -> None:
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 1] = (255, 0, 51)
    mask = np.array([[0, 1, 2], [3, 4, 255]], np.uint8)
    img, msk = EvalTransform(mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 0.2))(image, mask)
    assert img.dtype == torch.float32 and img.shape == (3, 2, 3)
    assert msk.dtype == torch.int64 and msk.tolist() == mask.tolist()
    np.testing.assert_allclose(img[:, 0, 1].numpy(), [2.0, -1.0, -1.5], atol=1e-6)
    np.testing.assert_allclose(img[:, 0, 0].numpy(), [-2.0, -1.0, -2.5], atol=1e-6)


def test_eval_transform_resize_and_denormalize_roundtrip() -> None:
    mask = block_mask(12, 12, block=4)
    image = PALETTE[mask]
    img, msk = EvalTransform(size=(6, 9))(image, mask)
    assert img.shape == (3, 6, 9) and msk.shape == (6, 9)
    img, _ = EvalTransform()(image, mask)
    np.testing.assert_array_equal(denormalize(img, IMAGENET_MEAN, IMAGENET_STD), image)


@pytest.mark.parametrize("shape", [(40, 50), (10, 7)])
def test_train_transform_shapes_and_dtypes(shape: tuple[int, int]) -> None:
    mask = block_mask(*shape)
    out_img, out_mask = TrainTransform(crop_size=16)(PALETTE[mask], mask, np.random.default_rng(0))
    assert out_img.shape == (3, 16, 16) and out_img.dtype == torch.float32
    assert out_mask.shape == (16, 16) and out_mask.dtype == torch.int64


def test_small_image_is_padded_with_ignore_and_mean_colour() -> None:
    mask = block_mask(10, 7)
    tf = TrainTransform(crop_size=16, scale_range=(1.0, 1.0), color_jitter=0.0)
    for seed in range(8):
        img, msk = tf(PALETTE[mask], mask, np.random.default_rng(seed))
        pad = msk == IGNORE_INDEX
        assert int((~pad).sum()) == 70           # every original pixel, nothing else
        assert torch.all(img[:, pad] == 0)       # mean colour after normalisation
        rows, cols = np.nonzero((~pad).numpy())
        assert rows.min() == 0 and cols.min() == 0   # padding sits at the bottom/right


def test_existing_ignore_pixels_keep_their_image() -> None:
    mask = np.full((16, 16), IGNORE_INDEX, np.uint8)
    image = np.full((16, 16, 3), 200, np.uint8)
    img, msk = TrainTransform(crop_size=16, scale_range=(1.0, 1.0), color_jitter=0.0)(
        image, mask, np.random.default_rng(0))
    assert torch.all(msk == IGNORE_INDEX)
    assert np.all(denormalize(img, IMAGENET_MEAN, IMAGENET_STD) == 200)


def test_geometry_keeps_image_and_mask_aligned_exactly() -> None:
    mask = block_mask(30, 24)
    tf = TrainTransform(crop_size=20, scale_range=(1.0, 1.0), color_jitter=0.0)
    for seed in range(10):
        img, msk = tf(PALETTE[mask], mask, np.random.default_rng(seed))
        colours = denormalize(img, IMAGENET_MEAN, IMAGENET_STD)
        m = msk.numpy()
        assert np.array_equal(colours[m != IGNORE_INDEX], PALETTE[m[m != IGNORE_INDEX]])


def test_rescaled_image_and_mask_stay_aligned() -> None:
    mask = block_mask(48, 48, block=12)
    tf = TrainTransform(crop_size=32, scale_range=(0.7, 1.3), color_jitter=0.0)
    for seed in range(6):
        img, msk = tf(PALETTE[mask], mask, np.random.default_rng(seed))
        colours = denormalize(img, IMAGENET_MEAN, IMAGENET_STD).astype(int)
        m = msk.numpy()
        inner = interior(m, 2) & (m != IGNORE_INDEX)
        assert inner.mean() > 0.3
        assert np.abs(colours[inner] - PALETTE[m[inner]]).max() <= 1


def test_flips_and_rotations_give_all_eight_symmetries() -> None:
    mask = np.arange(16, dtype=np.uint8).reshape(4, 4)
    image = np.repeat(mask[..., None] * 10, 3, axis=2).astype(np.uint8)
    tf = TrainTransform(crop_size=4, scale_range=(1.0, 1.0), color_jitter=0.0)
    seen = {tuple(tf(image, mask, np.random.default_rng(s))[1].flatten().tolist())
            for s in range(80)}
    assert len(seen) == 8
    still = TrainTransform(crop_size=4, scale_range=(1.0, 1.0), color_jitter=0.0,
                           hflip=False, vflip=False, rot90=False)
    assert {tuple(still(image, mask, np.random.default_rng(s))[1].flatten().tolist())
            for s in range(20)} == {tuple(range(16))}


def test_train_transform_is_deterministic_given_rng() -> None:
    mask = block_mask(40, 36)
    tf = TrainTransform(crop_size=24)
    a = tf(PALETTE[mask], mask, np.random.default_rng(7))
    b = tf(PALETTE[mask], mask, np.random.default_rng(7))
    c = tf(PALETTE[mask], mask, np.random.default_rng(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_color_jitter_changes_image_only() -> None:
    mask = block_mask(24, 24)
    image = (PALETTE[mask] // 2 + 60).astype(np.uint8)
    plain = TrainTransform(crop_size=16, color_jitter=0.0)(image, mask, np.random.default_rng(3))
    jit = TrainTransform(crop_size=16, color_jitter=0.4)(image, mask, np.random.default_rng(3))
    assert torch.equal(plain[1], jit[1])
    assert not torch.allclose(plain[0], jit[0])


def test_fit_mode_keeps_every_labelled_object_in_view() -> None:
    # Four small objects in the corners of a 64-px image: a 32-px crop cannot hold them all, so
    # "crop" mode drops some (whose image-level label remains); "fit" mode keeps each in view.
    mask = np.zeros((64, 64), np.uint8)
    for k, (y, x) in enumerate([(2, 2), (2, 54), (54, 2), (54, 54)], start=1):
        mask[y:y + 8, x:x + 8] = k
    image = PALETTE[mask]
    crop = TrainTransform(crop_size=32, scale_range=(0.8, 1.2), color_jitter=0.0)
    fit = TrainTransform(crop_size=32, scale_range=(0.8, 1.2), color_jitter=0.0, mode="fit")
    lost = 0
    for seed in range(10):
        img, msk = fit(image, mask, np.random.default_rng(seed))
        assert msk.shape == (32, 32) and img.shape == (3, 32, 32)
        assert set(np.unique(msk.numpy())) - {IGNORE_INDEX} == {0, 1, 2, 3, 4}
        lost += len({1, 2, 3, 4} - set(np.unique(crop(image, mask, np.random.default_rng(seed))[1].numpy())))
    assert lost > 0
    # Hand-computed sizes: factor 1 maps 64 px onto the whole 32-px window; factor 0.5 (and 1.3,
    # capped at 1) gives a 16-px (32-px) image in the corner, the rest ignore padding.
    for factor, side in ((1.0, 32), (0.5, 16), (1.3, 32)):
        still = TrainTransform(crop_size=32, scale_range=(factor, factor), color_jitter=0.0, mode="fit",
                               hflip=False, vflip=False, rot90=False)
        m = still(image, mask, np.random.default_rng(0))[1].numpy()
        assert (m[:side, :side] != IGNORE_INDEX).all() and (m != IGNORE_INDEX).sum() == side * side


def test_unknown_transform_mode_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="crop or fit"):
        TrainTransform(crop_size=8, mode="resize")
