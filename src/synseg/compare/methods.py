"""What `make compare` and `make ablation` run: methods (a model config, its overrides, the supervision it
learns from) grouped in plans. `compare` is every method on the same footing; the ablation plans are the
SynSeg studies (seeds, the paper's literal loss, the switches, the loss terms). Every row of a report says
what supervision produced it."""

from __future__ import annotations

from dataclasses import dataclass, field

SUPERVISION = ("none", "dense-pretrained", "captions")


@dataclass(frozen=True)
class Method:
    """One row of a report: `model` config, extra Hydra overrides, supervision label, what it learns from."""

    name: str
    model: str
    supervision: str
    trained: bool
    note: str
    overrides: tuple[str, ...] = field(default=())


LITERAL = ("model.decoder_init=random", "model.decoder_ckpt=null", "model.segmenter.text_condition=unit")
COMPARE = (
    Method("maskclip", "maskclip", "none", False, "training-free dense CLIP (MaskCLIP value path)"),
    Method("naclip", "naclip", "none", False, "training-free dense CLIP (NACLIP neighbour-aware last block)"),
    Method("dense_init", "synseg", "dense-pretrained", False,
           "the stand-in dense-pretrained (CLIPSeg) decoder alone, no MCCL", ("train=false",)),
    Method(
        "synseg", "synseg", "dense-pretrained", True, "paper recipe: MCCL on captions from the dense decoder"
    ),
    Method("synseg_weak", "synseg_weak", "captions", True, "MCCL + our switches from a random decoder"),
    Method("mixreorg", "mixreorg", "captions", True, "MixReorg-style mixing, restoration, contrastive"),
)  # fmt: skip
TERMS = ("align", "cont", "back", "sep")


def _without(term: str) -> tuple[str, ...]:
    return tuple(f"model.loss.weights.{t}={0.0 if t == term else 1.0}" for t in TERMS)


PLANS: dict[str, tuple[Method, ...]] = {
    "compare": COMPARE,
    "seeds": (
        *(m for m in COMPARE if m.name in ("maskclip", "synseg", "synseg_weak")),
        Method(
            "synseg_weak_extras",
            "synseg_weak_extras",
            "captions",
            True,
            "the weak recipe with V from the frozen CLIP tokens",
        ),
    ),  # fmt: skip
    "literal": (
        Method("literal", "synseg", "captions", True, "the paper's MCCL from a random decoder", LITERAL),
    ),
    "switches": (
        Method("literal", "synseg", "captions", True, "the paper's MCCL from a random decoder", LITERAL),
        Method(
            "v_frozen",
            "synseg",
            "captions",
            True,
            "+ V from frozen CLIP tokens",
            (*LITERAL, "model.fss_source=frozen"),
        ),
        Method(
            "v_frozen_negatives",
            "synseg",
            "captions",
            True,
            "+ absent-category negatives",
            (*LITERAL, "model.fss_source=frozen", "model.negatives.weight=1.0"),
        ),
        Method(
            "v_frozen_negatives_presence",
            "synseg",
            "captions",
            True,
            "+ presence BCE",
            (*LITERAL, "model.fss_source=frozen", "model.negatives.weight=1.0", "model.presence_weight=1.0"),
        ),
        Method("synseg_weak_extras", "synseg_weak_extras", "captions", True, "+ prompt InfoNCE"),
        Method(
            "extras_only",
            "synseg_weak_extras",
            "captions",
            True,
            "synseg_weak_extras with MCCL weights 0",
            tuple(f"model.loss.weights.{t}=0.0" for t in TERMS),
        ),
        Method("synseg_weak", "synseg_weak", "captions", True, "synseg_weak_extras with V conditioned"),
    ),  # fmt: skip
    "loss": tuple(
        Method(
            f"{recipe}{'' if term is None else '_wo_' + term}",
            recipe,
            supervision,
            True,
            f"{recipe}, {'all MCCL terms' if term is None else 'without L_' + term}",
            () if term is None else _without(term),
        )
        for recipe, supervision in (("synseg", "dense-pretrained"), ("synseg_weak", "captions"))
        for term in (None, *TERMS)
    ),  # fmt: skip
}
# Robustness studies of the main finding (docs/results.md): a 10x budget, the paper recipe's learning rate,
# MixReorg without the source-token injection. Validation every 300 steps on the long runs (10 curve points).
LONG = ("total_steps=3000", "trainer.val_check_interval=300")
_BY_NAME = {m.name: m for m in COMPARE}
PLANS["budget"] = (
    *(_BY_NAME[n] for n in ("dense_init", "synseg", "synseg_weak", "mixreorg")),
    *(
        Method(f"{n}_3000", _BY_NAME[n].model, _BY_NAME[n].supervision, True, f"{n}, 3000 steps", LONG)
        for n in ("synseg", "synseg_weak", "mixreorg")
    ),
)
PLANS["lr"] = (
    _BY_NAME["dense_init"],
    *(
        Method(f"synseg_lr{lr}", "synseg", "dense-pretrained", True, f"paper recipe, AdamW lr {lr}",
               (f"model.optimizer.lr={lr}",))
        for lr in ("1e-3", "1e-4", "1e-5")
    ),
)  # fmt: skip
PLANS["mixing"] = (
    _BY_NAME["mixreorg"],
    Method("mixreorg_no_inject", "mixreorg", "captions", True,
           "mixreorg without the source image's global token (progressive=false)",
           ("model.segmenter.progressive=false",)),
)  # fmt: skip
PLAN_SEEDS = {"compare": (0, 1, 2), "seeds": (0, 1, 2), "literal": (0, 1, 2), "switches": (0,), "loss": (0,)}
PLAN_SEEDS.update(budget=(0, 1, 2), lr=(0, 1, 2), mixing=(0, 1, 2))
METHODS: dict[str, Method] = {}  # a name in several plans (synseg in compare and loss) keeps its first row
for _plan in PLANS.values():
    for _m in _plan:
        METHODS.setdefault(_m.name, _m)
DEFAULT_METHODS = tuple(m.name for m in COMPARE)


def paired_comparisons(plan: str, names: list[str]) -> list[tuple[str, str]]:
    """The (a, b) pairs whose per-seed deltas a report gives: the compare plan's trained methods against
    maskclip and the SynSeg recipes against mixreorg; an ablation plan's rows against its first row."""
    if plan == "compare":
        pairs = [(n, "maskclip") for n in names if n != "maskclip"]
        pairs += [(n, "naclip") for n in names if n not in ("maskclip", "naclip")]
        pairs += [("synseg", "mixreorg"), ("synseg_weak", "mixreorg")]
    elif plan == "budget":  # each long run against its 300-step run and against the dense init
        pairs = [(f"{n}_3000", n) for n in ("synseg", "synseg_weak", "mixreorg")]
        pairs += [(n, "dense_init") for n in names if n != "dense_init"]
    elif plan == "lr":
        pairs = [(n, "dense_init") for n in names[1:]] + [(n, "synseg_lr1e-3") for n in names[2:]]
    else:
        pairs = [(n, names[0]) for n in names[1:]]
    return [(a, b) for a, b in pairs if a in names and b in names]
