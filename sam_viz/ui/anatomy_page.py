"""Step anatomy: one optimizer step at a time, stage by stage, several methods side by side on a 2-D analytic task."""

from __future__ import annotations

import math

import streamlit as st

from .. import plots
from ..anatomy import MAX_ANATOMY_METHODS, anatomy, loss_function, step_from
from ..config import Config
from ..data import TASKS
from ..optim import OPTIMIZERS
from . import state
from .common import chart
from .sidebar import page_frame
from .training import cached

DEFAULT_METHODS = ("sgd", "sam", "asam", "fsam", "lightsam1")
MAX_PAGE_STEPS = 100  # stepping through one step at a time: the first hundred steps show every stage's behaviour
STEP_KEY, STAGE_KEY, METHODS_KEY, SAME_KEY = "anatomy_step", "anatomy_stage", "anatomy_methods", "anatomy_same"
PLAY_KEY = "anatomy_play"
STEP_SEEDED = "anatomy_step_seeded"  # the step (settings.astep) last written into the slider, or read from it
PLAY_SECONDS = 1.0
FALLBACK_TASK = "sharp_flat"


def _move(delta: int, last: int) -> None:
    st.session_state[STEP_KEY] = min(max(int(st.session_state.get(STEP_KEY, 0)) + delta, 0), last)


def render_anatomy() -> None:
    settings = page_frame("Step anatomy")
    st.title("The anatomy of one step")
    st.write("Each panel is one method's step t on the exact loss contour: θ_t and the ascent gradient, the "
             "neighbourhood e_t is chosen from, the probe θ_t + e_t, the gradient there, and the update. Every arrow is "
             "the engine's own number, drawn to scale (gradients times the step's learning rate).")
    task = settings.task
    if task not in TASKS or TASKS[task].kind != "analytic":
        st.info(f"The step anatomy needs a 2-D analytic task; {task!r} is a data set, so this shows "
                f"{FALLBACK_TASK!r}. Choose an analytic task in the sidebar.", icon=":material/info:")
        task = FALLBACK_TASK
    own = dict(settings.runs)  # the sidebar's hyperparameters for a method it compares; defaults otherwise
    methods = st.multiselect("Methods", list(OPTIMIZERS), default=list(DEFAULT_METHODS), key=METHODS_KEY,
                             max_selections=MAX_ANATOMY_METHODS, format_func=lambda n: OPTIMIZERS[n].label)
    if not methods:
        st.info("Choose at least one method.", icon=":material/info:")
        return
    steps = min(settings.steps, MAX_PAGE_STEPS)
    # the settings' start belongs to their own task (the URL checked it against that task's domain); the fallback
    # task starts from its own θ₀
    own_task = task == settings.task
    config = Config(task=task, model="point", n_samples=settings.n, noise=settings.noise, steps=steps,
                    batch_size=settings.batch, seed=settings.seed, dtype="float64",
                    start_x=None if math.isnan(settings.start_x) or not own_task else settings.start_x,
                    start_y=None if math.isnan(settings.start_y) or not own_task else settings.start_y)
    chosen = [(m, dict(own.get(m, ()))) for m in methods]
    result = cached("anatomy", repr((config, chosen)), lambda: anatomy(config, chosen))
    # outside the view's fragment: switching it reruns the page, which starts or stops the view's timer
    playing = st.toggle("Play", key=PLAY_KEY, help=f"One step every {PLAY_SECONDS:g} s until the last step.")
    # playing: the view reruns itself every PLAY_SECONDS, one step further each time (a rerun, not plotly frames:
    # every step has its own zoomed contour per panel, too much to ship as frames)
    st.fragment(run_every=PLAY_SECONDS if playing else None)(_view)(result, config, chosen, methods, task)


