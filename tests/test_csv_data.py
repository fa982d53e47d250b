"""Tests for sam_viz.csv_data: every bad file gets a clear ValueError; a good one a standardised, deterministic split."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from sam_viz import csv_data
from sam_viz.data import _split, from_csv


def _table(rows: int = 40, delimiter: str = ",", label_values=("a", "b")) -> bytes:
    """A good file: two numeric features and a word label, ``rows`` data rows."""
    rng = np.random.default_rng(0)
    lines = [delimiter.join(("x1", "x2", "kind"))]
    for i in range(rows):
        x1, x2 = rng.normal(size=2) * (3.0, 0.5) + (10.0, -2.0)
        lines.append(delimiter.join((f"{x1:.6f}", f"{x2:.6f}", label_values[i % len(label_values)])))
    return ("\n".join(lines) + "\n").encode()


def _xlsx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


GOOD = _table()
BAD_FILES = {
    "empty": (b"", "empty"),
    "blank lines only": (b"\n \n\n", "empty"),
    "a BOM and nothing else": (b"\xef\xbb\xbf\n", "no lines"),
    "header only": (b"x1,x2,kind\n", "only a header"),
    "no numeric columns": (b"name,colour,kind\n" + b"ann,red,a\nbob,blue,b\n" * 10, "no numeric columns"),
    "text in a numeric column": (GOOD.replace(b"\n", b"\nhello,1.0,a\n", 1), "the text 'hello' in the numeric column 'x1' at line 2"),
    "a text column beside numbers": (b"x1,name,kind\n" + b"1.5,ann,a\n2.5,bob,b\n" * 10, "'name' holds text"),
    "empty cell": (GOOD.replace(b"\n", b"\n,1.0,a\n", 1), "an empty cell in the numeric column 'x1'"),
    "NaN": (GOOD.replace(b"\n", b"\nnan,1.0,a\n", 1), "NaN and infinity are not allowed"),
    "inf": (GOOD.replace(b"\n", b"\n1.0,-inf,a\n", 1), "'-inf' (not a finite number) in column 'x2'"),
    "one class": (_table(label_values=("a",)), "single class ('a')"),
    "10,000 classes": (b"x1,id\n" + b"".join(b"%d.5,%d\n" % (i, i) for i in range(10_000)),
                       "10,000 distinct values; at most 10 classes"),
    "mixed delimiters": (GOOD.replace(b"\n", b"\n1.0;2.0;a\n", 1), "mixed delimiters: the header is split by ','"),
    "ragged row": (GOOD.replace(b"\n", b"\n1.0,2.0\n", 1), "line 2 has 2 fields, the header 3"),
    "excel renamed .csv": (_xlsx(), "Excel workbook"),
    "legacy .xls": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), "Excel workbook"),
    "binary garbage": (bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)), "binary"),
    "not utf-8": (GOOD.replace(b"a\n", b"\xe9t\xe9\n"), "not UTF-8"),
    "over the byte limit": (b"x1,kind\n" + b"1.0,a\n" * (csv_data.MAX_BYTES // 6 + 1), "the limit is 5,000,000 bytes"),
    "over the row limit": (b"x1,kind\n" + b"1,a\n2,b\n" * (csv_data.MAX_ROWS // 2 + 1), "the limit is 20,000"),
    "one row": (b"x1,x2,kind\n1.0,2.0,a\n", "1 data row; at least 8"),
    "duplicated column names": (b"x1,x1,kind\n" + b"1,2,a\n3,4,b\n" * 10, "'x1' appears more than once"),
    "unnamed column": (b"x1,,kind\n" + b"1,2,a\n3,4,b\n" * 10, "column 2 of the header has no name"),
    "single column": (b"kind\n" + b"a\nb\n" * 10, "single column"),
    "empty label": (GOOD.replace(b"a\n", b"\n", 1), "label 'kind' is empty at line 2"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_gets_a_clear_message(case: str) -> None:
    content, message = BAD_FILES[case]
    with pytest.raises(ValueError, match="^Invalid ") as error:
        from_csv(content, label=None if case in ("10,000 classes", "single column") else "kind")
    assert message in str(error.value)


def test_a_bad_file_on_disk_over_the_limit_is_refused_before_reading(tmp_path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"x1,kind\n" + b"1.0,a\n" * (csv_data.MAX_BYTES // 6 + 1))
    with pytest.raises(ValueError, match="the limit is 5,000,000 bytes"):
        from_csv(path, label="kind")


def test_an_unknown_label_column_names_the_columns() -> None:
    with pytest.raises(ValueError, match="'y' is not a column; columns: x1, x2, kind"):
        from_csv(GOOD, label="y")


def test_a_bom_is_accepted_and_stripped() -> None:
    with_bom = from_csv(b"\xef\xbb\xbf" + GOOD, label="kind")
    table = csv_data.parse_csv(b"\xef\xbb\xbf" + GOOD, label="kind")
    assert table.feature_names == ("x1", "x2")  # not "\ufeffx1"
    np.testing.assert_array_equal(with_bom.x_train, from_csv(GOOD, label="kind").x_train)


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_every_delimiter_reads_the_same_table(delimiter: str) -> None:
    ds = from_csv(_table(delimiter=delimiter), label="kind")
    np.testing.assert_array_equal(ds.x_train, from_csv(GOOD, label="kind").x_train)


def test_the_split_is_standardised_with_the_training_statistics() -> None:
    table = csv_data.parse_csv(GOOD, label="kind")
    ds = from_csv(GOOD, label="kind", heldout=0.25, seed=3)
    assert ds.name == "csv" and ds.kind == "classification" and ds.input_dim == 2 and ds.n_classes == 2
    assert len(ds.y_train) == 30 and len(ds.y_test) == 10
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1.0, atol=1e-12)
    # the same stratified split of the raw rows: the held-out rows are scaled with the training rows' statistics
    raw_train, y_train, raw_test, y_test = _split(table.x, table.y, 10, 3)
    np.testing.assert_array_equal(ds.y_train, y_train)
    np.testing.assert_array_equal(ds.y_test, y_test)
    mean, std = raw_train.mean(axis=0), raw_train.std(axis=0)
    np.testing.assert_allclose(ds.x_test, (raw_test - mean) / std, atol=1e-12)
    assert np.abs(ds.x_test.mean(axis=0)).max() > 1e-3  # not with their own statistics (they are not centred)


def test_a_constant_column_is_centred_not_divided_by_zero() -> None:
    content = b"x1,c,kind\n" + b"".join(b"%d,7,%s\n" % (i, b"ab"[i % 2:i % 2 + 1]) for i in range(20))
    ds = from_csv(content, label="kind")
    assert np.all(np.isfinite(ds.x_train)) and np.all(ds.x_train[:, 1] == 0.0)


def test_the_split_is_deterministic_and_follows_the_seed() -> None:
    a, b = from_csv(GOOD, label="kind", seed=1), from_csv(GOOD, label="kind", seed=1)
    other = from_csv(GOOD, label="kind", seed=2)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.x_test, other.x_test)


def test_labels_keep_both_classes_on_each_side_and_sort_numbers_numerically() -> None:
    ds = from_csv(GOOD, label="kind")
    assert set(ds.y_train) == set(ds.y_test) == {0, 1}  # stratified
    table = csv_data.parse_csv(_table(label_values=("10", "2", "3")), label="kind")
    assert table.class_names == ("2", "3", "10")


def test_no_heldout_and_a_bad_share() -> None:
    assert len(from_csv(GOOD, label="kind", heldout=0.0).y_test) == 0
    with pytest.raises(ValueError, match="Invalid heldout"):
        from_csv(GOOD, label="kind", heldout=0.95)


def test_a_tables_dataset_keeps_its_column_and_class_names() -> None:
    content = b"height,weight,side\n" + b"".join(f"{i},{i % 7},{'top' if i % 2 else 'bottom'}\n".encode()
                                                for i in range(30))
    ds = from_csv(content, label="side")
    assert ds.class_names == ("bottom", "top") and ds.feature_names == ("height", "weight")
    assert ds.n_classes == 2 and set(ds.y_train.tolist()) == {0, 1}
