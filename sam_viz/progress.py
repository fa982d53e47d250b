"""Terminal progress for the command line: a one-line bar on stderr, and Ctrl-C as a request to stop.

No UI imports: only the standard library.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Self, TextIO

STOPPED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a command ended by Ctrl-C


def format_duration(seconds: float) -> str:
    """``m:ss`` below an hour, ``h:mm:ss`` above; ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def eta_seconds(done: int, total: int, elapsed: float, done_at_start: int = 0) -> float:
    """Seconds left at the rate so far: ``elapsed`` seconds took ``done - done_at_start`` units.

    NaN while no unit has been timed; 0 once ``done`` reaches ``total``.
    """
    if done >= total:
        return 0.0
    units = done - done_at_start
    if units <= 0 or elapsed <= 0:
        return math.nan
    return elapsed / units * (total - done)


class ProgressBar:
    """Progress of ``total`` units on one stream (stderr by default).

    On a terminal, one line redrawn in place (``\\r``) at most every ``redraw_s`` seconds. Elsewhere (a pipe, a
    CI log) a plain line on the first update, at each further 10 % of the total, and otherwise only after
    ``max(heartbeat_s, elapsed / 10)`` seconds without one, so a long run writes a few dozen lines, not thousands.
    Each line shows done/total units, the percentage, the elapsed time, an ETA and the latest finite value of
    each field passed to ``update`` (``loss=0.08`` shows as ``loss 0.08``).

    The ETA is the time left at the rate measured from the first update on (the set-up before it, such as building
    the model or the first step's warm-up, would skew it); "?" until a second update gives that rate.

    Args:
        total: units of the whole job (at least 1 is assumed).
        unit: their name ("steps", "points", ...).
        label: a word in front of the line.
        stream: where to write (default: ``sys.stderr`` at construction).
        quiet: write nothing at all.
        clock: seconds, monotonic (injectable for tests).
        tty: redraw in place (default: ``stream.isatty()``).
    """

    def __init__(self, total: int, unit: str = "steps", label: str = "", stream: TextIO | None = None,
                 quiet: bool = False, *, clock: Callable[[], float] = time.monotonic, tty: bool | None = None,
                 redraw_s: float = 0.1, heartbeat_s: float = 10.0) -> None:
        self.total, self.unit, self.label = max(1, int(total)), unit, label
        self.stream = sys.stderr if stream is None else stream
        self.quiet, self.clock = quiet, clock
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty, self.redraw_s, self.heartbeat_s = tty, redraw_s, heartbeat_s
        self.started = clock()
        self.done = 0
        self.fields: dict[str, Any] = {}
        self._first: tuple[float, int] | None = None  # (time, done) of the first update: where the rate starts
        self._last_write = -math.inf
        self._last_tenth = -1
        self._written_done: int | None = None
        self._width = 0
        self.closed = False

    def elapsed(self) -> float:
        return self.clock() - self.started

    def eta(self) -> float:
        """Seconds left (NaN before the rate is known)."""
        if self._first is None:
            return math.nan
        t0, d0 = self._first
        return eta_seconds(self.done, self.total, self.clock() - t0, d0)

    def line(self) -> str:
        """The current line (without ``\\r`` or newline)."""
        pct = 100.0 * self.done / self.total
        parts = [self.label] if self.label else []
        width = len(f"{self.total:,}")
        parts += [f"{self.done:>{width},}/{self.total:,} {self.unit}", f"{pct:3.0f}%",
                  f"elapsed {format_duration(self.elapsed())}", f"ETA {format_duration(self.eta())}"]
        for name, value in self.fields.items():
            parts.append(f"{name.replace('_', ' ')} {value:.4g}" if isinstance(value, float) else f"{name.replace('_', ' ')} {value}")
        return "  ".join(parts)

    def update(self, done: int, **fields: Any) -> None:
        """``done`` units so far (absolute, not an increment), with the latest values to show."""
        if self.closed:
            return
        now = self.clock()
        self.done = min(int(done), self.total)
        if self._first is None:
            self._first = (now, self.done)
        for name, value in fields.items():
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                continue  # NaN (not computed this step): keep the last value shown
            self.fields[name] = value
        if self.quiet:
            return
        if self.tty:
            if now - self._last_write >= self.redraw_s or self.done == self.total:
                self._redraw(now)
            return
        tenth = 10 * self.done // self.total
        quiet_for = now - self._last_write
        if self._written_done is None or tenth > self._last_tenth or quiet_for >= max(self.heartbeat_s,
                                                                                     0.1 * (now - self.started)):
            self._print(now, tenth)

    def _columns(self) -> int:
        """The terminal's width where the stream is one (stdout may be redirected while stderr is not)."""
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            return shutil.get_terminal_size((100, 20)).columns

    def _redraw(self, now: float) -> None:
        text = self.line()[:max(20, self._columns() - 1)]  # a wrapped line could not be redrawn in place
        self.stream.write("\r" + text + " " * max(0, self._width - len(text)))
        self.stream.flush()
        self._width, self._last_write, self._written_done = len(text), now, self.done

    def _print(self, now: float, tenth: int) -> None:
        self.stream.write(self.line() + "\n")
        self.stream.flush()
        self._last_write, self._last_tenth, self._written_done = now, max(tenth, self._last_tenth), self.done

    def close(self) -> None:
        """Show the last state (if not shown yet) and end the line; idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.quiet or self._first is None:
            return
        if self.tty:
            self._redraw(self.clock())
            self.stream.write("\n")
            self.stream.flush()
        elif self._written_done != self.done:
            self._print(self.clock(), 10 * self.done // self.total)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StopOnInterrupt:
    """Ctrl-C (SIGINT) as a request to stop: the first sets a flag, a second aborts (KeyboardInterrupt).

    Use as a context manager around long work and pass the instance as its ``should_stop`` (calling it reads the
    flag). The previous handler is put back on exit. Outside the main thread (where no handler can be set) it
    does nothing and Ctrl-C behaves as before.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # the second Ctrl-C: stop waiting for the next step
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._handle)
            self._previous = signal.SIG_DFL if previous is None else previous  # None: set outside Python
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
