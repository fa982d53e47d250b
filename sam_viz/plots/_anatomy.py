"""The anatomy of one optimizer step: arrows to scale on the exact contour, one panel per method, stage by stage.

Stages (``ANATOMY_STAGES``), each drawn on top of the ones before:

1. θ_t and the ascent gradient, drawn as η_t ∇L(θ_t) from θ_t;
2. the neighbourhood e_t is chosen from (ρ-ball, ASAM's ellipse, LightSAM's shrinking ball);
3. e_t and the probe θ_t + e_t (F-SAM also: e_t's part along the full gradient and the rest, the noise part);
4. the gradient at the probe, drawn as −η_t ∇L(θ_t + e_t) from the probe;
5. the update θ_{t+1} − θ_t from θ_t.

Gradients are multiplied by the step's own learning rate η_t (``StepAnatomy.effective_lr``) so every arrow is a
displacement on the plane, drawn to the plane's scale (equal aspect). Every arrow is a line trace whose two points
are the engine's numbers; ``meta`` names it (``{"arrow": key, "method": name}``), so tests and exports read them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._common import PALETTE, base_layout, fmt

if TYPE_CHECKING:  # the engine module imports torch; the builder reads only its numpy fields
    from ..anatomy import StepAnatomy

ANATOMY_STAGES = ("θ_t and the ascent gradient", "the neighbourhood", "e_t and the probe θ_t + e_t",
                  "the gradient at the probe", "the update")

# arrow key -> (legend label, colour, first stage it appears in)
ARROWS = {
    "ascent": ("η∇L(θ_t): ascent gradient", PALETTE[0], 1),
    "perturbation": ("e_t", PALETTE[5], 3),
    "eps_full": ("e_t along the full gradient", PALETTE[2], 3),
    "eps_noise": ("e_t's noise part", PALETTE[3], 3),
    "probe_grad": ("−η∇L(θ_t + e_t)", PALETTE[1], 4),
    "update": ("θ_{t+1} − θ_t: the update", "#000000", 5),
}
_EXTRA = "<extra></extra>"
PANELS_PER_ROW = 3  # square panels: more in a row would shrink each below a readable size on a laptop


def arrows(step: StepAnatomy, stage: int = 5) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The arrows of ``step`` drawn up to ``stage``, as ``key -> (tail, head)`` in plane coordinates.

    The F-SAM parts are drawn for F-SAM only (every method's e_t could be split, but only F-SAM acts on it).
    """
    _check_stage(stage)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    theta, lr = step.theta, step.effective_lr
    out["ascent"] = (theta, theta + lr * step.ascent_grad)
    if step.perturbation is not None:
        out["perturbation"] = (theta, step.probe)
        if step.method == "fsam":
            out["eps_full"] = (theta, theta + step.eps_full_part)
            out["eps_noise"] = (theta + step.eps_full_part, theta + step.eps_full_part + step.eps_noise_part)
        out["probe_grad"] = (step.probe, step.probe - lr * step.probe_grad)
    out["update"] = (theta, step.theta_next)
    return {k: v for k, v in out.items() if ARROWS[k][2] <= stage}


def _check_stage(stage: int) -> None:
    if not isinstance(stage, (int, np.integer)) or not 1 <= stage <= len(ANATOMY_STAGES):
        raise ValueError(f"Invalid stage: {stage!r}; valid: 1..{len(ANATOMY_STAGES)} ({', '.join(ANATOMY_STAGES)})")


def _outline(step: StepAnatomy, points: int = 120) -> tuple[np.ndarray, np.ndarray]:
    hood = step.neighbourhood
    angle = np.linspace(0.0, 2 * np.pi, points)
    return hood.center[0] + hood.semi_axes[0] * np.cos(angle), hood.center[1] + hood.semi_axes[1] * np.sin(angle)


def _window(step: StepAnatomy, drawn: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[tuple, tuple]:
    """A square window (equal aspect) around every arrow and the neighbourhood of all five stages, so stepping
    through the stages never moves the axes."""
    pts = [p for pair in arrows(step, 5).values() for p in pair]
    if step.neighbourhood is not None:
        pts += [step.theta - step.neighbourhood.semi_axes, step.theta + step.neighbourhood.semi_axes]
    pts = np.array(pts)
    lo, hi = pts.min(0), pts.max(0)
    center, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-6) * 1.2
    return (center[0] - half, center[0] + half), (center[1] - half, center[1] + half)


