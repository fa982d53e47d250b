"""Shared test set-up: the tests folder on sys.path for the browser helpers, and shared fixtures."""

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
# AppTest pages train in threads of the test process; a real server (tests/browser.py) uses worker processes, the
# app's default, and tests/test_process_pool.py holds the two to the same numbers
os.environ.setdefault("SAM_VIZ_PROCESSES", "0")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of ~100-parameter models: a second thread only adds synchronisation, which
    stalls (20× slower measured) when other processes share the two cores. Module scope, so it also covers the
    module's own fixtures; restored after the module. Use with ``pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
