"""Grid sweeps: every cell equals its single run, divergence, stopping, limits, robustness, records, command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import pandas as pd
import pytest

from sam_viz.config import Config
from sam_viz.hessian import top_eigenvalues
from sam_viz.sweep import (
    FINAL_FIELDS,
    MAX_AXIS_VALUES,
    MAX_CELL_STEPS,
    MAX_SEEDS,
    STEP_FIELDS,
    Grid,
    add_sweep_parser,
    choose_strategy,
    chunk_size,
    robustness,
    run_grid,
    sweep_main,
)
from sam_viz.train import run, setup

SMALL = Config(n_samples=96, width=8, steps=12, device="cpu")
TOL = {"float64": {"rtol": 1e-10, "atol": 1e-12}, "float32": {"rtol": 1e-5, "atol": 1e-6}}


def assert_cell_equals_run(grid: Grid, s: int, i: int, j: int, r=None) -> None:
    """Cell (s, i, j) against ``train.run`` of its config (the oracle), at the dtype's tolerance."""
    r = run(grid.cell_config(s, i, j)) if r is None else r
    tol = TOL[grid.config.dtype]
    n = r.n_steps
    assert grid.n_steps[s, i, j] == n and grid.diverged[s, i, j] == r.diverged
    assert grid.diverged_step[s, i, j] == r.diverged_step
    for name in STEP_FIELDS:
        cell = getattr(grid, name)[s, i, j]
        np.testing.assert_allclose(cell[:n], getattr(r, name), err_msg=name, equal_nan=True, **tol)
        assert np.isnan(cell[n:]).all(), name
    for name in FINAL_FIELDS:
        np.testing.assert_allclose(getattr(grid, name)[s, i, j], getattr(r, name), err_msg=name, equal_nan=True, **tol)
    # the cost axis: what the cell's training took is what its single run took
    np.testing.assert_allclose(grid.total_grad_evals[s, i, j], np.nansum(r.grad_evals) if n else np.nan,
                               err_msg="total_grad_evals", equal_nan=True, **tol)


# ---- every cell is the single run of its config ----------------------------------------------------------------

CASES = [  # optimizer, x axis, y axis, dtype, batch size, extra base settings
    ("sam", ("rho", [0.0, 0.1]), ("lr", [0.05, 0.5]), "float64", 0, {}),
    ("sam", ("rho", [0.02, 0.2]), ("momentum", [0.0, 0.9]), "float32", 24, {}),
    ("fsam", ("rho", [0.05, 0.3]), ("sigma", [0.0, 1.0]), "float64", 24, {"lmbda": 0.6}),
    ("lightsam1", ("rho", [0.01, 1.0]), ("lr", [0.1, 1.0]), "float32", 0, {}),
    ("lightsam2", ("rho", [0.01, 1.0]), ("lr", [0.01, 0.1]), "float64", 24, {}),
    ("lightsam3", ("rho", [0.01, 0.1]), ("lr", [1e-3, 1e-2]), "float64", 0, {"eval_every": 3}),
    ("adasam", ("rho", [0.01, 0.2]), ("lr", [1e-3, 1e-2]), "float32", 24, {}),
    ("asam", ("rho", [0.1, 1.0]), ("eta", [0.0, 0.1]), "float64", 0, {}),
    ("sgd", ("momentum", [0.0, 0.9]), ("lr", [0.1, 1.0]), "float64", 24, {}),
]


@pytest.mark.parametrize("optimizer,x,y,dtype,batch_size,extra", CASES, ids=[f"{c[0]}-{c[3]}-bs{c[4]}" for c in CASES])
def test_every_cell_equals_its_single_run(optimizer, x, y, dtype, batch_size, extra):
    base = SMALL.replace(optimizer=optimizer, dtype=dtype, batch_size=batch_size, **extra)
    grid = run_grid(base, x, y, seeds=2, strategy="batched", lambda_max=False)
    assert grid.shape == (2, 2, 2) and grid.strategy == "batched" and not grid.stopped
    for s, i, j in np.ndindex(grid.shape):
        assert_cell_equals_run(grid, s, i, j)


