"""The demo world's renderer: object classes drawn from primitives, and the styles that paint them.

An object is a list of :class:`Part` (filled polygons and open strokes) in a unit frame
([-1, 1]^2, y down). :func:`render` places it on the canvas with a random similarity transform
and hands the placed parts to a style function. Everything random comes from one
``numpy.random.Generator``, so a seed fixes the image bytes (see :func:`image_rng`).

Design fixed in issue 4 (do not tune it for a method; fix bugs only):
22 classes (:data:`CLASSES`), 10 styles (:data:`STYLES`); the benchmark uses 7 of the classes and
4 of the styles (:data:`BENCHMARK_CLASSES`, :data:`BENCHMARK_STYLES`). Images are drawn at
:data:`SUPERSAMPLE` x the output size and downsampled with a Lanczos filter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

IMAGE_SIZE = 64
SUPERSAMPLE = 2

#: Named colours; the caption names the object's main colour with these words.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (240, 135, 30),
    "yellow": (235, 205, 40),
    "green": (55, 160, 60),
    "blue": (45, 85, 215),
    "purple": (135, 60, 175),
    "pink": (240, 125, 180),
    "brown": (125, 80, 40),
    "gray": (125, 125, 125),
    "white": (238, 238, 238),
    "black": (35, 35, 35),
}
_ALL = tuple(COLORS)
_BRIGHT = ("red", "orange", "yellow", "green", "blue", "purple", "pink")


@dataclass
class Part:
    """One primitive: a filled polygon (``fill=True``) or an open polyline stroke."""

    pts: np.ndarray  # (k, 2) float, unit frame, later canvas pixels
    color: tuple[int, int, int]
    fill: bool = True
    width: float = 0.06  # stroke width in unit-frame units (canvas px after placement)


# ----------------------------------------------------------------------------------------------
# primitives (unit frame)


def ellipse(
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    n: int = 28,
    a0: float = 0.0,
    a1: float = 2 * math.pi,
) -> np.ndarray:
    """Points on an ellipse arc (a full ellipse by default)."""
    t = np.linspace(a0, a1, n, endpoint=(a1 - a0) < 2 * math.pi - 1e-6)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Corners of an axis-aligned rectangle."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def poly(*xy: float) -> np.ndarray:
    """Polygon from a flat list of coordinates."""
    return np.asarray(xy, dtype=float).reshape(-1, 2)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _jit(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int = 18):
    c = np.asarray(rgb) + rng.integers(-amount, amount + 1, size=3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


# ----------------------------------------------------------------------------------------------
# classes: each returns (parts, main colour name)


def _pick(rng: np.random.Generator, names: tuple[str, ...]) -> str:
    return names[int(rng.integers(len(names)))]


def draw_house(rng):
    name = _pick(rng, ("red", "yellow", "white", "blue", "brown", "orange", "pink", "gray"))
    w, h, rh = _u(rng, 0.55, 0.85), _u(rng, 0.4, 0.7), _u(rng, 0.3, 0.55)
    top = 0.75 - h
    roof = _pick(rng, ("red", "brown", "gray", "black", "blue"))
    parts = [
        Part(rect(-w, top, w, 0.75), _jit(COLORS[name], rng)),
        Part(poly(-w - 0.1, top, 0, top - rh, w + 0.1, top), _jit(COLORS[roof], rng)),
    ]
    if rng.random() < 0.5:
        parts.insert(
            0, Part(rect(w * 0.4, top - rh * 0.9, w * 0.65, top), _jit(COLORS["brown"], rng))
        )
    dx = _u(rng, -w * 0.5, w * 0.5)
    parts.append(
        Part(rect(dx - 0.12, 0.75 - h * 0.55, dx + 0.12, 0.75), _jit(COLORS["brown"], rng))
    )
    for sx in (-1, 1)[: 1 + int(rng.integers(2))]:
        wx = sx * w * 0.6 if abs(sx * w * 0.6 - dx) > 0.3 else -dx * 0.5
        parts.append(Part(rect(wx - 0.11, top + 0.12, wx + 0.11, top + 0.32), (170, 215, 240)))
    return parts, name


def draw_tree(rng):
    name = _pick(rng, ("green", "green", "orange", "yellow", "red"))
    tw, th = _u(rng, 0.08, 0.16), _u(rng, 0.35, 0.6)
    parts = [Part(rect(-tw, 0.9 - th, tw, 0.9), _jit(COLORS["brown"], rng))]
    if rng.random() < 0.5:  # broadleaf: a cluster of blobs
        for _ in range(int(rng.integers(1, 4))):
            r = _u(rng, 0.35, 0.55)
            parts.append(
                Part(
                    ellipse(_u(rng, -0.25, 0.25), _u(rng, -0.35, 0.05), r, r * _u(rng, 0.8, 1.1)),
                    _jit(COLORS[name], rng),
                )
            )
    else:  # conifer: stacked triangles
        k = int(rng.integers(2, 4))
        base = 0.9 - th
        for i in range(k):
            wid = 0.7 - i * 0.15
            parts.append(
                Part(
                    poly(-wid, base - i * 0.35, 0, base - i * 0.35 - 0.65, wid, base - i * 0.35),
                    _jit(COLORS[name], rng),
                )
            )
    return parts, name


def draw_fish(rng):
    name = _pick(rng, (*_BRIGHT, "gray"))
    L, H = _u(rng, 0.55, 0.75), _u(rng, 0.25, 0.45)
    tl = _u(rng, 0.25, 0.4)
    c = _jit(COLORS[name], rng)
    return [
        Part(poly(L - 0.1, 0, L + tl, -H * 0.9, L + tl, H * 0.9), c),
        Part(poly(-0.1, -H * 0.7, 0.2, -H - 0.25, 0.35, -H * 0.6), c),
        Part(ellipse(-0.1, 0, L, H), c),
        Part(ellipse(-L * 0.6, -H * 0.25, 0.07, 0.07), (20, 20, 20)),
    ], name


def draw_car(rng):
    name = _pick(rng, _ALL)
    L, h = _u(rng, 0.75, 0.95), _u(rng, 0.22, 0.35)
    cl, cr, ch = _u(rng, -0.55, -0.25), _u(rng, 0.2, 0.5), _u(rng, 0.25, 0.4)
    c = _jit(COLORS[name], rng)
    y = 0.35
    parts = [
        Part(poly(cl, y - h, cl + 0.12, y - h - ch, cr - 0.1, y - h - ch, cr + 0.1, y - h), c),
        Part(rect(-L, y - h, L, y), c),
        Part(
            poly(
                cl + 0.12,
                y - h - 0.03,
                cl + 0.17,
                y - h - ch + 0.07,
                cr - 0.12,
                y - h - ch + 0.07,
                cr - 0.02,
                y - h - 0.03,
            ),
            (170, 215, 240),
        ),
    ]
    r = _u(rng, 0.14, 0.22)
    for wx in (-L * 0.6, L * 0.6):
        parts.append(Part(ellipse(wx, y, r, r), (30, 30, 30)))
        parts.append(Part(ellipse(wx, y, r * 0.45, r * 0.45), (170, 170, 170)))
    return parts, name


def draw_boat(rng):
    name = _pick(rng, ("red", "blue", "brown", "white", "yellow", "green", "black"))
    L, d = _u(rng, 0.7, 0.95), _u(rng, 0.2, 0.35)
    y = 0.5
    parts = [Part(poly(-L, y - d, L, y - d, L * 0.7, y, -L * 0.7, y), _jit(COLORS[name], rng))]
    mh = _u(rng, 0.8, 1.2)
    mx = _u(rng, -0.15, 0.15)
    parts.append(Part(poly(mx, y - d, mx, y - d - mh), _jit(COLORS["brown"], rng), False, 0.05))
    sail = _jit(COLORS[_pick(rng, ("white", "white", "yellow", "red", "blue"))], rng)
    parts.append(
        Part(
            poly(
                mx + 0.04,
                y - d - mh,
                mx + 0.04,
                y - d - 0.08,
                mx + _u(rng, 0.45, 0.7),
                y - d - 0.08,
            ),
            sail,
        )
    )
    if rng.random() < 0.5:
        parts.append(
            Part(
                poly(
                    mx - 0.04,
                    y - d - mh * 0.85,
                    mx - 0.04,
                    y - d - 0.08,
                    mx - _u(rng, 0.3, 0.5),
                    y - d - 0.08,
                ),
                sail,
            )
        )
    return parts, name


def draw_flower(rng):
    name = _pick(rng, ("red", "yellow", "pink", "purple", "orange", "white", "blue"))
    cy = _u(rng, -0.35, -0.15)
    parts = [Part(poly(0, cy, _u(rng, -0.1, 0.1), 0.95), _jit(COLORS["green"], rng), False, 0.07)]
    if rng.random() < 0.7:
        parts.append(Part(ellipse(0.17, 0.45, 0.18, 0.07), _jit(COLORS["green"], rng)))
    k, pr = int(rng.integers(5, 9)), _u(rng, 0.22, 0.32)
    pc = _jit(COLORS[name], rng)
    for i in range(k):
        a = 2 * math.pi * i / k
        pts = ellipse(0, 0, pr, pr * 0.5)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        parts.append(
            Part(pts @ rot.T + np.array([math.cos(a), math.sin(a)]) * pr * 0.95 + [0, cy], pc)
        )
    cr = _u(rng, 0.1, 0.16)
    parts.append(
        Part(ellipse(0, cy, cr, cr), _jit(COLORS[_pick(rng, ("yellow", "brown", "orange"))], rng))
    )
    return parts, name


def draw_sun(rng):
    name = _pick(rng, ("yellow", "orange", "red"))
    r = _u(rng, 0.35, 0.5)
    c = _jit(COLORS[name], rng)
    k = int(rng.integers(8, 15))
    parts = []
    ray_len = _u(rng, 0.2, 0.4)
    tri = rng.random() < 0.5
    for i in range(k):
        a = 2 * math.pi * i / k
        u = np.array([math.cos(a), math.sin(a)])
        v = np.array([-u[1], u[0]])
        if tri:
            parts.append(
                Part(
                    np.stack(
                        [u * (r + 0.05) + v * 0.09, u * (r + ray_len), u * (r + 0.05) - v * 0.09]
                    ),
                    c,
                )
            )
        else:
            parts.append(Part(np.stack([u * (r + 0.08), u * (r + ray_len)]), c, False, 0.06))
    parts.append(Part(ellipse(0, 0, r, r), c))
    return parts, name


def draw_moon(rng):
    name = _pick(rng, ("yellow", "white", "gray", "orange"))
    r = _u(rng, 0.6, 0.8)
    off = _u(rng, 0.3, 0.5) * r
    outer = ellipse(0, 0, r, r, 40, -math.pi / 2, math.pi / 2)
    # inner arc of the crescent, back from bottom to top, so the polygon stays simple
    t = np.linspace(math.pi / 2, -math.pi / 2, 40)
    ri = math.hypot(r, off) * 0.98
    inner = np.stack([off * 0 + (ri * np.cos(t) - off), np.clip(ri * np.sin(t), -r, r)], axis=1)
    return [Part(np.concatenate([outer, inner]), _jit(COLORS[name], rng))], name


def draw_star(rng):
    name = _pick(rng, ("yellow", "orange", "red", "blue", "white", "pink"))
    k = int(rng.integers(5, 7))
    ro, ri = _u(rng, 0.75, 0.95), _u(rng, 0.3, 0.45)
    a = np.arange(2 * k) * math.pi / k - math.pi / 2
    rr = np.where(np.arange(2 * k) % 2 == 0, ro, ri)
    return [Part(np.stack([rr * np.cos(a), rr * np.sin(a)], axis=1), _jit(COLORS[name], rng))], name


def draw_cloud(rng):
    name = _pick(rng, ("white", "gray", "white", "black"))
    c = _jit(COLORS[name], rng)
    parts = [Part(ellipse(0, 0.15, _u(rng, 0.7, 0.85), _u(rng, 0.22, 0.3)), c)]
    for _ in range(int(rng.integers(2, 5))):
        r = _u(rng, 0.25, 0.4)
        parts.append(Part(ellipse(_u(rng, -0.45, 0.45), _u(rng, -0.15, 0.05), r, r), c))
    return parts, name


def draw_mountain(rng):
    name = _pick(rng, ("gray", "brown", "green", "blue", "purple"))
    parts = []
    for _ in range(int(rng.integers(1, 4))):
        cx, h, w = _u(rng, -0.4, 0.4), _u(rng, 0.8, 1.4), _u(rng, 0.5, 0.8)
        parts.append(Part(poly(cx - w, 0.7, cx, 0.7 - h, cx + w, 0.7), _jit(COLORS[name], rng)))
        s = _u(rng, 0.2, 0.35)
        parts.append(
            Part(
                poly(cx - w * s, 0.7 - h * (1 - s), cx, 0.7 - h, cx + w * s, 0.7 - h * (1 - s)),
                (245, 245, 250),
            )
        )
    return parts, name


def draw_rocket(rng):
    name = _pick(rng, ("white", "red", "gray", "blue", "orange"))
    w, h = _u(rng, 0.18, 0.28), _u(rng, 0.9, 1.2)
    c = _jit(COLORS[name], rng)
    fc = _jit(COLORS[_pick(rng, ("red", "blue", "black", "orange"))], rng)
    top = 0.6 - h
    return [
        Part(poly(-w, 0.6, -w - 0.25, 0.85, -w, 0.3), fc),
        Part(poly(w, 0.6, w + 0.25, 0.85, w, 0.3), fc),
        Part(poly(-w * 0.7, 0.6, 0, 0.95, w * 0.7, 0.6), _jit(COLORS["orange"], rng)),
        Part(rect(-w, top, w, 0.6), c),
        Part(poly(-w, top, 0, top - _u(rng, 0.3, 0.45), w, top), fc),
        Part(ellipse(0, top + 0.3, w * 0.5, w * 0.5), (150, 200, 240)),
    ], name


def draw_bird(rng):
    name = _pick(rng, _ALL)
    c = _jit(COLORS[name], rng)
    bl, bh = _u(rng, 0.45, 0.6), _u(rng, 0.25, 0.35)
    hr = _u(rng, 0.18, 0.24)
    return [
        Part(poly(0.1, 0.3, 0.05, 0.75), (200, 120, 30), False, 0.04),
        Part(poly(0.3, 0.3, 0.28, 0.75), (200, 120, 30), False, 0.04),
        Part(poly(bl - 0.1, 0, bl + 0.3, -0.15, bl + 0.3, 0.15), c),
        Part(ellipse(0.1, 0.05, bl, bh), c),
        Part(ellipse(-bl + 0.05, -bh - 0.05, hr, hr), c),
        Part(
            poly(
                -bl - hr + 0.08, -bh - 0.1, -bl - hr - 0.2, -bh - 0.02, -bl - hr + 0.08, -bh + 0.04
            ),
            (240, 170, 30),
        ),
        Part(
            poly(-0.15, 0.0, 0.35, -_u(rng, 0.3, 0.55), 0.45, 0.05),
            _jit(tuple(int(v * 0.75) for v in COLORS[name]), rng),
        ),
        Part(ellipse(-bl, -bh - 0.08, 0.04, 0.04), (15, 15, 15)),
    ], name


def draw_mushroom(rng):
    name = _pick(rng, ("red", "brown", "orange", "yellow", "purple"))
    cw, ch = _u(rng, 0.6, 0.9), _u(rng, 0.4, 0.6)
    sw = _u(rng, 0.15, 0.25)
    parts = [
        Part(rect(-sw, -0.05, sw, 0.8), (235, 225, 200)),
        Part(
            np.concatenate([ellipse(0, 0, cw, ch, 30, math.pi, 2 * math.pi), [[cw, 0.0]]]),
            _jit(COLORS[name], rng),
        ),
    ]
    for _ in range(int(rng.integers(0, 5))):
        a = _u(rng, math.pi * 1.15, math.pi * 1.85)
        rr = _u(rng, 0.3, 0.75)
        parts.append(
            Part(ellipse(cw * rr * math.cos(a), ch * rr * math.sin(a), 0.08, 0.06), (245, 245, 245))
        )
    return parts, name


def draw_umbrella(rng):
    name = _pick(rng, (*_BRIGHT, "black"))
    w, h = _u(rng, 0.75, 0.95), _u(rng, 0.45, 0.65)
    k = int(rng.integers(3, 6))
    canopy = [ellipse(0, -0.1, w, h, 30, math.pi, 2 * math.pi)]
    for i in range(k, 0, -1):  # scalloped hem, right to left
        x1, x0 = -w + 2 * w * i / k, -w + 2 * w * (i - 1) / k
        canopy.append(ellipse((x0 + x1) / 2, -0.1, (x1 - x0) / 2, 0.1, 8, 0, math.pi))
    hook = ellipse(0.1, 0.75, 0.1, 0.1, 10, 0, math.pi)
    return [
        Part(
            np.concatenate([[[0, -0.1]], [[0, 0.75]], hook[::-1][:, :] * [1, 1]]),
            (60, 40, 30),
            False,
            0.05,
        ),
        Part(np.concatenate(canopy), _jit(COLORS[name], rng)),
    ], name


def draw_cup(rng):
    name = _pick(rng, _ALL)
    w, h = _u(rng, 0.35, 0.5), _u(rng, 0.6, 0.9)
    t = _u(rng, 0.0, 0.12)
    c = _jit(COLORS[name], rng)
    parts = [
        Part(ellipse(w + 0.05, 0.05, 0.22, 0.25), c, False, 0.08),
        Part(poly(-w, -h / 2, w, -h / 2, w - t, h / 2, -w + t, h / 2), c),
    ]
    if rng.random() < 0.5:
        parts.append(Part(ellipse(0, h / 2 + 0.05, w + 0.3, 0.07), _jit(COLORS["white"], rng)))
    return parts, name


def draw_balloon(rng):
    name = _pick(rng, _BRIGHT)
    rx, ry = _u(rng, 0.35, 0.5), _u(rng, 0.45, 0.6)
    cy = -0.3
    ts = np.linspace(0, 1, 12)
    amp = _u(rng, 0.05, 0.15)
    string = np.stack([amp * np.sin(ts * 3 * math.pi), cy + ry + 0.05 + ts * 0.8], axis=1)
    c = _jit(COLORS[name], rng)
    return [
        Part(string, (90, 90, 90), False, 0.03),
        Part(ellipse(0, cy, rx, ry), c),
        Part(poly(-0.07, cy + ry + 0.08, 0, cy + ry - 0.02, 0.07, cy + ry + 0.08), c),
    ], name


def draw_kite(rng):
    name = _pick(rng, _BRIGHT)
    w, t, b = _u(rng, 0.4, 0.55), _u(rng, 0.4, 0.55), _u(rng, 0.45, 0.7)
    cy = -0.35
    c = _jit(COLORS[name], rng)
    ts = np.linspace(0, 1, 12)
    tail = np.stack([0.15 * np.sin(ts * 2.5 * math.pi), cy + b + ts * 0.8], axis=1)
    return [
        Part(tail, (80, 80, 80), False, 0.03),
        Part(poly(0, cy - t, w, cy, 0, cy + b, -w, cy), c),
        Part(poly(0, cy - t, 0, cy + b), (70, 50, 30), False, 0.03),
        Part(poly(-w, cy, w, cy), (70, 50, 30), False, 0.03),
    ], name


def draw_candle(rng):
    name = _pick(rng, ("white", "red", "yellow", "pink", "blue"))
    w, h = _u(rng, 0.15, 0.28), _u(rng, 0.7, 1.1)
    top = 0.85 - h
    fh = _u(rng, 0.3, 0.45)
    flame = np.concatenate(
        [ellipse(0, top - 0.2, 0.12, 0.12, 16, 0, math.pi), [[0, top - 0.2 - fh]]]
    )
    return [
        Part(rect(-w, top, w, 0.85), _jit(COLORS[name], rng)),
        Part(poly(0, top, 0, top - 0.12), (30, 30, 30), False, 0.03),
        Part(flame, (250, 170, 30)),
    ], name


def draw_clock(rng):
    name = _pick(rng, ("white", "yellow", "blue", "red", "brown", "black"))
    r = _u(rng, 0.65, 0.85)
    parts = [
        Part(ellipse(0, 0, r, r), _jit(COLORS[name], rng)),
        Part(ellipse(0, 0, r * 0.82, r * 0.82), (245, 245, 240)),
    ]
    for i in range(12):
        a = 2 * math.pi * i / 12
        u = np.array([math.cos(a), math.sin(a)])
        parts.append(Part(np.stack([u * r * 0.68, u * r * 0.78]), (30, 30, 30), False, 0.03))
    for length, wid in ((0.45, 0.06), (0.68, 0.04)):
        a = _u(rng, 0, 2 * math.pi)
        parts.append(
            Part(
                np.array([[0, 0], [math.cos(a) * r * length, math.sin(a) * r * length]]),
                (20, 20, 20),
                False,
                wid,
            )
        )
    return parts, name


def draw_chair(rng):
    name = _pick(rng, ("brown", "red", "blue", "black", "green", "white", "yellow"))
    c = _jit(COLORS[name], rng)
    w, sy, bh = _u(rng, 0.4, 0.55), _u(rng, 0.0, 0.15), _u(rng, 0.6, 0.85)
    lw = 0.07
    return [
        Part(poly(-w + 0.05, sy, -w + 0.05, 0.9), c, False, lw),
        Part(poly(w - 0.05, sy, w - 0.05, 0.9), c, False, lw),
        Part(rect(-w, sy - bh, -w + 0.14, sy), c),
        Part(rect(-w, sy - bh, -w + _u(rng, 0.3, 0.5), sy - bh + 0.15), c),
        Part(rect(-w, sy - 0.1, w, sy + 0.05), c),
    ], name


def draw_airplane(rng):
    name = _pick(rng, ("white", "gray", "blue", "red", "yellow"))
    c = _jit(COLORS[name], rng)
    L, h = _u(rng, 0.8, 0.95), _u(rng, 0.12, 0.18)
    ws = _u(rng, -0.2, 0.1)
    return [
        Part(poly(ws, 0, ws + 0.25, -0.6, ws + 0.4, -0.6, ws + 0.3, 0), c),
        Part(ellipse(0, 0, L, h), c),
        Part(
            poly(ws, 0, ws + 0.25, 0.6, ws + 0.4, 0.6, ws + 0.3, 0),
            _jit(tuple(int(v * 0.8) for v in c), rng),
        ),
        Part(poly(L - 0.25, 0, L - 0.05, -0.4, L + 0.05, -0.4, L, 0), c),
        Part(ellipse(-L + 0.15, -0.03, 0.1, 0.06), (150, 200, 240)),
    ], name


#: class name -> drawing function. Order is part of the world's design (class ids).
CLASSES: dict[str, Callable] = {
    "house": draw_house,
    "tree": draw_tree,
    "fish": draw_fish,
    "car": draw_car,
    "boat": draw_boat,
    "flower": draw_flower,
    "sun": draw_sun,
    "moon": draw_moon,
    "star": draw_star,
    "cloud": draw_cloud,
    "mountain": draw_mountain,
    "rocket": draw_rocket,
    "bird": draw_bird,
    "mushroom": draw_mushroom,
    "umbrella": draw_umbrella,
    "cup": draw_cup,
    "balloon": draw_balloon,
    "kite": draw_kite,
    "candle": draw_candle,
    "clock": draw_clock,
    "chair": draw_chair,
    "airplane": draw_airplane,
}
BENCHMARK_CLASSES: tuple[str, ...] = ("house", "tree", "fish", "car", "boat", "flower", "sun")

# ----------------------------------------------------------------------------------------------
# placement


def place(parts: list[Part], rng: np.random.Generator, size: int) -> list[Part]:
    """Random similarity transform (+ mild aspect jitter) from the unit frame to canvas pixels."""
    scale = _u(rng, 0.28, 0.44) * size
    ang = math.radians(_u(rng, -25, 25))
    aspect = _u(rng, 0.85, 1.15)
    flip = -1.0 if rng.random() < 0.5 else 1.0
    cx, cy = size / 2 + _u(rng, -0.12, 0.12) * size, size / 2 + _u(rng, -0.12, 0.12) * size
    m = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    m = m @ np.diag([flip * scale * aspect, scale / aspect])
    return [Part(p.pts @ m.T + [cx, cy], p.color, p.fill, p.width * scale) for p in parts]


# ----------------------------------------------------------------------------------------------
# styles: (placed parts, rng, size) -> RGB uint8 array (size, size, 3)


def _xy(pts: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in pts]


def _mask(part: Part, size: int, widen: float = 0.0) -> Image.Image:
    m = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(m)
    if part.fill:
        d.polygon(_xy(part.pts), fill=255)
        if widen:
            d.line(_xy(np.concatenate([part.pts, part.pts[:1]])), fill=255, width=int(widen))
    else:
        d.line(_xy(part.pts), fill=255, width=max(1, round(part.width + widen)), joint="curve")
    return m


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1] (bicubic upsampling of a coarse random grid)."""
    g = (rng.random((cells, cells)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(g).resize((size, size), Image.BICUBIC), np.float32) / 255


def _outline(d: ImageDraw.ImageDraw, p: Part, color, width: int) -> None:
    if p.fill:
        d.line(_xy(np.concatenate([p.pts, p.pts[:1]])), fill=color, width=width, joint="curve")
    else:
        d.line(_xy(p.pts), fill=color, width=round(p.width) + width, joint="curve")


def style_photo(parts, rng, size):
    """Textured two-tone background, shaded fills, no outlines, slight blur."""
    top = np.array(_jit(COLORS[_pick(rng, ("blue", "white", "gray", "orange"))], rng, 40))
    bot = np.array(_jit(COLORS[_pick(rng, ("green", "brown", "gray", "yellow"))], rng, 40))
    hz = _u(rng, 0.45, 0.8)
    y = np.linspace(0, 1, size)[:, None, None]
    w = 1 / (1 + np.exp(-(y - hz) * 25))
    bg = (1 - w) * top * 0.8 + w * bot * 0.8 + 40
    bg = bg * (0.75 + 0.5 * _smooth_noise(rng, size, 8))[..., None]
    bg = bg + rng.normal(0, 8, (size, size, 3))
    img = np.broadcast_to(bg, (size, size, 3)).astype(np.float32)
    a = _u(rng, 0, 2 * math.pi)
    xx, yy = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size))
    light = 1.0 + 0.35 * (np.cos(a) * xx + np.sin(a) * yy)
    tex = 0.9 + 0.2 * _smooth_noise(rng, size, 16)
    # soft drop shadow under the whole object, for depth
    sh = Image.new("L", (size, size), 0)
    for p in parts:
        sh.paste(255, (3, 4), _mask(p, size))
    sh = np.asarray(sh.filter(ImageFilter.GaussianBlur(4)), np.float32)[..., None] / 255
    img = img * (1 - 0.35 * sh)
    for p in parts:
        m = np.asarray(_mask(p, size), np.float32)[..., None] / 255
        col = np.asarray(p.color, np.float32) * (light * tex)[..., None]
        img = img * (1 - m) + col * m
    img = img + rng.normal(0, 5, img.shape)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    return np.asarray(out.filter(ImageFilter.GaussianBlur(0.8)))


