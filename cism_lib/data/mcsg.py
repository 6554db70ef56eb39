"""Multi-Category Sample Generation (MCSG, paper section 3.3): 2x2 mosaics of low-category images.

Groups. An image is *low-category* when its image-level label has 1..`max_categories` classes
(paper: <= 3) and *high-category* when it has more; images with an empty label (background
only) are in neither group, because the pair sampler never uses them as queries.
λ = n_L / (n_L + n_H).

How the paper builds a batch, and our reading of it. (1) A batch of b >= 4 images is drawn from
both groups in the ratio λ, i.e. λb low- and (1-λ)b high-category images: uniform sampling of
queries already gives this in expectation. (2) Four images are picked from the λb low-category
images of the batch and (3) stitched into ONE new image (random scaling, cropping and
arrangement; output as large as the largest tile; we keep the scaling and arrangement but fit
whole tiles instead of cropping them, see "Mosaic labels"). The requirement b >= 4 only makes sense if
the four tiles come from one batch, so we read it as one mosaic per batch.
`PairDataset` works per item, not per batch: a low-category query is replaced, with probability
p, by a mosaic of itself and three other random low-category images. The expected number of
mosaics per batch is p·λ·b, so the default p = min(1, 1 / (λ·b)) gives one mosaic per batch,
as in the paper; the mosaic takes the query's slot (batch size unchanged) and its three other
tiles are drawn from the whole low-category group rather than from the same batch, which has
the same distribution. Pass `prob` to override p (e.g. prob=1 turns every low-category query
into a mosaic).

Mosaic labels (weak supervision). A mosaic is labelled with the union of its four images'
image-level labels and nothing else: no pixel mask is read. That label is exact because every
tile is the whole image, scaled down to fit its cell (aspect ratio kept, a random factor from
`scale_range` capped at 1, placed at a random position in the cell, the rest filled with
`MOSAIC_FILL`), so no labelled object is cut away. (Random crops of the tiles could drop a
class while the union still names it; checking which classes survive would need the masks.)
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from cism_lib.classes import IGNORE_INDEX
from cism_lib.data.transforms import resize_pair

MOSAIC_FILL = (124, 116, 104)  # the ImageNet mean colour, ~0 after either backbone's normalisation


def _fit_tile(image: np.ndarray, mask: np.ndarray | None, height: int, width: int,
              rng: np.random.Generator, scale_range: tuple[float, float]
              ) -> tuple[np.ndarray, np.ndarray | None, int, int]:
    """The whole image scaled to fit height x width (times a random factor <= 1), and a random
    top-left offset in the cell: (image, mask or None, dy, dx)."""
    h, w = image.shape[:2]
    scale = min(height / h, width / w) * min(1.0, rng.uniform(*scale_range))
    nh, nw = min(height, max(1, round(h * scale))), min(width, max(1, round(w * scale)))
    image, mask = resize_pair(image, mask, nh, nw)
    dy = int(rng.integers(0, height - nh + 1))
    dx = int(rng.integers(0, width - nw + 1))
    return image, mask, dy, dx


def mosaic(images: Sequence[np.ndarray], rng: np.random.Generator,
           out_size: tuple[int, int] | None = None, scale_range: tuple[float, float] = (0.7, 1.0),
           masks: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Stitch 4 whole images into a 2x2 mosaic with a random split point and order.

    Each image is scaled to fit its cell (see the module docstring), so all of it is in the
    mosaic. The output is `out_size` (height, width), by default the largest input height and
    width. `masks` (for figures only; training passes none) go through the same geometry and
    are IGNORE_INDEX outside the tiles; the mask returned is None without them.
    """
    if len(images) != 4 or (masks is not None and len(masks) != 4):
        raise ValueError(f"mosaic needs 4 images (and 4 masks if any), got {len(images)}"
                         f"{'' if masks is None else f' and {len(masks)}'}")
    if out_size is None:
        out_size = (max(m.shape[0] for m in images), max(m.shape[1] for m in images))
    height, width = out_size
    cy = int(np.clip(round(rng.uniform(0.25, 0.75) * height), 1, height - 1))
    cx = int(np.clip(round(rng.uniform(0.25, 0.75) * width), 1, width - 1))
    cells = [(0, cy, 0, cx), (0, cy, cx, width), (cy, height, 0, cx), (cy, height, cx, width)]
    out_image = np.empty((height, width, 3), dtype=np.uint8)
    out_image[:] = MOSAIC_FILL
    out_mask = None if masks is None else np.full((height, width), IGNORE_INDEX, dtype=np.uint8)
    for (y0, y1, x0, x1), j in zip(cells, rng.permutation(4)):
        tile, tile_mask, dy, dx = _fit_tile(images[j], None if masks is None else masks[j],
                                            y1 - y0, x1 - x0, rng, scale_range)
        ys, xs = slice(y0 + dy, y0 + dy + tile.shape[0]), slice(x0 + dx, x0 + dx + tile.shape[1])
        out_image[ys, xs] = tile
        if out_mask is not None:
            out_mask[ys, xs] = tile_mask
    return out_image, out_mask


