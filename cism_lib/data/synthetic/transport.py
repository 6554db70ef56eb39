"""Drawers of the transport classes: vehicles, planes, helicopters, ships, harbours and bridges."""
from __future__ import annotations

import math

import numpy as np

from cism_lib.data.synthetic.canvas import _Canvas
from cism_lib.data.synthetic.geometry import _chamfer, _ellipse, _grid, _rect, _stadium, _xf
from cism_lib.data.synthetic.layouts import _lot_rows
from cism_lib.data.synthetic.scenes import BR, HA, HC, LV, PL, SH, SV

_CAR_RGB = ((236, 236, 236), (30, 30, 34), (150, 152, 158), (182, 184, 190), (150, 32, 34),
            (40, 60, 118), (96, 98, 102), (205, 195, 172), (225, 225, 228))
_ACCENT_RGB = ((180, 40, 40), (40, 70, 140), (230, 230, 230), (60, 130, 80))
_HELI_RGB = ((85, 95, 60), (70, 72, 76), (220, 220, 222), (170, 40, 40), (40, 50, 80))
_HULL_RGB = ((125, 55, 45), (120, 125, 130), (225, 225, 225), (45, 55, 85), (45, 45, 48))
_DECK_RGB = ((160, 160, 150), (90, 110, 90), (175, 95, 65), (200, 200, 200))


# ----------------------------------------------------------------------------- vehicles
def _draw_car(cv: _Canvas, x: float, y: float, ang: float, ln: float, wd: float) -> None:
    """A small vehicle: chamfered body, windscreen and rear window, shadow."""
    body = _chamfer(ln, wd, 0.28 * wd)
    rgb = cv.jit(cv.pick(_CAR_RGB), 8)
    cv.shadow(body, x, y, ang, 1.6 * cv.k)
    cv.fill(body, x, y, ang, rgb, SV)
    glass = (40, 46, 56) if sum(rgb) > 200 else (95, 105, 120)
    cv.fill(_rect(0.17 * ln, 0.76 * wd, 0.14 * ln), x, y, ang, glass)
    cv.fill(_rect(0.11 * ln, 0.72 * wd, -0.3 * ln), x, y, ang, glass)


def _draw_truck(cv: _Canvas, x: float, y: float, ang: float, ln: float, wd: float) -> None:
    """A large vehicle: truck (cab + ribbed trailer) or bus (windows, roof units), shadow."""
    rgb = cv.jit(((228, 228, 226), (200, 200, 200), (190, 60, 50), (60, 90, 150), (215, 180, 60),
                  (150, 150, 155))[int(cv.rng.integers(6))], 8)
    if cv.rng.random() < 0.65:
        trailer, cab = _rect(0.76 * ln, wd, -0.12 * ln), _rect(0.19 * ln, 0.92 * wd, 0.405 * ln)
        for part in (trailer, cab):
            cv.shadow(part, x, y, ang, 3 * cv.k)
        cv.fill(trailer, x, y, ang, rgb, LV)
        cv.fill(cab, x, y, ang, cv.jit(cv.pick(_CAR_RGB), 8), LV)
        dark = tuple(int(c * 0.8) for c in rgb)
        for t in np.linspace(-0.48 * ln, 0.24 * ln, 7):
            cv.line(np.array([(t, -wd / 2), (t, wd / 2)]), x, y, ang, dark, 0.6 * cv.k, 150)
    else:
        body = _chamfer(ln, wd, 0.15 * wd)
        cv.shadow(body, x, y, ang, 3 * cv.k)
        cv.fill(body, x, y, ang, rgb, LV)
        for side in (-0.36, 0.36):
            cv.line(np.array([(-0.42 * ln, side * wd), (0.42 * ln, side * wd)]), x, y, ang,
                    (45, 50, 60), 0.9 * cv.k, 200)
        cv.fill(_rect(0.2 * ln, 0.4 * wd, -0.1 * ln), x, y, ang, (170, 172, 176))


