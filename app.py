"""sam-viz home page: what the app shows, the device in use, and the preset gallery."""

from sam_viz.ui import render_home

render_home()
