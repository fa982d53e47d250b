"""The Streamlit layer: widgets, session state and page bodies (the only package that imports streamlit)."""

from .sidebar import page_frame
from .views import render_hessian, render_home, render_learn, render_perturbations, render_sensitivity, render_surface

__all__ = ["page_frame", "render_hessian", "render_home", "render_learn", "render_perturbations", "render_sensitivity",
           "render_surface"]
