"""The server's uploaded data sets, kept under their content hash so that a link with ``data=<hash>`` works for
everyone on that server.

Each entry is the parsed table (``csv_data.Table``) as one ``.npz`` file named by the first ``KEY_LENGTH`` hex digits
of the SHA-256 of the file's bytes and the label column, in a directory: ``$SAM_VIZ_DATA_DIR`` when set, else
``sam_viz_data`` in the system's temporary directory. Nothing leaves that directory. Storing is atomic (a write to a
temporary name, then a rename), and the directory is kept under ``MAX_STORE_BYTES`` by deleting the entries used
least recently.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from .csv_data import Table, parse_csv, read_bytes

DATA_DIR_ENV = "SAM_VIZ_DATA_DIR"
KEY_LENGTH = 16  # 64 bits of SHA-256: no collision among any server's uploads
KEY_PATTERN = re.compile(rf"[0-9a-f]{{{KEY_LENGTH}}}")
MAX_STORE_BYTES = 500_000_000


def data_dir() -> Path:
    """The store's directory (created on first use)."""
    root = os.environ.get(DATA_DIR_ENV) or os.path.join(tempfile.gettempdir(), "sam_viz_data")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_key(key: str) -> str:
    """Returns ``key`` if it has the form of a store key (``KEY_LENGTH`` lowercase hex digits).

    Raises:
        ValueError: it does not.
    """
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise ValueError(f"Invalid data: {key!r}; valid: the {KEY_LENGTH} hex digits of an uploaded data set's hash")
    return key


def content_key(content: bytes, label: str) -> str:
    """The key of a file's bytes read with ``label`` as the label column."""
    digest = hashlib.sha256(content)
    digest.update(b"\0label=" + label.encode("utf-8"))
    return digest.hexdigest()[:KEY_LENGTH]


def put(path_or_bytes: str | Path | bytes, label: str | None = None) -> str:
    """Parses a CSV file and keeps its table in the store.

    Args:
        path_or_bytes: A path, or the file's bytes.
        label: The label column; ``None`` takes the last one.

    Returns:
        The table's key, for ``Config(task="csv", data=key)``.

    Raises:
        ValueError: the file cannot be used (``csv_data.parse_csv`` says why); nothing is stored then.
    """
    content = read_bytes(path_or_bytes)
    table = parse_csv(content, label)
    key = content_key(content, table.label)
    path = data_dir() / f"{key}.npz"
    if not path.exists():
        tmp = path.with_name(f".{key}.{os.getpid()}.tmp.npz")
        np.savez(tmp, x=table.x, y=table.y, feature_names=np.array(table.feature_names, dtype=str),
                 class_names=np.array(table.class_names, dtype=str), label=np.array(table.label))
        os.replace(tmp, path)
    _evict(keep=path)
    return key


def has(key: str) -> bool:
    """Whether this server holds the data set ``key`` (False for a malformed key)."""
    return isinstance(key, str) and bool(KEY_PATTERN.fullmatch(key)) and (data_dir() / f"{key}.npz").exists()


def get(key: str) -> Table:
    """The stored table ``key``.

    Raises:
        ValueError: the key is malformed, or this server does not hold that data set.
    """
    path = data_dir() / f"{check_key(key)}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            table = Table(stored["x"], stored["y"], tuple(str(n) for n in stored["feature_names"]),
                          tuple(str(n) for n in stored["class_names"]), str(stored["label"]))
    except FileNotFoundError:
        raise ValueError(f"Invalid data: {key!r} is not on this server (uploaded data sets are kept only on the "
                         "server they were uploaded to); upload the CSV file again") from None
    os.utime(path)  # used now: the last to be evicted
    return table


def _evict(keep: Path) -> None:
    """Deletes the least recently used entries until the store fits ``MAX_STORE_BYTES`` (never ``keep``)."""
    entries = sorted(data_dir().glob("*.npz"), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in entries)
    for path in entries:
        if total <= MAX_STORE_BYTES:
            break
        if path != keep and not path.name.startswith("."):
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
