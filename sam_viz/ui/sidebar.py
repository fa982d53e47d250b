"""The page frame: page config, the navigation menu and the experiment form, built from the registries."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import streamlit as st

from ..data import CSV_TASK, TASKS, task_info
from ..models import ACTIVATIONS
from ..optim import OPTIMIZERS, HParamSpec
from ..settings import DEFAULTS, MAX_RUNS, Settings, from_query, spec, to_query
from . import state
from .presenter import presenter_style
from .upload import upload_panel

PAGES = (
    ("app.py", "Home", ":material/home:"),
    ("pages/1_Loss_surface.py", "Loss surface", ":material/landscape:"),
    ("pages/2_Perturbations.py", "Perturbations", ":material/scatter_plot:"),
    ("pages/3_Hessian.py", "Hessian", ":material/ssid_chart:"),
    ("pages/4_Radius_sensitivity.py", "Radius sensitivity", ":material/grid_on:"),
    ("pages/5_Learn.py", "Learn", ":material/school:"),
    ("pages/6_Step_anatomy.py", "Step anatomy", ":material/timeline:"),
)
# a page's file by the name in its URL ("Loss_surface" → "pages/1_Loss_surface.py"), as presets name pages
PAGE_FILES = {path.split("_", 1)[1].removesuffix(".py"): path for path, _, _ in PAGES[1:]}
NONE = "—"
ICON = Path(__file__).resolve().parents[2] / "assets" / "icon.png"


def page_frame(title: str) -> Settings:
    """Set up the page (config, menu, experiment form, URL notes) and return the current settings."""
    settings = state.current()
    # a local icon: a ":material/..." page icon makes the browser fetch the favicon from a font CDN
    st.set_page_config(page_title=f"{title} · sam-viz", page_icon=str(ICON), layout="wide",
                       initial_sidebar_state="collapsed" if settings.present else "auto")
    with st.sidebar:
        query = to_query(settings)
        for path, label, icon in PAGES:
            st.page_link(path, label=label, icon=icon, query_params=query)
        st.divider()
        _experiment_form(settings, title)
    # on the page, not in the sidebar: presenter mode hides the sidebar, and this switch turns it off again
    view_option("present", st.toggle)
    settings = state.current()
    presenter_style(settings)
    state.sync_url(settings)
    for note in state.notes():
        st.warning(f"Link setting changed: {note}", icon=":material/tune:")
    return settings


# ------------------------------------------------------------------------------------------------ widgets


def _hp_key(slot: int, name: str) -> str:
    return f"w_run{slot}_{name}"


def _log_options(hp: HParamSpec, value: float) -> list[float]:
    """1-2-5 steps over the spec's log range, plus the current value, so a log slider can hold any value."""
    low = hp.ui_low if hp.ui_low is not None else max(hp.low, 1e-8)
    high = hp.high
    grid = [m * 10.0**e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1) for m in (1, 2, 5)]
    grid = [g for g in grid if low * (1 - 1e-9) <= g <= high * (1 + 1e-9)]
    extra = [value] if value > 0 else []
    options = sorted({float(f"{g:.6g}") for g in grid + extra})
    return ([0.0] if hp.low == 0.0 else []) + options


def _seed_widgets(settings: Settings, page: str) -> None:
    """Write the settings into the widgets' session keys (first load, preset, reset)."""
    ss = st.session_state
    for name in ("task", "n", "noise", "lnoise", "model", "depth", "width", "act", "param", "bw", "steps", "batch",
                 "seed", "seeds"):
        ss[f"w_{name}"] = getattr(settings, name)
    ss["w_start_x"] = None if math.isnan(settings.start_x) else settings.start_x
    ss["w_start_y"] = None if math.isnan(settings.start_y) else settings.start_y
    for slot in range(MAX_RUNS):
        name, hp = settings.runs[slot] if slot < len(settings.runs) else (NONE, ())
        ss[f"w_run{slot}"] = name
        _seed_hparams(slot, name, dict(hp))
    ss["widgets_for"] = (page, settings)


def _seed_hparams(slot: int, name: str, values: dict) -> None:
    """Give the hyperparameter widgets of ``slot`` the values of optimizer ``name`` (its defaults where
    ``values`` is silent) and remember which optimizer they now belong to."""
    ss = st.session_state
    ss[f"w_run{slot}_for"] = name
    if name == NONE:
        return
    for key, hspec in OPTIMIZERS[name].hparams.items():
        value = values.get(key, hspec.default)
        ss[_hp_key(slot, key)] = ",".join(f"{v:g}" for v in value) if hspec.kind == "pair" else value