def _vehicle_size(cv: _Canvas, cls: int) -> tuple[float, float]:
    """(length, width) of one vehicle of this class in pixels."""
    if cls == LV:
        return cv.u(22, 36), cv.u(8, 11)
    ln = cv.u(12, 16)
    return ln, ln * float(cv.rng.uniform(0.45, 0.55))


def _vehicle(cv: _Canvas, cls: int, x: float, y: float, ang: float) -> bool:
    """Draw one vehicle when its footprint is free; whether it was drawn."""
    ln, wd = _vehicle_size(cv, cls)
    if not cv.is_free(_grid(ln / 2 + cv.k, wd / 2 + cv.k, 3), x, y, ang):
        return False
    (_draw_truck if cls == LV else _draw_car)(cv, x, y, ang, ln, wd)
    return True


def _park_in_lot(cv: _Canvas, cls: int, n: int) -> int:
    """Vehicles in the stalls of a parking lot (large vehicles take every second stall)."""
    cx, cy, ang, length, width = cv.lots[int(cv.rng.integers(len(cv.lots)))]
    sw, depth, drawn = 11 * cv.k, 18 * cv.k, 0
    fill = float(cv.rng.uniform(0.4, 0.9))
    step = 2 if cls == LV else 1
    for row in _lot_rows(width, depth):
        for t in np.arange(-length / 2 + sw / 2, length / 2 - sw / 2 + 0.1, sw)[::step]:
            if drawn >= n or cv.rng.random() > fill:
                continue
            wx, wy = _xf(np.array([(t, row)]), cx, cy, ang)[0]
            flip = math.pi if cv.rng.random() < 0.5 else 0.0
            drawn += _vehicle(cv, cls, float(wx), float(wy), ang + math.pi / 2 + flip)
    return drawn


def _queue_on_road(cv: _Canvas, cls: int, n: int) -> int:
    """A queue of vehicles in one lane of a road."""
    px, py, ang, width = cv.roads[int(cv.rng.integers(len(cv.roads)))]
    lane = width / 4 * (1 if cv.rng.random() < 0.5 else -1)
    heading = ang if lane > 0 else ang + math.pi
    t, drawn = float(cv.rng.uniform(-0.5, 0.5)) * cv.size, 0
    for _ in range(n):
        wx, wy = _xf(np.array([(t, lane)]), px, py, ang)[0]
        if 0 <= wx < cv.size and 0 <= wy < cv.size:
            drawn += _vehicle(cv, cls, float(wx), float(wy), heading)
        t += cv.u(20, 45) * (1.8 if cls == LV else 1.0)
    return drawn


def _scatter_row(cv: _Canvas, cls: int, n: int) -> int:
    """A row of side-by-side parked vehicles placed on pavement (or open ground)."""
    region = cv.regions.get("pavement")
    if region is None or not region.any():
        region = cv.regions.get("open")
    ln, wd = _vehicle_size(cv, cls)
    m = int(cv.rng.integers(1, min(n, 6) + 1))
    gap = wd * float(cv.rng.uniform(1.5, 2.2))
    x, y, a = cv.place(_grid(ln / 2, m * gap / 2, 5), region, min_region=0.9)
    drawn = 0
    for i in range(m):
        wx, wy = _xf(np.array([(0.0, (i - (m - 1) / 2) * gap)]), x, y, a)[0]
        drawn += _vehicle(cv, cls, float(wx), float(wy), a)
    return drawn


