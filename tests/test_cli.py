"""Command line: the progress bar (sam_viz.progress), --quiet on every long command, and Ctrl-C keeping results."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sam_viz import curvature
from sam_viz import landscape as L
from sam_viz.cli import main
from sam_viz.progress import STOPPED_EXIT_CODE, ProgressBar, StopOnInterrupt, eta_seconds, format_duration
from sam_viz.records import Run
from sam_viz.sweep import Grid

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--steps", "20", "--n-samples", "64", "--snapshot-every", "5"]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# ------------------------------------------------------------------------------------------------ the bar itself


def test_format_duration():
    assert format_duration(0) == "0:00"
    assert format_duration(59.6) == "1:00"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(math.nan) == "?" and format_duration(-1) == "?" and format_duration(math.inf) == "?"


def test_eta_arithmetic():
    assert eta_seconds(25, 100, 10.0) == pytest.approx(30.0)  # 2.5 units/s, 75 left
    assert eta_seconds(50, 100, 10.0, done_at_start=25) == pytest.approx(20.0)  # 25 units in 10 s, 50 left
    assert eta_seconds(100, 100, 10.0) == 0.0
    assert math.isnan(eta_seconds(0, 100, 10.0)) and math.isnan(eta_seconds(5, 100, 0.0))


def test_eta_counts_from_the_first_update():
    clock, stream = Clock(), io.StringIO()
    bar = ProgressBar(100, "steps", "train", stream, clock=clock, tty=False)
    clock.t = 5.0  # set-up before the first step: not part of the rate
    bar.update(1)
    assert math.isnan(bar.eta()) and "ETA ?" in bar.line()  # no rate yet
    clock.t = 54.0  # 49 more steps in 49 s: 1 step/s, 50 left
    bar.update(50)
    assert bar.eta() == pytest.approx(50.0)
    assert "elapsed 0:54" in bar.line() and "ETA 0:50" in bar.line() and " 50%" in bar.line()
    assert bar.line().split()[:3] == ["train", "50/100", "steps"]


def test_non_tty_prints_a_bounded_number_of_lines_with_an_eta():
    clock, stream = Clock(), io.StringIO()
    bar = ProgressBar(10_000, "steps", "train", stream, clock=clock, tty=False)
    for step in range(1, 10_001):
        clock.t += 0.001
        bar.update(step, loss=1.0 / step)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert 10 <= len(lines) <= 12  # the first update, then one per 10 %
    assert all("ETA" in line and "elapsed" in line and "loss" in line for line in lines)
    assert "\r" not in stream.getvalue()
    assert lines[0].split()[:3] == ["train", "1/10,000", "steps"] and "10,000/10,000 steps  100%" in lines[-1]


def test_non_tty_heartbeat_between_tenths_is_rate_limited():
    clock, stream = Clock(), io.StringIO()
    bar = ProgressBar(1_000_000, "steps", stream=stream, clock=clock, tty=False)
    for step in range(1, 20_001):  # 2 % of the total over 20,000 s: no tenth crossed
        clock.t += 1.0
        bar.update(step)
    lines = stream.getvalue().splitlines()
    # a line at most every max(10 s, elapsed / 10): about 10 × ln(20000 / 100) + 10 ≈ 63, not 2,000
    assert 20 < len(lines) < 80


def test_tty_redraws_one_line_in_place():
    clock, stream = Clock(), io.StringIO()
    bar = ProgressBar(1000, "points", "surface", stream, clock=clock, tty=True)
    for done in range(1, 1001):
        clock.t += 0.001  # 1 s in all: a redraw every 0.1 s
        bar.update(done)
    text = stream.getvalue()
    assert "\n" not in text and 9 <= text.count("\r") <= 13
    bar.close()
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    assert "1,000/1,000 points  100%" in text.rsplit("\r", 1)[-1]


def test_fields_keep_the_last_finite_value_and_quiet_writes_nothing():
    stream = io.StringIO()
    bar = ProgressBar(10, stream=stream, clock=Clock(), tty=False)
    bar.update(1, loss=0.5, test_acc=math.nan)
    assert "loss 0.5" in bar.line() and "test acc" not in bar.line()
    bar.update(2, loss=math.nan, test_acc=0.9, diverged=None)
    assert "loss 0.5" in bar.line() and "test acc 0.9" in bar.line() and "diverged" not in bar.line()
    quiet = io.StringIO()
    with ProgressBar(10, stream=quiet, quiet=True, tty=True) as q:
        q.update(5, loss=1.0)
    assert quiet.getvalue() == ""
    untouched = io.StringIO()
    ProgressBar(10, stream=untouched, tty=False).close()  # never updated: nothing to show
    assert untouched.getvalue() == ""


def test_stop_on_interrupt_sets_a_flag_then_aborts_and_restores_the_handler():
    before = signal.getsignal(signal.SIGINT)
    with StopOnInterrupt() as stop:
        assert not stop()
        signal.raise_signal(signal.SIGINT)
        assert stop()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


# ------------------------------------------------------------------------------------------------ the commands


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    assert main(["train", *SMALL, "--quiet", "--out", str(out)]) == 0
    return Path(f"{out}.npz")


def _commands(run: Path, tmp: Path) -> dict[str, list[str]]:
    return {
        "train": ["train", *SMALL, "--out", str(tmp / "t")],
        "surface": ["surface", "--run", str(run), "--resolution", "9", "--out", str(tmp / "s")],
        "hessian": ["hessian", "--run", str(run), "--k", "1", "--out", str(tmp / "h")],
        "sweep": ["sweep", "--x-values", "0.05,0.1", "--y-values", "0.1", "--set", "steps=5", "--set", "n_samples=64",
                  "--strategy", "batched", "--out", str(tmp / "w")],
    }


@pytest.mark.parametrize("command", ["train", "surface", "hessian", "sweep"])
def test_progress_on_stderr_and_quiet_silences_it(command, small_run, tmp_path, capsys):
    argv = _commands(small_run, tmp_path)[command]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    json.loads(out)  # stdout: only the JSON summary
    lines = err.splitlines()
    assert lines and all("ETA" in line and "%" in line for line in lines)
    assert len(lines) <= 30  # a plain line per tenth (sweep: also its λ_max bar), not one per step
    assert main([*argv, "--quiet"]) == 0
    out, err = capsys.readouterr()
    json.loads(out)
    assert err == ""


def test_over_training_reports_progress_and_stops_on_request(small_run):
    run = Run.load(small_run)
    calls = []
    full = curvature.over_training(run, progress=lambda done, total: calls.append((done, total)))
    n = len(run.snapshot_step)
    assert calls == [(k, n) for k in range(1, n + 1)]
    part = curvature.over_training(run, should_stop=lambda: len(calls) >= n + 2,
                                   progress=lambda done, total: calls.append((done, total)))
    assert len(part.step) == 2
    assert list(part.step) == list(full.step[:2]) and list(part.lambda_max) == list(full.lambda_max[:2])


def test_ctrl_c_during_hessian_over_training_keeps_the_snapshots_done(small_run, tmp_path, capsys, monkeypatch):
    real, calls = curvature.top_eigenvalues, []

    def interrupted_after_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)  # a real Ctrl-C, through the command's handler
        return real(*args, **kwargs)

    monkeypatch.setattr(curvature, "top_eigenvalues", interrupted_after_two)
    before = signal.getsignal(signal.SIGINT)
    code = main(["hessian", "--run", str(small_run), "--k", "1", "--quiet", "--out", str(tmp_path / "h")])
    assert code == STOPPED_EXIT_CODE and signal.getsignal(signal.SIGINT) is before
    summary = json.loads((tmp_path / "h.json").read_text())
    assert summary["lambda_max_over_training"]["stopped"] is True
    assert len(summary["lambda_max_over_training"]["step"]) == 2
    n = len(Run.load(small_run).snapshot_step)
    assert f"stopped after 2 of {n} snapshots" in capsys.readouterr().err
    assert (tmp_path / "h.npz").exists()


def test_ctrl_c_during_surface_keeps_the_coarse_level(small_run, tmp_path, capsys, monkeypatch):
    real = L.surfaces_progressive

    def interrupted_after_the_first_level(*args, **kwargs):
        for k, surf in enumerate(real(*args, **kwargs)):
            if k == 0:
                signal.raise_signal(signal.SIGINT)
            yield surf

    monkeypatch.setattr(L, "surfaces_progressive", interrupted_after_the_first_level)
    L.clear_caches()
    code = main(["surface", "--run", str(small_run), "--resolution", "9", "--quiet", "--out", str(tmp_path / "s")])
    assert code == STOPPED_EXIT_CODE
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["stopped"] is True and summary["resolution"] == 3
    assert "stopped after 9 of 81 points" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ Ctrl-C, for real


def _interrupt(argv: list[str], *, group: bool = False, timeout: float = 240.0) -> tuple[int, str, str]:
    """Start ``python -m sam_viz argv``, wait for its first progress line, send SIGINT; (code, stdout, stderr).

    ``group``: signal the whole process group, as a terminal's Ctrl-C does (worker processes included).
    """
    proc = subprocess.Popen([sys.executable, "-m", "sam_viz", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    err_lines: list[str] = []
    progress_seen = threading.Event()

    def read_stderr():
        for line in proc.stderr:
            err_lines.append(line)
            if "ETA" in line:
                progress_seen.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        while not progress_seen.wait(0.2):
            assert proc.poll() is None, f"ended before any progress: {''.join(err_lines)}"
            assert time.monotonic() < deadline, "no progress line in time"
        if group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        out = proc.stdout.read()
        proc.wait(timeout=timeout)
        reader.join(timeout=10)
        return proc.returncode, out, "".join(err_lines)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_ctrl_c_stops_train_and_writes_the_partial_run(tmp_path):
    out = tmp_path / "r"
    code, stdout, stderr = _interrupt(["train", "--steps", "20000", "--snapshot-every", "100", "--n-samples", "64",
                                       "--out", str(out)])
    assert code == STOPPED_EXIT_CODE, stderr
    assert Path(f"{out}.npz").exists() and Path(f"{out}.json").exists()
    run = Run.load(f"{out}.npz")
    assert run.stopped and 0 < run.n_steps < 20000
    assert json.loads(stdout)["stopped"] is True and json.loads(Path(f"{out}.json").read_text())["stopped"] is True
    assert f"stopped after {run.n_steps:,} of 20,000 steps; wrote {out}.npz and {out}.json" in stderr


@pytest.mark.parametrize("strategy, group", [("batched", False), ("process", True)])
def test_ctrl_c_stops_sweep_and_writes_the_partial_grid(tmp_path, strategy, group):
    out = tmp_path / "g"
    # process: many short cells, so a first cell (and its progress line) ends before the signal
    steps, x_values = ("20000", "0.01,0.1") if strategy == "batched" else ("1500", "0.01,0.02,0.05,0.1,0.2")
    code, stdout, stderr = _interrupt(["sweep", "--x-values", x_values, "--y-values", "0.1,0.5", "--set", f"steps={steps}",
                                       "--set", "snapshot_every=100", "--set", "n_samples=64", "--strategy", strategy,
                                       "--out", str(out)], group=group)
    assert code == STOPPED_EXIT_CODE, stderr
    assert Path(f"{out}.npz").exists() and Path(f"{out}.csv").exists()
    grid = Grid.load(f"{out}.npz")
    total = grid.n_steps.size * int(steps)
    assert grid.stopped and 0 < grid.n_steps.sum() < total
    assert json.loads(stdout)["stopped"] is True
    assert f"stopped after {int(grid.n_steps.sum()):,} of {total:,} cell-steps; wrote {out}.npz and {out}.csv" in stderr


# ------------------------------------------------------------------------------------------------ listings

THE_NINETEEN = ("sgd", "adam", "sam", "asam", "fsam", "lightsam1", "lightsam2", "lightsam3", "adasam", "msam",
                "ssam", "esam", "mbsam", "sampa", "lets", "mup2", "gsam", "looksam", "wsam")


def test_optimizers_lists_all_nineteen_with_their_papers(capsys):
    assert main(["optimizers"]) in (0, None)
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line and not line[0].isspace()]
    assert tuple(listed) == THE_NINETEEN
    blocks: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line and not line[0].isspace():
            blocks[line.split()[0]] = []
        elif line:
            blocks[list(blocks)[-1]].append(line)
    for name in ("ssam", "esam", "mbsam", "sampa", "lets", "mup2", "gsam", "looksam", "wsam"):
        text = "\n".join(blocks[name])
        assert "arxiv.org" in text and "lr" in text, name  # its paper's link and its hyperparameters
