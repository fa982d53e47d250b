"""A classroom on one server: N headless visitors open a page at once (Streamlit's websocket protocol).

Run: ``python benchmarks/bench_load.py --sessions 30 --case both --page Loss_surface --steps 150``.

Each case starts a fresh ``streamlit run app.py`` (the README's command, on a free loopback port) and opens the page
in N concurrent visitors (``tests/st_client.py``): case ``same`` gives them all one link (the teacher's link on the
projector, seed 0), case ``seeds`` gives visitor k its own seed k + 1. It reports the time from connecting to
"charts drawn" (p50, p95, max, and the first visitor's), the visitors without charts by the deadline, the
``exception`` elements and error alerts seen, and the server's peak RSS (VmRSS of the server and its children,
sampled every 0.2 s). Traffic goes to 127.0.0.1 only; every loop is bounded in count and by the deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from browser import streamlit_server  # noqa: E402
from machine import header  # noqa: E402
from st_client import Visit, visit_all  # noqa: E402

SAMPLE_S = 0.2


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's ``children`` list)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _tree(pid: int, limit: int = 256) -> list[int]:
    """``pid`` and its descendants (at most ``limit``)."""
    tree, todo = [], [pid]
    while todo and len(tree) < limit:
        p = todo.pop()
        tree.append(p)
        todo += _children(p)
    return tree


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def server_pid() -> int:
    """The streamlit server this process started (``streamlit_server``'s child)."""
    for pid in _children(os.getpid()):
        try:
            if b"streamlit" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            pass
    raise RuntimeError("no streamlit server among this process's children")


class PeakRss:
    """Samples the RSS of a process tree every ``SAMPLE_S`` in a thread, for at most ``limit_s``; ``peak`` bytes."""

    def __init__(self, pid: int, limit_s: float) -> None:
        self.pid, self.limit_s, self.peak = pid, limit_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        end = time.perf_counter() + self.limit_s
        for _ in range(int(self.limit_s / SAMPLE_S) + 1):
            self.peak = max(self.peak, sum(_rss_bytes(p) for p in _tree(self.pid)))
            if self._stop.wait(SAMPLE_S) or time.perf_counter() > end:
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def links(case: str, sessions: int, page: str, steps: int) -> list[str]:
    """The visitors' links: one for all (``same``, seed 0) or one seed each (``seeds``, seeds 1..N)."""
    return [f"{page}?steps={steps}&seed={0 if case == 'same' else k + 1}" for k in range(sessions)]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; a visitor without charts counts as infinitely late."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def run_case(case: str, sessions: int, page: str, steps: int, deadline_s: float, *, warm: bool = False) -> dict:
    """One case on a fresh server: the visits, the server's start and peak RSS. ``warm``: one visitor of another
    link (seed 10,000) comes first, as the teacher trying the app before class does; it pays the server's one-off
    imports and warm-up, and none of the class's own work."""
    with streamlit_server(as_readme=True) as (base, healthy_s):
        if warm:
            asyncio.run(visit_all(base, [f"{page}?steps={steps}&seed=10000"], deadline_s=deadline_s))
        with PeakRss(server_pid(), deadline_s + 60) as rss:
            started = time.perf_counter()
            visits = asyncio.run(visit_all(base, links(case, sessions, page, steps), deadline_s=deadline_s))
            wall_s = time.perf_counter() - started
        return {"case": case, "visits": visits, "healthy_s": healthy_s, "wall_s": wall_s, "peak_rss": rss.peak,
                "warm": warm}


def report(result: dict, deadline_s: float) -> str:
    visits: list[Visit] = result["visits"]
    times = [v.charts_s if v.charts_s is not None else math.inf for v in visits]
    missing = [v for v in visits if v.charts_s is None]
    exceptions = collections.Counter(e for v in visits for e in v.exceptions)
    errors = collections.Counter(e for v in visits for e in v.errors)
    charts = collections.Counter(v.charts for v in visits if v.charts_s is not None)

    def fmt(t: float) -> str:
        return f"{t:.1f} s" if math.isfinite(t) else f"> {deadline_s:.0f} s"

    server = "warmed by one visit of another link" if result.get("warm") else "fresh server"
    lines = [f"case {result['case']}: {len(visits)} sessions, {server} (healthy after {result['healthy_s']:.1f} s), "
             f"all visits done after {result['wall_s']:.1f} s",
             f"  charts drawn: first {fmt(min(times))}, p50 {fmt(percentile(times, 50))}, "
             f"p95 {fmt(percentile(times, 95))}, max {fmt(max(times))}",
             f"  each session, sorted (s): {' '.join(f'{t:.0f}' if math.isfinite(t) else '-' for t in sorted(times))}",
             f"  sessions without charts: {len(missing)}; charts per page: {dict(charts)}",
             f"  exceptions: {sum(exceptions.values())}; error alerts: {sum(errors.values())}",
             f"  server peak RSS: {result['peak_rss'] / 2**30:.2f} GB",
             f"  script runs per session: full {_spread([v.full_runs for v in visits])}, "
             f"fragment (progress polls) {_spread([v.fragment_runs for v in visits])}"]
    lines += [f"    exception ×{n}: {text[:300]}" for text, n in exceptions.most_common(5)]
    lines += [f"    error alert ×{n}: {text[:300]}" for text, n in errors.most_common(5)]
    failures = collections.Counter(f"{v.failure}; last told: {v.notes[-1] if v.notes else '-'}" for v in missing)
    lines += [f"    without charts ×{n}: {text[:300]}" for text, n in failures.most_common(5)]
    if missing:  # what the server told the first of them last (its last 25 messages), to find why
        lines += [f"    first without charts ({missing[0].link}), its last messages:"]
        lines += [f"      {line}" for line in missing[0].trace[-25:]]
    return "\n".join(lines)


def _spread(values: list[int]) -> str:
    return f"{min(values)}–{max(values)}" if values else "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--case", choices=("same", "seeds", "both"), default="both")
    parser.add_argument("--page", default="Loss_surface")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds a visitor waits for its charts")
    parser.add_argument("--warm", action="store_true",
                        help="one visitor of another link first (the server's one-off imports and warm-up paid)")
    args = parser.parse_args(argv)
    print(header(), flush=True)
    print(f"SAM_VIZ_WORKERS={os.environ.get('SAM_VIZ_WORKERS', '(default: one per core)')}; {os.cpu_count()} cores; "
          f"page {args.page}, {args.steps} steps", flush=True)
    for case in ("same", "seeds") if args.case == "both" else (args.case,):
        result = run_case(case, args.sessions, args.page, args.steps, args.deadline, warm=args.warm)
        print(report(result, args.deadline), flush=True)


if __name__ == "__main__":
    main()
