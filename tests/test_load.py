"""A small classroom against a real server: 8 headless visitors open the Loss-surface page at once (half on one
link, half with their own seed); every one gets its charts, with no exception and no error alert. Correctness
only: the timings are ``benchmarks/bench_load.py``'s."""

from __future__ import annotations

import asyncio

from browser import streamlit_server
from st_client import visit_all

SESSIONS = 8


def test_eight_visitors_at_once_all_get_their_charts_and_no_error():
    links = [f"Loss_surface?steps=60&seed={0 if k < SESSIONS // 2 else k}" for k in range(SESSIONS)]
    with streamlit_server(as_readme=True) as (base, _):
        visits = asyncio.run(visit_all(base, links, deadline_s=240))
    for v in visits:
        assert v.charts_s is not None, f"{v.link}: {v.failure}; last told: {v.notes[-1:]}\n" + "\n".join(v.trace[-30:])
        assert v.charts >= 1
        assert not v.exceptions, f"{v.link}: {v.exceptions}"
        assert not v.errors, f"{v.link}: {v.errors}"