def style_cartoon(parts, rng, size):
    """Flat pastel background, saturated flat fills, thick black outlines."""
    bg = tuple(int(v) for v in 200 + rng.integers(0, 56, 3))
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    lw = int(rng.integers(4, 7))
    for p in parts:
        col = tuple(int(min(255, v * 1.15)) for v in p.color)
        if p.fill:
            d.polygon(_xy(p.pts), fill=col)
            _outline(d, p, (15, 15, 15), lw)
        else:
            _outline(d, p, (15, 15, 15), lw)
            d.line(_xy(p.pts), fill=col, width=max(1, int(p.width)), joint="curve")
    return np.asarray(im)


def style_sketch(parts, rng, size):
    """Paper background, grey pencil strokes only (jittered double outlines, some hatching)."""
    paper = int(rng.integers(225, 256))
    im = Image.new("L", (size, size), paper)
    d = ImageDraw.Draw(im)
    for p in parts:
        for _ in range(int(rng.integers(1, 3))):
            q = p.pts + rng.normal(0, 1.2, p.pts.shape)
            ink = int(rng.integers(20, 110))
            w = int(rng.integers(1, 3))
            if p.fill:
                d.line(_xy(np.concatenate([q, q[:1]])), fill=ink, width=w)
            else:
                d.line(_xy(q), fill=ink, width=w)
        if p.fill and rng.random() < 0.4:  # hatching clipped to the shape
            h = Image.new("L", (size, size), 255)
            hd = ImageDraw.Draw(h)
            sp = int(rng.integers(5, 9))
            for k in range(-size, size, sp):
                hd.line([(k, size), (k + size, 0)], fill=int(rng.integers(90, 170)), width=1)
            im.paste(
                h,
                (0, 0),
                Image.fromarray(
                    (np.asarray(_mask(p, size)) * (np.asarray(h) < 255)).astype(np.uint8)
                ),
            )
    arr = np.asarray(im, np.float32) + rng.normal(0, 4, (size, size))
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.repeat(arr[..., None], 3, axis=2)


