"""The canvas one scene is drawn on: image, mask, ground materials, placement and scene context."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from cism_lib.data.synthetic.geometry import TAU, _pts, _value_noise, _xf

# Background materials: base RGB, low-frequency RGB amplitude, mid- and high-frequency amplitude.
GRASS, DRY, SOIL, ASPHALT, CONCRETE, WATER, URBAN = range(7)
_MAT_RGB = np.array([(82, 106, 60), (134, 128, 90), (146, 124, 92), (88, 89, 92),
                     (166, 164, 158), (40, 68, 82), (124, 120, 114)], dtype=np.float32)
_MAT_LO = np.array([(14, 16, 6), (14, 12, 8), (12, 10, 8), (4, 4, 4), (8, 8, 8), (5, 8, 7),
                    (10, 10, 10)], dtype=np.float32)
_MAT_MID = np.array([10, 9, 9, 4, 6, 2, 14], dtype=np.float32)
_MAT_HI = np.array([7, 7, 8, 6, 5, 1.5, 10], dtype=np.float32)


class _Canvas:
    """Image, mask and scene context shared by the layout and object painters of one scene."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng, self.size = rng, size
        self.k = size / 256 * float(rng.uniform(0.85, 1.2))  # pixels per base unit (GSD)
        self.theta = float(rng.uniform(0, math.pi))           # dominant orientation of the layout
        sun = float(rng.uniform(0, TAU))
        self.sun = (math.cos(sun), math.sin(sun))
        self.shadow_alpha = int(rng.integers(80, 140))
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
        self.xx, self.yy = xx, yy
        self.regions: dict[str, np.ndarray] = {}
        self.roads: list[tuple[float, float, float, float]] = []
        self.lots: list[tuple[float, float, float, float, float]] = []
        self.shores: list[tuple[float, float, float]] = []
        self.anchors: dict[str, list] = {"yard": [], "berth": [], "bridge": [], "junction": []}
        self.image = Image.new("RGB", (size, size))
        self.di = ImageDraw.Draw(self.image, "RGBA")
        self.mask = Image.new("L", (size, size), 0)
        self.dm = ImageDraw.Draw(self.mask)

    def u(self, lo: float, hi: float) -> float:
        """A uniform draw in base units scaled to pixels."""
        return float(self.rng.uniform(lo, hi)) * self.k

    def frame(self, px: float, py: float, ang: float) -> tuple[np.ndarray, np.ndarray]:
        """Along- and across-coordinates of every pixel for a line through (px, py) at ang."""
        dx, dy = self.xx - px, self.yy - py
        c, s = math.cos(ang), math.sin(ang)
        return dx * c + dy * s, -dx * s + dy * c

    def pick(self, options: tuple) -> object:
        """One of the options, uniformly."""
        return options[int(self.rng.integers(len(options)))]

    def jit(self, rgb: tuple[int, ...], amount: float = 10) -> tuple[int, int, int]:
        """A colour with a small random shift."""
        shift = self.rng.normal(0, amount) + self.rng.normal(0, amount / 3, 3)
        v = np.clip(np.asarray(rgb, float) + shift, 0, 255)
        return tuple(int(c) for c in v)

    def paint(self, mat: np.ndarray) -> None:
        """Fill the image with textured materials (numpy noise at low resolution, upsampled)."""
        s, rng = self.size, self.rng
        lo, mid = _value_noise(rng, s, 3), _value_noise(rng, s, 10)
        hi = _value_noise(rng, s, max(s // 4, 4))
        n = len(_MAT_RGB)
        base = _MAT_RGB + rng.normal(0, 8, (n, 1)) + rng.normal(0, 3, (n, 3))
        table = np.concatenate([base, _MAT_LO, _MAT_MID[:, None], _MAT_HI[:, None]], 1)
        t = table.astype(np.float32)[mat]
        img = t[..., :3] + lo[..., None] * t[..., 3:6] + (mid * t[..., 6] + hi * t[..., 7])[..., None]
        self.image = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        self.di = ImageDraw.Draw(self.image, "RGBA")

    def fill(self, local: np.ndarray, x: float, y: float, ang: float, rgb: tuple[int, ...],
             cls: int = 0, alpha: int = 255) -> None:
        """Draw a polygon into the image and, when cls > 0, the same polygon into the mask."""
        pts = _pts(_xf(local, x, y, ang))
        self.di.polygon(pts, fill=(*rgb[:3], alpha))
        if cls:
            self.dm.polygon(pts, fill=cls)

    def disc(self, x: float, y: float, r: float, rgb: tuple[int, ...], cls: int = 0,
             alpha: int = 255) -> None:
        """Draw a filled circle into the image and, when cls > 0, into the mask."""
        box = (x - r, y - r, x + r, y + r)
        self.di.ellipse(box, fill=(*rgb[:3], alpha))
        if cls:
            self.dm.ellipse(box, fill=cls)

    def line(self, local: np.ndarray, x: float, y: float, ang: float, rgb: tuple[int, ...],
             width: float, alpha: int = 255) -> None:
        """Draw a polyline into the image only (markings, ribs)."""
        self.di.line(_pts(_xf(local, x, y, ang)), fill=(*rgb[:3], alpha),
                     width=max(1, int(round(width))))

    def shadow(self, local: np.ndarray, x: float, y: float, ang: float, height: float) -> None:
        """Darken the ground where an object of this height casts its shadow (image only)."""
        dx, dy = self.sun[0] * height, self.sun[1] * height
        self.fill(local, x + dx, y + dy, ang, (0, 0, 0), alpha=self.shadow_alpha)

    def place(self, local: np.ndarray, region: np.ndarray | None, angle: float | None = None,
              tries: int = 40, min_region: float = 0.75) -> tuple[float, float, float]:
        """A position and angle where the footprint is free and mostly in region (else best try)."""
        s, rng = self.size, self.rng
        occ = np.asarray(self.mask)
        cand = np.flatnonzero(region) if region is not None else np.empty(0, np.int64)
        best, best_score = (s / 2, s / 2, 0.0), -1.0
        for _ in range(tries):
            if cand.size:
                y, x = divmod(int(cand[rng.integers(cand.size)]), s)
                x, y = x + 0.5, y + 0.5
            else:
                x, y = (float(v) for v in rng.uniform(0, s, 2))
            a = float(rng.uniform(0, TAU)) if angle is None else angle
            p = _xf(local, x, y, a).astype(np.int64)
            inside = (p[:, 0] >= 0) & (p[:, 0] < s) & (p[:, 1] >= 0) & (p[:, 1] < s)
            if not inside.any():
                continue
            q = p[inside]
            free = float((occ[q[:, 1], q[:, 0]] == 0).mean())
            reg = float(region[q[:, 1], q[:, 0]].mean()) if region is not None else 1.0
            fin = float(inside.mean())
            if free == 1.0 and reg >= min_region and fin >= 0.7:
                return x, y, a
            score = 2 * free + reg + fin
            if score > best_score:
                best, best_score = (x, y, a), score
        return best

    def is_free(self, local: np.ndarray, x: float, y: float, ang: float) -> bool:
        """Whether every footprint point inside the image is unlabelled and one is inside."""
        s = self.size
        p = _xf(local, x, y, ang).astype(np.int64)
        inside = (p[:, 0] >= 0) & (p[:, 0] < s) & (p[:, 1] >= 0) & (p[:, 1] < s)
        occ = np.asarray(self.mask)
        return bool(inside.any()) and bool((occ[p[inside, 1], p[inside, 0]] == 0).all())

    def add_road(self, mat: np.ndarray, px: float, py: float, ang: float, width: float) -> None:
        """Pave a straight road through (px, py) into the material map and remember it."""
        _, d = self.frame(px, py, ang)
        road = np.abs(d) < width / 2
        mat[road] = ASPHALT
        self.regions["road"] = self.regions.get("road", np.zeros_like(road)) | road
        self.roads.append((px, py, ang, width))

    def add_lot(self, mat: np.ndarray, cx: float, cy: float, ang: float, length: float,
                width: float) -> None:
        """Pave a parking lot (rotated rectangle) into the material map and remember it."""
        u, d = self.frame(cx, cy, ang)
        lot = (np.abs(u) < length / 2) & (np.abs(d) < width / 2)
        mat[lot] = ASPHALT
        self.regions["lot"] = self.regions.get("lot", np.zeros_like(lot)) | lot
        self.lots.append((cx, cy, ang, length, width))

    def random_point(self, region: np.ndarray | None) -> tuple[float, float]:
        """A random pixel centre inside region (anywhere when region is empty or None)."""
        cand = np.flatnonzero(region) if region is not None else np.empty(0, np.int64)
        if not cand.size:
            return tuple(float(v) for v in self.rng.uniform(0, self.size, 2))
        y, x = divmod(int(cand[self.rng.integers(cand.size)]), self.size)
        return x + 0.5, y + 0.5
