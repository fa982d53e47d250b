"""A process-wide cache of view computations (surfaces, boundaries, spectra), shared by every session of a server.

Each key is computed once for everyone, in flight included: a second session asking for a key that another is
computing waits for that result rather than computing it again. The cache is bounded in bytes (numpy arrays and
tensors by their buffers), evicts least recently used entries, and every access holds its lock.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

DEFAULT_MAX_BYTES = 512 * 2**20


def nbytes(value: Any, _depth: int = 0) -> int:
    """About how much memory ``value`` holds: array and tensor buffers, containers and dataclasses recursively."""
    if _depth > 6:
        return 0
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return int(value.element_size() * value.nelement())
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, dict):
        return sum(nbytes(k, _depth + 1) + nbytes(v, _depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return 64 + sum(nbytes(v, _depth + 1) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return 64 + sum(nbytes(getattr(value, f.name), _depth + 1) for f in dataclasses.fields(value))
    return 64


class ViewCache:
    """Single-flight, byte-bounded LRU.

    Args:
        max_bytes: the bound; an entry larger than it is returned but not kept.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._in_flight: dict[str, threading.Event] = {}
        self.computed = 0  # how many values were computed (a test counts them)

    @property
    def bytes(self) -> int:
        with self._lock:
            return self._bytes

    def get(self, key: str) -> Any:
        """The value held for ``key``, or None (nothing is computed)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> Any:
        """The value for ``key``: held, being computed by another thread (waited for), or computed now."""
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    return entry[0]
                event = self._in_flight.get(key)
                if event is None:  # this thread computes it
                    event = self._in_flight[key] = threading.Event()
                    break
            event.wait()  # another thread computes it; then look again (it failed if nothing is held: compute)
        try:
            value = compute()
            self.computed += 1
            self._put(key, value)
            return value
        finally:
            with self._lock:
                self._in_flight.pop(key, None)
            event.set()

    def _put(self, key: str, value: Any) -> None:
        size = nbytes(value)
        with self._lock:
            if key in self._entries:
                self._bytes -= self._entries.pop(key)[1]
            if size > self.max_bytes:
                return
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._entries:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