def style_painting(parts, rng, size):
    """Canvas of broad brush strokes; objects filled with many short strokes of varied colour."""
    base = np.array(_jit(COLORS[_pick(rng, _ALL)], rng, 30)) * 0.5 + 90
    im = Image.new("RGB", (size, size), tuple(int(v) for v in base))
    d = ImageDraw.Draw(im)
    for _ in range(60):
        x, y = rng.uniform(0, size, 2)
        a = _u(rng, 0, math.pi)
        ln = _u(rng, 10, 30)
        col = tuple(int(v) for v in np.clip(base + rng.normal(0, 28, 3), 0, 255))
        d.line(
            [(x, y), (x + ln * math.cos(a), y + ln * math.sin(a))],
            fill=col,
            width=int(rng.integers(5, 11)),
        )
    for p in parts:
        layer = Image.new("RGB", (size, size), p.color)
        ld = ImageDraw.Draw(layer)
        xs, ys = p.pts[:, 0], p.pts[:, 1]
        n = 30 if p.fill else 8
        for _ in range(n):
            x, y = _u(rng, xs.min(), xs.max() + 1e-3), _u(rng, ys.min(), ys.max() + 1e-3)
            a = _u(rng, 0, math.pi)
            ln = _u(rng, 4, 14)
            col = tuple(int(v) for v in np.clip(np.asarray(p.color) + rng.normal(0, 35, 3), 0, 255))
            ld.line(
                [(x, y), (x + ln * math.cos(a), y + ln * math.sin(a))],
                fill=col,
                width=int(rng.integers(3, 7)),
            )
        m = _mask(p, size, widen=3).filter(ImageFilter.GaussianBlur(1.5))
        im.paste(layer, (0, 0), m)
    return np.asarray(im.filter(ImageFilter.SMOOTH))


