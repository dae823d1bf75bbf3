"""Vectorised, antialiased rasterisation of the ten toy shapes.

Every shape is a signed distance function (pixels, negative inside) evaluated only on the object's bounding
box; coverage is `clip(0.5 - d, 0, 1)`, a one-pixel antialiased edge."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CATEGORIES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "ring", "heart", "diamond", "hexagon", "crescent",
)  # fmt: skip

# Largest rotation (radians) per category: squares/diamonds stay upright-ish so that a 45-degree square is
# not a diamond, hearts stay recognisably heart-shaped.
_PI = math.pi
MAX_ROTATION: tuple[float, ...] = (_PI, 0.5, _PI, _PI, _PI, _PI, 0.7, 0.5, _PI, _PI)
# Bounding-radius multiplier per category, so that thin shapes are not much smaller than a disc of the same
# nominal size (about sqrt(pi / area-per-r^2), capped at 1.25).
SIZE_FACTOR: tuple[float, ...] = (1.0, 1.2, 1.25, 1.25, 1.18, 1.12, 1.2, 1.25, 1.12, 1.25)

_SQRT3_2 = math.sqrt(3.0) / 2.0
_STAR_INNER = 0.55  # star inner-vertex radius / outer radius
_HEART_SCALE = 1.0 / 0.64  # the unit heart fits in a circle of radius ~0.64 around (0, 0.55)


@dataclass
class Raster:
    """Coverage of one object on its bounding box `[y0:y1, x0:x1]`, plus local (rotated) coordinates."""

    y0: int
    x0: int
    coverage: np.ndarray  # (h, w) float32 in [0, 1]
    xs: np.ndarray  # (1, w) pixel-centre x minus the object centre
    ys: np.ndarray  # (h, 1) pixel-centre y minus the object centre (down)

    @property
    def slices(self) -> tuple[slice, slice]:
        h, w = self.coverage.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)


def _heart_sdf(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Exact unit heart (tip at y=0, lobes up to y~1.1), after Inigo Quilez; `v` points up."""
    x = np.abs(u)
    y = v
    upper = np.sqrt((x - 0.25) ** 2 + (y - 0.75) ** 2) - math.sqrt(2.0) / 4.0
    t = 0.5 * np.maximum(x + y, 0.0)
    lower = np.sqrt(np.minimum(x * x + (y - 1.0) ** 2, (x - t) ** 2 + (y - t) ** 2)) * np.sign(x - y)
    return np.where(x + y > 1.0, upper, lower)


