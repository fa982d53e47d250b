"""Config: canonical hyperparameters, the flat-dict round trip (URL, CLI) and limits."""

from __future__ import annotations

import pytest

from sam_viz.config import MAX_STEPS, Config


def test_defaults_are_filled_in_so_equal_runs_compare_equal():
    explicit = Config(hparams={"rho": 0.05, "lr": 0.1})
    assert explicit == Config() and hash(explicit) == hash(Config())
    assert Config(hparams={"rho": 0.1}) != Config()
    assert Config().hp["rho"] == 0.05 and Config().hp["base"] == "sgd"


@pytest.mark.parametrize("config", [
    Config(),
    Config(task="digits", model="cnn", optimizer="lightsam3", hparams={"betas": (0.8, 0.99), "bias_correction": True}),
    Config(task="rosenbrock", model="point", start_x=-1.5, start_y=2.0, optimizer="fsam", hparams={"sigma": 0.5}),
])
def test_flat_round_trip(config):
    flat = config.to_flat()
    assert all(isinstance(v, (str, int, float, bool)) for v in flat.values())
    assert Config.from_flat(flat) == config
    as_strings = {k: str(v) for k, v in flat.items()}  # what a URL or a command line gives
    assert Config.from_flat(as_strings) == config


def test_replace_and_with_optimizer():
    c = Config().replace(rho=0.2, steps=50)
    assert c.hp["rho"] == 0.2 and c.steps == 50
    d = c.with_optimizer("lightsam1", rho=0.3)
    assert d.hp == {"lr": 0.1, "rho": 0.3, "eps": 1e-8, "weight_decay": 0.0}
    assert c.replace(optimizer="adam").hp["lr"] == 1e-3  # a new optimizer starts from its own defaults


@pytest.mark.parametrize("flat,match", [
    ({"steps": MAX_STEPS + 1}, "steps"),
    ({"steps": "12.5"}, "steps"),
    ({"seed": "-1"}, "seed"),
    ({"dtype": "float16"}, "dtype"),
    ({"device": "tpu"}, "device"),
    ({"rho": "-0.1"}, "rho"),
    ({"rho": "abc"}, "rho"),
    ({"betas": "0.9"}, "betas"),
    ({"colour": "red"}, "colour"),
    ({"optimizer": "nope"}, "optimizer"),
    ({"noise": "nan"}, "noise"),
    ({"start_x": "inf"}, "start_x"),
    ({"steps": 1000, "snapshot_every": 0}, "snapshot_every"),
    ({"steps": 20000, "snapshot_every": 1}, "snapshot_every"),
    ({"adaptive": "maybe"}, "adaptive"),
])
def test_bad_values_raise_a_clear_error(flat, match):
    with pytest.raises(ValueError, match=match):
        Config.from_flat(flat)