def anatomy_figure(steps: Sequence[StepAnatomy], loss: Callable[[np.ndarray, np.ndarray], np.ndarray], *,
                   stage: int = 5, resolution: int = 81, title: str | None = None) -> go.Figure:
    """One panel per method (three to a row): the exact contour around θ_t and the step's arrows up to ``stage``.

    Args:
        steps: the methods' ``StepAnatomy`` (``Anatomy.at(t)`` or ``step_from``), one panel each, in order.
        loss: the exact loss on numpy grids (``sam_viz.anatomy.loss_function(task)``).
        stage: draw stages 1..``stage`` (``ANATOMY_STAGES``).
        resolution: contour grid points per axis (each panel zooms on its own step).
        title: the figure title (default: the step and the last stage's name).

    Returns:
        The figure; each arrow trace's ``meta`` is ``{"arrow": key, "method": name}``.

    Raises:
        ValueError: no steps, a bad stage or resolution.
    """
    _check_stage(stage)
    if not steps:
        raise ValueError("Invalid steps: at least one method's step is needed")
    if not 11 <= resolution <= 401:
        raise ValueError(f"Invalid resolution: {resolution}; valid: 11..401")
    cols = min(len(steps), PANELS_PER_ROW)
    rows = -(-len(steps) // cols)
    # ~110 px between rows: the w1 title of one row and the panel titles of the next
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.06, vertical_spacing=min(0.3, 110 / (400 * rows)),
                        subplot_titles=[s.label for s in steps])
    shown: set[str] = set()
    for i, step in enumerate(steps):
        row, col = i // cols + 1, i % cols + 1
        drawn = arrows(step, stage)
        xr, yr = _window(step, drawn)
        gx, gy = np.linspace(*xr, resolution), np.linspace(*yr, resolution)
        z = loss(*np.meshgrid(gx, gy))
        fig.add_trace(go.Contour(x=gx, y=gy, z=z, colorscale="Viridis", showscale=False, ncontours=24,
                                 contours=dict(coloring="lines"), line=dict(width=1.5), name="loss",
                                 hovertemplate="w1 %{x:.4g}<br>w2 %{y:.4g}<br>loss %{z:.4g}" + _EXTRA,
                                 meta={"method": step.method, "shape": "contour"}), row=row, col=col)
        if stage >= 2 and step.neighbourhood is not None:
            ox, oy = _outline(step)
            hood = step.neighbourhood
            fig.add_trace(go.Scatter(x=ox, y=oy, mode="lines", line=dict(color=PALETTE[5], dash="dash", width=2),
                                     name=f"neighbourhood ({hood.label})", legendgroup="hood",
                                     showlegend="hood" not in shown, hoverinfo="skip",
                                     meta={"method": step.method, "shape": "neighbourhood"}), row=row, col=col)
            shown.add("hood")
        for key, (tail, head) in drawn.items():
            label, color, _ = ARROWS[key]
            length = float(np.linalg.norm(head - tail))
            fig.add_trace(go.Scatter(
                x=[tail[0], head[0]], y=[tail[1], head[1]], mode="lines+markers", name=label, legendgroup=key,
                showlegend=key not in shown, line=dict(color=color, width=3),
                marker=dict(symbol=["circle", "arrow"], size=[4, 14], angleref="previous", color=color),
                hovertemplate=f"{label}<br>length {fmt(length)}<br>(%{{x:.4g}}, %{{y:.4g}})" + _EXTRA,
                meta={"arrow": key, "method": step.method}), row=row, col=col)
            shown.add(key)
        points = [("θ_t", step.theta, "circle")]
        if stage >= 3 and step.probe is not None:
            points.append(("θ_t + e_t", step.probe, "x"))
        if stage >= 5:
            points.append(("θ_{t+1}", step.theta_next, "diamond"))
        for name, p, symbol in points:
            fig.add_trace(go.Scatter(x=[p[0]], y=[p[1]], mode="markers", name=name, legendgroup=name,
                                     showlegend=name not in shown,
                                     marker=dict(symbol=symbol, size=11, color="#000000"),
                                     hovertemplate=f"{name} (%{{x:.4g}}, %{{y:.4g}})" + _EXTRA,
                                     meta={"point": name, "method": step.method}), row=row, col=col)
            shown.add(name)
        suffix = "" if i == 0 else str(i + 1)
        fig.update_xaxes(range=list(xr), title_text="w1", constrain="domain", row=row, col=col)
        fig.update_yaxes(range=list(yr), title_text="w2" if col == 1 else None, scaleanchor=f"x{suffix}",
                         scaleratio=1, constrain="domain", row=row, col=col)
    t = steps[0].step
    text = title or f"Step {t}, stage {stage}: {ANATOMY_STAGES[stage - 1]}"
    alt = (f"The anatomy of step {t} for {', '.join(s.label for s in steps)}: arrows to scale on the exact loss "
           f"contour, stages 1 to {stage}.")
    layout = base_layout(title=text, uirevision="anatomy", alt=alt, subplot_titles=True,
                         height=170 + 400 * rows, showlegend=True)
    # the legend under the panels: above them, its offset in paper units would vary with the number of rows
    layout["legend"].update(y=-0.1 / rows, yanchor="top")
    layout["margin"].update(t=90, b=150)
    fig.update_layout(**layout)
    return fig
