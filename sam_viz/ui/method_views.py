"""What each method's runs record beyond the common series: their cost (gradient evaluations) and the method's
own diagnostics (``Run.extra``, titled by the registry's ``Variant.series``), drawn for whichever runs have them.
No per-optimizer code: a new method's series appear here once its registry entry names them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from .. import plots
from ..optim import OPTIMIZERS
from ..records import Run
from .common import chart


def cost_note(runs: Sequence[Run], labels: Sequence[str]) -> str:
    """One line: each run's gradient evaluations in training (in batches) and per step, for comparing methods
    at equal cost."""
    parts = []
    for r, label in zip(runs, labels):
        evals = np.asarray(r.grad_evals, dtype=np.float64)
        if not np.isfinite(evals).any():
            continue
        total = float(np.nansum(evals))
        parts.append(f"{label} {total:,.0f} ({total / max(1, r.n_steps):.2g} per step)")
    if not parts:
        return ""
    return "Gradient evaluations in training, in batches: " + "; ".join(parts) + "."


def series_labels(runs: Sequence[Run]) -> dict[str, str]:
    """The method series the runs record, name → title, in registry order (then any unnamed ones)."""
    names: dict[str, str] = {}
    for r in runs:
        declared = OPTIMIZERS[r.config.optimizer].series if r.config.optimizer in OPTIMIZERS else {}
        for name in declared:
            if name in r.extra:
                names.setdefault(name, declared[name])
        for name in r.extra:
            names.setdefault(name, name.replace("_", " "))
    return names


def method_charts(runs: Sequence[Run], labels: Sequence[str],
                  bands: Sequence[Sequence[Run]] | None) -> list[go.Figure]:
    """The cost per step for every run, then one chart per method series the runs record (two per row)."""
    figures = []
    st.subheader("Cost and method diagnostics")
    note = cost_note(runs, labels)
    if note:
        st.caption(note)
    specs: list[tuple[str, str]] = [("grad_evals", "")] + list(series_labels(runs).items())
    for start in range(0, len(specs), 2):
        columns = st.columns(2)
        for column, (name, title) in zip(columns, specs[start:start + 2]):
            with column:
                if name == "grad_evals":
                    fig = plots.series_figure(runs, "grad_evals", labels=labels, seed_runs=bands)
                elif any(np.ndim(r.extra.get(name)) == 2 for r in runs):
                    fig = plots.layer_series_figure(runs, name, labels=labels, title=title, y_title=title)
                else:
                    with_series = [i for i, r in enumerate(runs) if name in r.extra]
                    sub_bands = None if bands is None else [bands[i] for i in with_series]
                    fig = plots.series_figure([runs[i] for i in with_series], plots.EXTRA_PREFIX + name,
                                              labels=[labels[i] for i in with_series], seed_runs=sub_bands,
                                              title=title, y_title=title.split(":")[0])
                chart(fig, f"method_{name}")
                figures.append(fig)
    return figures
