"""The test split's per-step metrics, evaluated a batch of steps at a time (sam_viz/deferred_eval.py): the same
numbers as a forward pass at each θ_t, whatever the batch, and visible to a progress callback at its step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sam_viz.deferred_eval as D
from sam_viz.config import Config
from sam_viz.models import accuracy
from sam_viz.train import run, setup, train

BASE = Config(optimizer="sam", n_samples=160, width=8, steps=13, snapshot_every=1, device="cpu")


def _at(config: Config, theta: np.ndarray) -> tuple[float, float]:
    """Test loss and accuracy of ``config``'s model at the flat parameters ``theta``, by a plain forward pass."""
    s = setup(config)
    torch.nn.utils.vector_to_parameters(torch.as_tensor(theta, dtype=s.x_test.dtype), s.model.parameters())
    with torch.no_grad():
        out = s.model(s.x_test)
        return float(s.loss(out, s.y_test)), float(accuracy(out, s.y_test))


@pytest.mark.parametrize("batch_size", [0, 32])
def test_each_steps_test_metrics_are_those_at_its_theta(batch_size):
    config = BASE.replace(dtype="float64", batch_size=batch_size)
    r = run(config)
    assert r.snapshot_step[:-1].tolist() == list(range(config.steps))
    for t in range(config.steps):
        loss, acc = _at(config, r.weights[t])
        np.testing.assert_allclose(r.test_loss[t], loss, rtol=1e-12)
        assert r.test_acc[t] == acc


def test_the_numbers_do_not_depend_on_how_many_steps_are_batched(monkeypatch):
    """float32: a point's metrics are bit-identical whether it is evaluated alone or with 31 others."""
    configs = [BASE.replace(seed=0), BASE.replace(seed=1, rho=0.2)]
    reference = train(configs)
    monkeypatch.setattr(D, "MAX_STEPS", 1)
    one_at_a_time = train(configs)
    monkeypatch.setattr(D, "MAX_STEPS", 5)  # 13 steps: two full batches and a partial one
    fives = train(configs)
    for a, b, c in zip(reference, one_at_a_time, fives):
        for name in ("test_loss", "test_acc", "train_loss", "batch_loss"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
            np.testing.assert_array_equal(getattr(a, name), getattr(c, name))
        assert np.isfinite(a.test_loss).all()


def test_a_progress_callback_sees_the_test_loss_of_its_step():
    seen = []
    r = run(BASE.replace(steps=40), progress=lambda done, total, row: seen.append(row["test_loss"]))
    np.testing.assert_array_equal(seen, r.test_loss)


def test_each_kept_point_is_written_to_its_step_and_run_after_a_run_left_the_stack():
    """After a divergence the stack is smaller: a later step's points belong to the remaining runs only."""

    class Mean:  # outputs: each point's parameter mean, repeated for every row
        def outputs(self, point, x, *, stacked):
            assert stacked
            return point[0].mean(dim=(1, 2))[:, None, None].expand(-1, x.shape[0], 1)

        def metric(self, fn, outputs, y, *, stacked):
            return torch.vmap(fn, in_dims=(0, None))(outputs, y)

    record = torch.full((3, 2, 3), float("nan"))
    deferred = D.DeferredEvaluation(Mean(), torch.zeros(4, 1), torch.zeros(4), [(1, lambda out, y: out.mean())], runs=3)
    theta = torch.arange(3.0)[:, None, None].expand(3, 2, 2)  # run k's parameters are all k
    deferred.keep(0, torch.tensor([0, 1, 2]), [theta])
    deferred.keep(1, torch.tensor([0, 2]), [theta[[0, 2]] + 10])  # run 1 diverged at step 0
    deferred.flush(record)
    np.testing.assert_array_equal(record[0, 1], [0, 1, 2])
    np.testing.assert_array_equal(record[1, 1], [10, np.nan, 12])
    assert torch.isnan(record[:, 0]).all() and torch.isnan(record[2]).all()  # other fields and steps untouched


def test_capacity_bounds_the_rows_of_one_forward():
    s = setup(BASE)
    oracle = object()
    wide = D.DeferredEvaluation(oracle, s.x_test.repeat(100, 1), s.y_test.repeat(100), [], runs=49)
    assert wide.capacity == 1
    small = D.DeferredEvaluation(oracle, s.x_test, s.y_test, [], runs=1)
    assert small.capacity == D.MAX_STEPS
    assert small.capacity * s.x_test.shape[0] <= D.MAX_ROWS


def test_models_with_buffers_are_evaluated_at_their_step():
    assert D.deferrable(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh()))
    assert not D.deferrable(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3)))