def style_pixel(parts, rng, size):
    """Pixel art: flat colours on a plain background, rendered at 16 px and upscaled."""
    im = Image.fromarray(style_cartoon(parts, rng, size))
    small = size // int(rng.choice([6, 8]))
    im = im.resize((small, small), Image.BOX).quantize(int(rng.integers(6, 12))).convert("RGB")
    return np.asarray(im.resize((size, size), Image.NEAREST))


def style_silhouette(parts, rng, size):
    """A dark flat silhouette on a light (sometimes sunset-gradient) background."""
    y = np.linspace(0, 1, size)[:, None, None]
    c0 = np.array(_jit(COLORS[_pick(rng, ("white", "orange", "yellow", "pink", "blue"))], rng, 30))
    c1 = np.array(_jit(COLORS[_pick(rng, ("white", "orange", "yellow", "pink"))], rng, 30))
    img = np.broadcast_to((1 - y) * c0 + y * c1, (size, size, 3)).astype(np.float32)
    ink = float(rng.integers(0, 50))
    for p in parts:
        m = np.asarray(_mask(p, size), np.float32)[..., None] / 255
        img = img * (1 - m) + ink * m
    return np.clip(img, 0, 255).astype(np.uint8)


def style_neon(parts, rng, size):
    """Glowing coloured outlines on a dark background."""
    im = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 35, 3)))
    glow = Image.new("RGB", (size, size), (0, 0, 0))
    d = ImageDraw.Draw(glow)
    for p in parts:
        col = tuple(int(min(255, v * 1.2 + 40)) for v in p.color)
        _outline(d, p, col, 3)
    g = np.asarray(glow, np.float32)
    b = np.asarray(glow.filter(ImageFilter.GaussianBlur(4)), np.float32)
    out = np.asarray(im, np.float32) + g + 2.0 * b
    return np.clip(out, 0, 255).astype(np.uint8)


