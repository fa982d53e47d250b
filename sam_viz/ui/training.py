"""Training and other long work from a page: a background job, a progress bar, a Stop button, cached results."""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Callable
from typing import Any

import streamlit as st
import torch

from .. import scene
from ..jobs import REGISTRY, Job, TooManyJobs, threads_per_job
from ..records import Run
from ..settings import Settings
from ..view_cache import ViewCache
from . import state

# the app's jobs share the cores: each gets its share of torch's threads (``jobs.threads_per_job``)
torch.set_num_threads(threads_per_job(REGISTRY.workers))
# trainings run in worker processes, outside the server's GIL (``SAM_VIZ_PROCESSES=0``: in threads, as in tests),
# or on the Ray cluster of ``RAY_ADDRESS`` when the app was started with it (and sweeps' chunks too, ``scene``)
if os.environ.get("RAY_ADDRESS"):
    REGISTRY.use_ray()
elif os.environ.get("SAM_VIZ_PROCESSES", "1") != "0":
    REGISTRY.use_processes(threads_per_job(REGISTRY.workers))

SYNC_WAIT_S = 30.0  # a page waits this long for its job before it polls instead (defaults take a few seconds)
SLOW_S = 90.0  # a job estimated to take longer than this waits for the user's go-ahead


def cost_gate(key: str, plan: Callable[[], tuple[float, str, str]]) -> bool:
    """Before the job ``key`` starts: say how long it will take, and, when that is over ``SLOW_S``, wait for a
    "Run it anyway" press. True when the job may run (it already exists, is cheap, or was agreed to).

    Args:
        key: the job's key.
        plan: ``plan() -> (seconds, work, hint)``, called only while the job has not started: the estimate, what
            the job does ("This sweep trains 2 optimizers × 9 cells × 200 steps") and, in one sentence, how to make
            it faster.
    """
    if REGISTRY.get(key) is not None:
        return True
    seconds, work, hint = plan()
    if seconds > SLOW_S and key not in st.session_state.get("slow_go_ahead", ()):
        st.warning(f"{work}: about {estimate_text(seconds)} on this machine now. {hint}", icon=":material/timer:")
        st.button(f"Run it anyway (about {estimate_text(seconds)})", on_click=_consent, args=(key,),
                  icon=":material/play_arrow:", key=f"go_{short_key(key)}")
        return False
    st.caption(f"{work}: about {estimate_text(seconds)} on this machine now.")
    return True


def _consent(key: str) -> None:
    st.session_state.setdefault("slow_go_ahead", set()).add(key)


def estimate_text(seconds: float) -> str:
    """A rounded duration for an estimate: "40 s", "3 minutes", "1.5 hours"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} minutes"
    return f"{seconds / 3600:.1f} hours"


def trained_runs(settings: Settings) -> list[Run] | None:
    """The runs of ``settings``, seed after seed (``Settings.seed_configs`` flattened): from the cache, or trained
    now, side by side, with progress and Stop. None while running."""
    try:
        configs = [c for group in settings.seed_configs() for c in group]
    except ValueError as err:
        st.error(f"These settings cannot be trained: {err}")
        return None
    key = "runs:" + scene.runs_key(configs)
    return await_job(key, functools.partial(scene.train_all, configs), "Training", unit="steps", portable=True)


def viewer() -> str:
    """This browser session's id: whose Stop it is."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "local"


def _leave(key: str) -> None:
    """Stop pressed: this viewer stops waiting; the job stops only if nobody else waits for it."""
    job = REGISTRY.get(key)
    if job is not None and not job.leave(viewer()):
        st.session_state.setdefault("left_jobs", set()).add(key)


def _watch_again(key: str) -> None:
    st.session_state.setdefault("left_jobs", set()).discard(key)