def _hparam_values(slot: int) -> dict:
    """What the hyperparameter widgets of ``slot`` hold now, by name (pairs as typed)."""
    name = st.session_state.get(f"w_run{slot}_for", NONE)
    if name == NONE:
        return {}
    return {key: st.session_state[_hp_key(slot, key)] for key in OPTIMIZERS[name].hparams
            if _hp_key(slot, key) in st.session_state}


def _optimizer_changed(slot: int) -> None:
    """Run ``slot`` got another optimizer: its panel shows that optimizer's hyperparameters at once, keeping the
    values of those it shares with the previous one (lr, ρ, momentum...) where they fit the new ranges."""
    name = st.session_state[f"w_run{slot}"]
    if name == NONE:
        _seed_hparams(slot, NONE, {})
        return
    kept = {}
    for key, value in _hparam_values(slot).items():
        hspec = OPTIMIZERS[name].hparams.get(key)
        if hspec is not None and hspec.kind == "float" and hspec.low <= value <= hspec.high:
            kept[key] = value
    _seed_hparams(slot, name, kept)


def _task_changed() -> None:
    """A new task: an analytic loss comes with a step size (and radius) at which plain gradient descent is stable
    on it, so every run starts from those rather than from rates that diverge there (Rosenbrock at η = 0.1)."""
    info = task_info(st.session_state["w_task"])
    # a start picked on one loss is no place in particular on another: each task starts from its own θ₀
    st.session_state["w_start_x"] = st.session_state["w_start_y"] = None
    if info.suggested_lr is None:
        return
    for slot in range(MAX_RUNS):
        name = st.session_state.get(f"w_run{slot}_for", NONE)
        if name == NONE:
            continue
        specs = OPTIMIZERS[name].hparams
        for key, value in (("lr", info.suggested_lr), ("rho", info.suggested_rho)):
            if key in specs and value is not None:
                st.session_state[_hp_key(slot, key)] = value
    st.session_state["task_note"] = (f"Learning rates set to {info.suggested_lr:g}"
                                     + (f" and radii to {info.suggested_rho:g}" if info.suggested_rho else "")
                                     + f", values at which gradient descent is stable on {info.name}.")


def _hp_widget(slot: int, key: str, hspec: HParamSpec) -> None:
    wkey = _hp_key(slot, key)
    quiet = {"key": wkey, "help": hspec.help, "on_change": "ignore"}
    if hspec.kind == "bool":
        st.checkbox(key, **quiet)
    elif hspec.kind == "choice":
        st.selectbox(key, hspec.choices, **quiet)
    elif hspec.kind == "pair":
        st.text_input(key, **{**quiet, "help": f"{hspec.help} Two numbers, e.g. 0.9,0.999."})
    elif hspec.kind == "int":
        low, high = int(hspec.low), int(hspec.high)
        st.session_state[wkey] = min(max(int(st.session_state.get(wkey, hspec.default)), low), high)
        st.number_input(key, min_value=low, max_value=high, step=1, **quiet)
    elif hspec.log:
        current = float(st.session_state.get(wkey, hspec.default))
        st.select_slider(key, options=_log_options(hspec, current), format_func=lambda v: f"{v:g}", **quiet)
    else:
        low, high = float(hspec.low), float(min(hspec.high, 10.0))
        st.session_state[wkey] = min(max(float(st.session_state.get(wkey, hspec.default)), low), high)
        st.slider(key, low, high, step=0.001, format="%.3f", **quiet)