def mask_classes(mask: np.ndarray, num_foreground: int, min_pixels: int = 1) -> np.ndarray:
    """bool [K]: foreground class k+1 has at least `min_pixels` pixels in the mask (scoring and
    figures; never used for a training label)."""
    counts = np.bincount(mask.ravel(), minlength=256)[1:num_foreground + 1]
    return counts >= min_pixels


class MCSG:
    """Low/high-category groups of a training set and the mosaics built from the low group."""

    def __init__(self, labels: np.ndarray, max_categories: int = 3, prob: float | None = None,
                 batch_size: int = 8, scale_range: tuple[float, float] = (0.7, 1.0)) -> None:
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

    def label_of(self, base: Any, indices: Sequence[int]) -> np.ndarray:
        """bool [K]: the union of the image-level labels of the mosaic's tiles."""
        return np.asarray(base.labels, dtype=bool)[list(indices)].any(axis=0)

    def compose(self, base: Any, indices: Sequence[int], rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
        """Mosaic of the given 4 base images → (image, label bool [K]); reads no mask."""
        image, _ = mosaic([base.read_image(i) for i in indices], rng, scale_range=self.scale_range)
        return image, self.label_of(base, indices)

    def compose_with_mask(self, base: Any, indices: Sequence[int], rng: np.random.Generator
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image, ground-truth mask, label) of a mosaic, for figures only: the same geometry as
        `compose` for the same generator state, plus the stitched masks."""
        tiles = [base.read(i) for i in indices]
        image, mask = mosaic([t[0] for t in tiles], rng, scale_range=self.scale_range,
                             masks=[t[1] for t in tiles])
        return image, mask, self.label_of(base, indices)

    def make(self, base: Any, rng: np.random.Generator, first: int | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A random mosaic of 4 low-category samples with its mask (figures) → (image, mask, label)."""
        return self.compose_with_mask(base, self.sample(rng, first), rng)

    def maybe_mosaic(self, base: Any, query: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, list[int]] | None:
        """With probability `prob` for a low-category query: (image, label, tile indices).

        Returns None when the query stays as it is (a high-category query, or the coin said no).
        The label is the union of the tiles' labels, never empty (each tile has one).
        """
        if not self.is_low[query] or rng.random() >= self.prob:
            return None
        indices = self.sample(rng, first=query)
        image, label = self.compose(base, indices, rng)
        return image, label, indices


def mcsg_label_distribution(mcsg: MCSG | None, base_labels: np.ndarray, n: int,
                            rng: np.random.Generator) -> np.ndarray:
    """Labels bool [n, K] of n training queries drawn as `PairDataset` draws them (Figure 6).

    Queries are uniform over images with a non-empty label; with `mcsg` a low-category query
    becomes a mosaic with probability `mcsg.prob`, labelled (exactly as in training) with the
    union of its 4 tiles' labels.
    """
    labels = np.asarray(base_labels, dtype=bool)
    queries = np.flatnonzero(labels.any(axis=1))
    out = np.zeros((n, labels.shape[1]), dtype=bool)
    for row, q in enumerate(rng.choice(queries, size=n)):
        out[row] = labels[q]
        if mcsg is not None and mcsg.is_low[q] and rng.random() < mcsg.prob:
            out[row] = labels[mcsg.sample(rng, first=int(q))].any(axis=0)
    return out


__all__ = ["MCSG", "MOSAIC_FILL", "mosaic", "mask_classes", "mcsg_label_distribution"]