def await_job(key: str, work: Callable[..., Any], label: str, unit: str = "steps", portable: bool = False) -> Any:
    """Start (or find) the job ``key`` and wait for it while showing progress (done, time so far and left) and a
    Stop button; None if it is still running. A job is one for every session: a Stop ends this viewer's wait, and
    stops the job only when no other visitor is waiting for it."""
    existing = REGISTRY.get(key)
    restart = state.claim_restart(key, existing is not None and (existing.stopped or existing.error is not None))
    me = viewer()
    if restart:
        _watch_again(key)
    try:
        job = REGISTRY.submit(key, work, restart=restart, viewer=me, portable=portable)
    except TooManyJobs as err:  # a visitor's fair share of the server: said, nothing lost
        st.warning(str(err), icon=":material/hourglass_top:")
        return None
    if job.running and key in st.session_state.get("left_jobs", ()):
        others = job.others_watching(me)
        st.info(f"You stopped waiting for {label.lower()}; {others} other visitor(s) of this link still wait for "
                "it, so it goes on.", icon=":material/pause_circle:")
        st.button("Wait for it again", key=f"again_{short_key(key)}", on_click=_watch_again, args=(key,),
                  icon=":material/play_arrow:")
        return None
    if job.running:
        box = st.empty()
        with box.container():
            st.button("Stop", key=f"stop_{short_key(key)}", on_click=_leave, args=(key,), icon=":material/stop_circle:",
                      help="Stop now and keep the steps computed so far (if other visitors wait for the same "
                           "work, it goes on for them).")
            bar = st.progress(job.fraction, text=progress_text(job, label, unit))
        wait = 10.0 if job.stopped else st.session_state.get("_sync_wait_s", SYNC_WAIT_S)
        deadline = time.perf_counter() + wait
        while job.running and time.perf_counter() < deadline:
            job.wait(0.15)
            job.watch(me)
            bar.progress(job.fraction, text=progress_text(job, label, unit))
        if job.running:
            box.empty()
            _poll(key, label, unit)
            return None
        box.empty()
    if job.error is not None:
        st.error(f"{label} failed: {job.error}")
        return None
    if job.stopped and job.result is None:  # stopped while it waited in the queue: nothing was computed
        st.info(f"{label} was stopped before it started. Press Train to run it.", icon=":material/pause_circle:")
        return None
    if job.stopped:
        st.info(f"{label} was stopped after {job.done_units:,} of {job.total_units:,} {unit}; the views show what was "
                "computed. Press Train to run it again.", icon=":material/pause_circle:")
    return job.result


@st.fragment(run_every=0.5)
def _poll(key: str, label: str, unit: str) -> None:
    """Progress of a job that outlived the page's wait; reruns the page when it finishes."""
    job: Job | None = REGISTRY.get(key)
    if job is None or not job.running or key in st.session_state.get("left_jobs", ()):
        st.rerun()
    job.watch(viewer())
    st.button("Stop", key=f"poll_stop_{short_key(key)}", on_click=_leave, args=(key,), icon=":material/stop_circle:")
    st.progress(job.fraction, text=progress_text(job, label, unit))


def progress_text(job: Job, label: str, unit: str) -> str:
    """"Training: 40 / 150 steps · 3 s so far, about 8 s left" (the estimate once there is a rate to go by)."""
    if job.queued:  # waiting for a free worker: its place in the queue
        ahead = REGISTRY.position(job)
        return (f"{label}: waiting for a free worker, {ahead} job{'s' if ahead != 1 else ''} ahead of yours "
                f"({REGISTRY.workers} run at once on this server)")
    text = f"{label}: {job.done_units:,} / {job.total_units:,} {unit} · {_duration(job.elapsed)} so far"
    left = job.remaining
    return text + (f", about {_duration(left)} left" if left is not None else "")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def short_key(key: str) -> str:
    """A short, stable widget key for a job key (the same in every process)."""
    return hashlib.sha1(key.encode()).hexdigest()[:10]


VIEW_CACHE = ViewCache()


def cached(kind: str, key: str, compute: Callable[[], Any]) -> Any:
    """A process-wide cache for view computations (surfaces, spectra) keyed by primitive strings: computed once for
    every session, in flight included (``view_cache.ViewCache``)."""
    return VIEW_CACHE.get_or_compute(f"{kind}\0{key}", compute)


def peek(kind: str, key: str) -> Any:
    """The value ``cached(kind, key, ...)`` holds, or None (nothing is computed)."""
    return VIEW_CACHE.get(f"{kind}\0{key}")


def clear_caches() -> None:
    REGISTRY.clear()
    VIEW_CACHE.clear()
