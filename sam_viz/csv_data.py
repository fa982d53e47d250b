"""Your own data: a CSV table of numeric features and a label column, checked and turned into a ``Dataset``.

``parse_csv`` reads the bytes into a ``Table`` (raw features, class indices, names) and rejects every file it cannot
use with a ``ValueError`` that says what was wrong and what is allowed; ``table_dataset`` splits a table into a
stratified train and held-out split and standardises both with the *training* split's mean and standard deviation;
``from_csv`` does both. Limits (bytes, rows, feature columns, classes) are the constants below, enforced here whatever
the caller. Classification only: a label column with more than ``MAX_CLASSES`` distinct values (a continuous target,
say) is refused with a note that regression is not supported.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_BYTES = 5_000_000  # 5 MB: a classroom's data sets fit, a server's memory does not notice
MAX_ROWS = 20_000  # the generated tasks' MAX_SAMPLES
MIN_ROWS = 8  # the generated tasks' MIN_SAMPLES: fewer leave nothing to split
MAX_FEATURES = 256
MIN_CLASSES = 2
MAX_CLASSES = 10  # the MLP's output layer and the class colours of the plots
MAX_HELDOUT = 0.9
DELIMITERS = (",", ";", "\t", "|")
CSV_TASK = "csv"

_ZIP_MAGIC = b"PK\x03\x04"  # .xlsx, .ods, .zip
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls
_BOM = "\ufeff"


@dataclass(frozen=True, eq=False)
class Table:
    """A parsed CSV table, before any split.

    Attributes:
        x: Raw features, float64 of shape (N, d), every value finite.
        y: Class indices into ``class_names``, int64 of shape (N,).
        feature_names: The d feature column names, in file order.
        class_names: The label values, sorted (numerically when every one is a number).
        label: The label column's name.
    """

    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    label: str


def read_bytes(path_or_bytes: str | Path | bytes) -> bytes:
    """The file's bytes (a path is read, bytes pass through), refusing more than ``MAX_BYTES`` before reading it all.

    Raises:
        ValueError: the file is over the limit.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        content = bytes(path_or_bytes)
    else:
        path = Path(path_or_bytes)
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ValueError(f"Invalid CSV: the file is {size:,} bytes; the limit is {MAX_BYTES:,} bytes")
        content = path.read_bytes()
    if len(content) > MAX_BYTES:
        raise ValueError(f"Invalid CSV: the file is {len(content):,} bytes; the limit is {MAX_BYTES:,} bytes")
    return content


def header_columns(path_or_bytes: str | Path | bytes) -> list[str]:
    """The column names of a CSV file's header (to choose the label column from before parsing it all).

    Raises:
        ValueError: the file is empty, over the limit or not text, or its header is unusable.
    """
    text = _decode(read_bytes(path_or_bytes))
    first = next((line for line in text.splitlines() if line.strip()), None)
    if first is None:
        raise ValueError("Invalid CSV: the file has no lines, only blank space; expected a header and data rows")
    header = [name.strip() for name in next(csv.reader([first], delimiter=max(DELIMITERS, key=first.count)))]
    _check_header(header)
    return header


