"""The flow stays one-way (data -> models -> losses -> lit -> evaluation -> entry points): a package never
imports one above it, and the inference model imports no training stack."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "synseg"
FORBIDDEN = {
    "data": ("synseg.models", "synseg.lit", "synseg.evaluation", "synseg.compare", "synseg.train"),
    "models": ("synseg.data", "synseg.lit", "synseg.evaluation", "synseg.compare", "synseg.train",
               "lightning",
               "hydra"),
    "clip_configs.py": ("synseg.data", "synseg.models", "synseg.lit", "lightning", "hydra"),
}  # fmt: skip


def imports_of(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("part", list(FORBIDDEN))
def test_no_import_reaches_up(part: str) -> None:
    files = [SRC / part] if part.endswith(".py") else sorted((SRC / part).rglob("*.py"))
    assert files
    bad = [
        f"{f.relative_to(SRC)} imports {name}"
        for f in files
        for name in imports_of(f)
        if any(name == x or name.startswith(x + ".") for x in FORBIDDEN[part])
    ]
    assert not bad, bad
