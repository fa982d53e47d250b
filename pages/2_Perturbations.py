"""Perturbations page."""

from sam_viz.ui import render_perturbations

render_perturbations()
