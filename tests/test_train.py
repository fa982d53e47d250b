"""Training runs: determinism, shared initialisation, divergence, stopping, limits, records, command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sam_viz.cli import main
from sam_viz.config import Config
from sam_viz.records import Run
from sam_viz.train import MAX_SNAPSHOT_VALUES, run, run_many, setup

SMALL = Config(n_samples=128, width=16, steps=25, snapshot_every=5, device="cpu")


def test_same_config_gives_bit_identical_arrays():
    for config in (SMALL, SMALL.replace(optimizer="fsam", batch_size=32), SMALL.replace(optimizer="lightsam2", dtype="float64")):
        assert run(config).equal_arrays(run(config))


def test_different_seeds_differ():
    assert not run(SMALL).equal_arrays(run(SMALL.replace(seed=1)))


def test_run_many_shares_initialisation_and_batches():
    config = SMALL.replace(batch_size=32, dtype="float64")
    sgd, sam0, sam = run_many(config, [("sgd", {}), ("sam", {"rho": 0.0}), ("sam", {"rho": 0.1})])
    np.testing.assert_array_equal(sgd.weights[0], sam.weights[0])
    assert sgd.batch_loss[0] == sam.batch_loss[0]  # same θ_0 and same first batch
    # SAM with ρ = 0 is SGD on the same batches, so the whole trajectory agrees
    np.testing.assert_allclose(sam0.weights, sgd.weights, rtol=1e-12, atol=1e-14)
    assert np.abs(sam.weights[-1] - sgd.weights[-1]).max() > 1e-4


def test_record_shapes_and_meaning():
    r = run(SMALL)
    n, p = SMALL.steps, r.n_params
    assert r.step.tolist() == list(range(n))
    for name in ("batch_loss", "train_loss", "test_loss", "test_acc", "eps_norm", "cos_eps_fullgrad", "elapsed"):
        assert getattr(r, name).shape == (n,), name
    assert r.snapshot_step.tolist() == [0, 5, 10, 15, 20, 25]
    assert r.weights.shape == (6, p) and r.perturbations.shape == (6, p)
    assert np.isnan(r.perturbations[-1]).all()
    # full batch: the train loss is the batch loss, ‖e‖ = ρ, and e points along the full gradient
    np.testing.assert_allclose(r.train_loss, r.batch_loss)
    np.testing.assert_allclose(r.eps_norm, 0.05, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(r.perturbations[:-1], axis=1), 0.05, rtol=1e-5)
    np.testing.assert_allclose(r.cos_eps_fullgrad, 1.0, atol=1e-5)
    np.testing.assert_allclose(r.full_grad_norm, r.grad_norm, rtol=1e-6)
    assert r.final_train_loss < r.train_loss[0] and not r.diverged and not r.stopped
    assert r.param_names[0].endswith("weight") and int(np.sum([np.prod(s) for s in r.param_shapes])) == p


def test_fsam_removes_part_of_the_full_gradient_from_e():
    # F-SAM subtracts an EMA of past gradients; in full-batch training that EMA *is* the full-gradient direction,
    # so after the first step e_t is no longer aligned with ∇L, while SAM's e_t always is.
    r = run(SMALL.replace(optimizer="fsam", hparams={"lmbda": 0.5}))
    assert r.cos_eps_fullgrad[0] == pytest.approx(1.0, abs=1e-5)
    assert np.nanmax(r.cos_eps_fullgrad[2:]) < 0.99


def test_minibatch_perturbation_is_partly_noise():
    r = run(SMALL.replace(batch_size=16))
    cos = r.cos_eps_fullgrad
    assert np.all(np.abs(cos) <= 1 + 1e-6) and cos.mean() < 0.999
    assert not np.allclose(r.full_grad_norm, r.grad_norm)


def test_one_pass_methods_record_no_perturbation():
    r = run(SMALL.replace(optimizer="sgd"))
    assert np.all(r.eps_norm == 0) and np.isnan(r.cos_eps_fullgrad).all() and np.isnan(r.perturbed_loss).all()
    np.testing.assert_array_equal(r.perturbed_grad_norm, r.grad_norm)


def test_lightsam_effective_rates_shrink():
    r = run(SMALL.replace(optimizer="lightsam1"))
    assert np.all(np.diff(r.effective_lr) <= 0) and np.all(np.diff(r.effective_rho) <= 0)
    assert np.all(r.eps_norm <= 0.1 * (1 + 1e-5))


def test_divergence_ends_cleanly_and_is_marked():
    # Rosenbrock's quartic walls overflow within a few steps at this learning rate
    r = run(Config(task="rosenbrock", model="point", optimizer="sgd", hparams={"lr": 0.01}, steps=300, device="cpu"))
    assert r.diverged and 0 < r.diverged_step < 300
    assert r.n_steps == r.diverged_step + 1 and not np.isfinite(r.batch_loss[-1])
    assert np.all(np.isfinite(r.batch_loss[:-1]))
    assert np.isnan(r.final_train_loss)
    json.dumps(r.summary(), allow_nan=False)  # a diverged run still gives standard JSON


def test_stop_keeps_what_was_computed_and_progress_is_reported():
    seen = []
    r = run(SMALL, progress=lambda step, total, row: seen.append((step, total)), should_stop=lambda: len(seen) >= 7)
    assert r.stopped and r.n_steps == 7 and seen[-1] == (7, SMALL.steps)
    assert r.snapshot_step.tolist() == [0, 5, 7]
    np.testing.assert_array_equal(r.batch_loss, run(SMALL).batch_loss[:7])


def test_limits_are_enforced_in_the_engine():
    with pytest.raises(ValueError, match="batch_size"):
        setup(SMALL.replace(batch_size=10_000))
    wide = Config(task="digits", model="mlp", width=1024, depth=8, steps=20_000, snapshot_every=20)
    with pytest.raises(ValueError, match="snapshot_every"):
        setup(wide)
    assert MAX_SNAPSHOT_VALUES >= 1_000_000


def test_analytic_task_trains_the_point_itself():
    config = Config(task="rosenbrock", model="point", optimizer="adam", hparams={"lr": 0.05}, steps=50,
                    start_x=-1.0, start_y=1.5, snapshot_every=1, device="cpu")
    r = run(config)
    assert r.n_params == 2 and r.weights.shape == (51, 2)
    np.testing.assert_allclose(r.weights[0], [-1.0, 1.5])
    assert np.isnan(r.test_loss).all() and np.isnan(r.train_acc).all()
    assert r.final_train_loss < r.train_loss[0]


def test_save_and_load_round_trip(tmp_path):
    r = run(SMALL.replace(optimizer="lightsam3", steps=5))
    loaded = Run.load(r.save(tmp_path / "r.npz"))
    assert loaded.config == r.config and loaded.equal_arrays(r)
    assert loaded.wall_time == r.wall_time and loaded.param_shapes == r.param_shapes


def test_cli_train_writes_npz_and_json(tmp_path, capsys):
    out = tmp_path / "sam_run"
    code = main(["train", "--steps", "12", "--n-samples", "64", "--optimizer", "fsam", "--rho", "0.1",
                 "--sigma", "0.5", "--device", "cpu", "--quiet", "--out", str(out)])
    assert code == 0
    summary = json.loads((tmp_path / "sam_run.json").read_text())
    assert summary["config"]["rho"] == 0.1 and summary["config"]["sigma"] == 0.5 and summary["n_steps"] == 12
    loaded = Run.load(tmp_path / "sam_run.npz")
    assert loaded.config.hp["sigma"] == 0.5 and loaded.final_train_loss == pytest.approx(summary["final_train_loss"])


def test_cli_rejects_bad_settings_with_one_line(capsys):
    assert main(["train", "--rho", "-3", "--quiet"]) == 2
    assert "rho" in capsys.readouterr().err


def test_cli_lists_the_registry(capsys):
    assert main(["optimizers"]) == 0
    text = capsys.readouterr().out
    for name in ("sgd", "adam", "sam", "asam", "fsam", "lightsam1", "lightsam2", "lightsam3", "adasam", "msam"):
        assert f"\n{name} " in "\n" + text
    assert main(["optimizers", "--json"]) == 0
    assert "lightsam3" in json.loads(capsys.readouterr().out)


def test_engine_imports_without_ui_packages():
    """The GPU machine has torch but no streamlit or plotly: the engine must import and train there."""
    import subprocess
    import sys

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('streamlit', 'plotly'):\n"
            "            raise ImportError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import sam_viz.train, sam_viz.sweep, sam_viz.landscape, sam_viz.hessian, sam_viz.curvature, sam_viz.cli\n"
            "from sam_viz.config import Config\n"
            "r = sam_viz.train.run(Config(steps=3, n_samples=32, width=4, device='cpu'))\n"
            "print(r.n_steps)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3"


def test_json_ready_makes_standard_json_of_numpy_and_nan():
    from sam_viz.records import json_ready

    payload = {"a": np.array([1.0, np.nan]), "b": (np.float32(2.5), float("inf")), "c": {"d": np.int64(3)}}
    assert json.loads(json.dumps(json_ready(payload), allow_nan=False)) == {"a": [1.0, None], "b": [2.5, None],
                                                                           "c": {"d": 3}}


@pytest.mark.parametrize("start", [{"start_x": 1.0}, {"start_y": -2.0}, {"start_x": 1.0, "start_y": 2.0}])
def test_a_start_point_on_a_classification_task_is_a_clear_error(start, capsys):
    with pytest.raises(ValueError, match="only the 'point' model takes a start"):
        setup(Config(task="moons", **start))
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in start.items()]
    assert main(["train", "--task", "moons", "--steps", "5", "--quiet", *flags]) == 2
    assert "only the 'point' model takes a start" in capsys.readouterr().err


def test_cli_out_is_a_prefix_even_with_a_dot(tmp_path, capsys):
    """--out runs/a.v2 writes runs/a.v2.npz and runs/a.v2.json for every command, as the sweep always did."""
    base = ["--task", "moons", "--steps", "6", "--n-samples", "64", "--quiet"]
    assert main(["train", *base, "--out", str(tmp_path / "a.v2")]) == 0
    assert main(["surface", "--run", str(tmp_path / "a.v2.npz"), "--resolution", "5", "--out", str(tmp_path / "s.v2")]) == 0
    assert main(["hessian", "--run", str(tmp_path / "a.v2.npz"), "--k", "1", "--out", str(tmp_path / "h.v2")]) == 0
    assert main(["sweep", "--set", "steps=4", "--set", "n_samples=64", "--set", "optimizer=sam", "--x-values", "0.05,0.1",
                 "--y-values", "0.1", "--no-lambda-max", "--quiet", "--out", str(tmp_path / "g.v2")]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["a.v2.json", "a.v2.npz", "g.v2.csv", "g.v2.npz", "h.v2.json", "h.v2.npz", "s.v2.json", "s.v2.npz"]
    capsys.readouterr()


# ---- one loop: stacked runs equal single runs ------------------------------------------------------------------

from sam_viz.optim import OPTIMIZERS  # noqa: E402
from sam_viz.records import STEP_FIELDS  # noqa: E402
from sam_viz.train import lockstep, stepwise, train  # noqa: E402

TINY = Config(n_samples=96, width=8, steps=12, snapshot_every=4, device="cpu", dtype="float64")


def _assert_same_run(a: Run, b: Run, rtol: float = 1e-10) -> None:
    assert a.n_steps == b.n_steps and a.diverged_step == b.diverged_step and a.stopped == b.stopped
    for name in (*[f for f in STEP_FIELDS if f != "elapsed"], "snapshot_step", "weights", "perturbations"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=1e-12, equal_nan=True,
                                   err_msg=name)
    for name in ("final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=1e-12, err_msg=name)


def _variants(name: str) -> list[Config]:
    """Three configs of one optimizer that differ in lr, rho (where it has one) and seed."""
    specs = OPTIMIZERS[name].hparams
    lr = specs["lr"].default
    out = []
    for k, seed in enumerate((0, 1, 1)):
        hp = {"lr": lr * (1, 0.5, 2)[k]}
        if "rho" in specs:
            hp["rho"] = specs["rho"].default * (1, 3, 0)[k]
        out.append(TINY.replace(optimizer=name, hparams=hp, seed=seed,
                                parameterization=OPTIMIZERS[name].parameterization or "sp"))
    return out


# LookSAM rescales g_v by ‖s‖/(‖g_v‖ + 1e-8); for a tensor with g ∥ s (the two-class output bias) g_v is rounding
# noise, so a different summation order in a stack moves d by ~‖s‖·1e-17/1e-8: 1e-9 relative seen on a Xeon,
# 2.2e-7 on an AMD EPYC (one output-bias entry, after 12 steps). The method amplifies rounding there; no stack can
# avoid it.
STACK_RTOL = {"looksam": 1e-6}


@pytest.mark.parametrize("batch_size", [0, 32])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_stacked_runs_equal_single_runs(name, batch_size):
    configs = [c.replace(batch_size=batch_size) for c in _variants(name)]
    stacked = train(configs)
    for config, r in zip(configs, stacked):
        assert r.config == config
        _assert_same_run(r, run(config), rtol=STACK_RTOL.get(name, 1e-10))


def test_a_diverged_run_is_frozen_and_the_others_go_on():
    base = Config(task="rosenbrock", model="point", optimizer="sgd", steps=60, device="cpu", dtype="float64",
                  snapshot_every=7)
    configs = [base.replace(lr=lr) for lr in (1e-4, 0.01, 3e-4)]
    stacked = train(configs)
    assert [r.diverged for r in stacked] == [False, True, False]
    for config, r in zip(configs, stacked):
        _assert_same_run(r, run(config))


def test_train_rejects_configs_that_cannot_stack():
    with pytest.raises(ValueError, match="stacked runs"):
        train([TINY, TINY.replace(optimizer="sgd")])
    with pytest.raises(ValueError, match="stacked runs"):
        train([TINY, TINY.replace(steps=5)])


def test_stop_and_progress_in_a_stack():
    seen = []
    runs = train(_variants("sam"), progress=lambda t, total, row: seen.append((t, total, row.active, row["step"])),
                 should_stop=lambda: len(seen) >= 5)
    assert [r.n_steps for r in runs] == [5, 5, 5] and all(r.stopped for r in runs)
    assert seen[-1] == (5, TINY.steps, 3, 4)


def test_run_many_groups_by_optimizer_and_equals_single_runs():
    config = TINY.replace(batch_size=16)
    pairs = [("sam", {"rho": 0.1}), ("sgd", {}), ("sam", {"rho": 0.02, "lr": 0.05}), ("adam", {"lr": 0.01})]
    for (name, hp), r in zip(pairs, run_many(config, pairs)):
        assert r.config.optimizer == name
        _assert_same_run(r, run(config.with_optimizer(name, **hp)))


def test_stepwise_and_lockstep_keep_their_semantics():
    configs = [TINY.with_optimizer("sam", rho=0.1), TINY.with_optimizer("sgd"), TINY.with_optimizer("sam", rho=0.02)]
    steps = stepwise(configs[0])
    rows = []
    while True:
        try:
            rows.append(next(steps))
        except StopIteration as done:
            single = done.value
            break
    assert [t for t, _ in rows] == list(range(1, TINY.steps + 1))
    assert rows[0][1]["batch_loss"] == single.batch_loss[0]
    _assert_same_run(single, run(configs[0]))
    seen = []
    runs = lockstep(configs, progress=lambda done, total: seen.append((done, total)), should_stop=lambda: len(seen) >= 4)
    assert [r.n_steps for r in runs] == [4, 4, 4] and all(r.stopped for r in runs) and seen[-1] == (4, TINY.steps)
    for config, r in zip(configs, runs):
        np.testing.assert_allclose(r.batch_loss, run(config).batch_loss[:4], rtol=1e-10)


@pytest.mark.parametrize("name", sorted(__import__("sam_viz.optim.registry", fromlist=["OPTIMIZERS"]).OPTIMIZERS))
def test_a_stacked_run_does_not_depend_on_its_stack(name):
    """In float32 on the CPU a run trained in a stack (R ≥ 2) has the same arrays whatever the stack's size and its
    place in it: what batching several visitors' trainings into one stack would rely on (benchmarks/RESULTS.md,
    "A classroom on one server"). A run of its own (R = 1) takes plain autograd instead and may differ in rounding."""
    from sam_viz.train import train

    base = SMALL.replace(steps=12, batch_size=32)
    if name == "mup2":
        base = base.replace(parameterization="mup")
    config = base.with_optimizer(name)
    seeds = [config.replace(seed=k) for k in range(1, 6)]
    pair, five = train([seeds[2], seeds[0]]), train(seeds)
    assert pair[0].equal_arrays(five[2]) and pair[1].equal_arrays(five[0])
