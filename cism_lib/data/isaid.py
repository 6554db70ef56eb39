"""iSAID patch folders (devkit and mmsegmentation layouts) and the official full-size → patch split."""
from __future__ import annotations

import csv
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cism_lib.classes import ISAID, ClassSet
from cism_lib.data.io import read_image, read_mask, write_png_atomic
from cism_lib.errors import DataError
from cism_lib.runtime import progress_bar

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
COLOUR_SUFFIX = "_instance_color_RGB"
INSTANCE_SUFFIX = "_instance_id_RGB"
Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[Any, Any]]


class SegDataset:
    """Shared dataset protocol: ids, image/mask paths, lazy cached labels, read, ds[i]."""

    classes: ClassSet
    mask_colour: bool | None = None   # True: RGB palette masks, False: index masks, None: by mode

    def __init__(self, ids: Sequence[str], image_paths: Sequence[Path], mask_paths: Sequence[Path],
                 cache_folder: Path, transform: Transform | None, min_pixels: int,
                 skip_bad: bool, skipped: Sequence[tuple[str, str]] = ()) -> None:
        self.ids = list(ids)
        self.image_paths = [Path(p) for p in image_paths]
        self.mask_paths = [Path(p) for p in mask_paths]
        self.cache_folder = Path(cache_folder)
        self.transform = transform
        self.min_pixels = min_pixels
        self.seed = 0
        self.epoch = 0
        self.skipped: list[tuple[str, str]] = list(skipped)
        self._labels: np.ndarray | None = None
        if skip_bad:
            self._drop_bad()
        if not self.ids:
            first = f": {self.skipped[0][1]}" if self.skipped else ""
            raise DataError(f"{self.cache_folder}: no usable samples ({len(self.skipped)} bad){first}")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cache_folder}, n={len(self)}, skipped={len(self.skipped)})"

    @property
    def labels(self) -> np.ndarray:
        """Image-level labels bool [N, K], computed from the masks on first use and cached."""
        return self.load_labels()

    def load_labels(self, progress: bool = True) -> np.ndarray:
        """`labels`, with a progress bar over the masks not in the label cache yet (`progress`)."""
        if self._labels is None:
            from cism_lib.data.labels import image_labels
            self._labels = image_labels(self, min_pixels=self.min_pixels, progress=progress)
        return self._labels

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (ds[i] draws from rng seeded by seed, epoch, index)."""
        self.epoch = int(epoch)

    def image_path(self, i: int) -> Path:
        """Path of image i."""
        return self.image_paths[i]

    def mask_path(self, i: int) -> Path:
        """Path of mask i."""
        return self.mask_paths[i]

    def read_mask(self, i: int) -> np.ndarray:
        """Mask i as class ids uint8 [H, W]."""
        return read_mask(self.mask_paths[i], self.classes, self.mask_colour)

    def read_image(self, i: int) -> np.ndarray:
        """Image i as uint8 [H, W, 3], without its mask: what weakly supervised training reads."""
        return read_image(self.image_paths[i])

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(image uint8 [H, W, 3], mask uint8 [H, W]) of sample i, without transform (scoring)."""
        image, mask = read_image(self.image_paths[i]), self.read_mask(i)
        if image.shape[:2] != mask.shape:
            raise DataError(f"{self.mask_paths[i]}: mask size {mask.shape[1]}x{mask.shape[0]} "
                            f"differs from image {self.image_paths[i].name} size "
                            f"{image.shape[1]}x{image.shape[0]}")
        return image, mask

    def __getitem__(self, i: int) -> dict[str, Any]:
        """{"image", "mask", "label", "id"}: numpy arrays, or transform(image, mask, rng) outputs."""
        image, mask = self.read(i)
        label = self.labels[i].astype(np.float32)
        if self.transform is None:
            return {"image": image, "mask": mask, "label": label, "id": self.ids[i]}
        import torch

        rng = np.random.default_rng([int(self.seed), int(self.epoch), int(i)])
        image, mask = self.transform(image, mask, rng)
        return {"image": image, "mask": mask, "label": torch.from_numpy(label), "id": self.ids[i]}

    def check(self, i: int) -> str | None:
        """Why sample i is unusable (unreadable, bad colour, size mismatch), or None."""
        try:
            self.read(i)
        except DataError as exc:
            return str(exc)
        return None

    def _drop_bad(self) -> None:
        """Decode every sample; drop bad ones into self.skipped and warn once."""
        bad = {}
        for i in progress_bar(range(len(self)), desc="checking samples", unit="img", leave=False,
                      disable=len(self) < 200):
            reason = self.check(i)
            if reason is not None:
                bad[i] = reason
        keep = [i for i in range(len(self)) if i not in bad]
        self.skipped += [(self.ids[i], r) for i, r in bad.items()]
        self.ids = [self.ids[i] for i in keep]
        self.image_paths = [self.image_paths[i] for i in keep]
        self.mask_paths = [self.mask_paths[i] for i in keep]
        if self.skipped:
            shown = "; ".join(f"{sid}: {why}" for sid, why in self.skipped[:3])
            more = f" (and {len(self.skipped) - 3} more)" if len(self.skipped) > 3 else ""
            warnings.warn(f"{self.cache_folder}: skipped {len(self.skipped)} bad sample(s), "
                          f"kept {len(self)}: {shown}{more}", stacklevel=3)


