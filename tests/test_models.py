"""The model registry and every registered model at toy size: forward, backward, a gradient everywhere."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from synseg.models.registry import create_model, list_models


def _clip_inputs(model: torch.nn.Module) -> tuple:
    return torch.randn(2, 3, 64, 64), torch.randint(1, 1000, (2, 32))


def _head_inputs(model: torch.nn.Module) -> tuple:
    layers = [torch.randn(3, 65, 96) for _ in range(3)]  # 3 pairs, 8x8 grid + class token, stand-in width
    return layers, torch.randn(3, 128), (8, 8), torch.randn(3, 64)


def _mixreorg_inputs(model: torch.nn.Module) -> tuple:
    layers = [torch.randn(2, 65, 96) for _ in range(3)]  # 2 images, 8x8 grid + class token
    return layers, [torch.randn(2, 64, 96) for _ in range(3)]  # source-image globals (progressive mixing)


# Every registered model needs an entry here (the test below fails for a model without one).
EXAMPLE_INPUTS: dict[str, tuple[dict, Callable[[torch.nn.Module], tuple]]] = {
    "toyclip": ({}, _clip_inputs),
    "synseg_head": ({"prior": True}, _head_inputs),
    "mixreorg_head": ({}, _mixreorg_inputs),
}


def test_unknown_model_lists_registered_ones() -> None:
    with pytest.raises(KeyError, match="registered models: .*toyclip"):
        create_model("no_such_model")


@pytest.mark.parametrize("name", list_models())
def test_registered_model_forward_backward_gives_every_parameter_a_gradient(name: str) -> None:
    assert name in EXAMPLE_INPUTS, f"add toy-size example inputs for {name!r}"
    kwargs, make_inputs = EXAMPLE_INPUTS[name]
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    out = model(*make_inputs(model))
    loss = sum(o.float().square().mean() for o in out if torch.is_tensor(o) and o.requires_grad)
    loss.backward()
    missing = [
        n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    assert not missing, f"no gradient for {missing[:5]}"
