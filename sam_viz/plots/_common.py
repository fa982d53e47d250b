"""Shared pieces of the figure builders: palette and line styles, parameter docs, validation, number formatting."""

from __future__ import annotations

import contextlib
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

# Okabe & Ito's colour-universal-design palette: distinguishable under the common colour-vision deficiencies.
# Black is left out (invisible on dark themes) and yellow moved last (it vanishes on the top of Viridis).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
# Colour is never the only cue: each series also gets its own dash and marker (lcm(8, 6) = 24 distinct styles).
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "triangle-down", "pentagon", "hexagon", "star")
SYMBOLS_3D = ("circle", "square", "diamond", "cross", "x", "circle-open", "square-open", "diamond-open")
# Perceptually uniform and readable with deuteranopia/protanopia; Cividis is also uniform in grey.
SEQUENTIAL_SCALES = ("Viridis", "Cividis", "Plasma", "Inferno", "Magma")
DIVERGED_COLOR = "#F4F4F4"  # near-white: no sequential scale we allow ends there
MISSING = "–"
# Readable on a projector at the back of a lecture hall: Plotly's (and Streamlit's) 12 px is too small. Sizes
# only; colours are left to the theme (Streamlit light or dark, Plotly's template), so text stays legible on both.
FONT_SIZE = 14           # body text, legend and tick labels
TITLE_FONT_SIZE = 16     # axis titles
HEATMAP_TEXT_SIZE = 14   # numbers printed in heatmap cells (``texttemplate``)


@dataclass(frozen=True)
class Style:
    """How series number ``i`` is drawn in every figure: colour, dash, 2-D marker and 3-D marker."""

    color: str
    dash: str
    symbol: str
    symbol3d: str


def style(i: int) -> Style:
    """The style of the ``i``-th series (optimizer): the same index gives the same look in every figure."""
    return Style(PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)], SYMBOLS[i % len(SYMBOLS)],
                 SYMBOLS_3D[i % len(SYMBOLS_3D)])


def check_colorscale(name: str) -> str:
    """Return ``name`` if it is one of ``SEQUENTIAL_SCALES`` (case-insensitive, optional ``_r``), else raise."""
    base = name[:-2] if isinstance(name, str) and name.endswith("_r") else name
    if not isinstance(base, str) or base.lower() not in {s.lower() for s in SEQUENTIAL_SCALES}:
        raise ValueError(f"Invalid colorscale: {name!r}; valid (colour-blind-safe): "
                         f"{', '.join(SEQUENTIAL_SCALES)}, each optionally with '_r'")
    return name


# ------------------------------------------------------------------------------------------ shared parameter text

DOCS: dict[str, str] = {
    "surface": "surface: a ``sam_viz.landscape.Surface`` (or any object with ``alpha`` (A,), ``beta`` (B,), "
               "``loss`` (B, A) indexed [i_beta, i_alpha], ``accuracy`` and ``plane.kind``). NaN cells (not yet "
               "computed) are left blank.",
    "trajectories": "trajectories: ``TrajectoryTrace`` records in the plane coordinates of ``surface``, one per "
                    "optimizer; the i-th is drawn in ``style(i)`` (colour, dash and marker).",
    "runs": "runs: ``sam_viz.records.Run`` records (or objects with the same per-step arrays, ``diverged``, "
            "``diverged_step`` and ``config``).",
    "labels": "labels: display names, one per series; default ``run_label`` of each run (optimizer, ρ and η).",
    "log_scale": "log_scale: colour (and 3-D height) by log10(loss − min + δ), δ = 1e-4 of the loss range: shows "
                 "the shape of the basin near the minimum, which a linear scale flattens.",
    "colorscale": "colorscale: a perceptually uniform, colour-blind-safe scale: Viridis, Cividis, Plasma, Inferno "
                  "or Magma (append '_r' to reverse).",
    "title": "title: figure title; None gives a descriptive default.",
    "uirevision": "uirevision: Plotly's ``uirevision``: zoom, pan, legend clicks and the 3-D camera persist across "
                  "reruns while it stays equal. None derives it from what the figure shows (e.g. the grid's span), "
                  "so a new view resets and a retrained run keeps the user's zoom.",
    "returns": "A ``plotly.graph_objects.Figure``; ``describe(fig)`` gives its alt text and "
               "``figure_to_csv_frames(fig)`` the data behind it.",
}