def _is_image(p: Path) -> bool:
    """A file that is an image, not a devkit mask."""
    return (p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")
            and not p.stem.endswith((COLOUR_SUFFIX, INSTANCE_SUFFIX)))


def _detect_layout(root: Path, split: str, layout: str) -> str:
    """'devkit' or 'mmseg' from the folders present, or raise DataError."""
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found")
    found = {"devkit": (root / split / "images").is_dir(), "mmseg": (root / "img_dir" / split).is_dir()}
    if layout == "auto":
        for name, ok in found.items():
            if ok:
                return name
        raise DataError(f"{root}: split {split!r} not found: expected {root / split / 'images'} "
                        f"(iSAID devkit) or {root / 'img_dir' / split} (mmsegmentation)")
    if layout not in found:
        raise DataError(f"{root}: unknown layout {layout!r}; use auto, devkit or mmseg")
    if not found[layout]:
        want = root / split / "images" if layout == "devkit" else root / "img_dir" / split
        raise DataError(f"{want}: split folder not found ({layout} layout)")
    return layout


def _mask_for(image: Path, mask_dir: Path, mmseg: bool) -> Path | None:
    """The mask of an image: <id>_instance_color_RGB.png, or (mmseg only) <id>.png."""
    names = [f"{image.stem}{COLOUR_SUFFIX}.png"] + ([f"{image.stem}.png"] if mmseg else [])
    return next((mask_dir / n for n in names if (mask_dir / n).is_file()), None)