def test_seeds_change_initialisation_and_batches():
    base = SMALL.replace(batch_size=24, dtype="float64", seed=3)
    grid = run_grid(base, ("rho", [0.05]), ("lr", [0.1]), seeds=3, strategy="batched", lambda_max=False)
    assert grid.seed_values.tolist() == [3, 4, 5]
    assert grid.cell_config(2, 0, 0).seed == 5 and grid.cell_config(2, 0, 0).hp["rho"] == 0.05
    assert len({grid.batch_loss[s, 0, 0, 0] for s in range(3)}) == 3  # different θ_0


def test_chunks_and_lambda_max():
    base = SMALL.replace(dtype="float64", optimizer="lightsam2")
    grid = run_grid(base, ("rho", [0.01, 0.1, 1.0]), ("lr", [0.03, 0.3]), seeds=1, strategy="batched",
                    memory_budget_mb=0.1)  # a tiny budget: several chunks
    assert chunk_size(base, 6, 0.1) < 6
    for i, j in np.ndindex(grid.shape[1:]):
        r = run(grid.cell_config(0, i, j))
        assert_cell_equals_run(grid, 0, i, j, r)
        s = setup(grid.cell_config(0, i, j))
        oracle = top_eigenvalues(s.model, s.loss, (s.x_train, s.y_train), k=1, weights=r.final_weights)
        np.testing.assert_allclose(grid.lambda_max[0, i, j], oracle.eigenvalues[0], rtol=1e-6)
        assert grid.lambda_max_residual[0, i, j] <= 1e-5 * abs(grid.lambda_max[0, i, j])


# ---- divergence, stopping, progress ----------------------------------------------------------------------------


def test_diverged_cells_are_frozen_and_the_others_continue():
    # Rosenbrock from its default start: lr ≤ 1e-3 converges, lr ≥ 1e-2 overflows within a few steps.
    base = Config(task="rosenbrock", model="point", optimizer="sam", steps=30, dtype="float64", device="cpu",
                  hparams={"momentum": 0.0})
    grid = run_grid(base, ("rho", [0.0, 0.05]), ("lr", [5e-4, 1e-3, 1e-2, 0.5]), seeds=1, strategy="batched")
    assert grid.diverged[0, 2:].all() and not grid.diverged[0, :2].any()
    assert (grid.diverged_step[0, :2] == -1).all() and (grid.diverged_step[0, 2:] > 0).all()
    for i, j in np.ndindex(grid.shape[1:]):
        assert_cell_equals_run(grid, 0, i, j)
    d = int(grid.diverged_step[0, 3, 1])
    assert not np.isfinite(grid.batch_loss[0, 3, 1, d]) and np.isnan(grid.grad_norm[0, 3, 1, d:]).all()
    assert np.isnan(grid.lambda_max[0, 2:]).all() and np.isfinite(grid.lambda_max[0, :2]).all()
    assert np.isnan(grid.final_train_loss[0, 2:]).all()


@pytest.mark.parametrize("strategy", ["batched", "sequential"])
def test_stop_keeps_what_was_computed(strategy):
    base = SMALL.replace(dtype="float64")
    polls = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) > 5

    grid = run_grid(base, ("rho", [0.0, 0.1]), ("lr", [0.1]), strategy=strategy, should_stop=should_stop)
    assert grid.stopped and np.isnan(grid.lambda_max).all()
    # batched polls once per step of the chunk; sequential once per cell, then once per step inside train.run
    k = 5 if strategy == "batched" else 4
    assert grid.n_steps[0, 0, 0] == k
    assert_cell_equals_run(grid, 0, 0, 0, run(grid.cell_config(0, 0, 0).replace(steps=k)))
    assert grid.n_steps[0, 0, 1] == (k if strategy == "batched" else 0)
    assert np.isnan(grid.batch_loss[0, 0, :, k:]).all()


def test_progress_counts_cell_steps():
    seen = []
    grid = run_grid(SMALL, ("rho", [0.0, 0.1]), ("lr", [0.1]), strategy="batched",
                    progress=lambda done, total, info: seen.append((done, total, info["phase"])))
    total = 2 * SMALL.steps
    train = [d for d, t, phase in seen if phase == "train"]
    assert all(t == total for _, t, _ in seen) and train == sorted(train) and train[-1] == total
    assert [phase for *_, phase in seen].count("lambda_max") == 2 and np.isfinite(grid.lambda_max).all()


# ---- strategies ------------------------------------------------------------------------------------------------


