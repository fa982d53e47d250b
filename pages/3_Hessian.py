"""Hessian page."""

from sam_viz.ui import render_hessian

render_hessian()
