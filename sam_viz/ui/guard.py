"""A page body that fails shows a clear message, never a traceback: a classroom's clients see what went wrong in
one sentence, and the details go to the server's log."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import streamlit as st

LOG = logging.getLogger("sam_viz")
FAILED = "This view could not be drawn"  # the message's start: browser tests look for it


def guarded(render: Callable[[], None]) -> Callable[[], None]:
    """``render`` with its exceptions turned into one error message (Streamlit's rerun and stop signals, which are
    not ``Exception``s, pass through)."""

    @functools.wraps(render)
    def page() -> None:
        try:
            render()
        except Exception as err:
            LOG.exception("page %s failed", render.__name__)
            st.error(f"{FAILED}: {type(err).__name__}: {err}. The details are in the server's log; change a "
                     "setting or reload the page.", icon=":material/error:")

    return page