def _paint_vehicles(cv: _Canvas, cls: int) -> None:
    """Vehicles in parking lots, queued on roads and in rows on pavement; at least one."""
    n = int(cv.rng.integers(2, 8)) if cls == LV else int(cv.rng.integers(3, 16))
    drawn = 0
    if cv.lots and cv.rng.random() < 0.75:
        drawn += _park_in_lot(cv, cls, n)
    if cv.roads and drawn < n and cv.rng.random() < 0.7:
        drawn += _queue_on_road(cv, cls, n - drawn)
    for _ in range(6):
        if drawn >= max(1, n // 2):
            break
        drawn += _scatter_row(cv, cls, n - drawn)
    if not drawn:
        ln, wd = _vehicle_size(cv, cls)
        x, y, a = cv.place(_grid(ln / 2, wd / 2, 3), None)
        (_draw_truck if cls == LV else _draw_car)(cv, x, y, a, ln, wd)


def _paint_sv(cv: _Canvas, classes: set[int]) -> None:
    """Small vehicles."""
    _paint_vehicles(cv, SV)


def _paint_lv(cv: _Canvas, classes: set[int]) -> None:
    """Large vehicles."""
    _paint_vehicles(cv, LV)


# ----------------------------------------------------------------------------- aircraft
def _plane_parts(ln: float) -> list[np.ndarray]:
    """Fuselage, swept wings, engines and tailplane of a plane, nose towards +x."""
    wing = np.array([(0.12, 0.04), (-0.16, 0.5), (-0.27, 0.5), (-0.12, 0.04)]) * ln
    tail = np.array([(-0.34, 0.03), (-0.44, 0.19), (-0.5, 0.19), (-0.46, 0.03)]) * ln
    flip = np.array([1.0, -1.0])
    return [_stadium(ln, 0.11 * ln), wing, wing * flip, tail, tail * flip]


def _draw_plane(cv: _Canvas, x: float, y: float, ang: float, ln: float) -> None:
    """A plane with its shadow, engines and a coloured tail."""
    parts = _plane_parts(ln)
    for part in parts:
        cv.shadow(part, x, y, ang, 0.12 * ln)
    rgb = cv.jit((232, 232, 235) if cv.rng.random() < 0.7 else (190, 192, 198), 6)
    for part in parts:
        cv.fill(part, x, y, ang, rgb, PL)
    for side in (-1, 1):
        cv.fill(_rect(0.1 * ln, 0.045 * ln, 0.03 * ln, side * 0.17 * ln), x, y, ang, (120, 122, 128), PL)
    accent = cv.jit(cv.pick(_ACCENT_RGB), 10)
    cv.fill(_rect(0.14 * ln, 0.08 * ln, -0.43 * ln), x, y, ang, accent)
    cv.fill(_ellipse(0.03 * ln, 0.03 * ln, 8, 0.43 * ln), x, y, ang, (50, 55, 65))


def _paint_planes(cv: _Canvas, classes: set[int]) -> None:
    """1-4 planes parked on the apron, sometimes one on the runway."""
    for i in range(int(cv.rng.integers(1, 5))):
        ln = cv.u(45, 80)
        on_runway = i == 0 and cv.rng.random() < 0.3 and "runway" in cv.regions
        region = cv.regions["runway"] if on_runway else cv.regions.get("apron", cv.regions.get("open"))
        angle = cv.theta + (math.pi if cv.rng.random() < 0.5 else 0.0) if on_runway else None
        x, y, a = cv.place(_grid(0.5 * ln, 0.5 * ln), region, angle, min_region=0.6)
        _draw_plane(cv, x, y, a, ln)


def _draw_helicopter(cv: _Canvas, x: float, y: float, ang: float, ln: float) -> None:
    """Body, tail boom, tail fin and a two-blade rotor cross, with shadow."""
    ra = float(cv.rng.uniform(0, math.pi / 2))
    blade = _rect(1.0 * ln, 0.04 * ln, 0.0, 0.0)
    blades = [_xf(blade, 0.1 * ln, 0.0, ra), _xf(blade, 0.1 * ln, 0.0, ra + math.pi / 2)]
    parts = [_ellipse(0.22 * ln, 0.09 * ln, 16, 0.1 * ln), _rect(0.42 * ln, 0.035 * ln, -0.3 * ln),
             _rect(0.05 * ln, 0.16 * ln, -0.5 * ln)]
    for part in parts + blades:
        cv.shadow(part, x, y, ang, 0.18 * ln)
    rgb = cv.jit(cv.pick(_HELI_RGB), 8)
    for part in parts:
        cv.fill(part, x, y, ang, rgb, HC)
    cv.fill(_ellipse(0.07 * ln, 0.06 * ln, 10, 0.22 * ln), x, y, ang, (50, 60, 70))
    for part in blades:
        cv.fill(part, x, y, ang, (45, 45, 48), HC)


def _paint_helicopters(cv: _Canvas, classes: set[int]) -> None:
    """1-3 helicopters on the apron or on helipads (concrete disc with an H) on open ground."""
    for _ in range(int(cv.rng.integers(1, 4))):
        ln = cv.u(30, 42)
        apron = "apron" in cv.regions and cv.rng.random() < 0.5
        region = cv.regions["apron"] if apron else cv.regions.get("open")
        x, y, a = cv.place(_grid(0.6 * ln, 0.6 * ln), region)
        if not apron:
            r = 0.62 * ln
            cv.disc(x, y, r, cv.jit((175, 172, 165), 6))
            cv.di.ellipse((x - 0.85 * r, y - 0.85 * r, x + 0.85 * r, y + 0.85 * r),
                          outline=(235, 235, 235), width=max(1, int(cv.k)))
        _draw_helicopter(cv, x, y, a, ln)


# ----------------------------------------------------------------------------- water
def _hull(ln: float, wd: float) -> np.ndarray:
    """A ship's hull: square-ish stern at -x, pointed bow at +x."""
    return np.array([(-0.5, -0.42), (-0.46, -0.5), (0.22, -0.5), (0.5, 0.0), (0.22, 0.5),
                     (-0.46, 0.5), (-0.5, 0.42)]) * (ln, wd)


def _draw_ship(cv: _Canvas, x: float, y: float, ang: float, ln: float, wd: float,
               wake: bool) -> None:
    """A ship: optional foam wake, hull, deck, hatches and a white superstructure at the stern."""
    if wake:
        trail = np.array([(-0.45, -0.35), (-2.0, -0.8), (-2.0, 0.8), (-0.45, 0.35)]) * (ln, wd)
        cv.fill(trail, x, y, ang, (220, 228, 228), alpha=60)
        for sgn in (-1, 1):
            spread = sgn * (0.5 + 0.58 * ln / wd)  # Kelvin wake arms open at about 20 degrees
            arm = np.array([(-0.1, sgn * 0.5), (-1.6, spread)]) * (ln, wd)
            cv.line(arm, x, y, ang, (215, 225, 225), max(1.0, 0.12 * wd), 70)
    hull = _hull(ln, wd)
    cv.shadow(hull, x, y, ang, 1.5 * cv.k)
    rgb = cv.jit(cv.pick(_HULL_RGB), 8)
    cv.fill(hull, x, y, ang, rgb, SH)
    deck = cv.jit(cv.pick(_DECK_RGB), 8)
    cv.fill(_hull(ln * 0.9, wd * 0.78), x, y, ang, deck)
    if ln > 42 * cv.k:
        for t in np.linspace(-0.15, 0.25, int(cv.rng.integers(2, 5))):
            cv.fill(_rect(0.09 * ln, 0.6 * wd, t * ln), x, y, ang, cv.jit((110, 80, 60), 20))
    tower = _rect(0.16 * ln, 0.74 * wd, -0.33 * ln)
    cv.shadow(tower, x, y, ang, 2.5 * cv.k)
    cv.fill(tower, x, y, ang, cv.jit((235, 235, 235), 5), SH)


def _paint_ships(cv: _Canvas, classes: set[int]) -> None:
    """1-5 ships: moored beside piers when there are any, else under way with a wake."""
    berths = list(cv.anchors["berth"])
    water = cv.regions.get("water")
    for _ in range(int(cv.rng.integers(1, 6))):
        ln = cv.k * 28 * math.exp(float(cv.rng.uniform(0, math.log(2.6))))
        wd = ln * float(cv.rng.uniform(0.18, 0.26))
        if berths and cv.rng.random() < 0.65 and _moor(cv, berths, ln, wd):
            continue
        wake = bool(cv.rng.random() < 0.5)
        x, y, a = cv.place(_grid(ln / 2 + 2 * cv.k, wd / 2 + 2 * cv.k), water, min_region=0.98)
        _draw_ship(cv, x, y, a, ln, wd, wake)


def _moor(cv: _Canvas, berths: list, ln: float, wd: float) -> bool:
    """Moor a ship alongside a free berth of a pier; whether it was drawn."""
    bx, by, ang, nx, ny, max_len = berths.pop(int(cv.rng.integers(len(berths))))
    ln = min(ln, max_len)
    wd = min(wd, ln * 0.26)
    x, y = bx + nx * (wd / 2 + 1.5 * cv.k), by + ny * (wd / 2 + 1.5 * cv.k)
    if not cv.is_free(_grid(ln / 2, wd / 2, 4), x, y, ang):
        return False
    _draw_ship(cv, x, y, ang, ln, wd, wake=False)
    return True


def _paint_harbor(cv: _Canvas, classes: set[int]) -> None:
    """A quay along the shore with 1-4 piers (some T-headed) reaching into the water."""
    if not cv.shores:
        return
    sx, sy, na = cv.shores[int(cv.rng.integers(len(cv.shores)))]
    along = na - math.pi / 2  # local x runs along the shore, local +y into the water
    n = int(cv.rng.integers(1, 5))
    spacing, lp, pw, q = cv.u(28, 45), cv.u(35, 80), cv.u(6, 11), cv.u(10, 16)
    qlen = (n - 1) * spacing + cv.u(25, 45)
    t = float(cv.rng.uniform(-0.25, 0.25)) * cv.size
    x, y = sx + math.cos(along) * t, sy + math.sin(along) * t
    rgb = cv.jit((186, 183, 176) if cv.rng.random() < 0.75 else (140, 112, 82), 8)
    parts = [_rect(qlen, q + 10 * cv.k, 0.0, (q - 10 * cv.k) / 2)]
    for i in range(n):
        px = (i - (n - 1) / 2) * spacing
        parts.append(_rect(pw, lp, px, q - 2 * cv.k + lp / 2))
        if cv.rng.random() < 0.35:
            parts.append(_rect(3 * pw, pw, px, q - 2 * cv.k + lp))
        for side in (-1.0, 1.0):
            b = _xf(np.array([(px + side * pw / 2, q + lp * 0.5)]), x, y, along)[0]
            cv.anchors["berth"].append((float(b[0]), float(b[1]), na, side * math.cos(along),
                                        side * math.sin(along), lp * 0.95))
    for part in parts:
        cv.shadow(part, x, y, along, 2 * cv.k)
    for part in parts:
        cv.fill(part, x, y, along, rgb, HA)
    for i in range(n):
        px = (i - (n - 1) / 2) * spacing
        seg = np.array([(px, q), (px, q + lp - pw)])
        cv.line(seg, x, y, along, tuple(int(c * 0.85) for c in rgb), 0.6 * cv.k, 150)


def _paint_bridges(cv: _Canvas, classes: set[int]) -> None:
    """Bridge decks across the river along the planned crossings, with shadows on the water."""
    for bx, by, ang, length, wd in cv.anchors["bridge"]:
        deck = _rect(length, wd)
        cv.shadow(deck, bx, by, ang, cv.u(5, 10))
        grey = (150, 150, 148) if cv.rng.random() < 0.6 else (110, 108, 105)
        cv.fill(deck, bx, by, ang, cv.jit(grey, 8), BR)
        for side in (-1, 1):
            seg = np.array([(-length / 2, side * (wd / 2 - cv.k)), (length / 2, side * (wd / 2 - cv.k))])
            cv.line(seg, bx, by, ang, (205, 205, 200), 1.2 * cv.k)
        for t in np.arange(-length / 2, length / 2 - 8 * cv.k, 16 * cv.k):
            cv.line(np.array([(t, 0.0), (t + 8 * cv.k, 0.0)]), bx, by, ang, (230, 230, 220), 0.8 * cv.k)