def _experiment_form(settings: Settings, page: str) -> None:
    """The experiment, applied on Train. Its widgets do not rerun the page (``on_change="ignore"``), except those
    that change what the form shows: the task, the model and each run's optimizer."""
    # Re-seed when the settings changed elsewhere, or on another page: widget state belongs to the page that
    # rendered it, so a page switch would otherwise show the widgets' defaults.
    if st.session_state.get("widgets_for") != (page, settings):
        _seed_widgets(settings, page)
    ss = st.session_state
    quiet = {"on_change": "ignore"}
    analytic = task_info(ss["w_task"]).kind == "analytic"
    st.subheader("Experiment")
    # your own table is a task once uploaded (its hash in the settings); the uploader is just below
    tasks = [*TASKS, CSV_TASK] if settings.data else list(TASKS)
    st.selectbox("Task", tasks, key="w_task", help=spec("task").help, on_change=_task_changed,
                 format_func=lambda t: f"{t} ({task_info(t).kind})" if t != CSV_TASK else "csv (your table)")
    if ss.get("task_note"):
        st.caption(ss.pop("task_note"))
    upload_panel()
    if ss["w_task"] != CSV_TASK:  # a table has its own rows and no generator noise
        st.slider("Samples", int(spec("n").low), int(spec("n").high), key="w_n", help=spec("n").help, **quiet)
        st.slider("Noise", 0.0, float(spec("noise").high), key="w_noise", step=0.01, help=spec("noise").help,
                  **quiet)
    if analytic:
        c1, c2 = st.columns(2)
        # no bounds here: Train clamps to the task's domain (data.start_limits), with a note, as a link is
        c1.number_input("Start w1", key="w_start_x", value=None, format="%.3f", help=spec("start_x").help, **quiet)
        c2.number_input("Start w2", key="w_start_y", value=None, format="%.3f", **quiet)
    else:
        st.slider(spec("lnoise").label, 0.0, float(spec("lnoise").high), key="w_lnoise", step=0.01,
                  help=spec("lnoise").help, **quiet)
        st.selectbox("Model", spec("model").choices, key="w_model", help=spec("model").help)
        if ss["w_model"] == "mlp":  # the logistic model and the CNN have a fixed architecture
            c1, c2 = st.columns(2)
            c1.number_input("Hidden layers", 0, int(spec("depth").high), key="w_depth", **quiet)
            c2.number_input("Width", int(spec("width").low), int(spec("width").high), key="w_width", **quiet)
            st.selectbox("Parameterisation", spec("param").choices, key="w_param", help=spec("param").help,
                         format_func={"sp": "standard (sp)", "mup": "μP (mup)"}.get, **quiet)
            if ss["w_param"] == "mup":
                st.number_input("Base width", int(spec("bw").low), int(spec("bw").high), key="w_bw",
                                help=spec("bw").help, **quiet)
        if ss["w_model"] != "logistic":
            st.selectbox("Activation", ACTIVATIONS, key="w_act", **quiet)
    st.markdown("**Optimizers** (same start, same batches)")
    for slot in range(MAX_RUNS):
        choices = list(OPTIMIZERS) if slot == 0 else [NONE, *OPTIMIZERS]
        if ss.get(f"w_run{slot}") not in choices:
            ss[f"w_run{slot}"] = choices[0]
            _seed_hparams(slot, choices[0], {})
        name = st.selectbox(f"Run {slot + 1}", choices, key=f"w_run{slot}", on_change=_optimizer_changed, args=(slot,),
                            format_func=lambda n: n if n == NONE else f"{OPTIMIZERS[n].label} ({n})",
                            help="Its hyperparameters are below; everything applies on Train.")
        if name != NONE:
            with st.expander(f"{OPTIMIZERS[name].label} hyperparameters"):
                for key, hspec in OPTIMIZERS[name].hparams.items():
                    _hp_widget(slot, key, hspec)
    st.slider("Steps", int(spec("steps").low), int(spec("steps").high), key="w_steps", **quiet)
    c1, c2, c3 = st.columns(3)
    c1.number_input("Batch size", 0, int(spec("batch").high), key="w_batch", help=spec("batch").help, **quiet)
    c2.number_input("Seed", 0, int(spec("seed").high), key="w_seed", help=spec("seed").help, **quiet)
    c3.number_input("Seeds", 1, int(spec("seeds").high), key="w_seeds", help=spec("seeds").help, **quiet)
    st.button("Train", key="train", type="primary", on_click=_submit, use_container_width=True,
              help="Train every optimizer with these settings (results are cached).")
    if ss.get("train_note"):
        st.caption(ss.pop("train_note"))
    st.button("Reset to defaults", on_click=state.reset, use_container_width=True)


TRAIN_INTERVAL_S = 2.0  # one Train a visitor per this many seconds: a classroom's repeated clicks do not pile up


