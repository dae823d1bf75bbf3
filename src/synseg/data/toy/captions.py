"""Caption grammar of the toy world: noisy, web-like English about the objects in an image.

Templates, joiners, colour words (from the rendered hue), texture words, synonyms, filler tails, and the
omission of one object in multi-object images. Template words never contain a category noun or synonym."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from synseg.data.toy.shapes import CATEGORIES

SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("disc", "ball", "disk"),
    "square": ("box", "block", "tile"),
    "triangle": ("wedge", "pyramid"),
    "star": ("starburst", "pentagram"),
    "cross": ("plus", "crucifix"),
    "ring": ("donut", "hoop", "loop"),
    "heart": ("valentine",),
    "diamond": ("rhombus", "lozenge"),
    "hexagon": ("hex", "honeycomb"),
    "crescent": ("moon", "sickle"),
}

# Hue ranges (degrees, upper bounds) of the colour words; red wraps around 360.
COLOUR_WORDS: tuple[tuple[float, str], ...] = (
    (18, "red"), (42, "orange"), (70, "yellow"), (165, "green"), (195, "teal"),
    (255, "blue"), (300, "purple"), (345, "pink"), (360, "red"),
)  # fmt: skip
TEXTURE_WORDS: dict[str, tuple[str, ...]] = {"stripes": ("striped", "stripy"), "dots": ("dotted", "spotted")}

TEMPLATES: tuple[str, ...] = (
    "a photo of {x}", "{x} on a grey backdrop", "{x} on a plain background", "a clipart of {x}",
    "an illustration of {x}", "{x}", "{x}", "picture of {x}", "a simple drawing of {x}", "close-up of {x}",
    "a cartoon of {x}", "{x} isolated on a light background", "there is {x} in this image", "image of {x}",
)  # fmt: skip
COUNT_TEMPLATES: tuple[str, ...] = ("{n} shapes: {x}", "{n} objects: {x}", "{n} figures, {x}")
COUNT_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
JOINERS: tuple[str, ...] = ("and", "next to", "near", "beside", "with", ",")
FILLERS: tuple[str, ...] = (
    "stock image", "hd", "wallpaper", "stock photo", "free download", "4k", "vector illustration",
    "royalty free", "high resolution", "digital art",
)  # fmt: skip
FILLER_SEPARATORS: tuple[str, ...] = (", ", " - ", " | ", " ")


@dataclass(frozen=True)
class CaptionObject:
    """What the caption may say about one visible object."""

    category: int  # 0-based index into CATEGORIES
    hue: float  # rendered hue, degrees in [0, 360)
    texture: str  # "plain", "stripes" or "dots"


def colour_word(hue: float) -> str:
    """Name of the colour with hue `hue` (degrees)."""
    hue = hue % 360.0
    for upper, word in COLOUR_WORDS:
        if hue < upper:
            return word
    return "red"


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _phrase(
    obj: CaptionObject,
    rng: np.random.Generator,
    synonym_prob: float,
    colour_prob: float,
    texture_prob: float,
    article: bool,
) -> str:
    name = CATEGORIES[obj.category]
    u = rng.random(3)
    words = [_pick(rng, SYNONYMS[name]) if u[0] < synonym_prob else name]
    if obj.texture in TEXTURE_WORDS and u[1] < texture_prob:
        words.insert(0, _pick(rng, TEXTURE_WORDS[obj.texture]))
    if u[2] < colour_prob:
        words.insert(0, colour_word(obj.hue))
    text = " ".join(words)
    return f"{_article(text)} {text}" if article else text


def _join(phrases: list[str], rng: np.random.Generator) -> str:
    if len(phrases) == 1:
        return phrases[0]
    if len(phrases) > 2 and rng.random() < 0.5:
        return ", ".join(phrases[:-1]) + " and " + phrases[-1]
    out = phrases[0]
    for p in phrases[1:]:
        sep = _pick(rng, JOINERS)
        out += f"{sep} {p}" if sep == "," else f" {sep} {p}"
    return out


def make_caption(
    objects: Sequence[CaptionObject],
    rng: np.random.Generator,
    *,
    omit_prob: float = 0.2,
    synonym_prob: float = 0.45,
    colour_prob: float = 0.6,
    texture_prob: float = 0.4,
    filler_prob: float = 0.35,
) -> tuple[str, tuple[int, ...]]:
    """Caption for the visible `objects` (distinct categories); returns (caption, sorted mentioned indices).

    With probability `omit_prob` one object of a multi-object image is left out; at least one is mentioned."""
    if not objects:
        raise ValueError("a caption needs at least one visible object")
    order = [objects[int(i)] for i in rng.permutation(len(objects))]
    if len(order) > 1 and rng.random() < omit_prob:
        order = order[:-1]
    n = len(order)
    if n > 1 and rng.random() < 0.25:
        phrases = [_phrase(o, rng, synonym_prob, colour_prob, texture_prob, article=False) for o in order]
        text = _pick(rng, COUNT_TEMPLATES).format(n=COUNT_WORDS.get(n, str(n)), x=_join(phrases, rng))
    else:
        phrases = [_phrase(o, rng, synonym_prob, colour_prob, texture_prob, article=True) for o in order]
        text = _pick(rng, TEMPLATES).format(x=_join(phrases, rng))
    u = rng.random(3)
    if u[0] < filler_prob:
        text += _pick(rng, FILLER_SEPARATORS) + _pick(rng, FILLERS)
    if u[1] < 0.3:
        text = text[0].upper() + text[1:]
    if u[2] < 0.2:
        text += "."
    return text, tuple(sorted(o.category for o in order))


def caption_vocabulary() -> dict[str, int]:
    """Every noun a caption may use for a category (names and synonyms) -> 0-based category index."""
    vocab = {name: i for i, name in enumerate(CATEGORIES)}
    for name, synonyms in SYNONYMS.items():
        vocab.update({s: CATEGORIES.index(name) for s in synonyms})
    return vocab