def _view(result, config: Config, chosen, methods, task: str) -> None:
    last = result.n_steps - 1
    if last < 0:
        st.warning("Every run diverged at its first step: lower the learning rate in the sidebar.",
                   icon=":material/warning:")
        return
    _step_from_url(last)
    if st.session_state.get(PLAY_KEY) and int(st.session_state.get(STEP_KEY, 0)) < last:
        _move(1, last)
    # presenter mode's larger text needs wider buttons (at 1024 px "Previous" was cut to "Previ…")
    widths = [2.1, 1.6, 3.6, 2.8] if state.current().present else [1.4, 1.1, 4, 3]
    c1, c2, c3, c4 = st.columns(widths, vertical_alignment="bottom")
    c1.button("Previous", icon=":material/skip_previous:", on_click=_move, args=(-1, last), key="anatomy_prev",
              use_container_width=True)
    c2.button("Next", icon=":material/skip_next:", on_click=_move, args=(1, last), key="anatomy_next",
              use_container_width=True)
    with c3:
        t = st.slider("Step t", 0, last, key=STEP_KEY) if last >= 1 else 0
    _step_to_url(t)
    with c4:
        stage = st.select_slider("Stages drawn", options=list(range(1, 6)), value=5, key=STAGE_KEY,
                                 format_func=lambda k: f"1–{k}: {plots.ANATOMY_STAGES[k - 1]}")
    same = st.toggle("Every method from the same θ_t (the first method's), fresh optimizer state", key=SAME_KEY,
                     help="Off: each method at step t of its own run, with its real state. On: one step of each "
                          "method from the first method's θ_t, each with fresh state (as at its first step).")
    if same:
        first = next(m for m in methods if t < len(result.steps[m]))
        theta = result.steps[first][t].theta
        try:
            shown = cached("anatomy_from", repr((config, chosen, theta.tolist())),
                           lambda: step_from(config, theta, chosen))
        except ValueError as err:  # θ_t left the task's domain (a run on its way to diverging)
            st.warning(f"No step from θ_t = {_pair(theta)}: {err}", icon=":material/warning:")
            return
        steps_shown = [shown[m] for m in methods]
        title = f"One step from θ_t of {OPTIMIZERS[first].label} at step {t}, stage {stage}: " \
                f"{plots.ANATOMY_STAGES[stage - 1]}"
    else:
        steps_shown = list(result.at(t).values())
        title = None
    gone = {m: k for m, k in result.diverged.items() if k <= t}
    if gone:
        st.warning("Diverged (loss NaN/inf), so not shown from then on: " +
                   ", ".join(f"{OPTIMIZERS[m].label} at step {k}" for m, k in gone.items()), icon=":material/warning:")
    if not steps_shown:
        return
    st.markdown(f"**Step {t} of {last}**")
    fig = plots.anatomy_figure(steps_shown, loss_function(task), stage=stage, title=title)
    chart(fig, "anatomy")
    rows = []
    for s in steps_shown:
        rows.append({"method": s.label, "θ_t": _pair(s.theta), "‖e_t‖": _norm(s.perturbation),
                     "effective ρ": f"{s.effective_rho:.4g}", "effective η": f"{s.effective_lr:.4g}",
                     "‖θ_{t+1} − θ_t‖": _norm(s.update), "loss": f"{s.loss:.4g}"})
    st.dataframe(rows, hide_index=True)
    st.caption("F-SAM's e_t is also drawn as its part along the full-batch gradient and the rest (the noise part): "
               "F-SAM removes most of the first. ASAM's neighbourhood is {e : ‖T⁻¹e‖ ≤ ρ} with T = |θ| + η on weight "
               "tensors; the point model's parameter is not one, so on this plane it is the ρ-ball.")


def _step_from_url(last: int) -> None:
    """The step slider shows the settings' step (``astep``: a link's, or the one this session last showed), within
    this result's steps; moved by a link, the back button or a preset, it follows."""
    step = min(max(state.current().astep, 0), last)
    if st.session_state.get(STEP_SEEDED) != step:
        st.session_state[STEP_KEY] = step
        st.session_state[STEP_SEEDED] = step
    elif int(st.session_state.get(STEP_KEY, 0)) > last:
        st.session_state[STEP_KEY] = last


def _step_to_url(t: int) -> None:
    """The step shown goes into the settings and the URL, so a shared link opens on it."""
    st.session_state[STEP_SEEDED] = t
    if state.current().astep != t:
        state.change(astep=int(t))


def _pair(v) -> str:
    return f"({v[0]:.4g}, {v[1]:.4g})"


def _norm(v) -> str:
    return "–" if v is None else f"{math.hypot(*v):.4g}"
