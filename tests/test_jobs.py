"""Background jobs: progress, stop keeping partial results, one job per key, errors as messages."""

from __future__ import annotations

import time

import numpy as np

from sam_viz import scene
from sam_viz.config import Config
from sam_viz.jobs import JOBS_PER_TURN, Registry


def _counting(n, delay=0.001):
    def work(progress, should_stop):
        done = []
        for i in range(n):
            if should_stop():
                break
            time.sleep(delay)
            done.append(i)
            progress(i + 1, n)
        return done
    return work


def test_progress_and_result():
    reg = Registry()
    job = reg.submit("a", _counting(20))
    assert job.wait(10) and job.result == list(range(20)) and job.fraction == 1.0 and not job.stopped


def test_stop_keeps_partial_results():
    reg = Registry()
    job = reg.submit("a", _counting(10_000, delay=0.001))
    time.sleep(0.05)
    job.stop()
    assert job.wait(10)
    assert job.stopped and 0 < len(job.result) < 10_000 and job.done_units == len(job.result)


def test_one_job_per_key_and_restart_only_when_asked():
    reg = Registry()
    first = reg.submit("k", _counting(5))
    assert reg.submit("k", _counting(5)) is first
    first.wait(10)
    assert reg.submit("k", _counting(5)) is first  # finished results are reused
    again = reg.submit("k", _counting(5), restart=True)
    assert again is not first and again.wait(10)


def test_errors_become_messages():
    reg = Registry()

    def broken(progress, should_stop):
        raise ValueError("bad settings")

    job = reg.submit("x", broken)
    job.wait(10)
    assert job.error == "ValueError: bad settings" and job.result is None


def test_lru_keeps_a_bounded_number_of_results():
    reg = Registry(max_kept=3)
    for i in range(6):
        reg.submit(str(i), _counting(1)).wait(10)
    assert reg.get("0") is None and reg.get("5") is not None


def test_training_job_can_be_stopped_and_keeps_its_steps():
    config = Config(n_samples=128, width=8, steps=20_000, snapshot_every=100, device="cpu")
    reg = Registry()
    job = reg.submit("train", lambda p, s: scene.train_all([config, config.with_optimizer("sgd")], p, s))
    deadline = time.perf_counter() + 30
    while job.done_units < 10 and time.perf_counter() < deadline:
        time.sleep(0.01)
    job.stop()
    assert job.wait(30)
    sam, sgd = job.result  # trained side by side: a stop keeps both, with the same steps (not SAM alone)
    assert sam.stopped and sgd.stopped and 0 < sam.n_steps < 20_000
    assert sam.n_steps == sgd.n_steps == job.done_units and job.total_units == 20_000  # steps, not steps × runs


# ---- one job for every session: waiting from any thread, Stop per viewer ----------------------------------------

def test_a_job_seen_before_its_thread_starts_can_be_waited_for():
    # another session may find a job in the registry before its thread has started: waiting must not raise
    import threading

    from sam_viz.jobs import Job

    job = Job("k")
    assert job.wait(0.01) is False  # no thread yet: just not finished
    job._thread = threading.Thread(target=lambda: None)  # made, not yet started: the moment the old join raised at
    assert job.wait(0.01) is False
    registry = Registry()
    errors, release = [], threading.Event()

    def work(progress, should_stop):
        release.wait(5)
        return 42

    def visitor():
        try:
            for _ in range(200):
                found = registry.get("shared")
                if found is not None:
                    found.wait(0.001)
        except Exception as err:  # the bug: RuntimeError("cannot join thread before it is started")
            errors.append(err)

    threads = [threading.Thread(target=visitor) for _ in range(4)]
    for t in threads:
        t.start()
    job = registry.submit("shared", work)
    release.set()
    for t in threads:
        t.join(10)
    assert job.wait(5) and job.result == 42 and errors == []


def test_a_viewers_stop_stops_the_job_only_when_nobody_else_waits():
    registry = Registry()
    job = registry.submit("k", _counting(200, 0.01), viewer="a")
    registry.submit("k", _counting(200, 0.01), viewer="b")  # the second visitor of the same link: the same job
    assert registry.get("k") is job and job.others_watching("a") == 1
    assert job.leave("a") is False  # b still waits: the job goes on
    time.sleep(0.05)
    assert job.running and not job.stopped
    assert job.leave("b") is True  # the last viewer's Stop stops it
    assert job.wait(5) and job.stopped and len(job.result) < 200


def test_a_viewer_who_left_the_page_no_longer_counts():
    from sam_viz import jobs

    registry = Registry()
    job = registry.submit("k", _counting(200, 0.01), viewer="a")
    job.watch("gone")
    job.viewers["gone"] -= jobs.VIEWER_TIMEOUT_S + 1  # its page stopped asking a while ago
    assert job.others_watching("a") == 0
    assert job.leave("a") is True and job.wait(5) and job.stopped


def test_the_view_cache_computes_each_key_once_for_every_thread():
    import threading

    from sam_viz.view_cache import ViewCache

    cache, calls = ViewCache(), []

    def compute():
        calls.append(1)
        time.sleep(0.1)
        return np.ones(1000)

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_compute("surface", compute)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and len(results) == 8 and all(r is results[0] for r in results)
    assert cache.bytes == 8000


