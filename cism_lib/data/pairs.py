"""Query/reference image pairs that share a class (the input of CIAN/CISM), and single images (CAM).

Sampling rules:
- Queries are the base images with a non-empty image-level label. Background-only images can
  share no class with anything, so they are left out of the query index; their ids are listed
  in `PairDataset.excluded`. Item i is the i-th kept image (`query_index[i]`), so item i is base
  sample i whenever nothing is excluded.
- The reference is drawn uniformly from the *other* images sharing at least one class with the
  query (sampling "any"), or, as MCIS does (sampling "class"), one of the query's classes that
  another image holds is drawn uniformly first and then an image holding it: a query's rare
  class is then common to the pair far more often (`shared_class_chance`). A query whose
  classes occur in no other image is paired with itself (its ids are in
  `PairDataset.self_paired`), so `label_co` is never all zero.
- All randomness of item i in epoch e comes from `np.random.default_rng([seed, e, i])`: the
  pair and the augmentation are identical for any number of DataLoader workers and under DDP,
  where `DistributedSampler` only partitions the indices.
- Weak supervision: items are built from `base.read_image` and `base.labels` only; no pixel
  mask is ever read (the masks define each image's label once, in the dataset, and score
  results). Items carry no masks. MCSG mosaics (see `cism_lib.data.mcsg`) stitch whole images
  and are labelled with the union of their four labels; the reference then shares a class
  with the mosaic and is none of its four tiles when possible. A mosaic query's id is
  "mosaic:" followed by the tiles' ids joined with "+".
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cism_lib.config import PAIR_SAMPLING
from cism_lib.data.mcsg import MCSG

Transform = Callable[[np.ndarray, None, np.random.Generator], tuple[torch.Tensor, None]]


def _is_bool(x: Any) -> bool:
    """True for a bool numpy array or torch tensor."""
    return x.dtype in (np.bool_, torch.bool)


def pair_label_sets(l_q: Any, l_r: Any) -> tuple[Any, Any, Any]:
    """(l_co, l_q\\co, l_r\\co): common classes and each image's non-common classes (Eq. 23-26).

    Works on numpy arrays or torch tensors, multi-hot float or bool, any leading batch shape.
    """
    if _is_bool(l_q):
        l_co = l_q & l_r
        return l_co, l_q & ~l_co, l_r & ~l_co
    l_co = l_q * l_r
    return l_co, l_q - l_co, l_r - l_co


def _as_float(label: np.ndarray) -> torch.Tensor:
    """bool [K] → float32 tensor [K]."""
    return torch.from_numpy(np.asarray(label, dtype=np.float32))


class _Indexed(Dataset):
    """Shared part: the query index over non-empty labels, the epoch and the per-item RNG."""

    def __init__(self, base: Any, transform: Transform, seed: int = 0) -> None:
        self.base = base
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self.labels = np.asarray(base.labels, dtype=bool)
        nonempty = self.labels.any(axis=1)
        self.query_index = np.flatnonzero(nonempty)
        self.excluded = [base.ids[i] for i in np.flatnonzero(~nonempty)]

    def __len__(self) -> int:
        return len(self.query_index)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; with the seed it fixes every pair and augmentation."""
        self.epoch = int(epoch)

    def rng_for(self, index: int) -> np.random.Generator:
        """The generator of item `index` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])


class PairDataset(_Indexed):
    """Pairs (query, reference) sharing at least one class; optionally MCSG mosaics as queries."""

    def __init__(self, base: Any, transform: Transform, seed: int = 0,
                 mcsg: MCSG | None = None, sampling: str = "any") -> None:
        super().__init__(base, transform, seed)
        if sampling not in PAIR_SAMPLING:
            raise ValueError(f"pair sampling must be one of {PAIR_SAMPLING}, got {sampling!r}")
        self.mcsg, self.sampling = mcsg, sampling
        # Per-class membership, bool [K, N] (row k = images containing class k): the union of a
        # query's rows is its candidate set in one vectorised OR.
        self.class_members = np.ascontiguousarray(self.labels.T)
        class_sizes = self.labels.sum(axis=0)
        has_partner = (self.labels & (class_sizes >= 2)).any(axis=1)
        self.self_paired = [base.ids[i] for i in self.query_index if not has_partner[i]]

    def reference_for(self, label: np.ndarray, exclude: Sequence[int],
                      rng: np.random.Generator) -> int:
        """A base index sharing a class with `label`, not in `exclude`, drawn as `sampling` says.

        When every such image is excluded (a query whose classes occur nowhere else), the first
        of them is returned: the query is paired with itself (or a mosaic with one of its tiles).
        """
        classes = np.flatnonzero(label)
        if len(classes) == 0:
            raise ValueError("reference_for: an empty label shares no class with any image")
        holders = self.class_members[classes]  # [classes of the query, N]
        candidates = np.flatnonzero(holders.any(axis=0))
        holders = holders.copy()
        holders[:, np.asarray(exclude, dtype=np.int64)] = False
        usable = holders[holders.any(axis=1)]  # the query's classes another image holds
        if len(usable) == 0:
            return int(candidates[0])
        pool = usable[rng.integers(len(usable))] if self.sampling == "class" else usable.any(axis=0)
        others = np.flatnonzero(pool)
        return int(others[rng.integers(len(others))])

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.rng_for(index)
        q = int(self.query_index[index])
        made = self.mcsg.maybe_mosaic(self.base, q, rng) if self.mcsg is not None else None
        if made is None:
            image_q, label_q, id_q, tiles = self.base.read_image(q), self.labels[q], self.base.ids[q], [q]
        else:
            image_q, label_q, tiles = made
            id_q = "mosaic:" + "+".join(self.base.ids[t] for t in tiles)
        r = self.reference_for(label_q, tiles, rng)
        label_r = self.labels[r]
        l_co, l_q_nc, l_r_nc = pair_label_sets(label_q, label_r)
        image_q, _ = self.transform(image_q, None, rng)
        image_r, _ = self.transform(self.base.read_image(r), None, rng)
        return {"image_q": image_q, "image_r": image_r,
                "label_q": _as_float(label_q), "label_r": _as_float(label_r),
                "label_co": _as_float(l_co), "label_q_nc": _as_float(l_q_nc),
                "label_r_nc": _as_float(l_r_nc), "id_q": id_q, "id_r": self.base.ids[r]}


class SingleDataset(_Indexed):
    """Single augmented images for the plain CAM baseline (same query index as `PairDataset`)."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.rng_for(index)
        q = int(self.query_index[index])
        image, _ = self.transform(self.base.read_image(q), None, rng)
        return {"image_q": image, "label_q": _as_float(self.labels[q]),
                "id_q": self.base.ids[q]}