def style_blueprint(parts, rng, size):
    """Thin white lines on a blue grid."""
    bg = tuple(int(v) for v in np.array([25, 60, 140]) + rng.integers(-15, 16, 3))
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    sp = int(rng.integers(10, 17))
    grid = tuple(int(v) + 30 for v in bg)
    for k in range(0, size, sp):
        d.line([(k, 0), (k, size)], fill=grid)
        d.line([(0, k), (size, k)], fill=grid)
    for p in parts:
        _outline(d, p, (235, 240, 255), 2)
    return np.asarray(im)


def style_watercolor(parts, rng, size):
    """Light, bleeding washes of colour on white paper, darker at the edges, no outlines."""
    img = np.full((size, size, 3), 250.0) - rng.normal(0, 3, (size, size, 1))
    for p in parts:
        m = _mask(p, size, widen=2)
        m = np.asarray(m.filter(ImageFilter.GaussianBlur(2.5)), np.float32) / 255
        wob = 0.55 + 0.35 * _smooth_noise(rng, size, 10)
        edge = np.clip(m * (1 - m) * 4, 0, 1) * 0.35  # pigment pools at the wash boundary
        a = (m * wob + edge)[..., None]
        # pigment, never paper-white: a white object is painted as a pale grey-blue wash
        col = np.minimum(np.asarray(p.color, np.float32) * 0.8 + 50, [190, 195, 210])
        img = img * (1 - a) + col * a
    return np.clip(img, 0, 255).astype(np.uint8)