def test_the_strategy_never_changes_the_numbers():
    base = SMALL.replace(optimizer="fsam", batch_size=24, dtype="float64", steps=8)
    grids = {s: run_grid(base, ("rho", [0.0, 0.2]), ("lr", [0.05, 0.5]), seeds=2, strategy=s, lambda_max=False)
             for s in ("batched", "process", "sequential")}
    for strategy, grid in grids.items():
        assert grid.strategy == strategy
        for name in (*STEP_FIELDS, *FINAL_FIELDS):
            np.testing.assert_allclose(getattr(grid, name), getattr(grids["sequential"], name), rtol=1e-10,
                                       atol=1e-12, equal_nan=True, err_msg=f"{strategy} {name}")


def test_auto_strategy_measures_once_and_picks_a_strategy(monkeypatch):
    from sam_viz import sweep

    base = SMALL.replace(steps=20)
    monkeypatch.setattr(sweep, "_TIMINGS", {})
    chosen, estimates = choose_strategy(base, 8)
    assert chosen in ("batched", "process", "sequential") and chosen == min(estimates, key=estimates.get)
    assert len(sweep._TIMINGS) == 1
    choose_strategy(base.replace(steps=40, seed=2), 8)
    assert len(sweep._TIMINGS) == 1  # same model size and device: the measurement is reused
    assert choose_strategy(base, 1)[0] == "sequential"
    grid = run_grid(base, ("rho", [0.0, 0.1]), ("lr", [0.1, 0.2]), strategy="auto", lambda_max=False)
    assert grid.strategy in ("batched", "process", "sequential")


# ---- limits ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,message", [
    ({"x": ("rho", np.linspace(0.01, 1, MAX_AXIS_VALUES + 1))}, "values of rho"),
    ({"y": ("lr", [])}, "values of lr"),
    ({"seeds": MAX_SEEDS + 1}, "seeds"),
    ({"x": ("lr", [0.1]), "y": ("lr", [0.2])}, "both"),
    ({"x": ("nesterov", [0, 1])}, "can sweep"),
    ({"x": ("sigma", [0.1])}, "can sweep"),
    ({"x": ("rho", [-1.0])}, "Invalid rho"),
    ({"x": ("rho", ["a"])}, "x axis"),
    ({"strategy": "threads"}, "strategy"),
    ({"memory_budget_mb": 0}, "memory_budget_mb"),
])
def test_invalid_grids_raise(kwargs, message):
    args = {"x": ("rho", [0.1]), "y": ("lr", [0.1]), **kwargs}
    with pytest.raises(ValueError, match=message):
        run_grid(SMALL, args.pop("x"), args.pop("y"), **args)