_F = TypeVar("_F", bound=Callable[..., Any])


def _indent(text: str) -> str:
    return textwrap.fill(text, width=110, subsequent_indent=" " * 12, break_on_hyphens=False)


def doc(func: _F) -> _F:
    """Fill ``{name}`` placeholders in a builder's docstring from ``DOCS`` (the text is written once, as in px)."""
    if func.__doc__:
        func.__doc__ = re.sub(r"\{(\w+)\}", lambda m: _indent(DOCS[m.group(1)]) if m.group(1) in DOCS
                              else m.group(0), func.__doc__)
    return func


# ------------------------------------------------------------------------------------------------- validation


def as_1d(name: str, values: Any, *, allow_empty: bool = False) -> np.ndarray:
    """``values`` as a 1-D float64 array, else ValueError naming ``name``."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {name}: not numeric") from None
    if arr.ndim != 1:
        raise ValueError(f"Invalid {name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"Invalid {name}: empty")
    return arr


def as_2d(name: str, values: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    """``values`` as a 2-D float64 array (of ``shape`` when given), else ValueError naming ``name``."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {name}: not numeric") from None
    if arr.ndim != 2 or (shape is not None and arr.shape != shape):
        want = f"shape {shape}" if shape is not None else "a 2-D array"
        raise ValueError(f"Invalid {name}: expected {want}, got shape {arr.shape}")
    return arr


def check_same_length(what: str, **arrays: Any) -> int:
    """The common length of ``arrays`` (None entries ignored), else ValueError listing each length."""
    lengths = {k: len(v) for k, v in arrays.items() if v is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"Invalid {what}: lengths differ ({', '.join(f'{k}={n}' for k, n in lengths.items())})")
    return next(iter(lengths.values()), 0)


def check_increasing(name: str, arr: np.ndarray, *, strict: bool = True) -> None:
    d = np.diff(arr)
    if not np.all(np.isfinite(arr)) or not np.all(d > 0 if strict else d >= 0):
        kind = "strictly increasing" if strict else "non-decreasing"
        raise ValueError(f"Invalid {name}: values must be finite and {kind}")


def finite_range(*arrays: np.ndarray) -> tuple[float, float] | None:
    """(min, max) over the finite entries of ``arrays``; None when there are none (and no RuntimeWarning)."""
    parts = [a[np.isfinite(a)] for a in (np.asarray(x, dtype=np.float64) for x in arrays)]
    parts = [p for p in parts if p.size]
    if not parts:
        return None
    allv = np.concatenate(parts)
    return float(allv.min()), float(allv.max())


def last_finite(arr: np.ndarray) -> tuple[int, float] | None:
    """(index, value) of the last finite entry, or None."""
    idx = np.flatnonzero(np.isfinite(arr))
    return (int(idx[-1]), float(arr[idx[-1]])) if idx.size else None


# ------------------------------------------------------------------------------------------------- formatting


def fmt(value: float, digits: int = 3) -> str:
    """Compact number: 3 significant digits, short exponents ("1e-4", not "1e-04"), "–" for NaN/None."""
    if value is None or not np.isfinite(value):
        return MISSING
    text = f"{float(value):.{digits}g}"
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), text)


def tick_labels(values: Sequence[float]) -> list[str]:
    """Distinct compact labels for axis values (more digits until no two values share a label)."""
    for digits in range(3, 17):
        labels = [fmt(v, digits) for v in values]
        if len(set(labels)) == len(labels):
            return labels
    return [repr(float(v)) for v in values]


def join_names(names: Iterable[str]) -> str:
    names = list(names)
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


_SUB = str.maketrans("0123456789+-", "₀₁₂₃₄₅₆₇₈₉₊₋")


