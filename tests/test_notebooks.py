"""The notebooks run top to bottom on the toy defaults, in a kernel of this virtualenv's python (slow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def venv_kernel(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A kernelspec whose argv is this interpreter (the venv's python), found through JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "synseg-venv"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "synseg venv", "language": "python"})
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root))
        mp.setenv(
            "SYNSEG_COMPARE_OUT", str(root / "compare")
        )  # 03 makes its demo report here, not in reports/
        yield "synseg-venv"


def test_every_notebook_compiles_and_imports_what_exists() -> None:
    """Fast check of what the slow run would hit first: each code cell parses, and every `synseg` name a
    notebook imports exists (a renamed module or function breaks a notebook silently otherwise)."""
    import ast
    import importlib

    assert len(NOTEBOOKS) == 3
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        for cell in book.cells:
            if cell.cell_type != "code":
                continue
            tree = ast.parse(cell.source, filename=f"{path.name}")
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("synseg"):
                    module = importlib.import_module(node.module)
                    missing = [a.name for a in node.names if not hasattr(module, a.name)]
                    assert not missing, f"{path.name}: from {node.module} import {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, venv_kernel: str) -> None:
    book = nbformat.read(path, as_version=4)
    book.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))  # which python ran it
    client = NotebookClient(
        book, kernel_name=venv_kernel, timeout=600, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError naming the cell on any error
    outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} drew no figure"
    assert book.cells[-1].outputs[0]["text"].strip() == sys.executable  # the kernel was this venv's python