def test_cell_step_budget():
    config = SMALL.replace(steps=MAX_CELL_STEPS // 225 + 1)
    values = np.linspace(0.01, 0.1, 15)
    with pytest.raises(ValueError, match="cell-steps"):
        run_grid(config, ("rho", values), ("lr", values))


# ---- robustness ------------------------------------------------------------------------------------------------


def _hand_made(acc: np.ndarray, loss: np.ndarray, diverged: np.ndarray) -> Grid:
    shape = acc.shape
    nan = np.full(shape, np.nan)
    acc, loss = np.where(diverged, np.nan, acc), np.where(diverged, np.nan, loss)
    return Grid(config=SMALL, x_name="rho", x_values=np.arange(shape[2]) / 10, y_name="lr",
                y_values=np.arange(shape[1]) / 10, seeds=shape[0],
                **{name: np.full((*shape, 1), np.nan) for name in STEP_FIELDS},
                final_train_loss=loss, final_train_acc=acc, final_test_loss=loss, final_test_acc=acc,
                lambda_max=nan, lambda_max_residual=nan, n_steps=np.ones(shape, dtype=np.int64), diverged=diverged,
                diverged_step=np.where(diverged, 0, -1), stopped=False, wall_time=0.0, strategy="batched", device="cpu")


def test_robustness_statistics():
    acc = np.array([[[0.90, 0.897, 0.80]], [[0.92, 0.907, 0.70]]])  # 2 seeds × 1 row × 3 columns
    loss = np.array([[[0.30, 0.302, 0.5]], [[0.28, 0.2818, 0.6]]])
    diverged = np.zeros(acc.shape, bool)
    diverged[1, 0, 2] = True
    grid = _hand_made(acc, loss, diverged)

    a = robustness(grid, "test_acc")
    failed = np.where(diverged, 0.0, acc)  # a diverged cell counts as accuracy 0
    assert a.higher_is_better and a.n_values == 6 and a.n_diverged == 1 and a.share_diverged == pytest.approx(1 / 6)
    assert a.mean == pytest.approx(failed.mean()) and a.std == pytest.approx(failed.std())
    np.testing.assert_allclose(a.cell_mean, failed.mean(axis=0))
    assert a.best == pytest.approx(0.91)
    assert a.share_near_best == pytest.approx(2 / 3)  # 0.91 and 0.902 are within 0.01; 0.40 is not
    assert a.std_cells == pytest.approx(failed.mean(axis=0).std())
    assert a.std_seeds == pytest.approx(np.std([failed[0].mean(), failed[1].mean()]))
    assert a.mean_converged == pytest.approx(acc[~diverged].mean())

    lo = robustness(grid, "test_loss")
    assert not lo.higher_is_better and lo.mean == np.inf and lo.n_diverged == 1
    assert lo.best == pytest.approx(0.29)
    assert lo.share_near_best == pytest.approx(2 / 3)  # 0.2919 ≤ 0.29·1.01; the diverged cell's mean is inf
    assert lo.mean_converged == pytest.approx(loss[~diverged].mean())
    json.dumps(lo.as_dict())

    with pytest.raises(ValueError, match="metric"):
        robustness(grid, "accuracy")


def test_robustness_leaves_out_cells_never_computed():
    acc = np.array([[[0.9, np.nan]]])
    r = robustness(_hand_made(acc, acc, np.zeros(acc.shape, bool)), "test_acc")
    assert r.n_values == 1 and r.mean == pytest.approx(0.9) and r.share_near_best == 1.0


# ---- records and command line ----------------------------------------------------------------------------------


def test_save_load_frame_and_csv(tmp_path):
    grid = run_grid(SMALL.replace(optimizer="lightsam1"), ("rho", [0.01, 0.1, 1.0]), ("lr", [0.1, 1.0]), seeds=2,
                    strategy="batched")
    path = grid.save(tmp_path / "grid")
    assert path.name == "grid.npz"
    back = Grid.load(path)
    for f in dataclasses.fields(Grid):
        a, b = getattr(grid, f.name), getattr(back, f.name)
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=f.name)
            assert a.dtype == b.dtype, f.name
        else:
            assert a == b, f.name
    frame = grid.to_frame()
    assert len(frame) == 12 and {"seed", "rho", "lr", "final_test_acc", "lambda_max", "diverged"} <= set(frame)
    row = frame[(frame.seed == 1) & (frame.rho == 1.0) & (frame.lr == 0.1)].iloc[0]
    assert row.final_test_acc == grid.final_test_acc[1, 0, 2]
    csv = pd.read_csv(grid.to_csv(tmp_path / "grid.csv"))
    np.testing.assert_allclose(csv.final_test_loss, frame.final_test_loss)
    r = grid.run_cell(1, 1, 0)
    assert r.config == grid.cell_config(1, 1, 0) and r.config.hp["lr"] == 1.0 and r.config.seed == 1
    assert_cell_equals_run(grid, 1, 1, 0, r)


