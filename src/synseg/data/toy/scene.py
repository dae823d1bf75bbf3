"""Toy-world scenes: background field, rotated textured objects with bounded occlusion, mask and caption.

`generate_sample(seed, split, index)` is a pure function of its arguments (and the config)."""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from synseg.data.toy.captions import CaptionObject, make_caption
from synseg.data.toy.shapes import CATEGORIES, MAX_ROTATION, SIZE_FACTOR, rasterize, texture_shade

# Every split has its own seed stream. `dev` is for tuning stand-ins and recipes (never `test`); `ood` is a
# test split drawn with shifted settings (OOD_CONFIG).
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2, "dense": 3, "dev": 4, "ood": 5}

# Hue families shared by two categories, so colour alone never decides the category.
FAMILY_HUES: dict[str, float] = {"red": 0.0, "blue": 225.0, "green": 125.0, "yellow": 52.0, "purple": 280.0}
# in CATEGORIES order: circle & heart red, square & diamond blue, triangle & hexagon green, star & crescent
# yellow, cross & ring purple
CATEGORY_FAMILIES: tuple[str, ...] = (
    "red", "blue", "green", "yellow", "purple", "purple", "red", "blue", "green", "yellow",
)  # fmt: skip
TEXTURES: tuple[str, ...] = ("stripes", "dots")
OOD_TEXTURES: tuple[str, ...] = ("checks", "grid")  # rendered only in the `ood` split


@dataclass(frozen=True)
class ToyWorldConfig:
    """Every knob of the generator; the defaults are the toy world of the dataset card."""

    image_size: int = 64
    min_objects: int = 1
    max_objects: int = 4
    count_decay: float = 0.6  # P(n objects) proportional to count_decay ** (n - min_objects)
    omit_prob: float = 0.2  # one object of a multi-object image left out of the caption
    synonym_prob: float = 0.45
    off_palette_prob: float = 0.15
    ignore_edges: bool = True  # mask 255 where the antialiased edge is ambiguous
    distractor_lines: bool = True
    distractor_count: tuple[int, int] = (0, 2)  # distractor lines per image, inclusive range
    radius_range: tuple[float, float] = (0.28, 0.44)  # bounding radius / image size, for a lone object
    crowd_shrink: float = 0.35  # radius scale 1 / (1 + crowd_shrink * (n_objects - 1))
    min_visible: float = 0.5  # every object keeps at least this fraction of its area visible
    max_tries: int = 20  # placements tried per object before it is dropped
    texture_prob: float = 0.5  # instances with a texture
    textures: tuple[str, ...] = TEXTURES  # the textures an instance draws from
    hue_jitter: float = 20.0  # in-family hue spread in degrees (family hue +- hue_jitter / 2)
    colour_word_prob: float = 0.6
    texture_word_prob: float = 0.4
    filler_prob: float = 0.35
    noise_std: float = 0.03  # largest per-image pixel-noise std (image in [0, 1])
    edge_ignore_below: float = 0.7  # a pixel is ambiguous when no layer has this much weight

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        if not 1 <= self.min_objects <= self.max_objects <= len(CATEGORIES):
            raise ValueError(
                f"need 1 <= min_objects <= max_objects <= {len(CATEGORIES)}, "
                f"got min_objects={self.min_objects}, max_objects={self.max_objects}"
            )
        if self.count_decay <= 0:
            raise ValueError(f"count_decay must be > 0, got {self.count_decay}")
        for name in (
            "omit_prob",
            "synonym_prob",
            "off_palette_prob",
            "min_visible",
            "texture_prob",
            "colour_word_prob",
            "texture_word_prob",
            "filler_prob",
            "edge_ignore_below",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        lo, hi = self.radius_range
        if not 0.0 < lo <= hi < 0.5:
            raise ValueError(f"radius_range must satisfy 0 < lo <= hi < 0.5, got {self.radius_range}")
        if not 0 <= self.distractor_count[0] <= self.distractor_count[1]:
            raise ValueError(f"distractor_count must satisfy 0 <= lo <= hi, got {self.distractor_count}")
        if not 0.0 <= self.hue_jitter < 100.0:  # the off-palette hues start 50 degrees from the family hue
            raise ValueError(f"hue_jitter must be in [0, 100) degrees, got {self.hue_jitter}")
        unknown = [t for t in self.textures if t not in (*TEXTURES, *OOD_TEXTURES)]
        if not self.textures or unknown:
            raise ValueError(
                f"textures must be a non-empty subset of {TEXTURES + OOD_TEXTURES}, got {self.textures}"
            )


DEFAULT_CONFIG = ToyWorldConfig()
# The `ood` test split: the same generator with settings no training split uses, chosen from this card's
# knobs (docs/toyworld.md), not from any method's results: smaller objects, more distractor lines, two unseen
# textures, a wider in-family hue spread.
OOD_SHIFTS: dict[str, object] = {
    "radius_range": (0.18, 0.28),  # train 0.28-0.44 of the image
    "distractor_count": (2, 5),  # train 0-2
    "textures": OOD_TEXTURES,  # train stripes / dots
    "hue_jitter": 50.0,  # train +-10 degrees around the family hue, ood +-25
}
OOD_CONFIG = ToyWorldConfig(**OOD_SHIFTS)


def split_config(split: str, image_size: int = 64) -> ToyWorldConfig:
    """The generator settings of a split: OOD_CONFIG for `ood`, the card's defaults for every other one."""
    base = OOD_CONFIG if split == "ood" else DEFAULT_CONFIG
    return base if image_size == base.image_size else replace(base, image_size=image_size)


@dataclass
class ToySample:
    """One image with its mask, caption, visible categories and the categories the caption mentions."""

    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8: 0 background, 1..K category, 255 ambiguous edge
    caption: str
    labels: tuple[int, ...]  # sorted 0-based category indices visible in the image
    mentioned: tuple[int, ...]  # sorted 0-based category indices the caption mentions (subset of labels)


def split_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of sample `index` of `split`; raises ValueError on an unknown split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], index]))