def parse_csv(path_or_bytes: str | Path | bytes, label: str | None = None) -> Table:
    """Reads and checks a CSV table of numeric features and one label column.

    Args:
        path_or_bytes: A path, or the file's bytes. UTF-8 text, with or without a byte-order mark; the first line is
            the header; the delimiter is one of ``, ; tab |`` (the header's most frequent), the same on every line.
        label: The label column's name; ``None`` takes the last column. Its values may be numbers or words.

    Returns:
        The table.

    Raises:
        ValueError: the file is empty, over a limit, not text (binary, an Excel workbook), has no data rows or too
            few, mixes delimiters, repeats a column name, lacks the label column, has a missing, non-numeric or
            non-finite feature value, or its label has fewer than 2 or more than ``MAX_CLASSES`` classes.
    """
    text = _decode(read_bytes(path_or_bytes))
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("Invalid CSV: the file has no lines, only blank space; expected a header and data rows")
    delimiter = max(DELIMITERS, key=lines[0].count)
    rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))
    header = [name.strip() for name in rows[0]]
    _check_header(header)
    data = rows[1:]
    if not data:
        raise ValueError(f"Invalid CSV: only a header ({', '.join(header)}), no data rows")
    _check_shape(header, data, delimiter)
    label_name = header[-1] if label is None else label
    if label_name not in header:
        raise ValueError(f"Invalid label: {label_name!r} is not a column; columns: {', '.join(header)}")
    label_index = header.index(label_name)
    feature_index = [i for i in range(len(header)) if i != label_index]
    if not feature_index:
        raise ValueError(f"Invalid CSV: the only column is the label {label_name!r}; add numeric feature columns")
    if len(feature_index) > MAX_FEATURES:
        raise ValueError(f"Invalid CSV: {len(feature_index)} feature columns; the limit is {MAX_FEATURES}")
    x = _features(header, data, feature_index)
    y, class_names = _labels(label_name, [row[label_index].strip() for row in data])
    return Table(x, y, tuple(header[i] for i in feature_index), class_names, label_name)


def _decode(content: bytes) -> str:
    if not content.strip():
        raise ValueError("Invalid CSV: the file is empty; expected a header line and data rows")
    if content.startswith(_ZIP_MAGIC) or content.startswith(_OLE_MAGIC):
        raise ValueError("Invalid CSV: this is an Excel workbook (or another zip archive), not a CSV file; "
                         "in the spreadsheet, save it as 'CSV (comma-separated values)' and upload that")
    if b"\x00" in content:
        raise ValueError("Invalid CSV: the file is binary (it holds NUL bytes); expected UTF-8 text")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"Invalid CSV: the file is not UTF-8 text (byte {error.start} cannot be decoded); "
                         "save it as UTF-8 CSV") from None
    return text[1:] if text.startswith(_BOM) else text  # spreadsheets write a BOM; it is not part of the first name


def _check_header(header: list[str]) -> None:
    if any(not name for name in header):
        raise ValueError(f"Invalid CSV: column {header.index('') + 1} of the header has no name; every column needs one")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise ValueError(f"Invalid CSV: the column name {name!r} appears more than once; column names must differ")
        seen.add(name)
    if len(header) == 1:
        raise ValueError(f"Invalid CSV: the header has a single column ({header[0]!r}); expected feature columns "
                         f"and a label column separated by one of {' '.join(map(repr, DELIMITERS))}")


def _check_shape(header: list[str], data: list[list[str]], delimiter: str) -> None:
    if len(data) > MAX_ROWS:
        raise ValueError(f"Invalid CSV: {len(data):,} data rows; the limit is {MAX_ROWS:,}")
    for number, row in enumerate(data, start=2):
        if len(row) != len(header):
            others = [d for d in DELIMITERS if d != delimiter and d in "".join(row)]
            if others:
                raise ValueError(f"Invalid CSV: mixed delimiters: the header is split by {delimiter!r} but line "
                                 f"{number} uses {others[0]!r}; use one delimiter throughout")
            raise ValueError(f"Invalid CSV: line {number} has {len(row)} fields, the header {len(header)}; "
                             "every row needs one value per column")
    if len(data) < MIN_ROWS:
        raise ValueError(f"Invalid CSV: {len(data)} data row{'s' if len(data) > 1 else ''}; at least {MIN_ROWS} are "
                         "needed to train and hold some out")


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _features(header: list[str], data: list[list[str]], feature_index: list[int]) -> np.ndarray:
    x = np.empty((len(data), len(feature_index)))
    numeric_columns = 0
    cells_by_column = [[row[i].strip() for row in data] for i in feature_index]
    text_column = None
    for j, (i, cells) in enumerate(zip(feature_index, cells_by_column)):
        values = [_number(cell) for cell in cells]
        if all(value is None for value in values):
            text_column = text_column or header[i]
            continue
        numeric_columns += 1
        for row, (cell, value) in enumerate(zip(cells, values), start=2):
            if value is None:
                what = "an empty cell" if not cell else f"the text {cell[:40]!r}"
                raise ValueError(f"Invalid CSV: {what} in the numeric column {header[i]!r} at line {row}; every "
                                 "feature value must be a number")
            if not math.isfinite(value):
                raise ValueError(f"Invalid CSV: {cell!r} (not a finite number) in column {header[i]!r} at line {row}; "
                                 "NaN and infinity are not allowed: fill or drop that row")
        x[:, j] = values
    if numeric_columns == 0:
        raise ValueError("Invalid CSV: no numeric columns besides the label; the features must be numbers")
    if text_column is not None:
        raise ValueError(f"Invalid CSV: the column {text_column!r} holds text, not numbers; only numeric features "
                         "are supported (remove it, or choose it as the label)")
    return x