def shared_class_chance(labels: np.ndarray, sampling: str = "any") -> np.ndarray:
    """Per class k, the chance that a query's reference also holds k when the query does (the
    mean over the queries holding k), computed exactly from the image-level labels [N, K] for
    a PairDataset without MCSG; NaN for a class no image holds. The slow, exact counterpart of
    `reference_for`'s draws."""
    labels = np.asarray(labels, dtype=bool)
    n, k = labels.shape
    chance = np.zeros(k)
    count = np.zeros(k)
    for q in np.flatnonzero(labels.any(axis=1)):
        others = np.ones(n, dtype=bool)
        others[q] = False
        holders = labels[:, labels[q]].T & others  # [classes of q, N]
        if not holders.any():  # paired with itself: every class of q is common to the pair
            chance[labels[q]] += 1
            count[labels[q]] += 1
            continue
        if sampling == "class":
            usable = holders[holders.any(axis=1)]
            # P(reference = i): a usable class uniformly, then one of its holders uniformly
            p_ref = (usable / usable.sum(axis=1, keepdims=True)).mean(axis=0)
        else:
            pool = holders.any(axis=0)
            p_ref = pool / pool.sum()
        chance[labels[q]] += p_ref @ labels[:, labels[q]]
        count[labels[q]] += 1
    return np.where(count > 0, chance / np.maximum(count, 1), np.nan)


__all__ = ["PairDataset", "SingleDataset", "pair_label_sets", "shared_class_chance"]
