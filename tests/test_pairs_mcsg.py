"""Tests of cism_lib.data.pairs and cism_lib.data.mcsg on a tiny in-memory dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cism_lib.classes import ClassSet
from cism_lib.classes import IGNORE_INDEX
from cism_lib.data.mcsg import MCSG, MOSAIC_FILL, mask_classes, mcsg_label_distribution, mosaic
from cism_lib.data.pairs import PairDataset, SingleDataset, pair_label_sets
from cism_lib.data.transforms import EvalTransform, TrainTransform

# Pixel colour encodes the class, so alignment can be checked from the image alone.
PALETTE = ((0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255))
TOY = ClassSet(name="toy", names=("background", "a", "b", "c", "d", "e"), palette=PALETTE)
PAL = np.asarray(PALETTE, np.uint8)

# Foreground classes of each fake image: 1..3 classes = low group, 4 = high, [] = empty,
# class 5 occurs only in image 7 (no partner).
CLASS_LISTS = [[1], [1, 2], [2, 3], [3], [1, 2, 3, 4], [1, 3, 4, 2], [], [5], [4], [1, 4], [2],
               [3, 4]]


def stripes(classes: list[int], h: int, w: int) -> np.ndarray:
    """Mask with one vertical stripe per class and a background stripe at the right."""
    mask = np.zeros((h, w), np.uint8)
    width = w // (len(classes) + 1)
    for j, c in enumerate(classes):
        mask[:, j * width:(j + 1) * width] = c
    return mask


class FakeSeg:
    """In-memory dataset implementing the Dataset protocol of docs/design.md."""

    def __init__(self, class_lists: list[list[int]], size: int = 16) -> None:
        self.classes = TOY
        self.ids = [f"img{i:02d}" for i in range(len(class_lists))]
        self.masks = [stripes(c, size, size + 2 * (i % 3)) for i, c in enumerate(class_lists)]
        k = TOY.num_foreground
        self.labels = np.stack([mask_classes(m, k) for m in self.masks])
        self.reads = self.mask_reads = 0

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image and mask: figures and scoring only; training must never call it."""
        self.mask_reads += 1
        return PAL[self.masks[i]], self.masks[i].copy()

    def read_image(self, i: int) -> np.ndarray:
        self.reads += 1
        return PAL[self.masks[i]]

    def image_path(self, i: int) -> Path:
        return Path(f"/fake/{self.ids[i]}.png")


# ---------------------------------------------------------------- pair_label_sets

def test_pair_label_sets_hand_values() -> None:
    l_q = np.array([1, 1, 0, 1, 0], np.float32)
    l_r = np.array([0, 1, 1, 1, 0], np.float32)
    co, q_nc, r_nc = pair_label_sets(l_q, l_r)
    assert co.tolist() == [0, 1, 0, 1, 0]
    assert q_nc.tolist() == [1, 0, 0, 0, 0]
    assert r_nc.tolist() == [0, 0, 1, 0, 0]


def test_pair_label_sets_swap_symmetry_and_types() -> None:
    rng = np.random.default_rng(0)
    l_q, l_r = rng.random((2, 50, 6)) < 0.4
    co, q_nc, r_nc = pair_label_sets(l_q, l_r)
    co2, r_nc2, q_nc2 = pair_label_sets(l_r, l_q)
    assert np.array_equal(co, co2) and np.array_equal(q_nc, q_nc2) and np.array_equal(r_nc, r_nc2)
    assert np.array_equal(co | q_nc, l_q) and not np.any(co & q_nc)
    t_co, t_q_nc, t_r_nc = pair_label_sets(torch.tensor(l_q, dtype=torch.float32),
                                           torch.tensor(l_r, dtype=torch.float32))
    assert np.array_equal(t_co.numpy().astype(bool), co)
    assert np.array_equal(t_r_nc.numpy().astype(bool), r_nc)
    b_co, _, _ = pair_label_sets(torch.tensor(l_q), torch.tensor(l_r))
    assert b_co.dtype == torch.bool and np.array_equal(b_co.numpy(), co)


def test_pair_label_sets_empty_common_set() -> None:
    l_q = torch.tensor([1.0, 0.0, 1.0])
    l_r = torch.tensor([0.0, 1.0, 0.0])
    co, q_nc, r_nc = pair_label_sets(l_q, l_r)
    assert co.sum() == 0 and torch.equal(q_nc, l_q) and torch.equal(r_nc, l_r)


# ---------------------------------------------------------------- PairDataset

