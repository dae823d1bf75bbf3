"""The model registry and every registered model at toy size: forward, backward, a gradient everywhere."""

from __future__ import annotations

import pytest
import torch

from synseg.models.registry import create_model, list_models


def test_unknown_model_lists_registered_ones() -> None:
    with pytest.raises(KeyError, match="registered models: .*toyclip"):
        create_model("no_such_model")


@pytest.mark.parametrize("name", list_models())
def test_registered_model_forward_backward_gives_every_parameter_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    images = torch.randn(2, 3, 64, 64)
    tokens = torch.randint(1, 1000, (2, 32))
    out = model(images, tokens)
    loss = sum(o.float().sum() for o in out if torch.is_tensor(o) and o.requires_grad)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None)]
    assert not missing, f"no gradient for {missing[:5]}"
