"""The session's Settings: read once from the URL (validated, with notes), kept in session state, written back."""

from __future__ import annotations

import dataclasses

import streamlit as st

from ..presets import PRESETS
from ..settings import DEFAULTS, Settings, from_query, to_query

_KEY = "settings"
_NOTES = "settings_notes"


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


def update(settings: Settings) -> None:
    """Make ``settings`` current and put them in the URL (only what differs from the defaults)."""
    st.session_state[_KEY] = settings
    st.session_state[_NOTES] = []
    sync_url(settings)


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