def test_query_index_excludes_empty_and_flags_self_pairs() -> None:
    base = FakeSeg(CLASS_LISTS)
    pairs = PairDataset(base, EvalTransform())
    assert pairs.excluded == ["img06"] and len(pairs) == len(base) - 1
    assert pairs.self_paired == ["img07"]
    item = pairs[list(pairs.query_index).index(7)]
    assert item["id_q"] == item["id_r"] == "img07"
    assert item["label_co"].tolist() == [0, 0, 0, 0, 1]


def test_pair_invariants_over_many_samples() -> None:
    base = FakeSeg(CLASS_LISTS, size=8)
    pairs = PairDataset(base, EvalTransform(), seed=3)
    for epoch in range(6):
        pairs.set_epoch(epoch)
        for i in range(len(pairs)):
            item = pairs[i]
            q, r = base.ids.index(item["id_q"]), base.ids.index(item["id_r"])
            l_q, l_r = item["label_q"], item["label_r"]
            assert torch.equal(l_q, torch.tensor(base.labels[q], dtype=torch.float32))
            assert torch.equal(l_r, torch.tensor(base.labels[r], dtype=torch.float32))
            co, q_nc = item["label_co"], item["label_q_nc"]
            assert co.sum() > 0                                  # common set non-empty
            assert torch.equal(torch.maximum(co, q_nc), l_q)     # l_q\co ∪ l_co = l_q
            assert torch.all(co * q_nc == 0)                     # disjoint
            assert torch.equal(co + item["label_r_nc"], l_r)
            assert (r != q) == (item["id_q"] != "img07")         # a partner whenever one exists
            assert item["image_q"].shape == (3, 8, base.masks[q].shape[1])
    assert base.reads > 0 and base.mask_reads == 0


def test_reference_is_uniform_among_candidates() -> None:
    base = FakeSeg(CLASS_LISTS)
    pairs = PairDataset(base, EvalTransform())
    label = base.labels[3]                     # class c: images 2, 3, 4, 5, 11
    counts = np.bincount([pairs.reference_for(label, [3], np.random.default_rng([0, e]))
                          for e in range(800)], minlength=len(base))
    assert set(np.flatnonzero(counts)) == {2, 4, 5, 11}
    assert counts[[2, 4, 5, 11]].min() > 150   # expected 200 each


def test_pairs_deterministic_in_seed_epoch_index() -> None:
    base = FakeSeg(CLASS_LISTS)
    tf = TrainTransform(crop_size=8)
    a, b = PairDataset(base, tf, seed=5), PairDataset(base, tf, seed=5)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x["id_r"] == y["id_r"] and torch.equal(x["image_q"], y["image_q"])
        assert torch.equal(x["image_r"], y["image_r"])
    by_epoch = []
    for e in range(4):
        a.set_epoch(e)
        by_epoch.append([a[i]["id_r"] for i in range(len(a))])
    assert len({tuple(r) for r in by_epoch}) > 1          # references change with the epoch
    a.set_epoch(2)
    assert [a[i]["id_r"] for i in range(len(a))] == by_epoch[2]


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_dataloader_workers_give_same_pairs() -> None:
    base = FakeSeg(CLASS_LISTS, size=8)
    pairs = PairDataset(base, TrainTransform(crop_size=8), seed=1)
    pairs.set_epoch(2)

    def collect(workers: int) -> list[dict]:
        loader = DataLoader(pairs, batch_size=4, num_workers=workers, shuffle=False)
        return list(loader)

    serial, parallel = collect(0), collect(2)
    assert len(serial) == len(parallel) == 3
    for s, p in zip(serial, parallel):
        assert s["id_q"] == p["id_q"] and s["id_r"] == p["id_r"]
        for key in ("image_q", "image_r", "label_co"):
            assert torch.equal(s[key], p[key])


def test_single_dataset_keys() -> None:
    base = FakeSeg(CLASS_LISTS)
    single = SingleDataset(base, EvalTransform())
    assert len(single) == len(base) - 1 and single.excluded == ["img06"]
    item = single[0]
    assert set(item) == {"image_q", "label_q", "id_q"}   # no mask: weak supervision
    assert base.mask_reads == 0
    assert item["label_q"].tolist() == [1, 0, 0, 0, 0]


# ---------------------------------------------------------------- MCSG

def test_groups_and_lambda_on_hand_labels() -> None:
    labels = np.array([[1, 0, 0, 0, 0],
                       [1, 1, 1, 0, 0],
                       [1, 1, 1, 1, 0],
                       [0, 0, 0, 0, 0],
                       [0, 1, 0, 1, 0],
                       [1, 1, 1, 1, 1]], bool)
    m = MCSG(labels, batch_size=4)
    assert m.low.tolist() == [0, 1, 4] and m.high.tolist() == [2, 5]
    assert m.lam == pytest.approx(3 / 5)
    assert m.prob == pytest.approx(1 / (3 / 5 * 4))     # one mosaic per batch of 4 on average
    m2 = MCSG(labels, max_categories=1, prob=0.3)
    assert m2.low.tolist() == [0] and m2.lam == pytest.approx(1 / 5) and m2.prob == 0.3
    assert MCSG(labels, batch_size=1).prob == 1.0       # clipped to a probability


