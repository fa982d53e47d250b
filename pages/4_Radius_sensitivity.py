"""Radius sensitivity page."""

from sam_viz.ui import render_sensitivity

render_sensitivity()
