"""The Streamlit layer: widgets, session state and page bodies (the only package that imports streamlit)."""

from .hessian_page import render_hessian
from .home_page import render_home
from .learn_page import render_learn
from .perturbations_page import render_perturbations
from .sensitivity_page import render_sensitivity
from .sidebar import page_frame
from .surface_page import render_surface

__all__ = ["page_frame", "render_hessian", "render_home", "render_learn", "render_perturbations", "render_sensitivity",
           "render_surface"]