def test_sample_returns_distinct_low_indices_led_by_first() -> None:
    base = FakeSeg(CLASS_LISTS)
    m = MCSG(base.labels)
    low = set(m.low.tolist())
    assert 4 not in low and 5 not in low and 6 not in low
    for s in range(20):
        idx = m.sample(np.random.default_rng(s), first=2)
        assert idx[0] == 2 and len(set(idx)) == 4 and set(idx) <= low
        assert len(set(m.sample(np.random.default_rng(s)))) == 4


def test_mosaic_keeps_every_tile_whole_and_aligned() -> None:
    sizes = [(20, 30), (12, 9), (17, 25), (8, 8)]
    masks = [np.full(s, c, np.uint8) for s, c in zip(sizes, (1, 2, 3, 4))]
    images = [PAL[m] for m in masks]
    for seed in range(10):
        image, mask = mosaic(images, np.random.default_rng(seed), masks=masks)
        assert image.shape == (20, 30, 3) and mask.shape == (20, 30)
        tiles = mask != IGNORE_INDEX
        assert np.array_equal(image[tiles], PAL[mask[tiles]])        # pixel-for-pixel alignment
        assert np.all(image[~tiles] == MOSAIC_FILL)                  # the rest is the fill colour
        assert set(np.unique(mask[tiles])) == {1, 2, 3, 4}            # every tile is in the mosaic
        for c in (1, 2, 3, 4):                                        # ... as one whole rectangle
            ys, xs = np.nonzero(mask == c)
            assert (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1) == len(ys)
        no_mask, none = mosaic(images, np.random.default_rng(seed))
        assert none is None and np.array_equal(no_mask, image)        # same geometry without masks
    image, _ = mosaic(images, np.random.default_rng(0), out_size=(11, 13))
    assert image.shape == (11, 13, 3)


def test_mosaic_tiles_keep_aspect_ratio_and_fit_their_cell() -> None:
    """A 10x40 strip in a cell: scaled by the same factor in both axes, never cropped."""
    masks = [np.full((10, 40), 1, np.uint8)] + [np.full((40, 40), c, np.uint8) for c in (2, 3, 4)]
    for seed in range(20):
        _, mask = mosaic([PAL[m] for m in masks], np.random.default_rng(seed), masks=masks,
                         scale_range=(1.0, 1.0))
        ys, xs = np.nonzero(mask == 1)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert abs(w / h - 4.0) < 4.0 / min(h, 4) + 0.5              # aspect kept up to rounding


def test_mosaic_is_deterministic_and_random_in_layout() -> None:
    masks = [np.full((16, 16), c, np.uint8) for c in (1, 2, 3, 4)]
    images = [PAL[m] for m in masks]
    a = mosaic(images, np.random.default_rng(4), masks=masks)
    b = mosaic(images, np.random.default_rng(4), masks=masks)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    centres = {tuple(mosaic(images, np.random.default_rng(s), masks=masks, scale_range=(1, 1))[1][
        [3, 3, -4, -4], [3, -4, 3, -4]]) for s in range(30)}
    assert len(centres) > 5                                  # random arrangement


def test_mcsg_label_is_the_union_of_the_tiles_labels_and_reads_no_mask() -> None:
    base = FakeSeg(CLASS_LISTS, size=48)
    m = MCSG(base.labels)
    for seed in range(15):
        rng = np.random.default_rng(seed)
        indices = m.sample(rng, first=int(m.low[seed % len(m.low)]))
        image, label = m.compose(base, indices, rng)
        assert np.array_equal(label, base.labels[indices].any(0))
        assert image.shape[:2] == (48, max(base.masks[i].shape[1] for i in indices))
    assert base.mask_reads == 0
    # The figure path stitches the ground truth with the same geometry: every labelled class
    # is still in the stitched mask (whole tiles), so the union is exact.
    image, mask, label = m.compose_with_mask(base, indices, np.random.default_rng(99))
    again, _ = m.compose(base, indices, np.random.default_rng(99))
    assert np.array_equal(image, again)
    present = {int(c) for c in np.unique(mask) if c not in (0, IGNORE_INDEX)}
    assert present == set((np.flatnonzero(label) + 1).tolist())


