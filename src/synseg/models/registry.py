"""A timm-style model registry: `@register_model` on a builder, `create_model(name, **kw)` to build one.

`MODEL=name` on the command line resolves through here, so an unknown name lists the registered ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_MODELS: dict[str, Callable[..., Any]] = {}


def register_model(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: registers `fn` under its own name."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _import_builders()
    return sorted(_MODELS)


def is_model(name: str) -> bool:
    """Whether `name` is registered."""
    return name in list_models()


def create_model(name: str, **kwargs: Any) -> Any:
    """Builds the registered model `name`; an unknown name raises a KeyError listing the registered ones."""
    if not is_model(name):
        raise KeyError(f"model: unknown name {name!r}; registered models: {', '.join(list_models())}")
    return _MODELS[name](**kwargs)


def _import_builders() -> None:
    # Importing the model modules runs their @register_model decorators.
    from synseg.models import mixreorg, synseg, toyclip  # noqa: F401
