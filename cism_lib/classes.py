"""Class names, ids and RGB mask palettes of iSAID and PASCAL VOC 2012."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cism_lib.errors import DataError

IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassSet:
    """A dataset's classes: id 0 is background, ids 1..K are the foreground classes."""

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    abbrev: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.names)

    @property
    def num_foreground(self) -> int:
        """Number of foreground classes (the length of an image-level label vector)."""
        return len(self.names) - 1

    @property
    def palette_array(self) -> np.ndarray:
        """Palette as a uint8 array of shape [num_classes, 3]."""
        return np.asarray(self.palette, dtype=np.uint8)


ISAID = ClassSet(
    name="isaid",
    names=(
        "background", "ship", "storage_tank", "baseball_diamond", "tennis_court",
        "basketball_court", "ground_track_field", "bridge", "large_vehicle", "small_vehicle",
        "helicopter", "swimming_pool", "roundabout", "soccer_ball_field", "plane", "harbor",
    ),
    palette=(
        (0, 0, 0), (0, 0, 63), (0, 63, 63), (0, 63, 0), (0, 63, 127),
        (0, 63, 191), (0, 63, 255), (0, 127, 63), (0, 127, 127), (0, 0, 127),
        (0, 0, 191), (0, 0, 255), (0, 191, 127), (0, 127, 191), (0, 127, 255), (0, 100, 155),
    ),
    # Abbreviations used in the paper's Table 1.
    abbrev=("BG", "SH", "ST", "BD", "TC", "BC", "GTF", "BR", "LV", "SV", "HC", "SP", "RA",
            "SBF", "PL", "HA"),
)


def _voc_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """The standard PASCAL VOC colour map (bit-interleaved)."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


VOC = ClassSet(
    name="voc",
    names=(
        "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
        "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
        "sheep", "sofa", "train", "tvmonitor",
    ),
    palette=_voc_palette(21),
)

CLASS_SETS = {"isaid": ISAID, "voc": VOC}
VOC_BOUNDARY_RGB = (224, 224, 192)


def get_class_set(name: str) -> ClassSet:
    """Look up a class set by name ('isaid' or 'voc')."""
    try:
        return CLASS_SETS[name]
    except KeyError:
        raise ValueError(f"unknown class set {name!r}; choose one of {sorted(CLASS_SETS)}") from None


def rgb_to_index(rgb: np.ndarray, classes: ClassSet, path: str | Path = "<array>",
                 ignore_rgb: tuple[tuple[int, int, int], ...] = ()) -> np.ndarray:
    """Decode an RGB colour mask [H, W, 3] to class indices [H, W] by exact colour match."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"{path}: colour mask must be RGB [H, W, 3], got shape {rgb.shape}")
    code = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    pal = classes.palette_array.astype(np.int32)
    keys = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    lut_keys = list(keys) + [(r << 16) | (g << 8) | b for r, g, b in ignore_rgb]
    lut_vals = list(range(len(keys))) + [IGNORE_INDEX] * len(ignore_rgb)
    order = np.argsort(lut_keys)
    sk, sv = np.asarray(lut_keys)[order], np.asarray(lut_vals)[order]
    pos = np.clip(np.searchsorted(sk, code), 0, len(sk) - 1)
    bad = sk[pos] != code
    if bad.any():
        y, x = np.argwhere(bad)[0]
        colour = tuple(int(v) for v in rgb[y, x])
        raise DataError(f"{path}: mask colour {colour} at (row {y}, col {x}) is not in the "
                        f"{classes.name} palette ({int(bad.sum())} such pixels)")
    return sv[pos].astype(np.uint8)


def index_to_rgb(index: np.ndarray, classes: ClassSet) -> np.ndarray:
    """Encode class indices [H, W] as an RGB colour mask [H, W, 3] (ignore → white)."""
    lut = np.full((256, 3), 255, dtype=np.uint8)
    lut[: classes.num_classes] = classes.palette_array
    return lut[index]
