"""Tests for sam_viz.dataset_store and the csv task: a CSV kept under its hash trains through Config and the CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from sam_viz import dataset_store
from sam_viz.cli import main
from sam_viz.config import Config
from sam_viz.data import class_count, from_csv, make_dataset, train_size
from sam_viz.train import run


def _csv(rows: int = 120, features: int = 3, classes: int = 3) -> bytes:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features))
    y = np.argmax(x[:, :classes] if features >= classes else np.c_[x, -x][:, :classes], axis=1)
    header = ",".join([f"f{j}" for j in range(features)] + ["label"])
    body = "".join(",".join(f"{v:.5f}" for v in row) + f",c{k}\n" for row, k in zip(x, y))
    return f"{header}\n{body}".encode()


@pytest.fixture(autouse=True)
def store(tmp_path, monkeypatch):
    monkeypatch.setenv(dataset_store.DATA_DIR_ENV, str(tmp_path / "store"))
    return tmp_path / "store"


def test_put_keeps_the_table_under_its_content_hash(store) -> None:
    key = dataset_store.put(_csv(), "label")
    assert dataset_store.KEY_PATTERN.fullmatch(key) and (store / f"{key}.npz").exists()
    assert dataset_store.put(_csv(), "label") == key  # same bytes, same key, one entry
    assert dataset_store.put(_csv(), None) == key  # the last column is the label: the same table
    assert dataset_store.content_key(_csv(), "f0") != key  # another label column is another table
    assert dataset_store.put(_csv(rows=121), "label") != key
    table = dataset_store.get(key)
    assert table.feature_names == ("f0", "f1", "f2") and table.class_names == ("c0", "c1", "c2")
    assert table.label == "label" and table.x.shape == (120, 3) and dataset_store.has(key)


def test_a_bad_file_stores_nothing(store) -> None:
    with pytest.raises(ValueError, match="appears more than once"):
        dataset_store.put(b"a,a,y\n" + b"1,2,p\n3,4,q\n" * 5)
    assert list(store.glob("*")) == []


def test_an_unknown_or_malformed_key_is_a_clear_error() -> None:
    assert not dataset_store.has("0123456789abcdef") and not dataset_store.has("../../etc/passwd")
    with pytest.raises(ValueError, match="is not on this server"):
        dataset_store.get("0123456789abcdef")
    with pytest.raises(ValueError, match="Invalid data: '../x'; valid: the 16 hex digits"):
        dataset_store.get("../x")


def test_the_store_is_bounded_least_recently_used_first(store, monkeypatch) -> None:
    first = dataset_store.put(_csv(rows=100), "label")
    size = (store / f"{first}.npz").stat().st_size
    monkeypatch.setattr(dataset_store, "MAX_STORE_BYTES", int(2.5 * size))
    second = dataset_store.put(_csv(rows=101), "label")
    os.utime(store / f"{second}.npz", (1, 1))  # the oldest now
    third = dataset_store.put(_csv(rows=102), "label")
    assert dataset_store.has(first) and dataset_store.has(third) and not dataset_store.has(second)


def test_the_csv_task_is_the_stored_table_split_and_standardised() -> None:
    key = dataset_store.put(_csv(), "label")
    ds = make_dataset("csv", data=key, test_fraction=0.25, seed=4)
    direct = from_csv(_csv(), label="label", heldout=0.25, seed=4)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(ds, name), getattr(direct, name))
    assert class_count("csv", data=key) == 3 and train_size("csv", 512, 0.25, data=key) == len(ds.y_train) == 90
    assert len(make_dataset("csv", data=key, val_fraction=0.2).y_val) == 18
    with pytest.raises(ValueError, match="only the 'csv' task takes data"):
        make_dataset("moons", data=key)
    with pytest.raises(ValueError, match="needs the hash"):
        make_dataset("csv")


def test_config_validates_data() -> None:
    key = dataset_store.put(_csv(), "label")
    config = Config.from_flat({"task": "csv", "data": key})
    assert config.data == key and config.to_flat()["data"] == key
    assert "data" not in Config().to_flat()
    with pytest.raises(ValueError, match="needs the hash"):
        Config(task="csv")
    with pytest.raises(ValueError, match="only the 'csv' task takes data"):
        Config(task="moons", data=key)
    with pytest.raises(ValueError, match="Invalid data: 'xyz'"):
        Config(task="csv", data="xyz")


def test_a_config_on_the_csv_task_trains_the_mlp_with_its_sizes() -> None:
    key = dataset_store.put(_csv(features=5, classes=3), "label")
    result = run(Config(task="csv", data=key, steps=60, optimizer="sam", hparams={"lr": 0.1}, width=16))
    assert result.param_shapes[0] == (16, 5) and result.param_shapes[-1] == (3,)  # 5 inputs, 3 classes
    assert result.train_loss[-1] < result.train_loss[0] * 0.7
    assert result.summary()["n_classes"] == 3


def test_cli_trains_on_a_csv_file(tmp_path, capsys) -> None:
    path = tmp_path / "mine.csv"
    path.write_bytes(_csv())
    out = tmp_path / "run"
    assert main(["train", "--csv", str(path), "--label", "label", "--steps", "30", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["config"]["task"] == "csv" and summary["config"]["data"] == dataset_store.content_key(_csv(), "label")
    assert summary["n_classes"] == 3 and np.isfinite(summary["final_test_acc"])
    capsys.readouterr()
    assert main(["train", "--csv", str(path), "--label", "nope", "--quiet", "--out", str(out)]) == 2
    assert "'nope' is not a column" in capsys.readouterr().err


def test_a_link_with_a_held_data_set_opens_it_and_trains_on_it() -> None:
    from sam_viz.settings import from_query, to_query

    key = dataset_store.put(_csv(), "label")
    settings, notes = from_query({"task": "csv", "data": key, "heldout": "0.2"})
    assert notes == [] and settings.task == "csv" and settings.data == key and settings.test_fraction == 0.2
    assert to_query(settings) == {"task": "csv", "data": key, "heldout": "0.2"}
    configs = settings.configs()
    assert [c.data for c in configs] == [key, key] and configs[0].test_fraction == 0.2


@pytest.mark.parametrize("query, note", [
    ({"task": "csv", "data": "0123456789abcdef"}, "this server does not hold that uploaded data set"),
    ({"task": "csv", "data": "../../etc"}, "this server does not hold that uploaded data set"),
    ({"task": "csv"}, "task=csv needs an uploaded data set"),
])
def test_a_link_to_a_data_set_this_server_lacks_opens_the_default_task_with_a_note(query, note) -> None:
    from sam_viz.settings import DEFAULTS, from_query

    settings, notes = from_query(query)
    assert settings.task == DEFAULTS.task and settings.data == ""
    assert len(notes) == 1 and note in notes[0] and "using the default task moons" in notes[0]
    settings.configs()  # the default task trains


def test_data_on_another_task_is_ignored_with_a_note() -> None:
    from sam_viz.settings import from_query

    settings, notes = from_query({"task": "xor", "data": dataset_store.put(_csv(), "label")})
    assert settings.task == "xor" and settings.data == "" and "only the csv task" in notes[0]