def _labels(label: str, cells: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    for row, cell in enumerate(cells, start=2):
        if not cell:
            raise ValueError(f"Invalid CSV: the label {label!r} is empty at line {row}; every row needs a label")
    names = sorted(set(cells))
    numbers = [_number(name) for name in names]
    if all(value is not None for value in numbers):  # "2" before "10"
        names = [name for _, name in sorted(zip(numbers, names))]
    if len(names) < MIN_CLASSES:
        raise ValueError(f"Invalid label: {label!r} has a single class ({names[0]!r}); classification needs at "
                         f"least {MIN_CLASSES}")
    if len(names) > MAX_CLASSES:
        raise ValueError(f"Invalid label: {label!r} has {len(names):,} distinct values; at most {MAX_CLASSES} classes "
                         "are supported (a continuous target would need regression, which is not supported)")
    index = {name: k for k, name in enumerate(names)}
    return np.array([index[cell] for cell in cells], dtype=np.int64), tuple(names)


def table_dataset(table: Table, *, heldout: float = 0.25, seed: int = 0):
    """Splits a table (stratified where possible) and standardises it with the training split's statistics.

    Args:
        table: A parsed table.
        heldout: Share of the rows held out for test metrics, in [0, 0.9].
        seed: Seed of the split, in [0, 2**32 - 1].

    Returns:
        A classification ``Dataset`` named ``"csv"``: the training features have mean 0 and standard deviation 1
        per column (a constant column is only centred); the held-out features are shifted and scaled alike.

    Raises:
        ValueError: ``heldout`` or ``seed`` is out of range, or the split would leave no training row.
    """
    from .data import CLASSIFICATION, Dataset, _check_real, _n_test, _split, check_int

    _check_real("heldout", heldout, 0.0, MAX_HELDOUT)
    check_int("seed", seed, 0, 2**32 - 1)
    x_train, y_train, x_test, y_test = _split(table.x, table.y, _n_test(len(table.y), heldout), seed)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant column: centred, not divided by zero
    return Dataset(CSV_TASK, CLASSIFICATION, (x_train - mean) / std, y_train, (x_test - mean) / std, y_test,
                   len(table.class_names), table.x.shape[1], class_names=table.class_names,
                   feature_names=table.feature_names)


def from_csv(path_or_bytes: str | Path | bytes, label: str | None = None, *, heldout: float = 0.25, seed: int = 0):
    """A classification ``Dataset`` from a CSV table: ``parse_csv`` then ``table_dataset``.

    Args:
        path_or_bytes: A path, or the file's bytes (see ``parse_csv``).
        label: The label column's name; ``None`` takes the last column.
        heldout: Share of the rows held out for test metrics, in [0, 0.9].
        seed: Seed of the split.

    Returns:
        The data set, standardised with the training split's statistics; the same bytes and arguments always give
        identical arrays.

    Raises:
        ValueError: the file cannot be used (the message says why) or an argument is out of range.

    >>> ds = from_csv(b"a,b,y\\n" + b"".join(b"%d,%d,%d\\n" % (i, i * i, i % 2) for i in range(10)), label="y")
    >>> ds.input_dim, ds.n_classes, len(ds.y_train) + len(ds.y_test)
    (2, 2, 10)
    """
    return table_dataset(parse_csv(path_or_bytes, label), heldout=heldout, seed=seed)
