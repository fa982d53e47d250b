"""``examples/own_model.ipynb`` runs top to bottom in a fresh python3 kernel, as Jupyter would start it (in
``examples/``, the package not installed), and prints finite results and draws every figure."""

from __future__ import annotations

import math
import re
from pathlib import Path

import nbclient  # requirements-dev.txt pins nbclient, nbformat and ipykernel
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "own_model.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"


def _python3_kernel() -> str:
    """The python3 kernel spec, installed into this environment by ipykernel if a fresh machine lacks it."""
    if "python3" not in KernelSpecManager().find_kernel_specs():
        from ipykernel.kernelspec import install
        install(user=True, kernel_name="python3")
    assert "python3" in KernelSpecManager().find_kernel_specs()
    return "python3"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, kernel_name=_python3_kernel(), timeout=300,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return nb


def _text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                   if o.output_type == "stream")


def _number(text: str, pattern: str) -> float:
    found = re.search(pattern + r" (-?[0-9.]+(?:e-?[0-9]+)?)", text)
    assert found, f"no {pattern!r} in the notebook's output"
    return float(found.group(1))


def test_every_cell_ran_without_error(executed):
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]


def test_it_draws_every_figure_with_the_project_builders(executed):
    figures = [o["data"][PLOTLY] for c in executed.cells if c.cell_type == "code" for o in c.outputs
               if PLOTLY in o.get("data", {})]
    assert len(figures) == 6  # three surfaces, the whole and the per-layer spectrum, the grid
    kinds = [sorted({t["type"] for t in f["data"]}) for f in figures]
    assert all("contour" in k for k in kinds[:3]) and "heatmap" in kinds[5]
    titles = [f["layout"]["title"]["text"] for f in figures]
    assert any("PCA" in t for t in titles) and any("Hessian plane" in t for t in titles)


def test_printed_results_are_finite_and_consistent(executed):
    text = _text(executed)
    for name in ("SAM test accuracy", "SGD test accuracy", "best test accuracy"):
        assert 0.8 < _number(text, name) <= 1.0
    whole = _number(text, "SAM lambda_max")
    blocks = [float(v) for v in re.findall(r"block lambda_max ([0-9.]+)", text)]
    assert math.isfinite(whole) and whole > 0 and len(blocks) == 5
    assert max(blocks) <= whole * (1 + 1e-3)  # interlacing: no diagonal block is sharper than the whole Hessian
    assert "GeneralPathWarning" in text and "loop evaluator" in text  # the CNN took the general path, with a note
    centres = [float(v) for v in re.findall(r"centre loss ([0-9.]+)", text)]
    assert len(centres) == 3 and max(centres) - min(centres) < 1e-4  # three planes through the same θ