def test_the_view_cache_is_bounded_in_bytes_and_survives_a_failed_compute():
    from sam_viz.view_cache import ViewCache, nbytes

    cache = ViewCache(max_bytes=10_000)
    for k in range(5):
        cache.get_or_compute(f"k{k}", lambda: np.zeros(500))  # 4,000 bytes each
    assert cache.bytes <= 10_000 and cache.get("k4") is not None and cache.get("k0") is None  # LRU evicted
    cache.get_or_compute("huge", lambda: np.zeros(10_000))  # larger than the bound: returned, not kept
    assert cache.get("huge") is None and cache.bytes <= 10_000

    def fails():
        raise ValueError("no finite loss values")

    try:
        cache.get_or_compute("bad", fails)
    except ValueError:
        pass
    assert cache.get_or_compute("bad", lambda: 7) == 7  # not stuck in flight
    assert nbytes({"a": np.zeros(10), "b": [np.zeros(5)]}) >= 120


# ---- a bounded, fair queue ----------------------------------------------------------------------------------------

def test_at_most_workers_jobs_run_at_once_and_the_queue_is_fair_per_visitor():
    import threading

    registry = Registry(workers=1)
    release = threading.Event()
    started: list[str] = []
    peak, running = [0], [0]
    lock = threading.Lock()

    def work(name):
        def run(progress, should_stop):
            with lock:
                started.append(name)
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            release.wait(10)
            with lock:
                running[0] -= 1
            return name
        return run

    a1 = registry.submit("a1", work("a1"), viewer="A")
    a2 = registry.submit("a2", work("a2"), viewer="A")
    a3 = registry.submit("a3", work("a3"), viewer="A")
    b1 = registry.submit("b1", work("b1"), viewer="B")  # a second visitor, after A's three
    assert not a1.queued and a2.queued and b1.queued
    # turns of JOBS_PER_TURN = 2: A's second job (a page's surface after its training) finishes A's turn, then B
    # goes before A's third
    assert JOBS_PER_TURN == 2
    assert [registry.position(j) for j in (a2, b1, a3)] == [0, 1, 2]
    release.set()
    for job in (a1, a2, a3, b1):
        assert job.wait(10)
    assert started == ["a1", "a2", "b1", "a3"] and peak[0] == 1


def test_a_job_stopped_in_the_queue_never_runs():
    import threading

    registry = Registry(workers=1)
    release = threading.Event()
    first = registry.submit("first", lambda p, s: release.wait(10), viewer="A")
    ran = []
    queued = registry.submit("queued", lambda p, s: ran.append(1), viewer="B")
    assert queued.queued
    assert queued.leave("B") is True  # its only viewer's Stop
    assert queued.wait(1) and queued.stopped and queued.result is None and not queued.queued
    release.set()
    assert first.wait(10)
    time.sleep(0.05)
    assert ran == []


def test_a_visitor_may_queue_only_a_fair_share():
    import threading

    import pytest

    from sam_viz.jobs import TooManyJobs

    registry = Registry(workers=1)
    release = threading.Event()
    registry.submit("busy", lambda p, s: release.wait(10), viewer="other")
    for k in range(registry.max_queued_per_visitor):
        registry.submit(f"mine{k}", lambda p, s: None, viewer="me")
    with pytest.raises(TooManyJobs, match="jobs waiting"):
        registry.submit("one too many", lambda p, s: None, viewer="me")
    assert registry.submit("theirs", lambda p, s: None, viewer="third").queued  # others are not held back
    assert registry.submit("mine0", lambda p, s: None, viewer="me").key == "mine0"  # an existing job: no new one
    release.set()


def test_a_visitors_follow_up_job_goes_before_later_visitors_first_jobs():
    """A page's surface comes after its training: it must not wait behind every classmate's training, or nobody
    in a classroom sees a chart until all trainings are done."""
    import threading

    registry = Registry(workers=1)
    release = threading.Event()
    order: list[str] = []

    def work(name):
        def run(progress, should_stop):
            release.wait(10)
            order.append(name)
        return run

    train_a = registry.submit("train A", work("train A"), viewer="A")
    others = [registry.submit(f"train {v}", work(f"train {v}"), viewer=v) for v in "BCD"]
    surface_a = registry.submit("surface A", work("surface A"), viewer="A")  # submitted after B, C and D
    assert registry.position(surface_a) == 0 and [registry.position(j) for j in others] == [1, 2, 3]
    release.set()
    for job in (train_a, surface_a, *others):
        assert job.wait(10)
    assert order == ["train A", "surface A", "train B", "train C", "train D"]


def test_an_idle_visitors_place_in_the_fair_order_is_forgotten(monkeypatch):
    """A server up for a term meets thousands of sessions: their fairness records must not pile up, yet a visitor
    with a job still queued or running keeps its place."""
    import sam_viz.jobs as J

    clock = [1000.0]
    monkeypatch.setattr(J.time, "monotonic", lambda: clock[0])
    registry = Registry(workers=1)
    for visitor in "ABC":
        assert registry.submit(f"job {visitor}", _counting(1), viewer=visitor).wait(10)
    assert registry.owners_remembered() == 3
    clock[0] += J.FORGET_OWNER_AFTER_S / 2
    assert registry.submit("job D", _counting(1), viewer="D").wait(10)
    assert registry.owners_remembered() == 4  # A, B and C have not been idle long enough yet
    clock[0] += J.FORGET_OWNER_AFTER_S / 2 + 1
    import threading

    release = threading.Event()

    def held(progress, should_stop):
        release.wait(10)

    busy = registry.submit("job E", held, viewer="E")  # E runs: A, B, C are forgotten, D is not yet
    assert registry.owners_remembered() == 2
    clock[0] += J.FORGET_OWNER_AFTER_S + 1
    registry.submit("job F", _counting(1), viewer="F")  # E is still running: it keeps its place
    assert registry.owners_remembered() == 2  # E and F
    release.set()
    assert busy.wait(10)
