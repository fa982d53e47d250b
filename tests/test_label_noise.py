"""Label noise: a share of the training labels flipped to another class, the test and validation splits untouched."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sam_viz import cli
from sam_viz.config import Config
from sam_viz.data import make_dataset
from sam_viz.settings import from_query, to_query
from sam_viz.train import run, setup


@pytest.mark.parametrize("name,n_classes,share", [("moons", 3, 0.2), ("blobs", 5, 0.37), ("digits", 3, 0.5),
                                                  ("spirals", 3, 0.9)])
def test_exactly_the_share_is_flipped_each_to_another_class(name, n_classes, share):
    clean = make_dataset(name, n_samples=300, seed=4, n_classes=n_classes)
    noisy = make_dataset(name, n_samples=300, seed=4, n_classes=n_classes, label_noise=share)
    n_train = len(clean.y_train)
    assert len(noisy.flipped) == round(share * n_train) > 0
    # the same samples in the same order: only the labels at the flipped indices differ, and every one of them does
    np.testing.assert_array_equal(noisy.x_train, clean.x_train)
    np.testing.assert_array_equal(noisy.y_train_clean, clean.y_train)
    changed = np.flatnonzero(noisy.y_train != clean.y_train)
    np.testing.assert_array_equal(changed, noisy.flipped)
    assert ((0 <= noisy.y_train) & (noisy.y_train < noisy.n_classes)).all()


def test_the_new_class_is_uniform_among_the_others():
    noisy = make_dataset("blobs", n_samples=20_000, n_classes=4, seed=1, label_noise=0.5)
    old, new = noisy.y_train_clean[noisy.flipped], noisy.y_train[noisy.flipped]
    offsets = (new - old) % 4  # 1, 2, 3 equally often
    counts = np.bincount(offsets, minlength=4)
    assert counts[0] == 0
    expected = len(offsets) / 3
    assert np.all(np.abs(counts[1:] - expected) < 4 * np.sqrt(expected))  # ~4 σ of a multinomial count


def test_test_and_validation_splits_stay_clean():
    clean = make_dataset("moons", n_samples=400, seed=2, val_fraction=0.25)
    noisy = make_dataset("moons", n_samples=400, seed=2, val_fraction=0.25, label_noise=0.3)
    for split in ("x_test", "y_test", "x_val", "y_val"):
        np.testing.assert_array_equal(getattr(noisy, split), getattr(clean, split), err_msg=split)
    assert len(noisy.flipped) == round(0.3 * len(clean.y_train))  # the share of what is left to train on


def test_deterministic_from_the_data_seed_alone():
    a = make_dataset("circles", n_samples=200, seed=7, label_noise=0.25)
    b = make_dataset("circles", n_samples=200, seed=7, label_noise=0.25)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    np.testing.assert_array_equal(a.flipped, b.flipped)
    other = make_dataset("circles", n_samples=200, seed=8, label_noise=0.25)
    assert not np.array_equal(other.flipped, a.flipped)
    # the model seed does not move the flips: one data set serves every seed
    base = Config(task="circles", n_samples=200, data_seed=7, label_noise=0.25, steps=1, device="cpu")
    np.testing.assert_array_equal(setup(base.replace(seed=3)).y_train.numpy(), a.y_train)


def test_no_label_noise_is_the_data_set_as_before():
    clean = make_dataset("xor", n_samples=100, seed=3)
    zero = make_dataset("xor", n_samples=100, seed=3, label_noise=0.0)
    np.testing.assert_array_equal(zero.y_train, clean.y_train)
    assert zero.flipped.size == 0 and zero.y_train_clean is zero.y_train


def test_out_of_range_and_analytic_tasks_raise():
    for bad in (-0.1, 0.95, float("nan"), True):
        with pytest.raises(ValueError, match="label_noise"):
            make_dataset("moons", label_noise=bad)
        with pytest.raises(ValueError, match="label_noise"):
            Config(label_noise=bad)
    with pytest.raises(ValueError, match="classification tasks only"):
        make_dataset("rosenbrock", label_noise=0.1)
    with pytest.raises(ValueError, match="classification tasks only"):
        Config(task="himmelblau", model="point", label_noise=0.1)
    make_dataset("rosenbrock", label_noise=0.0)  # 0 is no label noise, valid everywhere


def test_training_sees_the_noisy_labels_and_is_scored_on_clean_ones():
    config = Config(n_samples=200, label_noise=0.3, steps=3, device="cpu", dtype="float64")
    s = setup(config)
    np.testing.assert_array_equal(s.y_train.numpy(), s.dataset.y_train)
    np.testing.assert_array_equal(s.y_test.numpy(), make_dataset("moons", n_samples=200, noise=0.2).y_test)
    r = run(config)
    assert r.n_steps == 3 and np.isfinite(r.final_test_acc)
    assert r.final_train_loss != run(config.replace(label_noise=0.0)).final_train_loss


def test_config_flat_and_cli():
    config = Config(label_noise=0.2)
    assert config.to_flat()["label_noise"] == 0.2
    assert Config.from_flat({"label_noise": "0.2"}) == config
    assert Config.from_flat({"label_noise": "0"}) == Config()


def test_the_command_line_takes_label_noise(tmp_path, capsys):
    out = tmp_path / "noisy"
    code = cli.main(["train", "--label-noise", "0.2", "--steps", "2", "--n-samples", "64", "--device", "cpu",
                     "--out", str(out), "--quiet"])
    assert code == 0
    saved = json.loads((tmp_path / "noisy.json").read_text())
    assert saved["config"]["label_noise"] == 0.2


def test_url_round_trip_through_settings():
    settings, notes = from_query({"lnoise": "0.2"})
    assert not notes and settings.lnoise == 0.2
    assert to_query(settings) == {"lnoise": "0.2"}
    assert from_query(to_query(settings))[0] == settings
    assert all(c.label_noise == 0.2 for c in settings.configs())
    assert "lnoise" not in to_query(from_query({})[0])  # the default stays out of the URL
    clamped, notes = from_query({"lnoise": "1.5"})
    assert clamped.lnoise == 0.9 and notes and "lnoise" in notes[0]
    junk, notes = from_query({"lnoise": "lots"})
    assert junk.lnoise == 0.0 and "not a number" in notes[0]


def test_an_analytic_task_ignores_the_label_noise_setting():
    settings, notes = from_query({"lnoise": "0.2", "task": "rosenbrock"})
    assert not notes
    assert all(c.label_noise == 0.0 for c in settings.configs())  # like the validation share: kept, not used
