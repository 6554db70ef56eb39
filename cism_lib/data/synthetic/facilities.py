"""Drawers of the fixed facilities: storage tanks, pools, roundabouts, courts, fields and tracks."""
from __future__ import annotations

import math

import numpy as np

from cism_lib.data.synthetic.canvas import _Canvas
from cism_lib.data.synthetic.geometry import _arc, _ellipse, _grid, _rect, _stadium, _xf
from cism_lib.data.synthetic.layouts import _COURT_RGB, _roof
from cism_lib.data.synthetic.scenes import BC, BD, GTF, RA, SBF, SP, ST, TC

_BASKET_RGB = ((192, 122, 72), (60, 100, 152), (72, 124, 84), (150, 62, 56), (128, 128, 128))
_KEY_RGB = ((150, 60, 55), (40, 70, 130), (200, 150, 80))


# ----------------------------------------------------------------------------- tanks, pools, roundabouts
def _draw_tank(cv: _Canvas, x: float, y: float, r: float) -> None:
    """A storage tank: light disc with rim, floating roof with an inner shadow, cast shadow."""
    h = 0.6 * r
    cv.di.ellipse((x - r + cv.sun[0] * h, y - r + cv.sun[1] * h, x + r + cv.sun[0] * h,
                   y + r + cv.sun[1] * h), fill=(0, 0, 0, cv.shadow_alpha))
    light = cv.jit((222, 222, 218), 8)
    cv.disc(x, y, r, light, ST)
    cv.di.ellipse((x - r, y - r, x + r, y + r), outline=(150, 150, 148), width=max(1, int(0.8 * cv.k)))
    ri = 0.8 * r
    cv.disc(x, y, ri, (0, 0, 0), alpha=70)
    o = 0.14 * r
    cv.di.ellipse((x - ri + 0.5 * o + cv.sun[0] * o, y - ri + 0.5 * o + cv.sun[1] * o,
                   x + ri - 0.5 * o + cv.sun[0] * o, y + ri - 0.5 * o + cv.sun[1] * o),
                  fill=tuple(int(c * 0.93) for c in light))
    cv.disc(x, y, max(0.08 * r, 0.6), (120, 120, 120))


def _paint_tanks(cv: _Canvas, classes: set[int]) -> None:
    """1-3 clusters of storage tanks in a grid (same radius within a cluster)."""
    region = cv.regions.get("open")
    for _ in range(int(cv.rng.integers(1, 4))):
        r = cv.u(7, 17)
        rows, cols = int(cv.rng.integers(1, 4)), int(cv.rng.integers(1, 5))
        gap = 2 * r + cv.u(3, 8)
        x, y, a = cv.place(_grid(cols * gap / 2, rows * gap / 2), region, cv.theta, min_region=0.85)
        for i in range(rows):
            for j in range(cols):
                lx, ly = (j - (cols - 1) / 2) * gap, (i - (rows - 1) / 2) * gap
                wx, wy = _xf(np.array([(lx, ly)]), x, y, a)[0]
                if cv.is_free(_ellipse(r + cv.k, r + cv.k, 8), float(wx), float(wy), 0.0):
                    _draw_tank(cv, float(wx), float(wy), r)


def _pool_parts(cv: _Canvas, ln: float, wd: float) -> list[np.ndarray]:
    """Polygons of one pool: rectangle, oval, L-shape or kidney."""
    kind = int(cv.rng.integers(4))
    if kind == 0:
        return [_rect(ln, wd)]
    if kind == 1:
        return [_ellipse(ln / 2, wd / 2, 20)]
    if kind == 2:
        return [_rect(ln, wd / 2, 0.0, -wd / 4), _rect(ln / 2, wd, -ln / 4, 0.0)]
    return [_ellipse(0.3 * ln, 0.5 * wd, 16, -0.2 * ln), _ellipse(0.24 * ln, 0.4 * wd, 16, 0.26 * ln),
            _rect(0.4 * ln, 0.6 * wd, 0.05 * ln, 0.1 * wd)]


def _draw_pool(cv: _Canvas, x: float, y: float, ang: float, ln: float, wd: float) -> None:
    """A swimming pool: deck, bright blue water, lighter centre."""
    cv.fill(_rect(ln + 6 * cv.k, wd + 6 * cv.k), x, y, ang, cv.jit((200, 192, 175), 10))
    water = cv.jit((50, 165, 215), 12)
    parts = _pool_parts(cv, ln, wd)
    for part in parts:
        cv.fill(part, x, y, ang, water, SP)
    light = tuple(min(255, c + 30) for c in water)
    for part in parts:
        cv.fill(part * 0.55, x, y, ang, light)