def style_mosaic(parts, rng, size):
    """Square tiles of flat colour separated by grout lines."""
    arr = style_cartoon(parts, rng, size)
    t = int(rng.choice([6, 8]))
    small = Image.fromarray(arr).resize((size // t, size // t), Image.BOX)
    out = np.asarray(small.resize((size, size), Image.NEAREST)).copy()
    jit = rng.normal(0, 10, (size // t + 1, size // t + 1, 3)).repeat(t, 0).repeat(t, 1)
    out = np.clip(out + jit[:size, :size], 0, 255).astype(np.uint8)
    grout = int(rng.integers(60, 200))
    out[::t, :, :] = grout
    out[:, ::t, :] = grout
    return out


#: style name -> (renderer, caption noun, whether the caption may name a colour)
STYLES: dict[str, tuple[Callable, str, bool]] = {
    "photo": (style_photo, "photo", True),
    "cartoon": (style_cartoon, "cartoon", True),
    "sketch": (style_sketch, "sketch", False),
    "painting": (style_painting, "painting", True),
    "pixel_art": (style_pixel, "pixel art image", True),
    "silhouette": (style_silhouette, "silhouette", False),
    "neon": (style_neon, "neon sign", True),
    "blueprint": (style_blueprint, "blueprint", False),
    "watercolor": (style_watercolor, "watercolor", True),
    "mosaic": (style_mosaic, "mosaic", True),
}
BENCHMARK_STYLES: tuple[str, ...] = ("photo", "cartoon", "sketch", "painting")

# ----------------------------------------------------------------------------------------------
# the public entry points


def image_rng(seed: int, stream: int, style: str, cls: str, index: int) -> np.random.Generator:
    """The generator for one image: a pure function of (seed, stream, style, class, index)."""
    key = [seed, stream, list(STYLES).index(style), list(CLASSES).index(cls), index]
    return np.random.default_rng(key)


def render(
    cls: str, style: str, rng: np.random.Generator, size: int = IMAGE_SIZE
) -> tuple[Image.Image, str]:
    """Draw one object of class ``cls`` in ``style``.

    Returns:
        The RGB image (``size`` x ``size``) and the name of the object's main colour.
    """
    parts, color = CLASSES[cls](rng)
    big = size * SUPERSAMPLE
    arr = STYLES[style][0](place(parts, rng, big), rng, big)
    return Image.fromarray(arr).resize((size, size), Image.LANCZOS), color


CAPTION_TEMPLATES: tuple[str, ...] = (
    "a {style} of a {color} {cls}",
    "a {style} of a {cls}",
    "a {color} {cls} in the style of a {style}",
    "a {style} showing a {color} {cls}",
    "{color} {cls}, {style}",
    "a {cls} ({style})",
    "a picture of a {color} {cls}",
    "a {cls}",
)


def caption(cls: str, style: str, color: str, rng: np.random.Generator) -> str:
    """A web-style caption for one rendered image; templates and colour words vary."""
    _, noun, has_color = STYLES[style]
    tpl = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
    if not has_color and "{color}" in tpl:
        tpl = tpl.replace("{color} ", "")
    return tpl.format(style=noun, color=color, cls=cls.replace("_", " "))
