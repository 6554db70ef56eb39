"""Reading images and masks, writing PNGs atomically; every failure is a DataError naming the file."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from cism_lib.classes import IGNORE_INDEX, VOC_BOUNDARY_RGB, ClassSet, rgb_to_index
from cism_lib.errors import DataError
from cism_lib.runtime import atomic_path

# Errors PIL raises for missing, truncated or undecodable files.
_READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
IGNORE_RGB = (255, 255, 255)  # how index_to_rgb draws the ignore index


def open_image(path: str | Path) -> Image.Image:
    """Open an image and decode it fully (catches truncated files), or raise DataError."""
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise DataError(f"{path}: cannot read image: file not found") from None
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read image: {exc}") from None
    return img


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image from its header only, or raise DataError."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read image: {exc}") from None
    return height, width


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as uint8 RGB [H, W, 3] (L, LA, RGBA, P and CMYK are converted)."""
    img = open_image(path)
    if img.mode not in ("RGB", "L", "LA", "RGBA", "P", "PA", "CMYK", "YCbCr", "1"):
        raise DataError(f"{path}: cannot read image: unsupported mode {img.mode!r}")
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_mask(path: str | Path, classes: ClassSet, colour: bool | None = True) -> np.ndarray:
    """Read a mask as class ids uint8 [H, W]: colour masks by exact palette match, else indices.

    colour=True decodes RGB colours with `rgb_to_index` (white and, for VOC, the boundary colour
    mean ignore); colour=False reads 'L'/'P' PNGs as indices (VOC palette PNGs, mmseg masks);
    colour=None picks by the file's mode (RGB/RGBA → colour, L/P → index).
    """
    img = open_image(path)
    if colour is None:
        colour = img.mode in ("RGB", "RGBA")
    if colour:
        ignore = (IGNORE_RGB, VOC_BOUNDARY_RGB) if classes.name == "voc" else (IGNORE_RGB,)
        return rgb_to_index(np.asarray(img.convert("RGB")), classes, path, ignore_rgb=ignore)
    if img.mode not in ("L", "P", "I", "I;16"):
        raise DataError(f"{path}: expected an index mask (mode L or P), got mode {img.mode!r}; "
                        "is this a colour mask?")
    return check_index_mask(np.asarray(img), classes, path)


def check_index_mask(mask: np.ndarray, classes: ClassSet, path: str | Path) -> np.ndarray:
    """Return the mask as uint8 if every value is a class id or 255, else raise DataError."""
    values = np.unique(mask)
    bad = values[(values >= classes.num_classes) & (values != IGNORE_INDEX)]
    if bad.size:
        raise DataError(f"{path}: mask value {int(bad[0])} is not a {classes.name} class id "
                        f"(0..{classes.num_classes - 1} or {IGNORE_INDEX}); wrong class list?")
    return mask.astype(np.uint8, copy=False)


def _palette_bytes(palette: ClassSet | Sequence[Sequence[int]] | np.ndarray) -> list[int]:
    """A flat 768-entry PIL palette from a ClassSet or an [N, 3] colour list."""
    colours = palette.palette_array if isinstance(palette, ClassSet) else np.asarray(palette)
    flat = np.zeros((256, 3), dtype=np.uint8)
    flat[IGNORE_INDEX] = IGNORE_RGB
    flat[: len(colours)] = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    return flat.ravel().tolist()


def write_png_atomic(path: str | Path, array: np.ndarray,
                     palette: ClassSet | Sequence[Sequence[int]] | np.ndarray | None = None,
                     compress_level: int = 6) -> Path:
    """Write uint8 [H, W] or [H, W, 3] as PNG atomically; palette → 'P' mode."""
    path = Path(path)
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise DataError(f"{path}: can only write uint8 [H, W] or [H, W, 3], got "
                        f"{array.dtype} {array.shape}")
    img = Image.fromarray(array)
    if palette is not None:
        if array.ndim != 2:
            raise DataError(f"{path}: a palette PNG needs an index array [H, W]")
        img = Image.frombytes("P", (array.shape[1], array.shape[0]), np.ascontiguousarray(array))
        img.putpalette(_palette_bytes(palette))
    try:
        with atomic_path(path) as tmp:
            img.save(tmp, format="PNG", compress_level=compress_level)
    except OSError as exc:
        raise DataError(f"{path}: cannot write PNG: {exc}") from None
    return path
