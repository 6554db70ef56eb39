"""MCSG beyond tests/test_pairs_mcsg.py: tile sizes by hand, where the split point falls, the
coin at prob 0, sampling with few low-category images, and the label distribution of Figure 6."""
from __future__ import annotations

import numpy as np
import pytest

from cism_lib.classes import IGNORE_INDEX
from cism_lib.data.mcsg import MCSG, _fit_tile, mcsg_label_distribution, mosaic
from cism_lib.data.pairs import SingleDataset
from tests.test_pairs_mcsg import CLASS_LISTS, FakeSeg


@pytest.mark.parametrize("shape,cell,factor,size", [
    ((10, 20), (8, 8), 1.0, (4, 8)),    # the width limits: scale 0.4
    ((20, 10), (8, 8), 1.0, (8, 4)),    # the height limits: scale 0.4
    ((20, 10), (8, 8), 0.5, (4, 2)),    # a random factor of 0.5 halves the fit
    ((20, 10), (8, 8), 1.5, (8, 4)),    # a factor above 1 is capped: the tile still fits whole
    ((20, 10), (8, 8), 0.04, (1, 1)),   # 0.32 × 20 rounds to 1, 0.32 × 10 to 0: at least 1 pixel
])
def test_fit_tile_sizes_by_hand(shape, cell, factor, size) -> None:
    image = np.zeros((*shape, 3), np.uint8)
    tile, mask, dy, dx = _fit_tile(image, None, *cell, np.random.default_rng(0), (factor, factor))
    assert tile.shape[:2] == size and mask is None
    assert 0 <= dy <= cell[0] - size[0] and 0 <= dx <= cell[1] - size[1]


def _tiles(out_shape: tuple[int, int], tall: bool, seed: int) -> np.ndarray:
    """Mask of a mosaic of 4 thin images (100 × 1 if tall, else 1 × 100), tile j labelled j + 1."""
    shape = (100, 1) if tall else (1, 100)
    images = [np.zeros((*shape, 3), np.uint8) for _ in range(4)]
    masks = [np.full(shape, j + 1, np.uint8) for j in range(4)]
    _, mask = mosaic(images, np.random.default_rng(seed), out_size=out_shape, scale_range=(1.0, 1.0),
                     masks=masks)
    return mask


def _split(mask: np.ndarray, axis: int) -> int:
    """The split row (axis 0) or column (axis 1), from tiles that fill their cell along the axis."""
    spans = []
    for j in range(1, 5):
        where = np.flatnonzero((mask == j).any(axis=1 - axis))
        spans.append((where.min(), where.max() + 1))
    split = min(hi for lo, hi in spans if lo == 0)
    n = mask.shape[axis]
    # every tile spans exactly [0, split) or [split, n) along the axis: no cell starts elsewhere
    assert all(s in ((0, split), (split, n)) for s in spans), spans
    return split


@pytest.mark.parametrize("axis", [0, 1])
def test_mosaic_split_point_uniform_in_the_middle_half(axis: int) -> None:
    side = 100
    splits = [_split(_tiles((side, 3) if axis == 0 else (3, side), axis == 0, s), axis) for s in range(40)]
    assert 25 <= min(splits) < 35 and 65 < max(splits) <= 75


@pytest.mark.parametrize("axis", [0, 1])
def test_mosaic_of_three_pixels_splits_after_the_first_or_second(axis: int) -> None:
    splits = {_split(_tiles((3, 3), axis == 0, s), axis) for s in range(40)}
    assert splits == {1, 2}


def test_mosaic_dtypes_and_argument_check() -> None:
    images = [np.full((6, 5, 3), 10 * j, np.uint8) for j in range(4)]
    image, mask = mosaic(images, np.random.default_rng(0), masks=[np.ones((6, 5), np.uint8)] * 4)
    assert image.dtype == np.uint8 and mask.dtype == np.uint8 and (mask == IGNORE_INDEX).any()
    with pytest.raises(ValueError, match="^mosaic needs 4 images \\(and 4 masks if any\\), got 3$"):
        mosaic(images[:3], np.random.default_rng(0))
    with pytest.raises(ValueError, match="^mosaic needs 4 images \\(and 4 masks if any\\), got 4 and 3$"):
        mosaic(images, np.random.default_rng(0), masks=[np.ones((6, 5), np.uint8)] * 3)


