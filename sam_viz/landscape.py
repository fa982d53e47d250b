"""The loss-landscape engine's public names in one place, so ``sam_viz.landscape`` keeps working as an import path.

Each concept lives in its own module; this one only gathers them:

- ``sam_viz.planes``: directions, ``Plane``, the random/PCA/Hessian/three-point/axes planes, ``project``;
- ``sam_viz.surface``: ``surface``, ``surfaces_progressive``, ``analytic_surface``, ``line_profile``, ``Surface``;
- ``sam_viz.evaluators``: the fast grid evaluators (loop, vmap, fused MLP, oneDNN) and ``evaluate_points``;
- ``sam_viz.planner``: ``SurfacePlanner``, the explicit record of which evaluator is fastest per set-up.
"""

from __future__ import annotations

from .evaluators import EVALUATORS, candidates, default_evaluator, evaluate_points, onednn_linear, release_buffers
from .planes import (
    Plane,
    Projection,
    axes_plane,
    flat_parameters,
    hessian_plane,
    pca_plane,
    project,
    random_directions,
    random_plane,
    three_point_plane,
)
from .planner import Choice, SurfacePlanner, default_planner, set_default_planner
from .surface import MAX_RESOLUTION, Surface, analytic_surface, line_profile, surface, surfaces_progressive

__all__ = [
    "EVALUATORS", "MAX_RESOLUTION", "Choice", "Plane", "Projection", "Surface", "SurfacePlanner", "analytic_surface",
    "axes_plane", "candidates", "clear_caches", "default_evaluator", "default_planner", "evaluate_points",
    "flat_parameters", "hessian_plane", "line_profile", "onednn_linear", "pca_plane", "project", "random_directions",
    "random_plane", "release_buffers", "set_default_planner", "surface", "surfaces_progressive", "three_point_plane",
]


def clear_caches() -> None:
    """Forget the default planner's choices and release the fused evaluators' kept buffers.

    The engine keeps no surfaces (the app caches its own views), so this only resets what could make one test see
    another's state: the next ``evaluator="auto"`` surface measures again.
    """
    default_planner().forget()
    release_buffers()