def _clip01(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x, 0.0), 1.0)


@lru_cache(maxsize=4)
def _noise_bank(size: int) -> np.ndarray:
    """A fixed bank of standard-normal pixel noise; each image reads it at a random offset (much faster
    than drawing fresh normals, still deterministic)."""
    return np.random.default_rng(20240601).standard_normal(size, dtype=np.float32)


@lru_cache(maxsize=16)
def _upsample_matrix(size: int, grid: int) -> np.ndarray:
    """(size, grid) bilinear interpolation weights from a grid of cells to pixel centres."""
    pos = (np.arange(size) + 0.5) / size * (grid - 1)
    i0 = np.minimum(np.floor(pos).astype(int), grid - 2)
    frac = pos - i0
    mat = np.zeros((size, grid), np.float32)
    mat[np.arange(size), i0] = 1.0 - frac
    mat[np.arange(size), i0 + 1] = frac
    return mat


def _background(
    rng: np.random.Generator, size: int, lines: bool, count: tuple[int, int] = (0, 2)
) -> np.ndarray:
    """Smooth low-saturation random field with `count` (inclusive range) thin distractor lines when `lines`;
    (3, H, W) float32."""
    grey = 0.35 + 0.5 * float(rng.random())
    grid = 4
    noise = rng.standard_normal((3, grid, grid, 4)).astype(np.float32)
    cells = grey + 0.09 * noise[..., 0].mean(0) + 0.035 * noise[..., 1]  # (3, g, g): luminance + tint
    mat = _upsample_matrix(size, grid)
    img = mat @ cells @ mat.T  # (3, H, W); channel-first keeps the blending loops contiguous
    if lines:
        n_lines = int(rng.integers(count[0], count[1] + 1))
        if n_lines:
            xs = np.arange(size, dtype=np.float32)[None, :] + 0.5
            ys = np.arange(size, dtype=np.float32)[:, None] + 0.5
            params = rng.random((n_lines, 7)).tolist()
            for p in params:
                theta = p[0] * math.pi
                d = np.abs((xs - p[1] * size) * math.sin(theta) - (ys - p[2] * size) * math.cos(theta))
                alpha = _clip01(0.5 + 0.5 * (0.7 + 0.8 * p[3]) - d) * (0.4 + 0.4 * p[4])
                tint = (p[6] - 0.5) * 0.1 * np.array([1.0, 0.0, -1.0], np.float32)
                colour = _clip01(grey + 0.7 * (p[5] - 0.5) + tint)[:, None, None]  # (3, 1, 1)
                img += alpha * (colour - img)
    return img


