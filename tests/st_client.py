"""A headless Streamlit visitor: opens one page over the app's websocket and waits until its charts are drawn.

It speaks the protocol that Streamlit's frontend speaks (``streamlit.proto`` BackMsg / ForwardMsg over
``ws://HOST/_stcore/stream``), doing only what a browser tab does for this app:

- the first ``rerun_script`` carries the page's name (its URL path) and query string, as a deep link does;
- the page hash the server answers with (``new_session.page_script_hash``, then ``navigation.page_script_hash``,
  which names the page resolved from the link: the frontend's ``currentPageScriptHash``) and any query string the
  page writes (``page_info_changed``) go into every later request (a fragment rerun that carried the main page's
  hash turns into a run of the Home page when the server merges it with the page's own ``st.rerun``);
- a fragment with ``run_every`` (the app's progress poll) is rerun on its interval (``auto_rerun``) until the server
  stops it (``stop_auto_rerun``) or a full run begins, exactly as the frontend's ``autoRerunIntervals`` do;
- nothing is cached on the client (no ``cached_message_hashes``), so the server sends every message whole.

"Charts drawn" is the moment the last plotly chart of the first full script run that finishes with at least
``min_charts`` charts has arrived. Every ``exception`` element and every error-format alert is recorded.
Loopback only, bounded in time: a visitor gives up at its deadline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.asyncio.client import connect


@dataclass
class Visit:
    """What one headless visitor saw.

    Attributes:
        link: the page and query string it opened ("Loss_surface?steps=150&seed=3").
        charts_s: seconds from connecting to charts drawn; None if they never came before the deadline.
        charts: plotly charts in that run.
        exceptions: the text of every ``exception`` element received.
        errors: the text of every error alert received.
        notes: every other alert (info, warning) and progress text, in order, the last 50: what a visitor without
            charts was told.
        trace: the last 200 messages received, as "seconds kind detail" lines (for a visit that went wrong).
        full_runs, fragment_runs: script runs the server started for this session.
        failure: why the visit ended without charts (connection error, timeout, page not found), else "".
    """

    link: str
    charts_s: float | None = None
    charts: int = 0
    exceptions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    full_runs: int = 0
    fragment_runs: int = 0
    failure: str = ""


def _rerun(query: str, page_hash: str, page_name: str = "", fragment_id: str = "", auto: bool = False) -> bytes:
    msg = BackMsg()
    state = msg.rerun_script
    state.query_string = query
    state.page_script_hash = page_hash
    state.page_name = page_name
    state.fragment_id = fragment_id
    state.is_auto_rerun = auto
    state.widget_states.SetInParent()  # no widget was touched: the page's values come from its URL and session
    state.context_info.timezone = "UTC"
    state.context_info.locale = "en-US"
    return msg.SerializeToString()


async def visit(base: str, link: str, *, deadline_s: float = 300.0, min_charts: int = 1) -> Visit:
    """Open ``link`` (a page path and query, e.g. "Loss_surface?steps=150") on the server at ``base``
    (http://127.0.0.1:PORT) and follow the page until its charts are drawn, or ``deadline_s`` has passed."""
    result = Visit(link)
    host = urlsplit(base).netloc
    if not host.startswith(("127.0.0.1:", "localhost:")):
        raise ValueError(f"the load client talks to this machine only, not {host}")
    page_name, _, query = link.partition("?")
    started = time.perf_counter()
    end = started + deadline_s
    try:
        async with connect(f"ws://{host}/_stcore/stream", subprotocols=["streamlit"], proxy=None, max_size=None,
                           open_timeout=min(60.0, deadline_s), ping_interval=None, close_timeout=2) as ws:
            await ws.send(_rerun(query, "", page_name))
            await _follow(ws, result, query, started, end, min_charts)
    except (OSError, asyncio.TimeoutError) as err:
        result.failure = f"{type(err).__name__}: {err}"
    except Exception as err:  # a closed or broken connection: the visit ends, said in the report
        result.failure = f"{type(err).__name__}: {err}"
    return result


async def _follow(ws, result: Visit, query: str, started: float, end: float, min_charts: int) -> None:
    page_hash = ""
    timers: dict[str, tuple[float, float]] = {}  # fragment id -> (interval, next due), the frontend's setInterval
    charts_at: list[float] = []
    in_fragment_run = False
    for _ in range(10_000_000):  # bounded by the deadline long before; a count keeps the loop finite by itself
        now = time.perf_counter()
        if now >= end:
            result.failure = f"no charts after {end - started:.0f} s"
            return
        for fragment_id, (interval, due) in list(timers.items()):
            if due <= now:
                timers[fragment_id] = (interval, now + interval)
                await ws.send(_rerun(query, page_hash, fragment_id=fragment_id, auto=True))
        wait = min([end - now] + [due - now for _, due in timers.values()])
        try:
            raw = await asyncio.wait_for(ws.recv(), timeout=max(0.01, wait))
        except asyncio.TimeoutError:
            continue
        msg = ForwardMsg()
        msg.ParseFromString(raw)
        kind = msg.WhichOneof("type")
        result.trace[:] = result.trace[-199:] + [f"{time.perf_counter() - started:.2f} {kind} {_detail(msg, kind)}"]
        if kind == "new_session":
            page_hash = msg.new_session.page_script_hash or page_hash
            in_fragment_run = bool(msg.metadata.run.fragment_ids)
            if in_fragment_run:
                result.fragment_runs += 1
            else:  # a full run: the frontend drops its auto-rerun timers and draws the page anew
                result.full_runs += 1
                timers.clear()
                charts_at = []
        elif kind == "navigation":  # the page the server resolved from the link's name: later requests name it
            page_hash = msg.navigation.page_script_hash or page_hash
        elif kind == "page_info_changed":
            query = msg.page_info_changed.query_string
        elif kind == "auto_rerun":
            interval = max(0.05, msg.auto_rerun.interval)
            if timers.get(msg.auto_rerun.fragment_id, (None,))[0] != interval:
                timers[msg.auto_rerun.fragment_id] = (interval, time.perf_counter() + interval)
        elif kind == "stop_auto_rerun":
            for fragment_id in msg.stop_auto_rerun.fragment_ids:
                timers.pop(fragment_id, None)
        elif kind == "page_not_found":
            result.failure = f"page not found: {msg.page_not_found.page_name}"
            return
        elif kind == "delta":
            _read_delta(msg, result, charts_at, in_fragment_run)
        elif kind == "script_finished":
            status = msg.script_finished
            if status == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                result.exceptions.append("script compile error")
            if status == ForwardMsg.FINISHED_SUCCESSFULLY and len(charts_at) >= min_charts:
                result.charts_s = charts_at[-1] - started
                result.charts = len(charts_at)
                return
    result.failure = "message count exhausted"


def _detail(msg: ForwardMsg, kind: str) -> str:
    if kind == "delta":
        delta = msg.delta
        element = delta.new_element.WhichOneof("type") if delta.WhichOneof("type") == "new_element" else ""
        return f"{delta.WhichOneof('type')} {element} fragment={delta.fragment_id[:6]}"
    if kind == "new_session":
        return f"page={msg.new_session.page_script_hash[:6]} fragments={list(msg.metadata.run.fragment_ids)}"
    if kind == "script_finished":
        return ForwardMsg.ScriptFinishedStatus.Name(msg.script_finished)
    if kind == "navigation":
        return f"page={msg.navigation.page_script_hash[:6]}"
    if kind == "auto_rerun":
        return f"{msg.auto_rerun.fragment_id[:6]} every {msg.auto_rerun.interval} s"
    return ""


def _read_delta(msg: ForwardMsg, result: Visit, charts_at: list[float], in_fragment_run: bool) -> None:
    delta = msg.delta
    element = None
    if delta.WhichOneof("type") == "new_element":
        element = delta.new_element
    elif delta.WhichOneof("type") == "new_transient":
        for transient in delta.new_transient.elements:
            _read_element(transient, result)
        return
    if element is None:
        return
    _read_element(element, result)
    if element.WhichOneof("type") == "plotly_chart" and not in_fragment_run:
        charts_at.append(time.perf_counter())


def _read_element(element, result: Visit) -> None:
    kind = element.WhichOneof("type")
    if kind == "exception":
        result.exceptions.append(f"{element.exception.type}: {element.exception.message}")
    elif kind == "alert" and element.alert.format == Alert.ERROR:
        result.errors.append(element.alert.body)
    elif kind in ("alert", "progress"):
        result.notes[:] = result.notes[-49:] + [element.alert.body if kind == "alert" else element.progress.text]


async def visit_all(base: str, links: list[str], *, deadline_s: float = 300.0, min_charts: int = 1) -> list[Visit]:
    """All ``links`` opened at once, one visitor each; their visits in the same order."""
    return list(await asyncio.gather(*(visit(base, link, deadline_s=deadline_s, min_charts=min_charts)
                                       for link in links)))
