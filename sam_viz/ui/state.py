"""The session's Settings: read once from the URL (validated, with notes), kept in session state, written back."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import streamlit as st

from ..presets import PRESETS
from ..settings import DEFAULTS, Settings, from_query, to_query

_KEY = "settings"
_NOTES = "settings_notes"
_PRESSES = "train_presses"  # how often Train was pressed in this session
_JOB_PRESSES = "job_presses"  # per job key: the press count when this session last met the job
_WRITTEN = "settings_query"  # the query this session last put in the URL


def current() -> Settings:
    """This session's settings. They come from the URL on a session's first run (a shared link) and whenever the
    URL holds something else than this session last wrote there: a preset's link, a link within the app, an address
    edited by hand or the browser's back button."""
    query = {k: st.query_params.get_all(k) for k in st.query_params}
    flat = {k: v[-1] for k, v in query.items() if v}
    if _KEY not in st.session_state or flat != st.session_state.get(_WRITTEN):
        preset = flat.get("preset", "")
        if preset in PRESETS and len(flat) == 1:
            settings, notes = PRESETS[preset].settings(), []
        else:
            settings, notes = from_query(query)
        st.session_state[_KEY] = settings
        st.session_state[_NOTES] = notes
        st.session_state[_WRITTEN] = flat
    return st.session_state[_KEY]


def notes() -> list[str]:
    """What the URL asked for that could not be used as it was (shown once, at the top of the page)."""
    return st.session_state.get(_NOTES, [])


def update(settings: Settings, notes: Sequence[str] = ()) -> None:
    """Make ``settings`` current and put them in the URL (only what differs from the defaults); ``notes`` say what
    was changed on the way in (shown at the top of the page)."""
    st.session_state[_KEY] = settings
    st.session_state[_NOTES] = list(notes)
    sync_url(settings)


def request_retrain() -> None:
    """Train was pressed: stopped or failed jobs start again when a page next awaits them."""
    st.session_state[_PRESSES] = st.session_state.get(_PRESSES, 0) + 1


def claim_restart(key: str, finished_badly: bool) -> bool:
    """Whether the job ``key``, if stopped or failed, should start again: this session never met the job (someone
    else stopped it: their partial result is not this visitor's), or Train was pressed since this session last met
    it. So each press restarts each such job once, whichever rerun reaches it (a page awaits several jobs in turn:
    the runs, then the surface or the curves over training), and a job this session stopped stays stopped."""
    presses = st.session_state.get(_PRESSES, 0)
    met = st.session_state.setdefault(_JOB_PRESSES, {})
    restart = finished_badly and (key not in met or met[key] < presses)
    met[key] = presses
    return restart


def sync_url(settings: Settings) -> None:
    query = to_query(settings)
    if {k: st.query_params.get(k) for k in st.query_params} != query:
        st.query_params.from_dict(query)
    st.session_state[_WRITTEN] = query


def change(**changes) -> None:
    """Update some fields (widget callbacks: values come from widgets, already within range)."""
    update(dataclasses.replace(current(), **changes))


def reset() -> None:
    update(DEFAULTS)
    st.session_state["widgets_for"] = None
