"""The Streamlit layer: widgets, session state and page bodies (the only package that imports streamlit)."""

from .anatomy_page import render_anatomy as _anatomy
from .guard import guarded
from .hessian_page import render_hessian as _hessian
from .home_page import render_home as _home
from .learn_page import render_learn as _learn
from .perturbations_page import render_perturbations as _perturbations
from .sensitivity_page import render_sensitivity as _sensitivity
from .sidebar import page_frame
from .surface_page import render_surface as _surface

# every page body: a failure is one clear message on the page, its traceback in the server's log
render_hessian, render_home, render_learn = guarded(_hessian), guarded(_home), guarded(_learn)
render_anatomy = guarded(_anatomy)
render_perturbations, render_sensitivity, render_surface = guarded(_perturbations), guarded(_sensitivity), guarded(_surface)

__all__ = ["page_frame", "render_anatomy", "render_hessian", "render_home", "render_learn", "render_perturbations", "render_sensitivity",
           "render_surface"]