def _best_centre(
    u: list[float], r: float, size: int, circles: list[tuple[float, float, float]]
) -> tuple[float, float]:
    """Of three uniform candidate centres (from `u`), the one overlapping the placed objects least."""
    span = size - 2.0 * r - 2.0
    best, best_score = (0.0, 0.0), math.inf
    for i in range(0, len(u), 2):
        cx, cy = r + 1.0 + span * u[i], r + 1.0 + span * u[i + 1]
        score = max((rj + r - math.hypot(cx - xj, cy - yj) for xj, yj, rj in circles), default=0.0)
        if score < best_score:
            best, best_score = (cx, cy), score
    return best


def _draw_count(u: float, config: ToyWorldConfig) -> int:
    """Number of objects above `min_objects`, from a uniform draw `u` (truncated geometric law)."""
    probs = config.count_decay ** np.arange(config.max_objects - config.min_objects + 1)
    return int(np.searchsorted(np.cumsum(probs), u * probs.sum(), side="right").clip(max=len(probs) - 1))


def _object_colour(
    rng: np.random.Generator, category: int, off_palette_prob: float, hue_jitter: float = 20.0
) -> tuple[np.ndarray, float]:
    """RGB in [0, 1] (quantised to 8 bits) and its rendered hue in degrees."""
    u = rng.random(4).tolist()
    family = FAMILY_HUES[CATEGORY_FAMILIES[category]]
    if u[0] < off_palette_prob:
        hue = family + 50.0 + 260.0 * u[1]  # at least 50 degrees away from the family hue
    else:
        hue = family + hue_jitter * (u[1] - 0.5)
    rgb = colorsys.hsv_to_rgb((hue % 360.0) / 360.0, 0.6 + 0.35 * u[2], 0.6 + 0.35 * u[3])
    rgb8 = np.round(np.array(rgb, np.float32) * 255.0)
    rendered = colorsys.rgb_to_hsv(*(rgb8 / 255.0))[0] * 360.0
    return rgb8 / 255.0, float(rendered)


@dataclass
class Scene:
    """The objects of one image before noise: colour layers and per-layer visible coverage."""

    img: np.ndarray  # (3, H, W) float32 in [0, 1]
    weights: np.ndarray  # (n + 1, H, W) visible coverage per layer; layer 0 = background, k = objects[k - 1]
    areas: np.ndarray  # (n,) full (soft) area of each placed object, pixels; trailing zeros if dropped
    visible: np.ndarray  # (n,) visible (soft) area of each placed object after occlusion
    objects: list[CaptionObject]  # placed objects, bottom to top


