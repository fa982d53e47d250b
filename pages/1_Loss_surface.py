"""Loss surface page."""

from sam_viz.ui import render_surface

render_surface()
