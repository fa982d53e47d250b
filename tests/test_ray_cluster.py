"""A real two-node Ray cluster on loopback, started and stopped here: a grid across it equals the local grid, also
when a worker process is killed in the middle, and the command line reaches it with ``--address``.

Each node is ``ray start --block`` in a session of its own, so that stopping it ends exactly the processes it
started (``ray stop`` would end every Ray on the machine). Ray turns 127.0.0.1 into the machine's outward address
(so that a one-address cluster spans machines); ``KEEP_LOOPBACK`` undoes that in every process here, so all
traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray
import ray._private.services as ray_services

from sam_viz.config import Config
from sam_viz.sweep import CELL_FIELDS, STEP_FIELDS, Grid, run_grid

ROOT = Path(__file__).resolve().parents[1]
BASE = Config(n_samples=96, width=8, steps=12, device="cpu", dtype="float64")
X, Y = ("rho", [0.0, 0.1]), ("lr", [0.05, 0.5])
START_TIMEOUT_S = 120.0
KEEP_LOOPBACK = "import ray._private.services as s; s.resolve_ip_for_localhost = lambda host: host"
RAY_CLI = f"{KEEP_LOOPBACK}; import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; sys.exit(main())"
SAM_VIZ_CLI = f"{KEEP_LOOPBACK}; import sys; from sam_viz.cli import main; sys.exit(main())"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(leaders: list[int]) -> list[int]:
    """Every live process in the sessions led by ``leaders`` (the nodes' processes and their workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry)) in leaders:
                    pids.append(int(entry))
    return pids


def _title(pid: int) -> str:
    """The process title: a Ray worker shows the task it runs (``ray::train_chunk``)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@contextlib.contextmanager
def loopback_cluster(cpus_per_node: int = 1) -> Iterator[tuple[str, list[int]]]:
    """A head and one more node on 127.0.0.1; yields (address, the nodes' session leaders)."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths live under it
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}
    common = ["--num-cpus", str(cpus_per_node), "--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--block"]
    commands = [["start", "--head", "--port", str(port), "--temp-dir", temp, "--include-dashboard", "false", *common],
                ["start", "--address", address, *common]]
    nodes: list[subprocess.Popen] = []
    logs = []
    try:
        for n, command in enumerate(commands):
            logs.append(log := open(Path(temp) / f"node{n}.log", "w"))  # noqa: SIM115 - closed with the nodes
            nodes.append(subprocess.Popen([sys.executable, "-c", RAY_CLI, *command], env=env, cwd=ROOT, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
            _wait_for_start(nodes[-1], Path(temp) / f"node{n}.log")
        yield address, [p.pid for p in nodes]
    finally:
        leaders = [p.pid for p in nodes]
        for pid in _session_pids(leaders):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _session_pids(leaders) and time.monotonic() < deadline:
            for p in nodes:
                p.poll()
            time.sleep(0.2)
        for pid in _session_pids(leaders):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for p in nodes:
            p.wait(timeout=10)
        for log in logs:
            log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_start(node: subprocess.Popen, log: Path) -> None:
    """Until ``ray start`` says its node runs (it then blocks, watching the node's processes)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if node.poll() is not None:
            raise RuntimeError(f"ray start exited with {node.returncode}:\n{log.read_text()[-3000:]}")
        if "Ray runtime started" in log.read_text():
            return
        time.sleep(0.5)
    raise RuntimeError(f"ray start did not start in {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


def _wait_for_nodes(n: int) -> None:
    """Until the cluster this process joined has ``n`` live nodes."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while sum(node["Alive"] for node in ray.nodes()) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Ray cluster did not reach {n} nodes in {START_TIMEOUT_S:.0f} s: {ray.nodes()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster():
    with pytest.MonkeyPatch.context() as mp, loopback_cluster() as (address, leaders):
        mp.setattr(ray_services, "resolve_ip_for_localhost", lambda host: host)
        mp.delenv("RAY_ADDRESS", raising=False)
        ray.init(address=address, log_to_driver=False)
        try:
            _wait_for_nodes(2)
            yield address, leaders
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def local_grid():
    return run_grid(BASE, X, Y, seeds=2, strategy="batched")


def assert_cells_equal(grid: Grid, reference: Grid) -> None:
    for name in (*STEP_FIELDS, *CELL_FIELDS):
        np.testing.assert_allclose(getattr(grid, name), getattr(reference, name), rtol=1e-10, atol=1e-12,
                                   equal_nan=True, err_msg=name)


def test_a_grid_across_two_nodes_equals_local(cluster, local_grid):
    assert sum(node["Alive"] for node in ray.nodes()) == 2 and ray.cluster_resources()["CPU"] == 2
    grid = run_grid(BASE, X, Y, seeds=2, backend="ray")
    assert grid.strategy == "ray" and not grid.failed.any() and not grid.stopped
    assert_cells_equal(grid, local_grid)


def test_a_worker_killed_mid_grid_costs_only_its_chunk(cluster):
    _address, leaders = cluster
    # chunks long enough to be caught running, at rates mild enough that 150 steps do not amplify round-off
    base, x, y = BASE.replace(steps=150), ("rho", [0.0, 0.05]), ("lr", [0.02, 0.05])
    result: dict[str, Grid] = {}
    driver = threading.Thread(target=lambda: result.setdefault("grid", run_grid(base, x, y, seeds=2, backend="ray")))
    driver.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and driver.is_alive() and time.monotonic() < deadline:
        busy = [pid for pid in _session_pids(leaders) if _title(pid).startswith("ray::train_chunk")]
        if busy:  # a worker process of one of the nodes, in the middle of a chunk
            os.kill(busy[0], signal.SIGKILL)
            killed = busy[0]
        time.sleep(0.02)
    driver.join(timeout=300)
    assert killed is not None, "no worker was seen training a chunk"
    assert not driver.is_alive() and "grid" in result
    grid = result["grid"]
    assert not grid.failed.any() and grid.failure == "" and not grid.stopped
    assert_cells_equal(grid, run_grid(base, x, y, seeds=2, strategy="batched"))


def test_command_line_reaches_the_cluster(cluster, local_grid, tmp_path):
    address, _leaders = cluster
    out = tmp_path / "sw"
    command = ["sweep", "--x", "rho", "--x-values", "0,0.1", "--y", "lr", "--y-values", "0.05,0.5", "--seeds", "2",
               "--set", "n_samples=96", "--set", "width=8", "--set", "steps=12", "--set", "device=cpu",
               "--set", "dtype=float64", "--backend", "ray", "--address", address, "--quiet", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SAM_VIZ_CLI, *command], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["strategy"] == "ray" and summary["failed"] == 0
    assert_cells_equal(Grid.load(out.with_suffix(".npz")), local_grid)
