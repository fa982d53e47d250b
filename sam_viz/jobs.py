"""Background jobs with progress and stop, and a process-wide cache of their results (no UI imports).

The app trains in a worker thread so a Stop button can interrupt it between steps while the page keeps
responding; results are kept by key (the configs' primitive values), so every visitor of a link with the same
settings gets the finished result at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ProgressFn = Callable[[int, int], None]
Work = Callable[[ProgressFn, Callable[[], bool]], Any]

MAX_KEPT = 64  # finished results kept (LRU)
VIEWER_TIMEOUT_S = 6.0  # a viewer whose page has not asked about the job for this long has left


@dataclass
class Job:
    """One piece of work running (or finished) in a thread.

    Attributes:
        key: what identifies the work (equal keys share one job).
        done_units, total_units: progress as the work reports it.
        result: the work's return value once finished (also after a stop: work is expected to return what it has).
        error: the exception's text if the work raised.
        stopped: a stop was requested.
        started, finished: ``time.perf_counter()`` when the job started and finished (None while running).
        viewers: the sessions waiting for the job, each with when its page last asked about it.
    """

    key: str
    done_units: int = 0
    total_units: int = 1
    result: Any = None
    error: str | None = None
    stopped: bool = False
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    viewers: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done_units / max(1, self.total_units))

    @property
    def elapsed(self) -> float:
        """Seconds since the job started (until it finished, once it has)."""
        return (self.finished if self.finished is not None else time.perf_counter()) - self.started

    @property
    def remaining(self) -> float | None:
        """Seconds left at the rate so far; None until there is a rate to go by."""
        if self.done_units <= 0 or self.elapsed < 0.5:
            return None
        return self.elapsed * (self.total_units - self.done_units) / self.done_units

    def stop(self) -> None:
        """Ask the work to stop at its next check; it keeps what it computed."""
        self.stopped = True
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job finishes (or ``timeout`` seconds pass); True when finished. Safe from any thread at
        any moment, also before the job's thread has started (another session may see the job first)."""
        return self._done.wait(timeout)

    def _finish(self) -> None:
        self.finished = time.perf_counter()
        self._done.set()

    # ------------------------------------------------------------------ viewers: a Stop belongs to the viewer

    def watch(self, viewer: str) -> None:
        """``viewer``'s page is waiting for the job (call it again while waiting: it keeps the viewer present)."""
        with self._lock:
            self.viewers[viewer] = time.monotonic()

    def others_watching(self, viewer: str) -> int:
        """Viewers other than ``viewer`` whose pages asked about the job within ``VIEWER_TIMEOUT_S``."""
        now = time.monotonic()
        with self._lock:
            return sum(1 for v, seen in self.viewers.items() if v != viewer and now - seen < VIEWER_TIMEOUT_S)

    def leave(self, viewer: str) -> bool:
        """``viewer`` pressed Stop: it stops waiting, and the job stops only when nobody else is waiting for it
        (it keeps what it computed). True when the job was stopped."""
        with self._lock:
            self.viewers.pop(viewer, None)
        if self.others_watching(viewer) == 0:
            self.stop()
            return True
        return False


class Registry:
    """Jobs by key: at most one running per key, finished ones kept in an LRU of ``MAX_KEPT``."""

    def __init__(self, max_kept: int = MAX_KEPT) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self.max_kept = max_kept

    def get(self, key: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(key)
            if job is not None:
                self._jobs.move_to_end(key)
            return job

    def submit(self, key: str, work: Work, *, restart: bool = False, viewer: str | None = None) -> Job:
        """The job for ``key``: the existing one (running, or finished: also stopped or failed) unless ``restart``.

        Args:
            key: identifies the work.
            work: ``work(progress, should_stop) -> result``; ``progress(done, total)``; it must return what it
                has when ``should_stop()`` turns True.
            restart: start afresh if the existing job has finished (a running job is never duplicated).
            viewer: the session asking (``Job.watch``), so that its Stop stops the job only if nobody else waits.
        """
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and (job.running or not restart):
                self._jobs.move_to_end(key)
                if viewer is not None:
                    job.watch(viewer)
                return job
            job = Job(key)
            if viewer is not None:
                job.watch(viewer)
            self._jobs[key] = job
            self._evict()

        def progress(done: int, total: int) -> None:
            job.done_units, job.total_units = done, total

        def target() -> None:
            try:
                job.result = work(progress, job._stop.is_set)
            except Exception as err:  # surfaced to the page as a message, never as a crash
                job.error = f"{type(err).__name__}: {err}"
            finally:
                job._finish()

        job._thread = threading.Thread(target=target, name=f"sam-viz job {key[:40]}", daemon=True)
        job._thread.start()
        return job

    def _evict(self) -> None:
        finished = [k for k, j in self._jobs.items() if not j.running]
        while len(self._jobs) > self.max_kept and finished:
            self._jobs.pop(finished.pop(0))

    def clear(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.stop()
            self._jobs.clear()


REGISTRY = Registry()
