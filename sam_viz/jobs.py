"""Background jobs with progress and stop, and a process-wide cache of their results (no UI imports).

The app trains in a worker thread so a Stop button can interrupt it between steps while the page keeps
responding; results are kept by key (the configs' primitive values), so every visitor of a link with the same
settings gets the finished result at once.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

_LOG = logging.getLogger(__name__)
ProgressFn = Callable[[int, int], None]
Work = Callable[[ProgressFn, Callable[[], bool]], Any]

MAX_KEPT = 64  # finished results kept (LRU)
VIEWER_TIMEOUT_S = 6.0  # a viewer whose page has not asked about the job for this long has left
MAX_QUEUED_PER_VISITOR = 4  # jobs one visitor may have waiting in the queue at once (a classroom's fair share)
# jobs a visitor is served per turn: a page's training and then its surface, so a page that has its runs is finished
# before the next visitor's second page starts (otherwise every surface waits behind every classmate's training,
# and nobody sees a chart until all the trainings are done)
JOBS_PER_TURN = 2
# An owner's place in the fair order (turns served, first arrival) is forgotten once it has had no job for this
# long: a visitor's page keeps its place between its jobs, and a server up for a term does not grow without bound.
FORGET_OWNER_AFTER_S = 600.0


class TooManyJobs(ValueError):
    """A visitor asked for more queued jobs than ``MAX_QUEUED_PER_VISITOR``."""


def default_workers() -> int:
    """Jobs run at once: one per core (``SAM_VIZ_WORKERS`` overrides), each with ``threads_per_job`` torch threads,
    so that a classroom's jobs share the cores instead of fighting over them."""
    value = os.environ.get("SAM_VIZ_WORKERS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, os.cpu_count() or 1)


def threads_per_job(workers: int) -> int:
    """torch intra-op threads per job when ``workers`` jobs run at once on this machine's cores."""
    return max(1, (os.cpu_count() or 1) // workers)


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
        queued: waiting for a free worker (``Registry.position`` says how many jobs go first).
        owner: the session that submitted it (the queue is fair per owner).
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
    queued: bool = False
    owner: str = ""
    _cancel: Callable[[], None] | None = field(default=None, repr=False)
    _order: int = field(default=0, repr=False)
    _work: Work | None = field(default=None, repr=False)
    _portable: bool = field(default=False, repr=False)
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
        """Ask the work to stop at its next check; it keeps what it computed. A job still in the queue leaves it
        and finishes at once, with no result."""
        self.stopped = True
        self._stop.set()
        if self._cancel is not None:
            self._cancel()

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
    """Jobs by key: one per key for every session, finished ones kept in an LRU of ``MAX_KEPT``; at most ``workers``
    run at once, the others wait in a queue that is first-in first-out and fair per owner: owners take turns of
    ``JOBS_PER_TURN`` jobs (the next job belongs to the owner with the fewest turns served, then the one who came
    first; within an owner, the oldest job), so one visitor's many jobs do not hold back another's, and a visitor's
    page is finished before later visitors' pages start.

    Args:
        max_kept: finished jobs kept.
        workers: jobs run at once (``default_workers()``).
    """

    def __init__(self, max_kept: int = MAX_KEPT, workers: int | None = None) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self.max_kept = max_kept
        self.workers = workers or default_workers()
        self._queue: list[Job] = []
        self._running = 0
        self._served: dict[str, int] = {}
        self._arrival: dict[str, int] = {}  # each visitor's first submission: who came first is served first
        self._last_active: dict[str, float] = {}  # when each owner's last job was submitted or ended
        self._counter = itertools.count()
        self.max_queued_per_visitor = MAX_QUEUED_PER_VISITOR
        self._order_cache: dict[int, int] | None = None  # ``position``'s answers until the queue changes
        self.runner: Any = None  # a ``process_pool.ProcessRunner`` once ``use_processes`` was called

    def position(self, job: Job) -> int:
        """Jobs that start before ``job`` (0 once it runs): the queue's order as it stands."""
        with self._lock:
            if not job.queued:
                return 0
            if self._order_cache is None:  # every waiting page asks several times a second: order once per change
                self._order_cache = {id(j): i for i, j in enumerate(self._fair_order())}
            return self._order_cache.get(id(job), 0)

    def _fair_order(self) -> list[Job]:
        """The queue in the order it would be served (lock held): by the owner's turns served so far, then the
        owner's arrival, then age."""
        served = dict(self._served)
        pending = list(self._queue)
        out = []
        while pending:
            pick = min(pending, key=lambda j: (served.get(j.owner, 0) // JOBS_PER_TURN, self._arrival.get(j.owner, 0),
                                               j._order))
            pending.remove(pick)
            served[pick.owner] = served.get(pick.owner, 0) + 1
            out.append(pick)
        return out

    def get(self, key: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(key)
            if job is not None:
                self._jobs.move_to_end(key)
            return job

    def use_processes(self, threads: int) -> None:
        """Run portable jobs (``submit(portable=True)``) in ``workers`` spawned processes with ``threads`` torch
        threads each (``process_pool.ProcessRunner``): training then runs outside the server's GIL, with the same
        numbers. Other jobs, and portable ones if the processes cannot be used, run in threads as before."""
        from .process_pool import ProcessRunner

        if self.runner is None:
            self.runner = ProcessRunner(self.workers, threads)

    def submit(self, key: str, work: Work, *, restart: bool = False, viewer: str | None = None,
               portable: bool = False) -> Job:
        """The job for ``key``: the existing one (running, or finished: also stopped or failed) unless ``restart``.

        Args:
            key: identifies the work.
            work: ``work(progress, should_stop) -> result``; ``progress(done, total)``; it must return what it
                has when ``should_stop()`` turns True.
            restart: start afresh if the existing job has finished (a running job is never duplicated).
            viewer: the session asking (``Job.watch``), so that its Stop stops the job only if nobody else waits.
            portable: ``work`` pickles (a ``functools.partial`` of a module-level function, say), so a worker
                process may run it (``use_processes``).

        Raises:
            TooManyJobs: ``viewer`` already has ``MAX_QUEUED_PER_VISITOR`` jobs waiting in the queue.
        """
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and (job.running or not restart):
                self._jobs.move_to_end(key)
                if viewer is not None:
                    job.watch(viewer)
                return job
            waiting = sum(1 for j in self._queue if viewer is not None and j.owner == viewer)
            if waiting >= self.max_queued_per_visitor:
                raise TooManyJobs(f"You already have {waiting} jobs waiting for a free worker on this server; "
                                  "they start in turn. Wait for one to finish, or press Stop on one.")
            job = Job(key, queued=True, owner=viewer or "", _order=next(self._counter), _work=work,
                      _portable=portable)
            self._forget_idle_owners()
            self._arrival.setdefault(job.owner, job._order)
            self._last_active[job.owner] = time.monotonic()
            job._cancel = lambda: self._dequeue(job)
            if viewer is not None:
                job.watch(viewer)
            self._jobs[key] = job
            self._queue.append(job)
            self._order_cache = None
            self._evict()
            self._dispatch()
        return job

    def _dispatch(self) -> None:
        """Start queued jobs while workers are free (lock held)."""
        while self._running < self.workers and self._queue:
            job = self._fair_order()[0]
            self._queue.remove(job)
            self._order_cache = None
            self._served[job.owner] = self._served.get(job.owner, 0) + 1
            self._running += 1
            job.queued, job._cancel = False, None
            job.started = time.perf_counter()
            job._thread = threading.Thread(target=self._run, args=(job,), name=f"sam-viz job {job.key[:40]}",
                                           daemon=True)
            job._thread.start()

    def _run(self, job: Job) -> None:
        def progress(done: int, total: int) -> None:
            job.done_units, job.total_units = done, total

        try:
            job.result = self._compute(job, progress)
        except Exception as err:  # surfaced to the page as a message, never as a crash
            job.error = f"{type(err).__name__}: {err}"
        finally:
            job._work = None  # the closure holds the page's data: let it go with the job's thread
            job._finish()
            with self._lock:
                self._running -= 1
                self._last_active[job.owner] = time.monotonic()
                self._dispatch()

    def _compute(self, job: Job, progress: ProgressFn) -> Any:
        runner = self.runner
        if runner is not None and job._portable and runner.ready:
            try:
                return runner.run(job._work, progress, job._stop.is_set)
            except BrokenProcessPool:  # a worker died (out of memory, killed): this job runs here; later ones too
                self.runner = None
                _LOG.exception("sam-viz: the worker processes broke; jobs run in threads from now on")
        return job._work(progress, job._stop.is_set)

    def _dequeue(self, job: Job) -> None:
        """A queued job was stopped: it leaves the queue and finishes without running."""
        with self._lock:
            if job not in self._queue:
                return
            self._queue.remove(job)
            self._order_cache = None
            job.queued, job._cancel = False, None
        job._finish()

    def _forget_idle_owners(self) -> None:
        """Drop the fairness records of owners with no job queued or running for ``FORGET_OWNER_AFTER_S`` (lock
        held)."""
        busy = {j.owner for j in self._jobs.values() if j.queued or j.running}
        cutoff = time.monotonic() - FORGET_OWNER_AFTER_S
        for owner in [o for o, t in self._last_active.items() if t < cutoff and o not in busy]:
            for record in (self._last_active, self._arrival, self._served):
                record.pop(owner, None)

    def owners_remembered(self) -> int:
        """Owners whose place in the fair order is kept (bounded by ``FORGET_OWNER_AFTER_S``)."""
        with self._lock:
            return len(self._arrival)

    def _evict(self) -> None:
        finished = [k for k, j in self._jobs.items() if not j.running]
        while len(self._jobs) > self.max_kept and finished:
            self._jobs.pop(finished.pop(0))

    def clear(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
            self._jobs.clear()
        for job in jobs:
            job.stop()


REGISTRY = Registry()
