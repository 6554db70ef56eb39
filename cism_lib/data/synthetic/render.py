"""Composes one scene (layout, objects in draw order, camera finish) and seeds a dataset item."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import ImageFilter

from cism_lib.classes import ISAID
from cism_lib.data.synthetic.canvas import _Canvas
from cism_lib.data.synthetic.facilities import (_paint_basketball, _paint_diamonds, _paint_pools, _paint_roundabouts,
                                                _paint_soccer, _paint_tanks, _paint_tennis, _paint_track)
from cism_lib.data.synthetic.geometry import _value_noise
from cism_lib.data.synthetic.layouts import LAYOUTS
from cism_lib.data.synthetic.scenes import (BC, BD, BR, GTF, HA, HC, LV, PL, RA, SBF, SH, SP, ST, SV, TC,
                                            sample_classes)
from cism_lib.data.synthetic.transport import (_paint_bridges, _paint_harbor, _paint_helicopters, _paint_lv,
                                               _paint_planes, _paint_ships, _paint_sv)

SPLIT_CODES = {"train": 0, "val": 1}


PAINTERS: dict[int, Callable[[_Canvas, set[int]], None]] = {
    BR: _paint_bridges, RA: _paint_roundabouts, GTF: _paint_track, SBF: _paint_soccer,
    BD: _paint_diamonds, HA: _paint_harbor, TC: _paint_tennis, BC: _paint_basketball,
    ST: _paint_tanks, SP: _paint_pools, PL: _paint_planes, HC: _paint_helicopters,
    SH: _paint_ships, LV: _paint_lv, SV: _paint_sv,
}
DRAW_ORDER = tuple(PAINTERS)  # big and fixed-position objects first, small ones last


def _finish(cv: _Canvas) -> np.ndarray:
    """Slight blur, illumination and colour shift, contrast, haze and sensor noise; uint8 [H, W, 3]."""
    rng, s = cv.rng, cv.size
    w = math.exp(-1 / (2 * (float(rng.uniform(0.35, 0.7)) * max(s / 256, 0.6)) ** 2))
    blur = ImageFilter.Kernel((3, 3), [w * w, w, w * w, w, 1.0, w, w * w, w, w * w])
    a = np.asarray(cv.image.filter(blur), dtype=np.float32)
    contrast, haze = float(rng.uniform(0.85, 1.15)), float(rng.uniform(0, 0.15))
    warm = float(np.clip(rng.normal(0, 0.025), -0.05, 0.05))  # white balance: warm or cool
    gain = np.array([1 + warm, 1 + 0.2 * warm, 1 - warm], np.float32) * (1 - haze)
    illum = 1 + 0.08 * _value_noise(rng, s, 2)[..., None]
    mean = float(a.mean())
    offset = (mean * (1 - contrast) + float(rng.normal(0, 8))) * gain \
        + haze * np.array([192, 192, 188], np.float32)
    noise = rng.standard_normal((s, s, 1), dtype=np.float32) * float(rng.uniform(1.5, 4))
    a = a * (contrast * gain) * illum + offset * illum + noise
    return np.clip(a, 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One aerial-like scene: image uint8 [H, W, 3] and class-id mask uint8 [H, W]."""
    scene, classes = sample_classes(rng)
    cv = _Canvas(rng, size)
    LAYOUTS[scene.name](cv, set(classes))
    for cls in sorted(classes, key=DRAW_ORDER.index):
        PAINTERS[cls](cv, set(classes))
    return _finish(cv), np.array(cv.mask, dtype=np.uint8)


def render_item(seed: int, split: str, index: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The scene of one dataset item, seeded from (seed, split, index) alone."""
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    return render_scene(rng, size)


def present_classes(mask: np.ndarray) -> list[int]:
    """Foreground class ids with at least one pixel in the mask."""
    return [int(c) for c in np.unique(mask) if 0 < c < ISAID.num_classes]
