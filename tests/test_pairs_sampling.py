"""PairDataset and SingleDataset details beyond tests/test_pairs_mcsg.py: self-pairing with a
class in exactly two images, the seed and the first epoch, empty exclusions and label dtypes."""
from __future__ import annotations

import numpy as np
import torch

from cism_lib.data.mcsg import mask_classes
from cism_lib.data.pairs import PairDataset, SingleDataset
from tests.test_pairs_mcsg import CLASS_LISTS, FakeSeg


def _identity(image: np.ndarray, mask: None, rng: np.random.Generator):
    return torch.from_numpy(image.astype(np.float32)), None


def test_a_class_in_exactly_two_images_gives_both_a_partner() -> None:
    base = FakeSeg([[1], [1], [2], [3], [3], [3]])
    ds = PairDataset(base, _identity)
    assert ds.self_paired == ["img02"]  # class 2 alone; classes 1 (two images) and 3 pair up
    assert ds[0]["id_r"] == "img01" and ds[1]["id_r"] == "img00"


def test_items_depend_on_the_seed_and_start_in_epoch_zero() -> None:
    base = FakeSeg(CLASS_LISTS)
    default, zero = PairDataset(base, _identity), PairDataset(base, _identity, seed=0)
    zero.set_epoch(0)
    refs = [default[i]["id_r"] for i in range(len(default))]
    assert refs == [zero[i]["id_r"] for i in range(len(zero))]  # seed 0, epoch 0 by default
    other = PairDataset(base, _identity, seed=5)
    assert refs != [other[i]["id_r"] for i in range(len(other))]
    single = SingleDataset(base, lambda im, m, rng: (torch.tensor(rng.random(), dtype=torch.float64), None))
    assert float(single[2]["image_q"]) == np.random.default_rng([0, 0, 2]).random()


def test_reference_for_with_nothing_excluded_and_float_labels() -> None:
    base = FakeSeg(CLASS_LISTS)
    ds = PairDataset(base, _identity)
    r = ds.reference_for(base.labels[7], [], np.random.default_rng(0))  # class 5: only image 7
    assert r == 7
    item = ds[0]
    for key in ("label_q", "label_r", "label_co", "label_q_nc", "label_r_nc"):
        assert item[key].dtype == torch.float32, key


def test_mask_classes_counts_at_least_min_pixels() -> None:
    mask = np.array([[1, 2, 2], [0, 3, 3]], np.uint8)
    mask[1, 2] = 3
    assert mask_classes(mask, 4).tolist() == [True, True, True, False]  # one pixel is enough
    assert mask_classes(mask, 4, min_pixels=2).tolist() == [False, True, True, False]
