"""What machine a benchmark ran on, for its output (every benchmark prints the CPU model)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """float32 GEMM rate of torch's matmul on n² matrices (best of ``repeats``), GFLOP/s: what the machine gives
    the dense layers, printed beside every benchmark's numbers so that runs on different CPUs compare."""
    import time

    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up: thread pool, kernels
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def header() -> str:
    """One line for a benchmark's output: CPU model, torch threads and float32 GEMM rate."""
    import torch

    return (f"{cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"float32 GEMM 1024² {gemm_gflops():.0f} GFLOP/s")
