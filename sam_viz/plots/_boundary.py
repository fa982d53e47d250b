"""Decision boundaries of 2-D classification tasks: the predicted probability field with the data on top."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from ._common import as_1d, axis, base_layout, check_colorscale, check_increasing, doc, fmt, style

_EXTRA = "<extra></extra>"


def _grid_axes(xx: Any, yy: Any) -> tuple[np.ndarray, np.ndarray]:
    """1-D axes from either 1-D axes or ``np.meshgrid`` output (ny, nx)."""
    xx, yy = np.asarray(xx, dtype=np.float64), np.asarray(yy, dtype=np.float64)
    if xx.ndim == 2 and yy.ndim == 2:
        if xx.shape != yy.shape:
            raise ValueError(f"Invalid grid: xx {xx.shape} and yy {yy.shape} differ")
        xs, ys = xx[0, :], yy[:, 0]
        if not (np.allclose(xx, xs[None, :]) and np.allclose(yy, ys[:, None])):
            raise ValueError("Invalid grid: xx, yy are not a meshgrid (indexing='xy')")
    else:
        xs, ys = as_1d("xx", xx), as_1d("yy", yy)
    check_increasing("xx", xs)
    check_increasing("yy", ys)
    return xs, ys


def _field(probs: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(coloured field, predicted class or None, classes): P(class 1) for two classes, else max probability."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 2:
        p = np.stack([1.0 - p, p], axis=-1)
    if p.ndim != 3 or p.shape[:2] != shape or p.shape[2] < 2:
        raise ValueError(f"Invalid probs: expected shape {shape} or {shape + ('C',)}, C ≥ 2, got {np.shape(probs)}")
    if p.shape[2] == 2:
        return p[..., 1], None, 2
    return p.max(axis=-1), p.argmax(axis=-1), p.shape[2]


def _points(name: str, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(x, dtype=np.float64)
    labels = np.asarray(y)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"Invalid {name} points: expected shape (N, 2), got {pts.shape}")
    if labels.shape != (pts.shape[0],):
        raise ValueError(f"Invalid {name} labels: expected shape ({pts.shape[0]},), got {labels.shape}")
    return pts, labels.astype(np.int64)


@doc
def decision_boundary_figure(xx: Any, yy: Any, probs: Any, x_train: Any, y_train: Any, *, x_test: Any = None,
                             y_test: Any = None, class_names: Any = None, feature_names: Any = None,
                             colorscale: str = "Cividis",
                             title: str | None = None, uirevision: str | None = None) -> go.Figure:
    """A 2-D classifier's probability field with the training (and test) points.

    Two classes: the colour is P(class 1) on a fixed 0–1 scale and a white line marks P = 0.5. More classes:
    the colour is the confidence (largest class probability) and white lines separate the predicted classes;
    hover names the predicted class. Points use the optimizer palette and one marker shape per class (test
    points open), so classes never depend on colour alone.

    Args:
        xx, yy: the grid's (nx,) and (ny,) axes, or ``np.meshgrid(x, y)`` arrays (ny, nx).
        probs: (ny, nx) P(class 1), or (ny, nx, C) class probabilities.
        x_train: (N, 2) inputs; y_train: (N,) integer labels.
        x_test, y_test: optional held-out points, drawn with open markers.
        class_names: one name per class; default "class 0", "class 1", ...
        feature_names: the two inputs' names for the axes (an uploaded table's columns); default "input feature 1"
            and "input feature 2".
        {colorscale}
        {title}
        {uirevision}

    Returns:
        {returns}

    Raises:
        ValueError: shapes that do not fit together, or labels outside the classes.
    """
    check_colorscale(colorscale)
    xs, ys = _grid_axes(xx, yy)
    field, predicted, n_classes = _field(probs, (ys.size, xs.size))
    pts, labels = _points("train", x_train, y_train)
    sets = [("train", pts, labels)]
    if (x_test is None) != (y_test is None):
        raise ValueError("Invalid test points: give both x_test and y_test, or neither")
    if x_test is not None:
        sets.append(("test", *_points("test", x_test, y_test)))
    n_classes = max([n_classes] + [int(lab.max()) + 1 for _, _, lab in sets if lab.size])
    if any(lab.size and lab.min() < 0 for _, _, lab in sets):
        raise ValueError("Invalid labels: class labels must be ≥ 0")
    names = [f"class {c}" for c in range(n_classes)] if class_names is None else [str(c) for c in class_names]
    if len(names) < n_classes:
        raise ValueError(f"Invalid class_names: {len(names)} names for {n_classes} classes")

    features = ("input feature 1", "input feature 2") if feature_names is None else tuple(map(str, feature_names))
    if len(features) != 2:
        raise ValueError(f"Invalid feature_names: {len(features)} names for 2 inputs")
    binary = predicted is None
    z_title = f"P({names[1]})" if binary else "confidence (max class probability)"
    extra: dict[str, Any] = {}
    hover = f"x₁ %{{x:.3~g}}<br>x₂ %{{y:.3~g}}<br>{z_title} %{{z:.3f}}"
    if not binary:
        extra = dict(customdata=predicted[:, :, None].astype(np.float64))
        hover += "<br>predicted class %{customdata[0]:d}"
    data: list[Any] = [go.Contour(
        x=xs, y=ys, z=field, colorscale=colorscale, zmin=0.0 if binary else 1.0 / n_classes, zmax=1.0,
        ncontours=20, contours=dict(coloring="heatmap", showlines=False), line=dict(width=0), name=z_title,
        colorbar=dict(title=dict(text=z_title, side="right")), hovertemplate=hover + _EXTRA,
        meta={"key": "probability field", "x": "x1", "y": "x2", "z": "p_class1" if binary else "confidence",
              **({} if binary else {"customdata": ["predicted_class"]})}, **extra)]
    boundary_z = field if binary else predicted.astype(np.float64)
    start, end = (0.5, 0.5) if binary else (0.5, n_classes - 1.5)
    data.append(go.Contour(x=xs, y=ys, z=boundary_z, showscale=False, name="decision boundary",
                           contours=dict(coloring="none", start=start, end=end, size=1.0),
                           line=dict(color="white", width=2.5), hoverinfo="skip", showlegend=False,
                           meta={"export": False}))
    for kind, p, lab in sets:
        for c in range(n_classes):
            sel = lab == c
            if not sel.any():
                continue
            s = style(c)
            symbol = s.symbol if kind == "train" else f"{s.symbol}-open"
            data.append(go.Scatter(x=p[sel, 0], y=p[sel, 1], mode="markers", name=f"{names[c]} ({kind})",
                                   legendgroup=f"class{c}",
                                   marker=dict(symbol=symbol, size=7 if kind == "train" else 8, color=s.color,
                                               line=dict(color="black" if kind == "train" else s.color, width=1)),
                                   hovertemplate=f"{names[c]} ({kind})<br>x₁ %{{x:.3~g}}<br>x₂ %{{y:.3~g}}" + _EXTRA,
                                   meta={"key": f"{names[c]} {kind}", "x": "x1", "y": "x2"}))
    counts = ", ".join(f"{int((labels == c).sum())} {names[c]}" for c in range(n_classes))
    alt = (f"Map of the classifier's {z_title} over x₁ from {fmt(xs[0])} to {fmt(xs[-1])} and x₂ from "
           f"{fmt(ys[0])} to {fmt(ys[-1])}, with the decision boundary in white and {pts.shape[0]} training "
           f"points ({counts})" + (f" plus {sets[1][1].shape[0]} test points" if len(sets) > 1 else "") + ".")
    layout = base_layout(title=title or "Decision boundary", uirevision=uirevision or f"boundary:{n_classes}",
                         alt=alt, xaxis=axis(f"x₁ ({features[0]})", scaleanchor="y", scaleratio=1,
                                             constrain="domain"),
                         yaxis=axis(f"x₂ ({features[1]})", constrain="domain"))
    return go.Figure(data=data, layout=layout)