def test_pair_dataset_with_mcsg_uses_mosaics_for_low_queries() -> None:
    base = FakeSeg(CLASS_LISTS, size=16)
    m = MCSG(base.labels, prob=1.0)
    pairs = PairDataset(base, EvalTransform(), seed=0, mcsg=m)
    n_mosaic = 0
    for epoch in range(3):
        pairs.set_epoch(epoch)
        for i in range(len(pairs)):
            item = pairs[i]
            q = int(pairs.query_index[i])
            if item["id_q"].startswith("mosaic:"):
                n_mosaic += 1
                tiles = [base.ids.index(t) for t in item["id_q"][7:].split("+")]
                assert tiles[0] == q and m.is_low[q] and len(tiles) == 4
                union = base.labels[tiles].any(0).astype(np.float32)
                assert np.array_equal(item["label_q"].numpy(), union)
                assert base.ids.index(item["id_r"]) not in tiles
            else:
                assert item["id_q"] == base.ids[q]
                assert torch.equal(item["label_q"], torch.tensor(base.labels[q], dtype=torch.float32))
            assert item["label_co"].sum() > 0
            assert torch.equal(torch.maximum(item["label_co"], item["label_q_nc"]), item["label_q"])
    assert n_mosaic == 3 * sum(m.is_low)                    # prob=1: every low query, every epoch
    assert base.mask_reads == 0


def test_mcsg_label_distribution_before_and_after() -> None:
    base = FakeSeg(CLASS_LISTS)
    before = mcsg_label_distribution(None, base.labels, 400, np.random.default_rng(0))
    assert before.shape == (400, 5) and before.any(axis=1).all()
    rows = {tuple(r) for r in before}
    assert rows <= {tuple(r) for r in base.labels}
    m = MCSG(base.labels, prob=1.0)
    after = mcsg_label_distribution(m, base.labels, 400, np.random.default_rng(0))
    assert after.sum(1).mean() > before.sum(1).mean() + 1.0
    assert (after.sum(1) > 3).mean() > 0.5
    none = mcsg_label_distribution(MCSG(base.labels, prob=0.0), base.labels, 400,
                                   np.random.default_rng(0))
    assert {tuple(r) for r in none} <= {tuple(r) for r in base.labels}


# ---------------------------------------------------------------- sampler statistics (5 sigma bounds)

def _five_sigma(counts: np.ndarray, cells: list[int]) -> None:
    """Every cell within 5 binomial sigmas of n / len(cells), and nothing outside the cells."""
    n, p = counts.sum(), 1 / len(cells)
    bound = 5 * np.sqrt(n * p * (1 - p))
    assert set(np.flatnonzero(counts)) == set(cells)
    assert np.abs(counts[cells] - n * p).max() < bound, (counts[cells], n * p, bound)


def test_reference_is_uniform_over_the_union_of_the_query_classes() -> None:
    """Query img09 = classes {a, d}: candidates {0, 1, 4, 5, 8, 11}, each 1/6.

    Drawing a class first and then an image of it (a realistic bug) gives images 4 and 5 (in both
    classes) 1/4 each: 1500 of 6000 draws against the 1000 ± 144 (5 sigma) allowed here.
    """
    base = FakeSeg(CLASS_LISTS)
    pairs = PairDataset(base, EvalTransform())
    rng = np.random.default_rng(123)
    draws = [pairs.reference_for(base.labels[9], [9], rng) for _ in range(6000)]
    _five_sigma(np.bincount(draws, minlength=len(base)), [0, 1, 4, 5, 8, 11])


def test_reference_uniform_after_excluding_mosaic_tiles() -> None:
    """A mosaic of tiles {0, 2, 4} with classes {a, b, c}: every other image sharing one of them."""
    base = FakeSeg(CLASS_LISTS)
    pairs = PairDataset(base, EvalTransform())
    label = base.labels[0] | base.labels[2] | base.labels[4]  # a, b, c, d
    rng = np.random.default_rng(7)
    draws = [pairs.reference_for(label, [0, 2, 4], rng) for _ in range(4000)]
    _five_sigma(np.bincount(draws, minlength=len(base)), [1, 3, 5, 8, 9, 10, 11])


def test_item_references_uniform_over_epochs() -> None:
    """Through __getitem__ (rng per seed, epoch, item): img03 (class c) pairs with 2, 4, 5, 11."""
    base = FakeSeg(CLASS_LISTS, size=4)
    pairs = PairDataset(base, lambda image, mask, rng: (torch.zeros(1), None), seed=5)
    item = list(pairs.query_index).index(3)
    counts = np.zeros(len(base), dtype=np.int64)
    for epoch in range(1600):
        pairs.set_epoch(epoch)
        counts[base.ids.index(pairs[item]["id_r"])] += 1
    _five_sigma(counts, [2, 4, 5, 11])