def _paint_pools(cv: _Canvas, classes: set[int]) -> None:
    """1-5 pools: in backyards in residential scenes, else on open ground beside a new house."""
    yards = list(cv.anchors["yard"])
    for _ in range(int(cv.rng.integers(1, 6))):
        ln = cv.u(13, 24)
        wd = ln * float(cv.rng.uniform(0.45, 0.7))
        foot = _grid(ln / 2 + 4 * cv.k, wd / 2 + 4 * cv.k, 4)
        if yards:
            x, y, a = yards.pop(int(cv.rng.integers(len(yards))))
            x, y = x + cv.u(-4, 4), y + cv.u(-3, 3)
            if cv.is_free(foot, x, y, a) and 0 <= x < cv.size and 0 <= y < cv.size:
                _draw_pool(cv, x, y, a, ln, wd)
                continue
        x, y, a = cv.place(foot, cv.regions.get("open"), cv.theta)
        house = _rect(ln * 1.3, wd * 1.2)
        hx, hy = _xf(np.array([(0.0, -(wd / 2 + 0.6 * wd + 6 * cv.k))]), x, y, a)[0]
        if cv.is_free(_grid(0.65 * ln, 0.6 * wd, 3), float(hx), float(hy), a):
            _roof(cv, house, float(hx), float(hy), a, ln * 1.3, wd * 1.2, "gable")
        _draw_pool(cv, x, y, a, ln, wd)


def _paint_roundabouts(cv: _Canvas, classes: set[int]) -> None:
    """A roundabout at a road junction (or on open ground with its own road arms)."""
    r = cv.u(16, 28)
    if cv.anchors["junction"]:
        x, y = cv.anchors["junction"][0]
    else:
        x, y, _ = cv.place(_grid(1.3 * r, 1.3 * r), cv.regions.get("open"))
        for i in range(int(cv.rng.integers(3, 5))):
            arm = _rect(3.5 * r, 0.6 * r, 1.75 * r)
            cv.fill(arm, x, y, cv.theta + i * math.pi / 2, cv.jit((90, 91, 94), 4))
    cv.disc(x, y, r, cv.jit((92, 93, 96), 4), RA)
    rl = 0.76 * r
    cv.di.ellipse((x - rl, y - rl, x + rl, y + rl), outline=(225, 225, 220, 200),
                  width=max(1, int(0.8 * cv.k)))
    ri = 0.5 * r
    cv.disc(x, y, ri, cv.jit((200, 198, 190), 5), RA)
    cv.disc(x, y, ri - 1.5 * cv.k, cv.jit((78, 118, 60), 8), RA)
    if cv.rng.random() < 0.5:
        cv.disc(x + cv.u(-2, 2), y + cv.u(-2, 2), 0.25 * r, (48, 74, 40))


# ----------------------------------------------------------------------------- sports
def _outline(cv: _Canvas, local: np.ndarray, x: float, y: float, ang: float, width: float = 0.8,
             rgb: tuple[int, int, int] = (240, 240, 240), alpha: int = 230) -> None:
    """A closed white line (court and field markings, image only)."""
    cv.line(np.concatenate([local, local[:1]]), x, y, ang, rgb, width * cv.k, alpha)


def _draw_tennis(cv: _Canvas, x: float, y: float, ang: float, ln: float, wd: float) -> None:
    """A tennis court: coloured surround, playing area, white lines and the net."""
    surround = cv.jit(cv.pick(_COURT_RGB), 10)
    inner = cv.jit(cv.pick(_COURT_RGB), 10)
    cv.fill(_rect(ln, wd), x, y, ang, surround, TC)
    pl, pw = 0.72 * ln, 0.6 * wd
    cv.fill(_rect(pl, pw), x, y, ang, inner)
    _outline(cv, _rect(pl, pw), x, y, ang)
    _outline(cv, _rect(pl, 0.75 * pw), x, y, ang, 0.6)
    _outline(cv, _rect(0.54 * pl, 0.75 * pw), x, y, ang, 0.6)
    cv.line(np.array([(-0.27 * pl, 0.0), (0.27 * pl, 0.0)]), x, y, ang, (240, 240, 240), 0.6 * cv.k)
    cv.line(np.array([(0.0, -0.52 * wd), (0.0, 0.52 * wd)]), x, y, ang, (30, 30, 30), cv.k)


