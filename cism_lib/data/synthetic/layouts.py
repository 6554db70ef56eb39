"""Scene backgrounds: each family's ground, roads, lots, buildings, trees and distractors."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from cism_lib.data.synthetic.canvas import ASPHALT, CONCRETE, DRY, GRASS, SOIL, URBAN, WATER, _Canvas
from cism_lib.data.synthetic.geometry import _rect, _value_noise, _xf
from cism_lib.data.synthetic.scenes import BR, LV, RA, SV

_ROOF_RGB = ((150, 150, 150), (188, 186, 180), (165, 82, 62), (120, 90, 72), (72, 72, 78),
             (96, 112, 100), (212, 210, 205), (140, 110, 90), (70, 96, 150))
_COURT_RGB = ((62, 128, 84), (52, 92, 150), (168, 92, 64), (70, 110, 70), (120, 60, 60))


# ----------------------------------------------------------------------------- background dressing
def _paint_paved(cv: _Canvas, mat: np.ndarray, also_paved: np.ndarray | None = None) -> np.ndarray:
    """Paint the ground, record roads and lots as pavement (with `also_paved`; open: the rest) and
    mark them; returns where roads and lots lie."""
    cv.paint(mat)
    none = np.zeros((cv.size, cv.size), bool)
    pave = cv.regions.get("road", none) | cv.regions.get("lot", none)
    cv.regions.update(pavement=pave if also_paved is None else pave | also_paved, open=~pave)
    _road_markings(cv)
    _lot_markings(cv)
    return pave


def _road_markings(cv: _Canvas) -> None:
    """Dashed centre lines on every road."""
    for px, py, ang, width in cv.roads:
        rgb = (230, 230, 225) if width > 14 * cv.k else (200, 190, 120)
        step, dash = 22 * cv.k, 10 * cv.k
        t0 = float(cv.rng.uniform(0, step))
        for t in np.arange(-1.5 * cv.size + t0, 1.5 * cv.size, step):
            seg = np.array([(t, 0.0), (t + dash, 0.0)])
            cv.line(seg, px, py, ang, rgb, max(1.0, 1.2 * cv.k), alpha=200)


def _lot_markings(cv: _Canvas) -> None:
    """Stall lines in every parking lot."""
    for cx, cy, ang, length, width in cv.lots:
        sw, depth = 11 * cv.k, 18 * cv.k
        for row in _lot_rows(width, depth):
            for t in np.arange(-length / 2, length / 2 + 0.1, sw):
                seg = np.array([(t, row - depth / 2), (t, row + depth / 2)])
                cv.line(seg, cx, cy, ang, (205, 205, 200), max(1.0, 0.8 * cv.k), alpha=190)


def _lot_rows(width: float, depth: float) -> list[float]:
    """Across-positions of stall rows in a lot: pairs of rows back to back, then an aisle."""
    rows, v, n = [], -width / 2 + depth / 2, 0
    while v + depth / 2 <= width / 2 + 1e-6:
        rows.append(v)
        n += 1
        v += depth if n % 2 else depth * 1.9
    return rows


def _buildings(cv: _Canvas, n: int, region: np.ndarray, lo: float, hi: float,
               style: str = "mixed") -> None:
    """Roofs (flat, gabled or warehouse) aligned to the layout, each inside region (image only)."""
    s = cv.size
    for _ in range(n):
        x, y = cv.random_point(region)
        ln, wd = cv.u(lo, hi), cv.u(lo, hi) * float(cv.rng.uniform(0.5, 1.0))
        ang = cv.theta + (0.0 if cv.rng.random() < 0.8 else math.pi / 2) + float(cv.rng.normal(0, 0.03))
        body = _rect(ln, wd)
        corners = _xf(body, x, y, ang).astype(np.int64).clip(0, s - 1)
        if not region[corners[:, 1], corners[:, 0]].all():
            continue
        _roof(cv, body, x, y, ang, ln, wd, style)


def _roof(cv: _Canvas, body: np.ndarray, x: float, y: float, ang: float, ln: float, wd: float,
          style: str) -> None:
    """One roof with its shadow: gabled (two shades + ridge), flat (rim + units) or warehouse."""
    kind = style if style != "mixed" else ("gable", "flat", "flat")[int(cv.rng.integers(3))]
    rgb = cv.jit(cv.pick(_ROOF_RGB), 12)
    if kind == "warehouse":
        rgb = cv.jit((196, 196, 192), 10)
    cv.shadow(body, x, y, ang, cv.u(2, 6))
    cv.fill(body, x, y, ang, rgb)
    dark = tuple(int(c * 0.78) for c in rgb)
    if kind == "gable":
        cv.fill(_rect(ln, wd / 2, 0, wd / 4), x, y, ang, dark)
        cv.line(np.array([(-ln / 2, 0.0), (ln / 2, 0.0)]), x, y, ang, (230, 230, 225), 0.8 * cv.k, 120)
    elif kind == "warehouse":
        for t in np.arange(-ln / 2 + 5 * cv.k, ln / 2, 5 * cv.k):
            cv.line(np.array([(t, -wd / 2), (t, wd / 2)]), x, y, ang, dark, 0.7 * cv.k, 140)
    else:
        cv.line(np.concatenate([body, body[:1]]), x, y, ang, dark, 1.2 * cv.k)
        for _ in range(int(cv.rng.integers(0, 4))):
            ux, uy = cv.rng.uniform(-0.35, 0.35) * ln, cv.rng.uniform(-0.35, 0.35) * wd
            cv.fill(_rect(3 * cv.k, 3 * cv.k, ux, uy), x, y, ang, (205, 205, 205))


def _trees(cv: _Canvas, n: int, region: np.ndarray) -> None:
    """Tree crowns with shadows, often in small clumps (image only)."""
    for _ in range(n):
        x, y = cv.random_point(region)
        for _ in range(int(cv.rng.integers(1, 5))):
            r = cv.u(3, 7)
            tx, ty = x + cv.u(-8, 8), y + cv.u(-8, 8)
            cv.di.ellipse((tx - r + cv.sun[0] * r, ty - r + cv.sun[1] * r,
                           tx + r + cv.sun[0] * r, ty + r + cv.sun[1] * r), fill=(0, 0, 0, 90))
            cv.disc(tx, ty, r, cv.jit((48, 74, 40), 8))


def _round_roofs(cv: _Canvas, n: int, region: np.ndarray) -> None:
    """Distractors for storage tanks: flat grey round roofs with radial seams and no rim."""
    for _ in range(n):
        x, y = cv.random_point(region)
        r = cv.u(7, 16)
        cv.disc(x, y, r, cv.jit((135, 135, 138), 15))
        for t in np.linspace(0, math.pi, int(cv.rng.integers(3, 6)), endpoint=False):
            seg = np.array([(-r, 0.0), (r, 0.0)])
            cv.line(seg, x, y, float(t), (105, 105, 108), 0.8 * cv.k, 160)


def _empty_lots(cv: _Canvas, n: int, region: np.ndarray) -> None:
    """Distractors for courts and fields: plain coloured rectangles without line markings."""
    for _ in range(n):
        x, y = cv.random_point(region)
        ln, wd = cv.u(30, 70), cv.u(18, 40)
        rgb = cv.jit(cv.pick(_COURT_RGB) if cv.rng.random() < 0.6
                     else (150, 130, 100), 12)
        body = _rect(ln, wd)
        ang = cv.theta + float(cv.rng.normal(0, 0.05))
        cv.fill(body, x, y, ang, rgb)
        if cv.rng.random() < 0.5:
            cv.line(np.concatenate([body, body[:1]]), x, y, ang, (60, 60, 60), cv.k, 160)


def _containers(cv: _Canvas, n: int, region: np.ndarray) -> None:
    """Distractors for large vehicles: dense blocks of shipping containers (image only)."""
    palette = ((170, 60, 50), (50, 90, 150), (60, 120, 80), (200, 140, 60), (150, 150, 150))
    for _ in range(n):
        x, y = cv.random_point(region)
        rows, cols = int(cv.rng.integers(3, 8)), int(cv.rng.integers(2, 5))
        cl, cw = 24 * cv.k, 6 * cv.k
        for i in range(rows):
            for j in range(cols):
                lx, ly = (j - cols / 2) * (cl + cv.k), (i - rows / 2) * (cw + 0.6 * cv.k)
                rgb = cv.jit(palette[int(cv.rng.integers(len(palette)))], 10)
                cv.fill(_rect(cl, cw, lx, ly), x, y, cv.theta, rgb)


# ----------------------------------------------------------------------------- layouts
def _junction(cv: _Canvas, mat: np.ndarray, width: float) -> None:
    """Two crossing roads through a central point, remembered as a junction for roundabouts."""
    s = cv.size
    qx, qy = (float(v) for v in cv.rng.uniform(0.3, 0.7, 2) * s)
    cv.add_road(mat, qx, qy, cv.theta, width)
    cv.add_road(mat, qx, qy, cv.theta + math.pi / 2, width)
    cv.anchors["junction"].append((qx, qy))


def _layout_airport(cv: _Canvas, classes: set[int]) -> None:
    """Grass field with a runway, a taxiway and a concrete apron beside it."""
    s, rng = cv.size, cv.rng
    px, py = (float(v) for v in rng.uniform(0.3, 0.7, 2) * s)
    u, d = cv.frame(px, py, cv.theta)
    w, gap, depth = cv.u(36, 52), cv.u(12, 35), cv.u(100, 150)
    side = 1.0 if rng.random() < 0.5 else -1.0
    runway = np.abs(d) < w / 2
    apron = (side * d > w / 2 + gap) & (side * d < w / 2 + gap + depth)
    ut = float(rng.uniform(-0.3, 0.3)) * s
    taxi = (np.abs(u - ut) < cv.u(5, 7)) & (side * d > 0) & (side * d < w / 2 + gap + 1)
    mat = np.full((s, s), GRASS if rng.random() < 0.6 else DRY, np.uint8)
    mat[apron] = CONCRETE
    mat[runway | taxi] = ASPHALT
    cv.paint(mat)
    cv.regions.update(runway=runway, apron=apron, pavement=apron | runway,
                      open=~(apron | runway | taxi))
    for t in np.arange(-1.5 * s, 1.5 * s, 26 * cv.k):
        dash = np.array([(t, 0.0), (t + 13 * cv.k, 0.0)])
        cv.line(dash, px, py, cv.theta, (235, 235, 235), 1.5 * cv.k)
    for off in (-w / 2 + 3 * cv.k, w / 2 - 3 * cv.k):
        edge = np.array([(-1.5 * s, off), (1.5 * s, off)])
        cv.line(edge, px, py, cv.theta, (225, 225, 225), cv.k, 200)
    for t in np.arange(-1.5 * s, 1.5 * s, cv.u(55, 80)):
        v0, v1 = w / 2 + gap + 6 * cv.k, w / 2 + gap + depth - 6 * cv.k
        seg = np.array([(t, side * v0), (t, side * v1)])
        cv.line(seg, px, py, cv.theta, (210, 180, 60), 0.8 * cv.k, 170)
    far = side * d > w / 2 + gap + depth + 6 * cv.k
    _buildings(cv, int(rng.integers(2, 6)), far, 25, 60, "warehouse")
    _trees(cv, int(rng.integers(0, 5)), cv.regions["open"] & ~far)


def _layout_water(cv: _Canvas, classes: set[int], rural: bool) -> None:
    """Coast (half-plane) or river (band) with wobbly banks; port land or rural land."""
    s, rng = cv.size, cv.rng
    river = rural or BR in classes or bool(rng.random() < 0.3)
    px, py = (float(v) for v in rng.uniform(0.35, 0.65, 2) * s)
    _, d = cv.frame(px, py, cv.theta)
    wob = _value_noise(rng, s, 3) * cv.u(1.5, 4)
    nx, ny = -math.sin(cv.theta), math.cos(cv.theta)
    hw = cv.u(42, 70)
    if river:
        water = np.abs(d + wob) < hw
        cv.shores = [(px - nx * hw, py - ny * hw, cv.theta + math.pi / 2),
                     (px + nx * hw, py + ny * hw, cv.theta - math.pi / 2)]
    else:
        water = d + wob > 0
        cv.shores = [(px, py, cv.theta + math.pi / 2)]
    land = ~water
    mat = _land_material(cv, rural)
    if BR in classes and river:
        _plan_bridges(cv, mat, px, py, hw)
    elif RA in classes or (rural and rng.random() < 0.5):
        _land_roads(cv, mat, land, RA in classes)
    elif not rural:
        off = -(hw if river else 0.0) - cv.u(30, 70)
        cv.add_road(mat, px + nx * off, py + ny * off, cv.theta, cv.u(12, 18))
    mat[water] = WATER
    cv.paint(mat)
    road = cv.regions.get("road", np.zeros((s, s), bool)) & land
    cv.regions.update(water=water, land=land, road=road, open=land & ~road, pavement=road)
    _road_markings(cv)
    _dress_water_land(cv, rural, water, road)


def _land_material(cv: _Canvas, rural: bool) -> np.ndarray:
    """Patchy land: fields and soil (rural) or concrete and asphalt yards (port)."""
    lo = _value_noise(cv.rng, cv.size, 4)
    if rural:
        mat = np.where(lo > 0.4, DRY, GRASS).astype(np.uint8)
        mat[lo < -0.6] = SOIL
    else:
        mat = np.where(lo > 0.3, ASPHALT, CONCRETE).astype(np.uint8)
        mat[lo < -0.7] = SOIL
    return mat


def _land_roads(cv: _Canvas, mat: np.ndarray, land: np.ndarray, junction: bool) -> None:
    """A road (or a junction) on the land away from the water."""
    s = cv.size
    for _ in range(40):
        qx, qy = (float(v) for v in cv.rng.uniform(0.15, 0.85, 2) * s)
        r = int(30 * cv.k)
        y0, x0 = int(np.clip(qy, 0, s - 1)), int(np.clip(qx, 0, s - 1))
        if land[max(y0 - r, 0):y0 + r, max(x0 - r, 0):x0 + r].all():
            break
    w = cv.u(12, 18)
    cv.add_road(mat, qx, qy, cv.theta + math.pi / 2, w)
    if junction:
        cv.add_road(mat, qx, qy, cv.theta, w)
        cv.anchors["junction"].append((qx, qy))


def _plan_bridges(cv: _Canvas, mat: np.ndarray, px: float, py: float, hw: float) -> None:
    """Choose 1-2 bridge crossings of the river and pave their approach roads."""
    n = 1 if cv.rng.random() < 0.75 else 2
    for i in range(n):
        t = float(cv.rng.uniform(-0.3, 0.3)) * cv.size + i * cv.size * 0.4
        bx, by = px + math.cos(cv.theta) * t, py + math.sin(cv.theta) * t
        ang = cv.theta + math.pi / 2 + float(cv.rng.uniform(-0.35, 0.35))
        w = cv.u(12, 20)
        length = 2 * hw / abs(math.sin(ang - cv.theta)) + cv.u(16, 30)
        cv.add_road(mat, bx, by, ang, w * 0.9)
        cv.anchors["bridge"].append((bx, by, ang, length, w))


def _dress_water_land(cv: _Canvas, rural: bool, water: np.ndarray, road: np.ndarray) -> None:
    """Buildings, containers, trees and distractor round roofs on the land, back from the shore."""
    rng = cv.rng
    land_far = ~water & ~road
    for sx, sy, sa in cv.shores:
        _, dd = cv.frame(sx, sy, sa - math.pi / 2)
        land_far &= np.abs(dd) > 24 * cv.k
    if rural:
        _trees(cv, int(rng.integers(4, 12)), land_far)
        _buildings(cv, int(rng.integers(0, 6)), land_far, 12, 26, "gable")
    else:
        _buildings(cv, int(rng.integers(4, 10)), land_far, 25, 60, "warehouse")
        _containers(cv, int(rng.integers(0, 3)), land_far)
        _round_roofs(cv, int(rng.integers(0, 3)), land_far)


def _layout_harbour(cv: _Canvas, classes: set[int]) -> None:
    """Port land along a coast or river bank."""
    _layout_water(cv, classes, rural=False)


def _layout_river(cv: _Canvas, classes: set[int]) -> None:
    """Fields and trees along a river."""
    _layout_water(cv, classes, rural=True)


def _layout_urban(cv: _Canvas, classes: set[int]) -> None:
    """Dense roofs between a road grid, with parking lots."""
    s, rng = cv.size, cv.rng
    mat = np.full((s, s), URBAN, np.uint8)
    if RA in classes or rng.random() < 0.5:
        _junction(cv, mat, cv.u(14, 22))
    for _ in range(int(rng.integers(1, 3))):
        x, y = cv.random_point(None)
        cv.add_road(mat, x, y, cv.theta + (math.pi / 2 if rng.random() < 0.5 else 0), cv.u(12, 20))
    n_lots = int(rng.integers(1, 3)) if {SV, LV} & classes else int(rng.integers(0, 2))
    for _ in range(n_lots):
        x, y = cv.random_point(None)
        cv.add_lot(mat, x, y, cv.theta, cv.u(60, 120), cv.u(40, 75))
    pave = _paint_paved(cv, mat)
    _buildings(cv, int(rng.integers(25, 50)), ~pave, 12, 40)
    _round_roofs(cv, int(rng.integers(0, 3)), ~pave)
    _trees(cv, int(rng.integers(0, 6)), ~pave)


def _layout_sports(cv: _Canvas, classes: set[int]) -> None:
    """Open grass and soil with a few roads, buildings, trees and empty lots."""
    s, rng = cv.size, cv.rng
    lo = _value_noise(rng, s, 3)
    mat = np.where(lo > 0.5, DRY, GRASS).astype(np.uint8)
    mat[lo < -0.9] = SOIL
    for _ in range(int(rng.integers(0, 3))):
        x, y = cv.random_point(None)
        cv.add_road(mat, x, y, cv.theta + (math.pi / 2 if rng.random() < 0.5 else 0), cv.u(10, 16))
    if SV in classes or rng.random() < 0.3:
        x, y = cv.random_point(None)
        cv.add_lot(mat, x, y, cv.theta, cv.u(60, 100), cv.u(40, 60))
    pave = _paint_paved(cv, mat)
    _buildings(cv, int(rng.integers(0, 6)), ~pave, 15, 45)
    _empty_lots(cv, int(rng.integers(0, 3)), ~pave)
    _trees(cv, int(rng.integers(3, 12)), ~pave)


def _layout_residential(cv: _Canvas, classes: set[int]) -> None:
    """Parallel streets lined with gabled houses, yards and trees."""
    s, rng = cv.size, cv.rng
    mat = np.full((s, s), GRASS, np.uint8)
    spacing, sw = cv.u(85, 110), cv.u(10, 14)
    nx, ny = -math.sin(cv.theta), math.cos(cv.theta)
    c0 = float(rng.uniform(0, spacing))
    offsets = np.arange(-1.5 * s + c0, 1.5 * s, spacing)
    for off in offsets:
        cv.add_road(mat, s / 2 + nx * off, s / 2 + ny * off, cv.theta, sw)
    if RA in classes:
        qx, qy = s / 2 + nx * offsets[len(offsets) // 2], s / 2 + ny * offsets[len(offsets) // 2]
        qx += math.cos(cv.theta) * float(rng.uniform(-0.2, 0.2)) * s
        qy += math.sin(cv.theta) * float(rng.uniform(-0.2, 0.2)) * s
        cv.add_road(mat, qx, qy, cv.theta + math.pi / 2, sw)
        cv.anchors["junction"].append((qx, qy))
    cv.paint(mat)
    road = cv.regions["road"]
    cv.regions.update(pavement=road, open=~road)
    _road_markings(cv)
    _houses(cv, offsets, spacing, sw)
    _trees(cv, int(rng.integers(4, 12)), ~road)


def _houses(cv: _Canvas, offsets: np.ndarray, spacing: float, sw: float) -> None:
    """Houses on both sides of each street; their backyards become anchors for pools."""
    s, rng = cv.size, cv.rng
    depth = (spacing - sw) / 2
    lot_w = cv.u(30, 40)
    c, si = math.cos(cv.theta), math.sin(cv.theta)
    nx, ny = -si, c
    for off in offsets:
        for side in (-1.0, 1.0):
            for t in np.arange(-1.5 * s, 1.5 * s, lot_w):
                hv = side * (sw / 2 + 4 * cv.k + depth * 0.22)
                hx = s / 2 + nx * (off + hv) + c * t
                hy = s / 2 + ny * (off + hv) + si * t
                if not (-20 < hx < s + 20 and -20 < hy < s + 20) or rng.random() < 0.1:
                    continue
                ln, wd = lot_w * float(rng.uniform(0.55, 0.8)), depth * float(rng.uniform(0.3, 0.42))
                _roof(cv, _rect(ln, wd), hx, hy, cv.theta, ln, wd, "gable")
                yv = side * (sw / 2 + depth * 0.72)
                cv.anchors["yard"].append((s / 2 + nx * (off + yv) + c * t,
                                           s / 2 + ny * (off + yv) + si * t, cv.theta))


def _layout_industrial(cv: _Canvas, classes: set[int]) -> None:
    """Bare soil and concrete yards with warehouses, roads and round roofs."""
    s, rng = cv.size, cv.rng
    lo = _value_noise(rng, s, 4)
    mat = np.where(lo > 0.0, CONCRETE, SOIL).astype(np.uint8)
    mat[lo < -0.8] = DRY
    if RA in classes or rng.random() < 0.4:
        _junction(cv, mat, cv.u(14, 20))
    else:
        x, y = cv.random_point(None)
        cv.add_road(mat, x, y, cv.theta, cv.u(14, 20))
    if {LV, SV} & classes:
        x, y = cv.random_point(None)
        cv.add_lot(mat, x, y, cv.theta, cv.u(70, 120), cv.u(45, 70))
    pave = _paint_paved(cv, mat, also_paved=mat == CONCRETE)
    _buildings(cv, int(rng.integers(3, 8)), ~pave, 30, 70, "warehouse")
    _round_roofs(cv, int(rng.integers(1, 5)), ~pave)
    _containers(cv, int(rng.integers(0, 2)), ~pave)


LAYOUTS: dict[str, Callable[[_Canvas, set[int]], None]] = {
    "airport": _layout_airport, "harbour": _layout_harbour, "river": _layout_river,
    "urban": _layout_urban, "sports": _layout_sports, "residential": _layout_residential,
    "industrial": _layout_industrial,
}