def subscript(n: int | str) -> str:
    return str(n).translate(_SUB)


# Axis titles of the hyperparameters and settings a sweep can vary.
PARAM_TITLES: dict[str, str] = {
    "rho": "ρ (perturbation radius)",
    "lr": "η (learning rate)",
    "momentum": "μ (momentum)",
    "weight_decay": "weight decay",
    "batch_size": "batch size (0 = full batch)",
    "width": "hidden units per layer",
    "depth": "hidden layers",
    "noise": "input noise",
    "n_samples": "samples",
    "seed": "seed",
    "steps": "steps",
    "eta": "η (ASAM's scale offset)",
    "sigma": "σ (F-SAM noise weight)",
    "lmbda": "λ (F-SAM EMA decay)",
}


def param_title(name: str) -> str:
    return PARAM_TITLES.get(name, name)


# ------------------------------------------------------------------------------------------------ run labels


def run_label(run: Any) -> str:
    """Display name of a run: the optimizer's registry label plus ρ and η, e.g. "SAM (ρ=0.05, η=0.1)".

    The registry is only read if it is already imported (it imports torch; any real ``Run`` has loaded it).
    """
    config = getattr(run, "config", None)
    name = str(getattr(config, "optimizer", "run"))
    registry = sys.modules.get("sam_viz.optim.registry")
    optimizers = getattr(registry, "OPTIMIZERS", {})
    label = optimizers[name].label if name in optimizers else name.upper()
    hp = getattr(config, "hp", {}) if config is not None else {}
    parts = [f"{sym}={fmt(hp[key])}" for key, sym in (("rho", "ρ"), ("lr", "η"))
             if isinstance(hp.get(key), (int, float))]
    return f"{label} ({', '.join(parts)})" if parts else label


def default_labels(runs: Sequence[Any], labels: Sequence[str] | None) -> list[str]:
    """``labels`` checked against ``runs``, or ``run_label`` of each run with repeats numbered "#2", "#3"..."""
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(labels) != len(runs):
            raise ValueError(f"Invalid labels: {len(labels)} labels for {len(runs)} runs")
        return labels
    out, seen = [], {}
    for run in runs:
        base = run_label(run)
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base} #{seen[base]}")
    return out


def base_layout(*, title: str, uirevision: str, alt: str, subplot_titles: bool = False,
                **extra: Any) -> dict[str, Any]:
    """Layout entries every figure shares: title, ``uirevision``, alt text in ``meta``, projector-sized fonts and a
    legend on top.

    The legend sits in a horizontal row between the title and the plot (a right-hand legend would collide with
    colour bars); the top margin leaves room for the title, a wrapped second legend row and, with
    ``subplot_titles``, the panel titles. Font sizes are explicit (they win over Streamlit's 12 px template);
    colours are not, so the theme picks a legible one.
    """
    layout: dict[str, Any] = dict(
        title=dict(text=title, x=0.0, xanchor="left", y=0.98, yanchor="top", font=dict(size=TITLE_FONT_SIZE + 2)),
        uirevision=uirevision,
        meta={"alt": alt},
        hovermode="closest",
        font=dict(size=FONT_SIZE),
        hoverlabel=dict(font=dict(size=FONT_SIZE)),
        margin=dict(l=72, r=24, t=150 if subplot_titles else 120, b=64),
        legend=dict(orientation="h", x=0.0, xanchor="left", y=1.09 if subplot_titles else 1.02, yanchor="bottom",
                    font=dict(size=FONT_SIZE)),
    )
    layout.update(extra)
    for key, value in layout.items():
        if re.fullmatch(r"[xy]axis\d*", key) and isinstance(value, dict):
            layout[key] = readable_axis(value)
    return layout