def _draw_basketball(cv: _Canvas, x: float, y: float, ang: float, ln: float, wd: float) -> None:
    """A basketball court: surface, boundary, centre circle, painted keys and 3-point arcs."""
    surface = cv.jit(cv.pick(_BASKET_RGB), 10)
    key = cv.jit(cv.pick(_KEY_RGB), 10)
    cv.fill(_rect(ln, wd), x, y, ang, surface, BC)
    il, iw = 0.88 * ln, 0.84 * wd
    _outline(cv, _rect(il, iw), x, y, ang)
    cv.line(np.array([(0.0, -iw / 2), (0.0, iw / 2)]), x, y, ang, (240, 240, 240), 0.8 * cv.k)
    _outline(cv, _ellipse(0.13 * wd, 0.13 * wd, 16), x, y, ang)
    for side in (-1, 1):
        kx = side * (il / 2 - 0.1 * ln)
        cv.fill(_rect(0.2 * ln, 0.28 * wd, kx), x, y, ang, key)
        _outline(cv, _rect(0.2 * ln, 0.28 * wd, kx), x, y, ang, 0.6)
        bx = side * (il / 2 - 0.03 * ln)
        arc = _arc(0.36 * wd, math.pi / 2, 3 * math.pi / 2, 14, bx) if side > 0 else \
            _arc(0.36 * wd, -math.pi / 2, math.pi / 2, 14, bx)
        cv.line(arc, x, y, ang, (240, 240, 240), 0.7 * cv.k, 230)


def _paint_courts(cv: _Canvas, cls: int) -> None:
    """1-2 groups of 1-4 adjacent courts (tennis or basketball) with a fence outline."""
    tennis = cls == TC
    for _ in range(int(cv.rng.integers(1, 3))):
        ln = cv.u(44, 54) if tennis else cv.u(40, 50)
        wd = ln * (0.5 if tennis else 0.56)
        m = int(cv.rng.integers(1, 5 if tennis else 3))
        ang = cv.theta + float(cv.rng.choice([0.0, math.pi / 2])) + float(cv.rng.normal(0, 0.05))
        x, y, a = cv.place(_grid(ln / 2 + 3 * cv.k, m * wd / 2 + 3 * cv.k), cv.regions.get("open"), ang)
        pad = _rect(ln + 5 * cv.k, m * wd + 5 * cv.k)
        cv.fill(pad, x, y, a, cv.jit((150, 150, 140), 10))
        for i in range(m):
            cx, cy = _xf(np.array([(0.0, (i - (m - 1) / 2) * wd)]), x, y, a)[0]
            (_draw_tennis if tennis else _draw_basketball)(cv, float(cx), float(cy), a, ln, wd)
        _outline(cv, pad, x, y, a, 1.0, (45, 60, 45), 200)


def _paint_tennis(cv: _Canvas, classes: set[int]) -> None:
    """Tennis courts."""
    _paint_courts(cv, TC)


def _paint_basketball(cv: _Canvas, classes: set[int]) -> None:
    """Basketball courts."""
    _paint_courts(cv, BC)


def _draw_soccer(cv: _Canvas, x: float, y: float, ang: float, ln: float, wd: float) -> None:
    """A soccer field: mowing stripes, boundary, halfway line, centre circle, penalty boxes."""
    green = cv.jit((74, 138, 62), 8)
    cv.fill(_rect(ln, wd), x, y, ang, green, SBF)
    n = int(cv.rng.integers(8, 14))
    dark = tuple(int(c * 0.88) for c in green)
    for i in range(0, n, 2):
        cv.fill(_rect(ln / n, wd, -ln / 2 + (i + 0.5) * ln / n), x, y, ang, dark)
    il, iw = 0.94 * ln, 0.9 * wd
    _outline(cv, _rect(il, iw), x, y, ang, 1.0)
    cv.line(np.array([(0.0, -iw / 2), (0.0, iw / 2)]), x, y, ang, (240, 240, 240), cv.k)
    _outline(cv, _ellipse(0.14 * wd, 0.14 * wd, 20), x, y, ang, 1.0)
    for side in (-1, 1):
        _outline(cv, _rect(0.16 * ln, 0.58 * iw, side * (il / 2 - 0.08 * ln)), x, y, ang, 0.9)
        _outline(cv, _rect(0.055 * ln, 0.27 * iw, side * (il / 2 - 0.0275 * ln)), x, y, ang, 0.8)


