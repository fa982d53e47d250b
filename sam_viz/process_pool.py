"""Jobs in worker processes: training outside the server's GIL, with progress and stop over a pipe (no UI imports).

A Streamlit server is one Python process: at the size of this app's models a training step is mostly Python, so
thread workers take turns on the GIL with every visitor's page. ``ProcessRunner`` sends a job whose work pickles
(``Registry.submit(portable=True)``) to one of ``workers`` spawned processes instead. Each
worker sets the same torch thread count as a thread worker would (``jobs.threads_per_job``) and runs the same
code, so the numbers are the same bit for bit; the job's thread in the server only relays progress and Stop.

The processes are started with ``spawn`` (a fork of a server with running threads can deadlock), without the
parent's ``__main__`` (``_without_main``), and warm themselves up (imports) as soon as the runner is made. They
end with the server: a worker whose parent is gone exits (``_parent_watch``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

PROGRESS_EVERY_S = 0.05  # a worker sends progress at most this often
_STOP = "stop"


_MAIN_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """While a worker may be spawned: ``spawn`` re-runs the parent's ``__main__`` in the child, and under Streamlit
    that is ``app.py``, which would start the app again (and its runner) inside the worker. A bare ``__main__``
    for the moment of the start keeps the child to its own imports."""
    with _MAIN_LOCK:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


def _init(threads: int, parent: int) -> None:
    import torch

    torch.set_num_threads(threads)
    threading.Thread(target=_parent_watch, args=(parent,), daemon=True).start()
    from . import scene  # noqa: F401 - the imports a training needs, paid before the first job comes


def _parent_watch(parent: int) -> None:
    """Exit when the server that started this worker is gone (killed, not shut down): no orphans."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _warm() -> int:
    return os.getpid()


def _entry(work: Callable[..., Any], conn: Any) -> Any:
    """In the worker: ``work(progress, should_stop)``, progress sent to and Stop read from ``conn``."""
    state = {"stopped": False, "sent": 0.0}

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - state["sent"] >= PROGRESS_EVERY_S or done >= total:
            state["sent"] = now
            conn.send((done, total))

    def should_stop() -> bool:
        while not state["stopped"] and conn.poll():
            state["stopped"] = conn.recv() == _STOP
        return state["stopped"]

    try:
        return work(progress, should_stop)
    finally:
        conn.close()


class ProcessRunner:
    """``workers`` spawned processes for portable jobs.

    Args:
        workers: processes (the registry's worker count: one job per process at a time).
        threads: torch intra-op threads in each.
    """

    def __init__(self, workers: int, threads: int) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=self._context, initializer=_init, initargs=(threads, os.getpid()))
        self.workers = workers
        with _without_main():  # start them now: each pays its imports before a visitor's job needs it
            self._warming = [self._executor.submit(_warm) for _ in range(workers)]

    @property
    def ready(self) -> bool:
        """The workers have finished their imports (until then a job is quicker in a thread of the server, which
        has them already: the same numbers either way)."""
        return all(f.done() for f in self._warming)

    def run(self, work: Callable[..., Any], progress: Callable[[int, int], None],
            should_stop: Callable[[], bool]) -> Any:
        """``work(progress, should_stop)`` in a worker (``work`` must pickle); blocks the calling (job) thread until it
        returns, relaying progress and a stop. Raises what ``work`` raised, or ``BrokenProcessPool`` if the worker
        died."""
        here, there = self._context.Pipe()
        with _without_main():  # a submit may start a worker
            future = self._executor.submit(_entry, work, there)
        told_stop = False
        try:
            while not future.done():
                if here.poll(0.05):
                    try:
                        progress(*here.recv())
                    except EOFError:  # the worker closed its end after the last progress: only the result is left
                        break
                if not told_stop and should_stop():
                    here.send(_STOP)
                    told_stop = True
            while here.poll():  # progress sent just before the end
                try:
                    progress(*here.recv())
                except EOFError:
                    break
            return future.result()
        finally:
            here.close()
            there.close()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
