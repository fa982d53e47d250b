"""Background jobs: progress, stop keeping partial results, one job per key, errors as messages."""

from __future__ import annotations

import time

from sam_viz import scene
from sam_viz.config import Config
from sam_viz.jobs import Registry


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