def compose_scene(rng: np.random.Generator, config: ToyWorldConfig = DEFAULT_CONFIG) -> Scene:
    """Background plus 1..n objects placed bottom to top.

    A placement that would leave an earlier object less than `min_visible` of its area is resampled, at most
    `max_tries` times; then the object is dropped."""
    size = config.image_size
    img = _background(
        rng, size, config.distractor_lines, config.distractor_count
    )  # (3, H, W) float32 in [0, 1]

    n = config.min_objects + _draw_count(rng.random(), config)
    cats = rng.permutation(len(CATEGORIES))[:n].tolist()
    scale = size / (1.0 + config.crowd_shrink * (n - 1))
    weights = np.zeros((n + 1, size, size), np.float32)  # per-layer visible coverage; layer 0 = background
    weights[0] = 1.0
    areas = np.zeros(n, np.float32)
    visible = np.zeros(n, np.float32)
    circles: list[tuple[float, float, float]] = []  # (cx, cy, r) of placed objects
    placed: list[CaptionObject] = []
    lo, hi = config.radius_range
    for cat in cats:
        k = len(placed)
        for attempt in range(config.max_tries):
            p = rng.random(8).tolist()
            r = scale * SIZE_FACTOR[cat] * (lo + (hi - lo) * p[0]) * 0.9 ** (attempt // 5)
            r = min(r, 0.48 * size - 1.0)  # the whole object stays inside the image
            cx, cy = _best_centre(p[2:8], r, size, circles)
            raster = rasterize(cat, cx, cy, r, MAX_ROTATION[cat] * (2 * p[1] - 1), size)
            cov = raster.coverage
            ys, xs = raster.slices
            lost = (weights[1 : k + 1, ys, xs] * cov).sum(axis=(1, 2))  # area each earlier object loses
            if np.all(visible[:k] - lost >= config.min_visible * areas[:k]):
                break
        else:
            continue  # no valid placement: drop this object
        rgb, hue = _object_colour(rng, cat, config.off_palette_prob, config.hue_jitter)
        t = rng.random(5).tolist()
        textures = config.textures
        texture = textures[int(t[1] * len(textures))] if t[0] < config.texture_prob else "plain"
        shade = texture_shade(texture, raster, 4.0 + 3.0 * t[2], math.pi * t[3], 0.3 + 0.3 * t[4])  # (h, w)
        patch = img[:, ys, xs]  # (3, h, w) view
        patch += cov * (shade * rgb[:, None, None] - patch)
        weights[: k + 1, ys, xs] *= 1.0 - cov
        weights[k + 1, ys, xs] = cov
        visible[:k] -= lost
        areas[k] = visible[k] = cov.sum()
        placed.append(CaptionObject(category=cat, hue=hue, texture=texture))
        circles.append((cx, cy, r))

    return Scene(img=img, weights=weights, areas=areas, visible=visible, objects=placed)


def generate_sample(seed: int, split: str, index: int, config: ToyWorldConfig | None = None) -> ToySample:
    """Sample `index` of `split`: a deterministic function of (seed, split, index, config); the split's own
    settings (`split_config`) when `config` is None."""
    rng = split_rng(seed, split, index)
    config = split_config(split) if config is None else config
    size = config.image_size
    scene = compose_scene(rng, config)
    img, weights, placed = scene.img, scene.weights, scene.objects
    sigma = config.noise_std * float(rng.random())
    bank = _noise_bank(max(1 << 20, 4 * img.size))
    start = int(rng.integers(bank.size - img.size))
    img += sigma * bank[start : start + img.size].reshape(img.shape)
    image = np.ascontiguousarray(
        (_clip01(img) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)
    )  # (H, W, 3)

    lut = np.zeros(len(weights), np.uint8)
    lut[1 : len(placed) + 1] = [o.category + 1 for o in placed]
    top = np.zeros((size, size), np.intp)  # argmax over layers; a loop is faster than argmax(axis=0)
    best = weights[0].copy()
    for k in range(1, len(placed) + 1):
        above = weights[k] > best
        top[above] = k
        np.maximum(best, weights[k], out=best)
    mask = lut[top]
    if config.ignore_edges:
        mask[best < config.edge_ignore_below] = 255
    counts = np.bincount(mask.ravel(), minlength=256)
    seen = [o for o in placed if counts[o.category + 1] > 0]
    caption, mentioned = make_caption(
        seen,
        rng,
        omit_prob=config.omit_prob,
        synonym_prob=config.synonym_prob,
        colour_prob=config.colour_word_prob,
        texture_prob=config.texture_word_prob,
        filler_prob=config.filler_prob,
    )
    labels = tuple(sorted(o.category for o in seen))
    return ToySample(image=image, mask=mask, caption=caption, labels=labels, mentioned=mentioned)