def read_manifest(path: Path) -> list[dict[str, str]] | None:
    """Rows of a manifest.csv (needs an 'id' column), or None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    return rows if rows and "id" in rows[0] else None


class SegFolder(SegDataset):
    """iSAID patches: devkit `<root>/<split>/images/<id>.png|.jpg` + `<id>_instance_color_RGB.png`,
    or mmseg `<root>/img_dir/<split>/<id>.png` + `<root>/ann_dir/<split>/<id>[_instance_color_RGB].png`."""

    def __init__(self, root: str | Path, split: str = "train", layout: str = "auto",
                 classes: ClassSet = ISAID, transform: Transform | None = None, min_pixels: int = 1,
                 skip_bad: bool = False, max_items: int | None = None) -> None:
        self.root, self.split, self.classes = Path(root), split, classes
        self.layout = _detect_layout(self.root, split, layout)
        if self.layout == "devkit":
            image_dir = mask_dir = self.root / split / "images"
            folder = self.root / split
        else:
            image_dir, mask_dir = self.root / "img_dir" / split, self.root / "ann_dir" / split
            folder = mask_dir
        images = sorted((p for p in image_dir.iterdir() if _is_image(p)), key=lambda p: p.stem)
        if not images:
            raise DataError(f"{image_dir}: no images found (looked for {', '.join(IMAGE_EXTS)})")
        self._check_duplicates(images)
        self.manifest = read_manifest(folder / "manifest.csv")
        self._check_manifest(folder / "manifest.csv", {p.stem for p in images})
        if max_items is not None:
            images = images[:max_items]
        pairs, skipped = self._pair(images, mask_dir, skip_bad, self.layout == "mmseg")
        super().__init__([p.stem for p, _ in pairs], [p for p, _ in pairs], [m for _, m in pairs],
                         folder, transform, min_pixels, skip_bad, skipped)

    @staticmethod
    def _check_duplicates(images: list[Path]) -> None:
        """Two images with one id (P0001.png and P0001.jpg) are ambiguous."""
        stems = [p.stem for p in images]
        dup = next((s for a, s in zip(stems, stems[1:]) if a == s), None)
        if dup is not None:
            names = [p.name for p in images if p.stem == dup]
            raise DataError(f"{images[0].parent / names[0]}: several images share id {dup!r}: {names}")

    @staticmethod
    def _pair(images: list[Path], mask_dir: Path, skip_bad: bool, mmseg: bool
              ) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
        """(image, mask) pairs; images without a mask raise DataError or are skipped."""
        pairs, orphans = [], []
        for img in images:
            mask = _mask_for(img, mask_dir, mmseg)
            (pairs.append((img, mask)) if mask is not None else orphans.append(img))
        if orphans and not skip_bad:
            names = ", ".join(p.name for p in orphans[:3])
            more = f" and {len(orphans) - 3} more" if len(orphans) > 3 else ""
            raise DataError(f"{orphans[0]}: no mask {orphans[0].stem}{COLOUR_SUFFIX}.png in "
                            f"{mask_dir}; {len(orphans)} image(s) without mask: {names}{more}")
        skipped = [(p.stem, f"{p}: no mask in {mask_dir}") for p in orphans]
        return pairs, skipped

    def _check_manifest(self, path: Path, found: set[str]) -> None:
        """Warn when manifest.csv lists ids without an image (the files found are what counts)."""
        if self.manifest is None:
            return
        missing = sorted({row["id"] for row in self.manifest} - found)
        if missing:
            warnings.warn(f"{path}: {len(missing)} listed id(s) have no image, e.g. "
                          f"{missing[0]!r}; using the {len(found)} image(s) found", stacklevel=3)


def patch_starts(size: int, patch: int, overlap: int) -> list[int]:
    """Top-left offsets of overlapping patches covering [0, size); the last may overhang."""
    stride = patch - overlap
    if stride <= 0:
        raise ValueError(f"overlap ({overlap}) must be smaller than patch ({patch})")
    starts = [0]
    while starts[-1] + patch < size:
        starts.append(starts[-1] + stride)
    return starts


def crop_padded(array: np.ndarray, y0: int, x0: int, patch: int) -> np.ndarray:
    """array[y0:y0+patch, x0:x0+patch] zero-padded at the bottom/right to patch x patch."""
    out = np.zeros((patch, patch) + array.shape[2:], dtype=array.dtype)
    piece = array[y0: y0 + patch, x0: x0 + patch]
    out[: piece.shape[0], : piece.shape[1]] = piece
    return out


def _full_size_mask(src: Path, split: str, image: Path) -> Path:
    """Semantic mask of a full-size image: Semantic_masks/images/, else beside the image."""
    name = f"{image.stem}{COLOUR_SUFFIX}.png"
    for cand in (src / split / "Semantic_masks" / "images" / name, image.parent / name):
        if cand.is_file():
            return cand
    raise DataError(f"{image}: no semantic mask {name} in {src / split / 'Semantic_masks' / 'images'} "
                    f"or beside the image")


def split_isaid(src: str | Path, dst: str | Path, split: str, patch: int = 512, overlap: int = 128,
                progress: bool = True) -> list[str]:
    """Cut the official full-size iSAID release into devkit-layout patches; returns patch ids.

    Patches are named `<id>_<y0>_<y1>_<x0>_<x1>` where [y0, y1) x [x0, x1) is the source region
    they contain; edge patches are zero-padded (background) at the bottom/right to patch x patch.
    """
    image_dir = Path(src) / split / "images"
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: iSAID split folder not found (expected <src>/{split}/images)")
    images = sorted(p for p in image_dir.iterdir() if _is_image(p))
    if not images:
        raise DataError(f"{image_dir}: no images found")
    out_dir, ids = Path(dst) / split / "images", []
    for image_path in progress_bar(images, desc=f"split {split}", unit="img", disable=not progress):
        mask_path = _full_size_mask(Path(src), split, image_path)
        image, mask = read_image(image_path), read_image(mask_path)
        if image.shape != mask.shape:
            raise DataError(f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from "
                            f"image size {image.shape[1]}x{image.shape[0]}")
        h, w = image.shape[:2]
        for y0 in patch_starts(h, patch, overlap):
            for x0 in patch_starts(w, patch, overlap):
                pid = f"{image_path.stem}_{y0}_{min(y0 + patch, h)}_{x0}_{min(x0 + patch, w)}"
                write_png_atomic(out_dir / f"{pid}.png", crop_padded(image, y0, x0, patch))
                write_png_atomic(out_dir / f"{pid}{COLOUR_SUFFIX}.png", crop_padded(mask, y0, x0, patch))
                ids.append(pid)
    return ids
