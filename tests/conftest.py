"""Shared test set-up: the tests folder on sys.path for the browser helpers, and shared fixtures."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of ~100-parameter models: a second thread only adds synchronisation, which
    stalls (20× slower measured) when other processes share the two cores. Module scope, so it also covers the
    module's own fixtures; restored after the module. Use with ``pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
