"""The methods `make compare` knows: which model config each runs, with which overrides, and under which
supervision label (every row of a report says what supervision produced it)."""

from __future__ import annotations

from dataclasses import dataclass, field

SUPERVISION = ("none", "dense-pretrained", "captions")


@dataclass(frozen=True)
class Method:
    """One row of a compare: `model` config, extra Hydra overrides, supervision label, what it learns from."""

    name: str
    model: str
    supervision: str
    trained: bool
    note: str
    overrides: tuple[str, ...] = field(default=())


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("maskclip", "maskclip", "none", False, "training-free dense CLIP (MaskCLIP value path)"),
        Method(
            "dense_init",
            "synseg",
            "dense-pretrained",
            False,
            "the stand-in dense-pretrained (CLIPSeg) decoder alone, no MCCL",
            ("train=false",),
        ),
        Method(
            "synseg",
            "synseg",
            "dense-pretrained",
            True,
            "paper recipe: MCCL on captions from the dense decoder",
        ),
        Method("synseg_weak", "synseg_weak", "captions", True, "MCCL + our switches from a random decoder"),
        Method("mixreorg", "mixreorg", "captions", True, "MixReorg-style mixing, restoration, contrastive"),
    )
}
DEFAULT_METHODS = tuple(METHODS)
TRAINED_VS_FREE = [m for m in METHODS if m != "maskclip"]  # rows compared against maskclip, paired by seed