def test_command_line(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_sweep_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "sw"
    args = parser.parse_args(["sweep", "--x", "rho", "--x-values", "0.01,0.1", "--y", "lr", "--y-values", "0.1",
                              "--seeds", "2", "--set", "steps=6", "--set", "n_samples=64", "--set", "width=8",
                              "--set", "optimizer=fsam", "--set", "sigma=0.5", "--set", "device=cpu",
                              "--strategy", "batched", "--no-lambda-max", "--quiet", "--out", str(out)])
    assert sweep_main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["cells"] == 4 and summary["strategy"] == "batched"
    grid = Grid.load(tmp_path / "sw.npz")
    assert grid.config.optimizer == "fsam" and grid.config.hp["sigma"] == 0.5 and grid.config.steps == 6
    assert len(pd.read_csv(tmp_path / "sw.csv")) == 4
    bad = parser.parse_args(["sweep", "--x-values", "0.1", "--y-values", "0.1", "--set", "steps"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        sweep_main(bad)


# ---- the sensitivity view's engine functions (scene) -----------------------------------------------------------


def test_grid_saves_to_a_file_object_and_summarises_as_json():
    import io

    grid = run_grid(SMALL.replace(optimizer="sam"), ("rho", [0.0, 0.1]), ("lr", [0.05]), seeds=2,
                    strategy="batched", lambda_max=False)
    buffer = io.BytesIO()
    assert grid.save(buffer) is buffer
    back = Grid.load(io.BytesIO(buffer.getvalue()))
    np.testing.assert_array_equal(back.final_test_acc, grid.final_test_acc)
    summary = json.loads(json.dumps(grid.summary()))  # standard JSON: NaN (λ_max not computed) became null
    assert summary["shape"] == [2, 1, 2] and summary["x_values"] == [0.0, 0.1] and summary["seed_values"] == [0, 1]
    np.testing.assert_allclose(summary["final_test_acc"], grid.final_test_acc)
    assert summary["lambda_max"] == [[[None, None]], [[None, None]]]
    assert summary["config"]["optimizer"] == "sam"


@pytest.mark.parametrize("text,values,note", [
    ("0.3, 0.01 0.1", (0.01, 0.1, 0.3), ""),
    ("abc", (0.05, 0.5), "Used 0.05, 0.5: 'abc' is not a number."),
    ("nan,inf", (0.05, 0.5), "Used 0.05, 0.5: 'nan', 'inf' are not finite numbers."),
    ("-1", (0.0,), "Used 0: 1 value below 0 raised to 0."),
    ("0.1,x,12,0.1", (0.1, 10.0), ("Used 0.1, 10: 'x' is not a number; 1 value above 10 lowered to 10; "
                                   "1 repeated value kept once.")),
    ("", (0.05, 0.5), "Used 0.05, 0.5: the box was empty."),
])
def test_typed_values_give_the_values_used_and_one_note(text, values, note):
    from sam_viz.scene import parse_sweep_values

    assert parse_sweep_values(text, 0.0, 10.0, (0.05, 0.5)) == (values, note)


def test_many_typed_values_give_one_note():
    from sam_viz.scene import parse_sweep_values

    values, note = parse_sweep_values(",".join(str(-k - 1) for k in range(100)), 0.0, 10.0, (0.1,))
    assert values == (0.0,) and note == "Used 0: 100 values below 0 raised to 0."
    values, note = parse_sweep_values(",".join(str(k / 100) for k in range(1, 101)), 0.0, 10.0, (0.1,))
    assert len(values) == 9 and values[0] == 0.01 and note.count(";") == 0
    assert "only the first 9 of 100 values are used" in note


def test_each_reason_for_not_sweeping_is_stated():
    from sam_viz.scene import sweep_plan
    from sam_viz.settings import from_query

    def plan(**query):
        settings, notes = from_query(query)
        assert not notes
        return sweep_plan(settings)

    both = plan(sx="rho", sy="rho")
    assert not both.entries and both.message.startswith("x and y must be different hyperparameters (both are ρ)")
    default = plan()
    assert [label for label, _ in default.entries] == ["SAM"] and default.skipped == [("SGD", "has no ρ hyperparameter")]
    only_sgd = plan(runs="sgd;adam")
    assert only_sgd.message == ("None of the chosen optimizers can be swept: SGD has no ρ hyperparameter; Adam has no ρ "
                                "hyperparameter.")
    zero_lr = plan(runs="sam", sx="lr", sy="rho", sxv="0,0.1")  # ρ's box allows 0, a learning rate must be > 0
    assert not zero_lr.entries and "takes learning rate only in" in zero_lr.message and "not 0" in zero_lr.message
    big = plan(runs="sam", steps="3000", sxv="1,2,3,4,5,6,7,8,9", syv="1,2,3,4,5,6,7,8,9", sseeds="5")
    assert "cell-steps a sweep may train" in big.message


def _seeded_grid(seeds=3):
    return run_grid(SMALL.replace(optimizer="sam", batch_size=24), ("rho", [0.0, 0.1]), ("lr", [0.05, 0.5]),
                    seeds=seeds, strategy="batched", lambda_max=False)


def test_the_heatmap_panel_is_the_mean_over_seeds():
    from sam_viz.scene import sweep_panel

    grid = _seeded_grid()
    assert not grid.diverged.any()
    panel = sweep_panel(grid, "test_acc")
    np.testing.assert_allclose(panel.mean, np.mean(grid.final_test_acc, axis=0), rtol=1e-12)
    np.testing.assert_allclose(panel.std, np.std(grid.final_test_acc, axis=0), rtol=1e-12, atol=1e-15)
    # a seed that diverged is left out of its cell's mean; a cell is "diverged" only when every seed did
    diverged = grid.diverged.copy()
    diverged[0, 1, 1] = True
    loss = grid.final_train_loss.copy()
    loss[0, 1, 1] = np.nan
    hand = dataclasses.replace(grid, diverged=diverged, final_train_loss=loss)
    panel = sweep_panel(hand, "train_loss")
    assert panel.mean[1, 1] == pytest.approx(np.mean(loss[1:, 1, 1])) and not panel.diverged[1, 1]
    assert panel.n_diverged[1, 1] == 1


def test_sweep_all_counts_every_grid_and_a_stop_keeps_what_was_done():
    from sam_viz.scene import grid_key, robustness_rows, sweep_all, sweep_cells, sweep_zip

    entries = [("SAM", SMALL.replace(optimizer="sam")), ("LightSAM-I", SMALL.replace(optimizer="lightsam1"))]
    x, y = ("rho", (0.01, 0.1)), ("lr", (0.1,))
    seen = []
    grids = sweep_all(entries, x, y, 1, [None, None], lambda d, t: seen.append((d, t)), lambda: False)
    assert [label for label, _ in grids] == ["SAM", "LightSAM-I"]
    assert seen[0] == (0, 48) and seen[-1] == (48, 48) and all(t == 48 for _, t in seen) and seen == sorted(seen)
    reused = sweep_all(entries, x, y, 1, [grids[0][1], None], lambda d, t: None, lambda: False)
    assert reused[0][1] is grids[0][1]  # a known grid is taken as it is
    counts = []
    stopped = sweep_all(entries, x, y, 1, [None, None], lambda d, t: counts.append(d), lambda: True)
    assert len(stopped) == 1 and stopped[0][1].stopped and counts == [0]  # the count stays where the stop left it
    assert grid_key(entries[0][1], x, y, 1) != grid_key(entries[0][1], x, y, 2)
    rows = robustness_rows(grids, "test_acc")
    assert rows[0]["mean"] == pytest.approx(robustness(grids[0][1], "test_acc").mean)
    assert np.isnan(rows[0]["std over seeds"])  # one seed: no spread over seeds
    cells = sweep_cells(grids)
    assert len(cells) == 4 and list(cells["optimizer"]) == ["SAM", "SAM", "LightSAM-I", "LightSAM-I"]
    assert sweep_zip(grids)[:2] == b"PK"


def test_the_estimate_times_a_few_steps_of_the_grid_itself():
    from sam_viz.scene import sweep_estimate

    config = SMALL.replace(optimizer="sam", steps=200)
    seconds = sweep_estimate(config, ("rho", (0.01, 0.1)), ("lr", (0.1,)), 1)
    started = time.perf_counter()
    run_grid(config, ("rho", [0.01, 0.1]), ("lr", [0.1]), strategy="batched", lambda_max=False)
    actual = time.perf_counter() - started
    assert 0 < seconds and actual / 5 < seconds < actual * 5  # the order of magnitude, on a shared machine


@pytest.mark.parametrize("name", ["sgd", "adam", "sam", "asam", "fsam", "lightsam1", "lightsam2", "lightsam3",
                                  "adasam", "msam"])
def test_every_cell_of_every_optimizer_equals_its_single_run(name):
    from sam_viz.optim import OPTIMIZERS

    base = SMALL.replace(optimizer=name, batch_size=32, dtype="float64", steps=6)
    lr = OPTIMIZERS[name].hparams["lr"].default
    x = ("rho", [0.0, OPTIMIZERS[name].hparams["rho"].default]) if "rho" in OPTIMIZERS[name].hparams else \
        ("weight_decay", [0.0, 1e-3])
    grid = run_grid(base, x, ("lr", [lr, 2 * lr]), seeds=2, strategy="batched", lambda_max=False)
    for s, i, j in np.ndindex(grid.shape):
        assert_cell_equals_run(grid, s, i, j)
