"""Polygons in local coordinates, their rotation and move into the image, and smooth value noise."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

TAU = 2 * math.pi


def _xf(local: np.ndarray, x: float, y: float, ang: float) -> np.ndarray:
    """Rotate local points [N, 2] by ang and move them to (x, y)."""
    c, s = math.cos(ang), math.sin(ang)
    return local @ np.array([[c, s], [-s, c]]) + (x, y)


def _pts(world: np.ndarray) -> list[float]:
    """Points as the flat coordinate list PIL draws."""
    return world.ravel().tolist()


def _rect(length: float, width: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    """Corners of an axis-aligned rectangle (length along x) centred at (cx, cy)."""
    h, w = length / 2, width / 2
    return np.array([(cx - h, cy - w), (cx + h, cy - w), (cx + h, cy + w), (cx - h, cy + w)])


def _chamfer(length: float, width: float, cut: float) -> np.ndarray:
    """A rectangle with cut corners (a car body seen from above)."""
    h, w = length / 2, width / 2
    return np.array([(-h + cut, -w), (h - cut, -w), (h, -w + cut), (h, w - cut), (h - cut, w),
                     (-h + cut, w), (-h, w - cut), (-h, -w + cut)])


def _ellipse(a: float, b: float, n: int = 24, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    """Polygon of an ellipse with semi-axes a (x) and b (y)."""
    t = np.linspace(0, TAU, n, endpoint=False)
    return np.stack([cx + a * np.cos(t), cy + b * np.sin(t)], 1)


def _stadium(length: float, width: float, n: int = 14) -> np.ndarray:
    """Polygon of a stadium (rectangle with semicircular ends), length along x."""
    r, h = width / 2, max(length / 2 - width / 2, 0.0)
    t1 = np.linspace(-math.pi / 2, math.pi / 2, n)
    t2 = t1 + math.pi
    right = np.stack([h + r * np.cos(t1), r * np.sin(t1)], 1)
    left = np.stack([-h + r * np.cos(t2), r * np.sin(t2)], 1)
    return np.concatenate([right, left])


def _arc(r: float, t0: float, t1: float, n: int = 12, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    """Points along a circular arc."""
    t = np.linspace(t0, t1, n)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def _grid(half_l: float, half_w: float, n: int = 6, cx: float = 0.0) -> np.ndarray:
    """An n x n grid of sample points over a rectangle: an object's footprint for placement."""
    u, v = np.meshgrid(np.linspace(-half_l, half_l, n) + cx, np.linspace(-half_w, half_w, n))
    return np.concatenate([np.stack([u.ravel(), v.ravel()], 1), [[cx, 0.0]]])


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise [size, size] (about unit variance): random grid upsampled bicubically."""
    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((size, size), Image.BICUBIC))
