"""Figure builders: the engine's numpy records in, ``plotly.graph_objects.Figure`` out (no torch, no streamlit).

Each builder validates its inputs, computes the geometry in a private helper, builds the traces and the layout,
and returns a ``go.Figure``: it never shows anything or touches files. Colours are colour-blind safe (Viridis /
Cividis for fields, Okabe–Ito plus distinct dashes and markers for optimizers), ``uirevision`` keeps zoom and
camera across Streamlit reruns, and every figure carries its alt text (``describe``) and its data
(``figure_to_csv_frames``).

>>> trace = TrajectoryTrace.from_run(run, project(plane, run.weights))  # doctest: +SKIP
>>> fig = surface_figure(surface, trajectories=[trace])                # doctest: +SKIP
"""

from ._anatomy import ANATOMY_STAGES, anatomy_figure
from ._boundary import decision_boundary_figure
from ._common import (
    PALETTE,
    SEQUENTIAL_SCALES,
    Style,
    param_title,
    readable_fonts,
    run_label,
    set_text_color,
    style,
    text_color,
)
from ._curvature import CURVATURE_METRICS, curvature_figure, hessian_series, spectrum_figure
from ._export import describe, figure_to_csv_frames
from ._method import cost_figure, layer_series_figure
from ._picker import PICKER_KEY, picked_start, picker_points, start_marker
from ._present import PRESENTER_SCALE, presenter_fonts
from ._series import (
    EXTRA_PREFIX,
    METRICS,
    RUNNING_MEAN_METRICS,
    MetricInfo,
    cumulative_mean,
    fsam_decomposition_figure,
    fsam_parts,
    metric_info,
    metric_series,
    metric_title,
    series_figure,
)
from ._static import figure_image, figure_images, static_figure
from ._surface import TrajectoryTrace, perturbation_figure, playback_figure, surface_figure
from ._sweep import CLICK_COLUMNS, CUSTOMDATA_COLUMNS, shared_color_range, sweep_heatmaps, sweep_selection

__all__ = [
    "ANATOMY_STAGES",
    "CLICK_COLUMNS",
    "CURVATURE_METRICS",
    "CUSTOMDATA_COLUMNS",
    "EXTRA_PREFIX",
    "METRICS",
    "MetricInfo",
    "PALETTE",
    "PICKER_KEY",
    "PRESENTER_SCALE",
    "RUNNING_MEAN_METRICS",
    "SEQUENTIAL_SCALES",
    "Style",
    "TrajectoryTrace",
    "anatomy_figure",
    "cost_figure",
    "cumulative_mean",
    "curvature_figure",
    "decision_boundary_figure",
    "describe",
    "figure_image",
    "figure_images",
    "figure_to_csv_frames",
    "fsam_decomposition_figure",
    "fsam_parts",
    "hessian_series",
    "layer_series_figure",
    "metric_info",
    "metric_series",
    "metric_title",
    "param_title",
    "perturbation_figure",
    "picked_start",
    "picker_points",
    "presenter_fonts",
    "playback_figure",
    "readable_fonts",
    "run_label",
    "series_figure",
    "shared_color_range",
    "spectrum_figure",
    "start_marker",
    "static_figure",
    "style",
    "surface_figure",
    "sweep_heatmaps",
    "sweep_selection",
    "text_color",
    "set_text_color",
]