@contextlib.contextmanager
def text_color(fig: Any, color: str) -> Iterator[Any]:
    """Within the block, ``fig``'s legend, title, tick labels, axis and colour-bar titles are drawn in ``color``;
    afterwards the figure is as it was.

    For a page that knows which colour reads well on its theme: ``with text_color(fig, ink): st.plotly_chart(fig)``
    (the chart is serialised inside the block). The builders leave colours to the theme, so the same figure stays
    right in a file, a report or the other theme; changing it in place and back costs milliseconds, where a copy
    of a playback figure costs a quarter of a second per rerun.
    """
    targets = _text_targets(fig)
    saved = [obj.color for obj in targets]
    try:
        for obj in targets:
            obj.color = color
        yield fig
    finally:
        for obj, old in zip(targets, saved):
            obj.color = old


def _text_targets(fig: Any) -> list[Any]:
    """The font objects of ``fig`` whose colour ``text_color`` sets: legend, title, ticks, axis and colour-bar titles."""
    lay = fig.layout
    targets = [lay.font, lay.legend.font, lay.title.font]
    for name in ("xaxis", "yaxis"):
        for ax in fig.select_xaxes() if name == "xaxis" else fig.select_yaxes():
            targets += [ax.tickfont, ax.title.font]
    for scene in fig.select_scenes():
        for ax in (scene.xaxis, scene.yaxis, scene.zaxis):
            targets += [ax.tickfont, ax.title.font]
    for t in fig.data:
        if t.type in ("contour", "heatmap", "surface") and t.showscale is not False:
            targets += [t.colorbar.tickfont, t.colorbar.title.font]
    return targets


def set_text_color(fig: Any, color: str) -> Any:
    """``fig`` (changed in place and returned) with ``text_color``'s fonts in ``color`` for good: for a figure built
    once and shown to many visitors at once, where changing it in place and back would race."""
    for obj in _text_targets(fig):
        obj.color = color
    return fig


def readable_axis(ax: dict[str, Any]) -> dict[str, Any]:
    """``ax`` with projector-sized tick labels and title (sizes it already sets are kept)."""
    ax = dict(ax)
    ax["tickfont"] = {"size": FONT_SIZE, **dict(ax.get("tickfont") or {})}
    title = ax.get("title")
    title = {"text": title} if isinstance(title, str) else dict(title or {})
    title["font"] = {"size": TITLE_FONT_SIZE, **dict(title.get("font") or {})}
    ax["title"] = title
    return ax


def readable_fonts(fig: Any) -> Any:
    """``fig`` (changed in place and returned) with projector-sized tick labels and titles on every 2-D axis,
    subplots included, where the figure does not set a size itself. The builders do this already; for figures
    built elsewhere (a sweep's subplot axes otherwise get Streamlit's 12 px)."""
    readable_layout(fig.layout)
    return fig


def readable_layout(layout: Any) -> None:
    """Give every 2-D axis of a ``go.Layout`` (subplots included) projector-sized tick labels and titles, in place."""
    for name in list(layout):
        if re.fullmatch(r"[xy]axis\d*", name) and layout[name] is not None:
            ax = layout[name]
            if not ax.to_plotly_json():
                continue  # an axis the figure does not use (go.Layout lists xaxis/yaxis even when unset)
            if ax.tickfont.size is None:
                ax.tickfont.size = FONT_SIZE
            if ax.title.font.size is None:
                ax.title.font.size = TITLE_FONT_SIZE
    for ann in layout.annotations or ():
        if ann.font.size is None:  # subplot titles
            ann.font.size = FONT_SIZE + 1


def axis(title: str, **extra: Any) -> dict[str, Any]:
    return dict(title=dict(text=title), **extra)


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def selected_points(event: Any) -> Iterator[tuple[dict, list]]:
    """(point, customdata as a list) of each point a Streamlit selection event holds, skipping points without
    customdata; nothing for an event that is not one (``{"selection": {"points": [...]}}``)."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError, IndexError):
        return
    for point in points or ():
        custom = point.get("customdata") if isinstance(point, dict) else None
        if isinstance(custom, dict):  # plotly.js may hand a typed array over as {0: …, 1: …}
            custom = [custom[k] for k in sorted(custom, key=int)]
        try:
            yield point, list(custom)
        except TypeError:
            continue
