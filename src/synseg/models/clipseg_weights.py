"""Loads CLIPSeg's released decoder weights (e.g. `CIDAS/clipseg-rd64-refined`, through `transformers`)
into `SynSegDecoder`, whose module layout mirrors CLIPSeg's so that the mapping is one to one."""

from __future__ import annotations

import re

import torch

from synseg.models.synseg import SynSegDecoder


def map_clipseg_decoder_state(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' CLIPSegDecoder state dict -> SynSegDecoder state dict."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in hf_state.items():
        if key.startswith(("film_mul.", "film_add.")):
            out[f"film.{key}"] = value
        elif key.startswith("transposed_convolution."):
            out[key.replace("transposed_convolution", "upsample", 1)] = value
        elif key.startswith("reduces."):
            out[key] = value
        elif m := re.match(r"layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key):
            qkv.setdefault(f"layers.{m[1]}.self_attn.in_proj_{m[3]}", {})[m[2]] = value
        elif key.startswith("layers."):
            new = (
                key.replace("self_attn.out_proj", "self_attn.out_proj")
                .replace("layer_norm1", "norm1")
                .replace("layer_norm2", "norm2")
                .replace("mlp.fc1", "linear1")
                .replace("mlp.fc2", "linear2")
            )
            out[new] = value
        else:
            raise KeyError(f"unexpected CLIPSeg decoder weight {key!r}")
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def load_clipseg_decoder(decoder: SynSegDecoder, name: str = "CIDAS/clipseg-rd64-refined") -> None:
    """Initialises `decoder` from CLIPSeg weights on the Hugging Face hub (or its local cache)."""
    try:
        from transformers import CLIPSegForImageSegmentation

        hf = CLIPSegForImageSegmentation.from_pretrained(name)
    except Exception as err:  # no network, no cache, no transformers
        raise RuntimeError(
            f"model.decoder_ckpt: cannot load CLIPSeg weights {name!r} through transformers "
            f"({type(err).__name__}: {err}). They need network access once (then the Hugging Face cache), "
            "or use model.decoder_init=random"
        ) from err
    decoder.load_state_dict(map_clipseg_decoder_state(hf.decoder.state_dict()))
