"""App settings: the URL round trip, clamping with notes, garbage that never raises, and the presets."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from sam_viz.config import Config
from sam_viz.optim import OPTIMIZERS
from sam_viz.presets import PRESETS
from sam_viz.settings import (
    DEFAULTS,
    MAX_RUNS,
    Settings,
    cell_settings,
    format_runs,
    from_query,
    parse_runs,
    replace,
    to_query,
)
from sam_viz.train import setup


def test_defaults_make_an_empty_query_and_back():
    assert to_query(DEFAULTS) == {}
    assert from_query({}) == (DEFAULTS, [])


def test_round_trip_of_a_full_setting():
    s = replace(DEFAULTS, task="digits", model="cnn", n=500, steps=40, batch=64, plane="hessian", log=True,
                runs=(("sam", (("rho", 0.2),)), ("lightsam3", (("betas", (0.8, 0.99)), ("bias_correction", True)))),
                sxv=(0.01, 0.1, 1.0))
    assert from_query(to_query(s)) == (s, [])
    assert to_query(s)["runs"] == "sam:rho=0.2;lightsam3:betas=0.8/0.99,bias_correction=true"


@pytest.mark.parametrize("query,field,value,fragment", [
    ({"steps": "999999"}, "steps", 3000, "clamped"),
    ({"steps": "-5"}, "steps", 5, "clamped"),
    ({"steps": "12.7"}, "steps", 13, "rounded"),
    ({"noise": "banana"}, "noise", DEFAULTS.noise, "not a number"),
    ({"noise": "inf"}, "noise", DEFAULTS.noise, "not finite"),
    ({"task": "imagenet"}, "task", "moons", "not one of"),
    ({"log": "maybe"}, "log", False, "true/false"),
    ({"res": "1000"}, "res", 81, "clamped"),
    ({"model": "cnn"}, "model", "mlp", "digits"),
    ({"batch": "300", "n": "100"}, "batch", 0, "full batch"),
    ({"batch": "200", "n": "256"}, "batch", 0, "192 training samples"),  # a quarter of the 256 is held out
    ({"sxv": "a,b"}, "sxv", DEFAULTS.sxv, "1 to 9 numbers"),
    ({"sxv": "0.1,50"}, "sxv", (0.1, 10.0), "clamped"),
    ({"hack": "1"}, "task", "moons", "not a setting"),
])
def test_bad_values_are_fixed_with_a_note(query, field, value, fragment):
    s, notes = from_query(query)
    assert getattr(s, field) == value
    assert any(fragment in n for n in notes), notes


def test_runs_are_parsed_validated_and_clamped():
    notes: list[str] = []
    runs = parse_runs("sam:rho=50,lr=0.1;nope;fsam:sigma=abc;sgd:foo=1", notes)
    assert runs == (("sam", (("rho", 10.0),)), ("fsam", ()), ("sgd", ()))  # lr=0.1 is the default: dropped
    assert len(notes) == 4 and any("nope" in n for n in notes) and any("clamped" in n for n in notes)
    too_many: list[str] = []
    assert len(parse_runs(";".join(["sgd"] * (MAX_RUNS + 2)), too_many)) == MAX_RUNS and too_many
    assert parse_runs("", []) == DEFAULTS.runs
    assert format_runs(runs) == "sam:rho=10.0;fsam;sgd"


@given(st.dictionaries(st.sampled_from([*Settings.__dataclass_fields__, "junk"]), st.text(max_size=30), max_size=8))
@hsettings(max_examples=300, deadline=None)
def test_garbage_never_raises_and_always_gives_trainable_configs(query):
    s, notes = from_query(query)
    assert isinstance(notes, list)
    for config in s.configs():  # every config the app would train passes the engine's own validation
        assert config.steps == s.steps
    assert from_query(to_query(s))[0] == s


_VALUE_TEXT = st.one_of(st.text(max_size=8), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.integers(-10**6, 10**6).map(str), st.sampled_from(["true", "false", "sgd", "adam", "fisher",
                                                                              "dynamic", "mpp", "naive", "global",
                                                                              "0.9,0.999", "1/2", ""]))


@st.composite
def _run_spec(draw) -> str:
    """One ``runs`` entry over the registry: a real optimizer name (any case) and some of its hyperparameters, or
    a made-up one, each with a value that may be anything."""
    name = draw(st.sampled_from(list(OPTIMIZERS)))
    keys = draw(st.lists(st.sampled_from([*OPTIMIZERS[name].hparams, "junk"]), max_size=4))
    items = ",".join(f"{key}={draw(_VALUE_TEXT)}" for key in keys)
    return f"{name.upper() if draw(st.booleans()) else name}:{items}" if items else name


@given(st.lists(_run_spec(), min_size=1, max_size=MAX_RUNS + 1).map(";".join))
@hsettings(max_examples=300, deadline=None)
def test_every_registry_optimizer_and_hyperparameter_survives_any_url_value(runs):
    s, notes = from_query({"runs": runs})
    for config in s.configs():  # the engine's own validation accepts whatever the URL parsing kept
        assert config.optimizer in OPTIMIZERS
    assert from_query(to_query(s))[0] == s


@pytest.mark.parametrize("task, n", [("moons", 256), ("digits", 4000), ("rosenbrock", 64)])
def test_a_batch_of_all_the_training_samples_is_kept_and_trains(task, n):
    n_train = setup(Config(task=task, n_samples=n, test_fraction=from_query({"task": task})[0].test_fraction,
                           model="point" if task == "rosenbrock" else "mlp")).x_train.shape[0]
    s, notes = from_query({"task": task, "n": str(n), "batch": str(n_train)})
    assert s.batch == n_train and not any("batch" in note for note in notes)
    for config in s.configs():
        assert setup(config).x_train.shape[0] == n_train == config.batch_size
    assert from_query({"task": task, "n": str(n), "batch": str(n_train + 1)})[0].batch == 0


def test_configs_share_data_seed_and_batches():
    s = replace(DEFAULTS, runs=(("sgd", ()), ("sam", (("rho", 0.1),)), ("lightsam1", ())))
    configs = s.configs()
    assert [c.optimizer for c in configs] == ["sgd", "sam", "lightsam1"]
    assert len({(c.task, c.n_samples, c.seed, c.batch_size, c.steps) for c in configs}) == 1
    assert configs[1].hp["rho"] == 0.1


def test_analytic_tasks_train_the_point_model():
    s = replace(DEFAULTS, task="rosenbrock", start_x=-1.0)
    (c, _) = s.configs()
    assert c.model == "point" and c.start_x == -1.0 and c.start_y is None and c.dtype == "float64"


def test_labels_tell_equal_optimizers_apart():
    s = replace(DEFAULTS, runs=(("sam", ()), ("sam", (("rho", 3.0),))))
    assert s.labels == ["SAM (rho=0.05)", "SAM (rho=3)"]
    # a choice that differs between two runs of one optimizer is named, defaults included
    s = replace(DEFAULTS, runs=(("mup2", (("perturb_mode", "naive"),)), ("mup2", ())), param="mup")
    assert s.labels == ["μP² (perturb_mode=naive)", "μP² (perturb_mode=mpp)"]
    s = replace(DEFAULTS, runs=(("sgd", ()), ("esam", (("beta", 0.3),))))
    assert s.labels == ["SGD", "ESAM (beta=0.3)"]  # a lone optimizer: the hyperparameters set for it
    assert len(set(PRESETS["lets_learned_radius"].settings().labels)) == 2


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_valid_and_builds(name):
    preset = PRESETS[name]
    s = preset.settings()
    assert s.preset == name and preset.page in ("Loss_surface", "Perturbations", "Hessian", "Radius_sensitivity")
    assert len(preset.explanation) > 200
    for config in s.configs():
        setup(config)  # data and model build: the engine accepts every preset
    assert from_query(to_query(s)) == (s, [])


def test_at_least_six_presets_cover_the_issue_list():
    names = set(PRESETS)
    assert len(names) >= 6
    assert {"sharp_vs_flat", "rho_too_large", "fsam_removes_full_gradient", "lightsam_parameter_agnostic",
            "adam_vs_lightsam3", "sam_lower_lambda_max", "batch_size_noise"} <= names


def test_nan_start_means_the_task_default():
    s, notes = from_query({"task": "himmelblau", "start_x": "nan"})
    assert math.isnan(s.start_x) and not notes


def test_an_opened_sweep_cell_keeps_the_whole_experiment_custom_start_included():
    s, _ = from_query({"task": "rosenbrock", "start_x": "1.5", "start_y": "-0.5", "steps": "40", "batch": "8",
                       "plane": "random", "runs": "sgd;sam"})
    cell = s.configs()[0].with_optimizer("sam", rho=0.3)
    opened = cell_settings(s, cell)
    assert (opened.start_x, opened.start_y, opened.task, opened.batch) == (1.5, -0.5, "rosenbrock", 8)
    assert opened.runs == (("sam", (("rho", 0.3),)),) and opened.plane == DEFAULTS.plane
    assert opened.configs() == [cell]  # the run opened is the cell's run