def _paint_soccer(cv: _Canvas, classes: set[int]) -> None:
    """1-2 soccer fields (unless one was already drawn inside a track) with a grass pad."""
    if cv.anchors.get("sbf_in_gtf") and cv.rng.random() < 0.7:
        return
    for _ in range(1 if cv.rng.random() < 0.75 else 2):
        ln = cv.u(90, 120)
        wd = ln * float(cv.rng.uniform(0.6, 0.68))
        x, y, a = cv.place(_grid(ln / 2 + 4 * cv.k, wd / 2 + 4 * cv.k), cv.regions.get("open"),
                           cv.theta + float(cv.rng.normal(0, 0.05)), min_region=0.7)
        cv.fill(_rect(ln + 8 * cv.k, wd + 8 * cv.k), x, y, a, cv.jit((110, 118, 80), 10))
        _draw_soccer(cv, x, y, a, ln, wd)


def _paint_track(cv: _Canvas, classes: set[int]) -> None:
    """A ground track field: oval reddish track with lanes around a green field."""
    ln = cv.u(125, 165)
    wd = ln * float(cv.rng.uniform(0.52, 0.6))
    tw = cv.u(9, 13)
    x, y, a = cv.place(_grid(ln / 2 + 3 * cv.k, wd / 2 + 3 * cv.k), cv.regions.get("open"),
                       cv.theta + float(cv.rng.normal(0, 0.05)), min_region=0.6)
    track = cv.jit((170, 82, 62) if cv.rng.random() < 0.85 else (60, 110, 130), 10)
    cv.fill(_stadium(ln + 6 * cv.k, wd + 6 * cv.k, 16), x, y, a, cv.jit((170, 168, 160), 6))
    cv.fill(_stadium(ln, wd, 18), x, y, a, track, GTF)
    for f in np.linspace(0.25, 0.75, 3):
        _outline(cv, _stadium(ln - 2 * f * tw, wd - 2 * f * tw, 18), x, y, a, 0.5, alpha=170)
    cv.fill(_stadium(ln - 2 * tw, wd - 2 * tw, 18), x, y, a, cv.jit((78, 134, 64), 8), GTF)
    if SBF in classes and cv.rng.random() < 0.6:
        _draw_soccer(cv, x, y, a, (ln - wd) + 0.55 * (wd - 2 * tw), 0.75 * (wd - 2 * tw))
        cv.anchors["sbf_in_gtf"] = [True]


def _draw_diamond(cv: _Canvas, x: float, y: float, ang: float, r: float) -> None:
    """A baseball diamond: grass fan, brown infield arc, grass square, base paths, mound."""
    q = math.pi / 4
    fan = np.concatenate([[(0.0, 0.0)], _arc(r, -q, q, 18)])
    cv.fill(fan, x, y, ang, cv.jit((88, 142, 70), 8), BD)
    cv.line(_arc(0.95 * r, -q, q, 18), x, y, ang, (160, 120, 85), 1.5 * cv.k)
    dirt = cv.jit((176, 126, 86), 8)
    cv.fill(np.concatenate([[(0.0, 0.0)], _arc(0.5 * r, -q, q, 12)]), x, y, ang, dirt)
    b = 0.27 * r
    square = np.array([(0.0, 0.0), (b * math.cos(q), -b * math.sin(q)), (b * math.sqrt(2), 0.0),
                       (b * math.cos(q), b * math.sin(q))])
    centre = np.array([b / math.sqrt(2), 0.0])
    cv.fill((square - centre) * 0.78 + centre, x, y, ang, cv.jit((92, 148, 72), 6))
    cv.fill(_ellipse(0.04 * r, 0.04 * r, 10, b / math.sqrt(2)), x, y, ang, dirt)
    cv.fill(_ellipse(0.07 * r, 0.07 * r, 10), x, y, ang, dirt)
    for sgn in (-1, 1):
        cv.line(np.array([(0.0, 0.0), (r * math.cos(q), sgn * r * math.sin(q))]), x, y, ang,
                (240, 240, 240), 0.8 * cv.k)


def _paint_diamonds(cv: _Canvas, classes: set[int]) -> None:
    """1-2 baseball diamonds."""
    for _ in range(1 if cv.rng.random() < 0.7 else 2):
        r = cv.u(55, 85)
        x, y, a = cv.place(_grid(r / 2, 0.72 * r, 6, r / 2), cv.regions.get("open"), min_region=0.7)
        _draw_diamond(cv, x, y, a, r)
