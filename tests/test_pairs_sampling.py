"""PairDataset and SingleDataset details beyond tests/test_pairs_mcsg.py: self-pairing with a
class in exactly two images, the seed and the first epoch, empty exclusions and label dtypes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cism_lib.data.mcsg import mask_classes
from cism_lib.data.pairs import PairDataset, SingleDataset, shared_class_chance
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


def _old_reference_for(members: np.ndarray, label: np.ndarray, exclude, rng: np.random.Generator) -> int:
    """The uniform draw as it was before class-first sampling existed (runs made with it keep their pairs)."""
    shares = members[np.flatnonzero(label)].any(axis=0)
    candidates = np.flatnonzero(shares)
    shares[np.asarray(exclude, dtype=np.int64)] = False
    others = np.flatnonzero(shares)
    return int(candidates[0]) if len(others) == 0 else int(others[rng.integers(len(others))])


def test_uniform_sampling_draws_the_references_it_always_drew() -> None:
    base = FakeSeg(CLASS_LISTS)
    ds = PairDataset(base, _identity)
    for q in range(len(CLASS_LISTS)):
        if not base.labels[q].any():
            continue
        for seed in range(5):
            got = ds.reference_for(base.labels[q], [q], np.random.default_rng(seed))
            assert got == _old_reference_for(ds.class_members, base.labels[q], [q], np.random.default_rng(seed))


def test_class_first_sampling_makes_a_rare_class_common_by_hand() -> None:
    # image 0 holds classes 1 and 2; eight images hold 1 only, one image holds 2 only
    base = FakeSeg([[1, 2]] + [[1]] * 8 + [[2]])
    any_, first = shared_class_chance(base.labels, "any"), shared_class_chance(base.labels, "class")
    # class 2: query 0 draws among 9 images of which one holds 2 (any: 1/9) or picks class 2 with
    # probability 1/2 (class); query 9's only partner is image 0, which holds 2
    assert any_[1] == pytest.approx((1 / 9 + 1) / 2) and first[1] == pytest.approx((1 / 2 + 1) / 2)
    # class 1: query 0's reference holds 1 with probability 8/9 (any) or 1/2 (class); the others always
    assert any_[0] == pytest.approx((8 / 9 + 8) / 9) and first[0] == pytest.approx((1 / 2 + 8) / 9)
    assert np.isnan(any_[2:]).all()  # no image holds classes 3-5


@pytest.mark.parametrize("sampling", ["any", "class"])
def test_reference_draws_follow_the_exact_chance(sampling) -> None:
    base = FakeSeg(CLASS_LISTS)
    ds = PairDataset(base, _identity, sampling=sampling)
    rng = np.random.default_rng(0)
    hits, count = np.zeros(base.labels.shape[1]), np.zeros(base.labels.shape[1])
    for q in np.flatnonzero(base.labels.any(axis=1)):
        for _ in range(3000):
            r = ds.reference_for(base.labels[q], [q], rng)
            assert r == q or (base.labels[r] & base.labels[q]).any()
            hits += base.labels[q] & base.labels[r]
            count += base.labels[q]
    expect = shared_class_chance(base.labels, sampling)
    seen = count > 0
    assert np.allclose(hits[seen] / count[seen], expect[seen], atol=0.02)


def test_class_first_sampling_is_an_option_of_the_config() -> None:
    from cism_lib.config import DataConfig, validate
    from cism_lib.errors import ConfigError

    with pytest.raises(ConfigError, match="pair_sampling must be one of"):
        validate(DataConfig(pair_sampling="rare"))
    with pytest.raises(ValueError, match="pair sampling must be one of"):
        PairDataset(FakeSeg(CLASS_LISTS), _identity, sampling="rare")
