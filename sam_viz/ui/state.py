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


def current() -> Settings:
    """This session's settings; on the first run of a session they come from the URL (a shared link)."""
    if _KEY not in st.session_state:
        query = {k: st.query_params.get_all(k) for k in st.query_params}
        preset = query.get("preset", [""])[-1]
        if preset and preset in PRESETS and len(query) == 1:
            settings, notes = PRESETS[preset].settings(), []
        else:
            settings, notes = from_query(query)
        st.session_state[_KEY] = settings
        st.session_state[_NOTES] = notes
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
    """Whether the job ``key``, if stopped or failed, should start again: Train was pressed since this session last
    met the job. So each press restarts each such job once, whichever rerun reaches it (a sweep page awaits one job
    per optimizer, the later ones only after the earlier finish), and a job stopped after the press stays stopped."""
    presses = st.session_state.get(_PRESSES, 0)
    met = st.session_state.setdefault(_JOB_PRESSES, {})
    restart = finished_badly and met.get(key, presses) < presses
    met[key] = presses
    return restart


def sync_url(settings: Settings) -> None:
    query = to_query(settings)
    if {k: st.query_params.get(k) for k in st.query_params} != query:
        st.query_params.from_dict(query)


def change(**changes) -> None:
    """Update some fields (widget callbacks: values come from widgets, already within range)."""
    update(dataclasses.replace(current(), **changes))


def reset() -> None:
    update(DEFAULTS)
    st.session_state["widgets_for"] = None