def test_compose_uses_the_mcsg_scale_range_like_compose_with_mask() -> None:
    base = FakeSeg(CLASS_LISTS, size=24)
    m = MCSG(base.labels, scale_range=(0.3, 0.3))
    idx = [0, 1, 2, 3]
    image, _ = m.compose(base, idx, np.random.default_rng(5))
    image2, mask, _ = m.compose_with_mask(base, idx, np.random.default_rng(5))
    np.testing.assert_array_equal(image, image2)
    assert (mask != IGNORE_INDEX).mean() < 0.2  # tiles at 0.3 of their cell's fit: mostly fill
    default, _ = MCSG(base.labels).compose(base, idx, np.random.default_rng(5))
    assert not np.array_equal(default, image)


def test_default_prob_is_one_mosaic_per_batch_of_eight_and_prob_is_checked() -> None:
    labels = np.zeros((10, 4), bool)
    labels[:5, 0] = True       # 5 low-category images
    labels[5:] = True          # 5 high-category images (4 classes > 3)
    m = MCSG(labels)
    assert m.lam == 0.5 and m.prob == pytest.approx(1 / (0.5 * 8))
    assert m.num_foreground == 4 and m.max_categories == 3
    with pytest.raises(ValueError, match=r"^MCSG: prob must be in \[0, 1\], got 1.5$"):
        MCSG(labels, prob=1.5)


def test_sample_with_one_or_three_other_low_images() -> None:
    labels = np.eye(4, dtype=bool)
    two = MCSG(labels[:2])
    assert two.sample(np.random.default_rng(0), first=0) == [0, 1, 1, 1]  # repeats of the other
    four = MCSG(labels)
    for s in range(30):
        idx = four.sample(np.random.default_rng(s), first=3)
        assert idx[0] == 3 and sorted(idx) == [0, 1, 2, 3]  # exactly the three others


class _ZeroDraws:
    """A generator whose `random()` draws 0.0 (a value numpy's [0, 1) can return)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def random(self) -> float:
        return 0.0

    def __getattr__(self, name: str):
        return getattr(self.rng, name)


def test_prob_zero_never_mosaics_even_on_a_zero_draw() -> None:
    base = FakeSeg(CLASS_LISTS)
    never = MCSG(base.labels, prob=0.0)
    assert never.maybe_mosaic(base, 0, _ZeroDraws()) is None
    assert MCSG(base.labels, prob=1e-9).maybe_mosaic(base, 0, _ZeroDraws()) is not None
    out = mcsg_label_distribution(never, base.labels, 50, _ZeroDraws())
    queries = np.flatnonzero(base.labels.any(axis=1))
    np.testing.assert_array_equal(out, base.labels[np.random.default_rng(0).choice(queries, size=50)])


def test_label_distribution_queries_and_mosaic_unions() -> None:
    # image 0 is empty; images 1 and 2 are low with classes {0} and {1}; image 3 is high.
    labels = np.array([[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 1, 1, 1, 1]], bool)
    plain = mcsg_label_distribution(None, labels, 300, np.random.default_rng(0))
    assert plain.dtype == bool and plain.shape == (300, 5)
    rows = {tuple(r) for r in plain}
    assert rows == {tuple(labels[i]) for i in (1, 2, 3)}  # uniform over non-empty images
    counts = [(plain == labels[i]).all(axis=1).sum() for i in (1, 2, 3)]
    assert min(counts) > 60
    m = MCSG(labels, prob=1.0)
    mixed = mcsg_label_distribution(m, labels, 300, np.random.default_rng(0))
    assert mixed.dtype == bool
    low_rows = mixed[~mixed[:, 2]]
    # a low query becomes a mosaic of itself and the other low image: always {0, 1}, never all
    assert len(low_rows) > 100 and (low_rows == [True, True, False, False, False]).all()
    assert (mixed[mixed[:, 2]] == labels[3]).all()


def _noise(image: np.ndarray, mask: None, rng: np.random.Generator):
    """A transform that draws from its generator."""
    return image.astype(np.float32) + rng.random(), None


def test_single_dataset_items_draw_from_their_seed_epoch_and_index() -> None:
    base = FakeSeg(CLASS_LISTS)
    ds = SingleDataset(base, _noise, seed=3)
    first, again = ds[1]["image_q"], ds[1]["image_q"]
    np.testing.assert_array_equal(first, again)
    expected = base.read_image(1).astype(np.float32) + np.random.default_rng([3, 0, 1]).random()
    np.testing.assert_array_equal(first, expected)
    ds.set_epoch(1)
    assert not np.array_equal(ds[1]["image_q"], first)