def _star_sdf(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Exact five-pointed star (tip up) after Inigo Quilez: fold by mirror reflections into one tip sector,
    then the distance to the tip-to-inner-vertex edge; no trigonometry per pixel."""
    k1x, k1y = 0.809016994375, -0.587785252292
    x, y = np.abs(u), -v
    dot = np.maximum(k1x * x + k1y * y, 0.0) * 2.0
    x, y = x - dot * k1x, y - dot * k1y
    dot = np.maximum(-k1x * x + k1y * y, 0.0) * 2.0
    x, y = np.abs(x + dot * k1x), y - dot * k1y - r
    bax, bay = -_STAR_INNER * k1y, _STAR_INNER * k1x - 1.0
    h = np.minimum(np.maximum((x * bax + y * bay) / (bax * bax + bay * bay), 0.0), r)
    dist = np.sqrt((x - bax * h) ** 2 + (y - bay * h) ** 2)
    return np.where(y * bax - x * bay > 0, dist, -dist)


def shape_sdf(category: int, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (pixels, negative inside) of shape `category` with bounding radius `r` at (u, v)."""
    name = CATEGORIES[category]
    if name == "circle":
        return np.sqrt(u * u + v * v) - r
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.74 * r
    if name == "triangle":
        # equilateral, circumradius r, apex up: bottom edge, then the two slanted edges (outward normals)
        slanted = np.abs(u) * _SQRT3_2 - 0.5 * v
        return np.maximum(v, slanted) - 0.5 * r
    if name == "star":
        return _star_sdf(u, v, r)
    if name == "cross":
        au, av = np.abs(u), np.abs(v)
        arm, half = 0.95 * r, 0.36 * r
        return np.minimum(np.maximum(au - arm, av - half), np.maximum(au - half, av - arm))
    if name == "ring":
        outer, inner = r, 0.45 * r
        return np.abs(np.sqrt(u * u + v * v) - 0.5 * (outer + inner)) - 0.5 * (outer - inner)
    if name == "heart":
        s = r * _HEART_SCALE
        return _heart_sdf(u / s, -v / s + 0.55) * s
    if name == "diamond":
        a, b = r, 0.68 * r  # vertical and horizontal half-diagonals
        return (np.abs(u) * a + np.abs(v) * b - a * b) / math.hypot(a, b)
    if name == "hexagon":
        inr = 0.98 * r * _SQRT3_2  # pointy top and bottom
        au, sv = np.abs(u), _SQRT3_2 * v
        return np.maximum(np.maximum(au, np.abs(0.5 * au + sv)), np.abs(0.5 * au - sv)) - inr
    if name == "crescent":
        disc = np.sqrt(u * u + v * v) - r
        bite = 0.75 * r - np.sqrt((u - 0.6 * r) ** 2 + v * v)
        return np.maximum(disc, bite)
    raise ValueError(f"unknown category index {category}")


def rasterize(category: int, cx: float, cy: float, r: float, angle: float, size: int) -> Raster:
    """Antialiased coverage of one rotated shape centred at (cx, cy) on a `size`x`size` canvas."""
    x0, x1 = max(int(math.floor(cx - r - 1)), 0), min(int(math.ceil(cx + r + 1)), size)
    y0, y1 = max(int(math.floor(cy - r - 1)), 0), min(int(math.ceil(cy + r + 1)), size)
    xs = (np.arange(x0, x1, dtype=np.float32) + (0.5 - cx))[None, :]  # (1, w)
    ys = (np.arange(y0, y1, dtype=np.float32) + (0.5 - cy))[:, None]  # (h, 1)
    c, s = math.cos(angle), math.sin(angle)
    u = c * xs + s * ys  # (h, w)
    v = c * ys - s * xs
    d = shape_sdf(category, u, v, r)
    coverage = np.minimum(np.maximum(0.5 - d, 0.0), 1.0).astype(np.float32, copy=False)
    return Raster(y0=y0, x0=x0, coverage=coverage, xs=xs, ys=ys)


def texture_shade(kind: str, raster: Raster, period: float, angle: float, amp: float) -> np.ndarray:
    """Brightness factor in [1 - amp, 1] on the raster's box for a texture ("plain", "stripes", "dots";
    the `ood` split's "checks", "grid").

    Patterns are laid out in image axes from 1-D coordinate vectors, so they cost few full-size ops."""
    if kind == "plain":
        return np.ones_like(raster.coverage)
    xs, ys = raster.xs / period, raster.ys / period  # (1, w), (h, 1)
    if kind == "stripes":
        t = xs * math.cos(angle) + ys * math.sin(angle)  # (h, w)
        return 1.0 - amp * ((t - np.floor(t)) < 0.5)
    if kind == "dots":
        fx, fy = xs - np.floor(xs) - 0.5, ys - np.floor(ys) - 0.5
        return 1.0 - amp * (fx * fx + fy * fy < 0.09)
    if kind in ("checks", "grid"):  # the `ood` split's textures, on a grid rotated by `angle`
        c, s = math.cos(angle), math.sin(angle)
        u, v = xs * c + ys * s, ys * c - xs * s  # (h, w) each
        fu, fv = u - np.floor(u), v - np.floor(v)
        if kind == "checks":
            return 1.0 - amp * ((fu < 0.5) ^ (fv < 0.5))
        return 1.0 - amp * ((fu < 0.2) | (fv < 0.2))
    raise ValueError(f"unknown texture {kind!r}")
