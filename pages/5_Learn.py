"""Learn page."""

from sam_viz.ui import render_learn

render_learn()
