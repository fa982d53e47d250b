"""Step anatomy page."""

from sam_viz.ui import render_anatomy

render_anatomy()