def _submit() -> None:
    """Train pressed: build Settings from the widgets and make them current (and the URL); at most one press a
    visitor every ``TRAIN_INTERVAL_S`` (a faster one is ignored with a note)."""
    ss = st.session_state
    now = time.monotonic()
    if now - ss.get("last_train", -math.inf) < TRAIN_INTERVAL_S:
        ss["train_note"] = f"One Train every {TRAIN_INTERVAL_S:g} s per visitor: that press was ignored."
        return
    ss["last_train"] = now
    old = state.current()
    runs = []
    for slot in range(MAX_RUNS):
        name = ss.get(f"w_run{slot}", NONE)
        if name == NONE:
            continue
        hp = {}
        for key, value in _hparam_values(slot).items():
            hspec = OPTIMIZERS[name].hparams[key]
            if hspec.kind == "pair":
                try:
                    value = tuple(float(v) for v in str(value).split(","))
                except ValueError:
                    value = hspec.default
                if len(value) != 2:
                    value = hspec.default
            if value != hspec.default:
                hp[key] = value
        runs.append((name, tuple(sorted(hp.items()))))
    task = ss["w_task"]
    analytic = task_info(task).kind == "analytic"
    start = {"start_x": ss.get("w_start_x"), "start_y": ss.get("w_start_y")} if analytic else {}
    generated = {} if task == CSV_TASK else dict(n=int(ss["w_n"]), noise=float(ss["w_noise"]))
    changes = dict(task=task, **generated, runs=tuple(runs) or old.runs,
                   steps=int(ss["w_steps"]), batch=int(ss["w_batch"]), seed=int(ss["w_seed"]),
                   seeds=int(ss["w_seeds"]),
                   **{k: math.nan if v is None else float(v) for k, v in start.items()})
    if not analytic:
        changes.update(model=ss["w_model"], depth=int(ss["w_depth"]), width=int(ss["w_width"]), act=ss["w_act"],
                       param=ss["w_param"], bw=int(ss["w_bw"]), lnoise=float(ss["w_lnoise"]))
    # the preset's explanation stays while its advice is followed (same task); another task leaves the preset
    if task != CSV_TASK:  # another task leaves your table (it stays on the server, a pick away while uploaded)
        changes["data"] = ""
    candidate = dataclasses.replace(old, **changes, preset=old.preset if task == old.task else "")
    settings, notes = from_query(to_query(candidate))  # clamped and checked exactly as a URL is
    state.update(settings, notes)
    st.session_state["widgets_for"] = None
    state.request_retrain()


def view_option(name: str, widget, label: str | None = None, **kwargs):
    """A widget bound to a view setting (no retraining): its value lives in the settings and the URL.

    A slider or number box takes its range from the setting's spec unless the page narrows it (the snapshots a run
    has); a value outside what the widget offers (a link's ``snap=100`` for a 51-snapshot run) is fitted to it and
    written back, with a note beside the widget when the value was not the default.
    """
    hspec = spec(name)
    if widget in (st.slider, st.number_input) and hspec.kind in ("int", "float"):
        cast = int if hspec.kind == "int" else float
        kwargs.setdefault("min_value", cast(hspec.low))
        kwargs.setdefault("max_value", cast(hspec.high))
    label = label or hspec.label
    value = getattr(state.current(), name)
    fitted = _fit(value, kwargs)
    if fitted != value:
        if value != getattr(DEFAULTS, name):
            st.caption(f":material/tune: {label}: {value} is not available here; showing {fitted}.")
        state.change(**{name: fitted})
        value = fitted
    page = (st.session_state.get("widgets_for") or ("", None))[0]
    key, seeded = f"v_{name}", f"v_{name}_seeded"
    if st.session_state.get(seeded, object()) != (page, value):  # changed elsewhere, or another page's widget
        st.session_state[key] = value
        st.session_state[seeded] = (page, value)

    def on_change() -> None:
        st.session_state[seeded] = (page, st.session_state[key])
        state.change(**{name: st.session_state[key]})

    return widget(label, key=key, on_change=on_change, help=hspec.help or None, **kwargs)


def _fit(value, kwargs: dict):
    """``value`` within the widget's ``min_value``/``max_value``, or among its ``options`` (else the first)."""
    if "options" in kwargs:
        options = list(kwargs["options"])
        return value if value in options else options[0]
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None and value < low:
        return low
    if high is not None and value > high:
        return high
    return value
