"""Writers of tiny datasets in each official on-disk layout, for tests (importable by any test)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cism_lib.classes import ISAID, VOC, ClassSet, index_to_rgb

COLOUR = "_instance_color_RGB"
# A two-foreground-class set for the in-memory datasets of the metric, CRF and DeepLab tests.
TOY = ClassSet(name="toy", names=("background", "red", "blue"), palette=((0, 0, 0), (255, 0, 0), (0, 0, 255)))


class ArrayDataset:
    """The dataset protocol of docs/design.md over in-memory arrays (images None: black images)."""

    def __init__(self, masks: list[np.ndarray], images: list[np.ndarray] | None = None, split: str = "toy",
                 classes: ClassSet = TOY, id_format: str = "{split}_{i:03d}") -> None:
        self.classes, self.split, self.masks = classes, split, masks
        self.images = images if images is not None else [np.zeros((*m.shape, 3), np.uint8) for m in masks]
        self.ids = [id_format.format(split=split, i=i) for i in range(len(masks))]
        self.labels = np.stack([[(m == k).any() for k in range(1, classes.num_classes)] for m in masks])

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[i], self.masks[i]

    def read_image(self, i: int) -> np.ndarray:
        return self.images[i]

    def read_mask(self, i: int) -> np.ndarray:
        return self.masks[i]


def random_mask(rng: np.random.Generator, size: int, classes: ClassSet = ISAID,
                n_rects: int = 3) -> np.ndarray:
    """A uint8 [size, size] mask: background with a few random class rectangles (>= 2x2 px)."""
    mask = np.zeros((size, size), dtype=np.uint8)
    for _ in range(n_rects):
        k = int(rng.integers(1, classes.num_classes))
        y, x = rng.integers(0, size - 2, size=2)
        h, w = rng.integers(2, max(3, size // 2), size=2)
        mask[y: y + h, x: x + w] = k
    return mask


def random_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A uint8 [h, w, 3] noise image."""
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray, mode: str | None = None, palette: list[int] | None = None) -> Path:
    """Save an array with PIL (quality 95 for JPEG); 'P' mode with an optional palette."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        img = Image.frombytes("P", (array.shape[1], array.shape[0]), np.ascontiguousarray(array))
        if palette is not None:
            img.putpalette(palette)
    else:
        img = Image.fromarray(array)
    if path.suffix == ".jpg":
        img.save(path, quality=95)
    else:
        img.save(path)
    return path


def write_isaid_devkit(root: Path, split: str, n: int, size: int, rng: np.random.Generator,
                       ext: str = ".png") -> dict[str, np.ndarray]:
    """iSAID devkit patches: <root>/<split>/images/<id><ext> + <id>_instance_color_RGB.png."""
    masks = {}
    for i in range(n):
        sid = f"P{i:04d}_0_{size}_0_{size}"
        mask = random_mask(rng, size)
        save(root / split / "images" / f"{sid}{ext}", random_image(rng, size, size))
        save(root / split / "images" / f"{sid}{COLOUR}.png", index_to_rgb(mask, ISAID))
        masks[sid] = mask
    return masks


def write_isaid_mmseg(root: Path, split: str, n: int, size: int, rng: np.random.Generator,
                      colour: bool = False, suffix: str = COLOUR) -> dict[str, np.ndarray]:
    """mmseg layout: img_dir/<split>/<id>.png, ann_dir/<split>/<id><suffix>.png ('P' index or RGB)."""
    masks = {}
    for i in range(n):
        sid = f"P{i:04d}_0_{size}_0_{size}"
        mask = random_mask(rng, size)
        save(root / "img_dir" / split / f"{sid}.png", random_image(rng, size, size))
        ann = root / "ann_dir" / split / f"{sid}{suffix}.png"
        if colour:
            save(ann, index_to_rgb(mask, ISAID))
        else:  # mmseg saves 'P' index PNGs; give a 256-entry palette so PIL keeps 8 bits
            save(ann, mask, mode="P", palette=[v for v in range(256) for _ in range(3)])
        masks[sid] = mask
    return masks


def voc_palette() -> list[int]:
    """The VOC colour map as a flat PIL palette (255 → (224, 224, 192) boundary)."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[: VOC.num_classes] = VOC.palette_array
    pal[255] = (224, 224, 192)
    return pal.ravel().tolist()


def write_voc(root: Path, splits: dict[str, list[str]], size: int, rng: np.random.Generator,
              mask_dir: str = "SegmentationClassAug") -> dict[str, np.ndarray]:
    """VOC 2012: JPEGImages/<id>.jpg, <mask_dir>/<id>.png with a 255 border, split lists."""
    masks = {}
    for split, ids in splits.items():
        lst = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        lst.parent.mkdir(parents=True, exist_ok=True)
        lst.write_text("".join(f"{sid}\n" for sid in ids))
        for sid in ids:
            if sid in masks:
                continue
            mask = random_mask(rng, size, VOC)
            mask[0, :] = 255  # ignore boundary
            save(root / "JPEGImages" / f"{sid}.jpg", random_image(rng, size, size))
            if mask_dir == "SegmentationClass":
                save(root / mask_dir / f"{sid}.png", mask, mode="P", palette=voc_palette())
            else:
                save(root / mask_dir / f"{sid}.png", mask)  # grey 'L' index PNG, as in SBD aug
            masks[sid] = mask
    return masks


def write_isaid_full(src: Path, split: str, name: str, h: int, w: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Official full-size iSAID: <split>/images/<name>.png + Semantic_masks/images/<name>{COLOUR}.png."""
    image = random_image(rng, h, w)
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[h // 3: h // 2, w // 4: w // 2] = 1
    mask[-20:, -30:] = 14
    save(src / split / "images" / f"{name}.png", image)
    save(src / split / "Semantic_masks" / "images" / f"{name}{COLOUR}.png", index_to_rgb(mask, ISAID))
    return image, mask


def expected_labels(masks: list[np.ndarray], classes: ClassSet, min_pixels: int = 1) -> np.ndarray:
    """Reference labels by counting each class id with np.unique (independent of the library)."""
    out = np.zeros((len(masks), classes.num_foreground), dtype=bool)
    for i, m in enumerate(masks):
        values, counts = np.unique(m, return_counts=True)
        for v, c in zip(values, counts):
            if 1 <= v <= classes.num_foreground and c >= min_pixels:
                out[i, v - 1] = True
    return out


def interior(mask: np.ndarray, radius: int) -> np.ndarray:
    """bool [H,W]: the mask is constant on the (2r+1)^2 window around the pixel."""
    h, w = mask.shape
    pad = np.pad(mask.astype(np.int32), radius, constant_values=-1)
    ok = np.ones((h, w), dtype=bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            ok &= pad[dy:dy + h, dx:dx + w] == mask
    return ok


def pair_batch(seed: int = 0, size: int = 32) -> dict:
    """A pair batch of 2 random images per side with fixed labels over 3 classes (docs/design.md keys)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    lq = torch.tensor([[1., 0, 1], [0, 1, 0]])
    lr = torch.tensor([[1., 1, 0], [0, 1, 1]])
    co = lq * lr
    return {"image_q": torch.randn(2, 3, size, size, generator=g),
            "image_r": torch.randn(2, 3, size, size, generator=g), "label_q": lq, "label_r": lr,
            "label_co": co, "label_q_nc": lq - co, "label_r_nc": lr - co}
