"""Multi-Category Sample Generation (MCSG, paper section 3.3): 2x2 mosaics of low-category images.

Groups. An image is *low-category* when its image-level label has 1..`max_categories` classes
(paper: <= 3) and *high-category* when it has more; images with an empty label (background
only) are in neither group, because the pair sampler never uses them as queries.
λ = n_L / (n_L + n_H).

How the paper builds a batch, and our reading of it. (1) A batch of b >= 4 images is drawn from
both groups in the ratio λ, i.e. λb low- and (1-λ)b high-category images: uniform sampling of
queries already gives this in expectation. (2) Four images are picked from the λb low-category
images of the batch and (3) stitched into ONE new image (random scaling, cropping and
arrangement; output as large as the largest tile). The requirement b >= 4 only makes sense if
the four tiles come from one batch, so we read it as one mosaic per batch.
`PairDataset` works per item, not per batch: a low-category query is replaced, with probability
p, by a mosaic of itself and three other random low-category images. The expected number of
mosaics per batch is p·λ·b, so the default p = min(1, 1 / (λ·b)) gives one mosaic per batch,
as in the paper; the mosaic takes the query's slot (batch size unchanged) and its three other
tiles are drawn from the whole low-category group rather than from the same batch, which has
the same distribution. Pass `prob` to override p (e.g. prob=1 turns every low-category query
into a mosaic).

Mosaic labels. The label of a mosaic is the union of the tiles' image-level labels restricted
to the classes that survive (have >= `min_pixels` pixels) in the stitched mask: random cropping
can remove a class, and a class a tile's label left out (below the dataset's pixel threshold)
is not added back.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from cism_lib.data.transforms import resize_pair


def _fit_tile(image: np.ndarray, mask: np.ndarray, height: int, width: int,
              rng: np.random.Generator, scale_range: tuple[float, float]
              ) -> tuple[np.ndarray, np.ndarray]:
    """Randomly rescale a tile to cover height x width (times a random factor), then crop it."""
    h, w = mask.shape
    scale = max(height / h, width / w) * rng.uniform(*scale_range)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    image, mask = resize_pair(image, mask, nh, nw)
    y = int(rng.integers(0, nh - height + 1))
    x = int(rng.integers(0, nw - width + 1))
    return image[y:y + height, x:x + width], mask[y:y + height, x:x + width]


def mosaic(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], rng: np.random.Generator,
           out_size: tuple[int, int] | None = None, scale_range: tuple[float, float] = (1.0, 1.5)
           ) -> tuple[np.ndarray, np.ndarray]:
    """Stitch 4 images and their masks into a 2x2 mosaic with a random split point and order.

    Each tile is scaled to cover its cell times a factor drawn from `scale_range`, then randomly
    cropped to the cell; the mask goes through the same geometry (nearest neighbour). The output
    is `out_size` (height, width), by default the largest input height and width.
    """
    if len(images) != 4 or len(masks) != 4:
        raise ValueError(f"mosaic needs 4 images and 4 masks, got {len(images)} and {len(masks)}")
    if out_size is None:
        out_size = (max(m.shape[0] for m in masks), max(m.shape[1] for m in masks))
    height, width = out_size
    cy = int(np.clip(round(rng.uniform(0.25, 0.75) * height), 1, height - 1))
    cx = int(np.clip(round(rng.uniform(0.25, 0.75) * width), 1, width - 1))
    cells = [(0, cy, 0, cx), (0, cy, cx, width), (cy, height, 0, cx), (cy, height, cx, width)]
    out_image = np.zeros((height, width, 3), dtype=np.uint8)
    out_mask = np.zeros((height, width), dtype=np.uint8)
    for (y0, y1, x0, x1), j in zip(cells, rng.permutation(4)):
        tile, tile_mask = _fit_tile(images[j], masks[j], y1 - y0, x1 - x0, rng, scale_range)
        out_image[y0:y1, x0:x1] = tile
        out_mask[y0:y1, x0:x1] = tile_mask
    return out_image, out_mask


def mask_classes(mask: np.ndarray, num_foreground: int, min_pixels: int = 1) -> np.ndarray:
    """bool [K]: foreground class k+1 has at least `min_pixels` pixels in the mask."""
    counts = np.bincount(mask.ravel(), minlength=256)[1:num_foreground + 1]
    return counts >= min_pixels


class MCSG:
    """Low/high-category groups of a training set and the mosaics built from the low group."""

    def __init__(self, labels: np.ndarray, max_categories: int = 3, prob: float | None = None,
                 batch_size: int = 8, scale_range: tuple[float, float] = (1.0, 1.5),
                 min_pixels: int = 1) -> None:
        labels = np.asarray(labels, dtype=bool)
        counts = labels.sum(axis=1)
        self.num_foreground = labels.shape[1]
        self.max_categories = max_categories
        self.is_low = (counts >= 1) & (counts <= max_categories)
        self.low = np.flatnonzero(self.is_low)
        self.high = np.flatnonzero(counts > max_categories)
        if len(self.low) == 0:
            raise ValueError(f"MCSG: no image has 1..{max_categories} classes; nothing to stitch")
        self.lam = len(self.low) / (len(self.low) + len(self.high))
        self.prob = min(1.0, 1.0 / (self.lam * batch_size)) if prob is None else float(prob)
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"MCSG: prob must be in [0, 1], got {self.prob}")
        self.scale_range = scale_range
        self.min_pixels = min_pixels

    @property
    def n_low(self) -> int:
        """n_L: number of low-category images."""
        return len(self.low)

    @property
    def n_high(self) -> int:
        """n_H: number of high-category images."""
        return len(self.high)

    def sample(self, rng: np.random.Generator, first: int | None = None) -> list[int]:
        """4 low-category indices, distinct when n_L >= 4 (else with repeats); `first` leads."""
        others = self.low if first is None else self.low[self.low != first]
        need = 4 if first is None else 3
        if len(others) == 0:
            picked = np.full(need, first)
        else:
            picked = rng.choice(others, size=need, replace=len(others) < need)
        head = [] if first is None else [int(first)]
        return head + [int(i) for i in picked]

    def compose(self, base: Any, indices: Sequence[int], rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mosaic of the given 4 base samples → (image, mask, label bool [K])."""
        tiles = [base.read(i) for i in indices]
        image, mask = mosaic([t[0] for t in tiles], [t[1] for t in tiles], rng,
                             scale_range=self.scale_range)
        union = np.asarray(base.labels, dtype=bool)[list(indices)].any(axis=0)
        label = union & mask_classes(mask, self.num_foreground, self.min_pixels)
        return image, mask, label

    def make(self, base: Any, rng: np.random.Generator, first: int | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A random mosaic of 4 low-category samples → (image, mask, label bool [K])."""
        return self.compose(base, self.sample(rng, first), rng)

    def maybe_mosaic(self, base: Any, query: int, rng: np.random.Generator, tries: int = 3
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]] | None:
        """With probability `prob` for a low-category query: (image, mask, label, tile indices).

        Returns None when the query stays as it is: a high-category query, the coin said no, or
        `tries` mosaics in a row lost every class to cropping (an empty label cannot be paired).
        """
        if not self.is_low[query] or rng.random() >= self.prob:
            return None
        for _ in range(tries):
            indices = self.sample(rng, first=query)
            image, mask, label = self.compose(base, indices, rng)
            if label.any():
                return image, mask, label, indices
        return None


def mcsg_label_distribution(mcsg: MCSG | None, base_labels: np.ndarray, n: int,
                            rng: np.random.Generator, base: Any = None) -> np.ndarray:
    """Labels bool [n, K] of n training queries drawn as `PairDataset` draws them (Figure 6).

    Queries are uniform over images with a non-empty label; with `mcsg` a low-category query
    becomes a mosaic with probability `mcsg.prob`. Without `base` the mosaic label is the union
    of the 4 tiles' labels (an upper bound: cropping can drop a class); with `base` the mosaics
    are really stitched and labelled from the stitched mask.
    """
    labels = np.asarray(base_labels, dtype=bool)
    queries = np.flatnonzero(labels.any(axis=1))
    out = np.zeros((n, labels.shape[1]), dtype=bool)
    for row, q in enumerate(rng.choice(queries, size=n)):
        out[row] = labels[q]
        if mcsg is None:
            continue
        if base is not None:
            made = mcsg.maybe_mosaic(base, int(q), rng)
            out[row] = labels[q] if made is None else made[2]
        elif mcsg.is_low[q] and rng.random() < mcsg.prob:
            out[row] = labels[mcsg.sample(rng, first=int(q))].any(axis=0)
    return out


__all__ = ["MCSG", "mosaic", "mask_classes", "mcsg_label_distribution"]
