"""Curvature over training and Hessian planes against the dense Hessian; the surface/hessian command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sam_viz import hessian as H
from sam_viz import landscape as L
from sam_viz.cli import main
from sam_viz.config import Config
from sam_viz.curvature import interleaved, over_training
from sam_viz.train import run, setup

CONFIG = Config(n_samples=100, width=8, steps=30, snapshot_every=10, device="cpu", dtype="float64")


@pytest.fixture(scope="module")
def trained():
    return run(CONFIG)


def test_lambda_max_over_training_matches_the_dense_spectrum(trained):
    lanczos = over_training(trained, with_trace=True)
    exact = over_training(trained, exact=True)
    assert lanczos.step.tolist() == [0, 10, 20, 30] and lanczos.converged.all()
    np.testing.assert_allclose(lanczos.lambda_max, exact.lambda_max, rtol=1e-6)
    s = setup(CONFIG)
    for i, w in enumerate(trained.weights):
        dense = np.linalg.eigvalsh(H.dense_hessian(s.model, s.loss, (s.x_train, s.y_train), weights=w).numpy())
        assert exact.lambda_max[i] == pytest.approx(dense[-1], rel=1e-10)
        assert abs(lanczos.trace[i] - dense.sum()) < 4 * lanczos.trace_stderr[i] + 1e-8
    assert lanczos.method == "lanczos" and exact.method == "dense" and lanczos.n_samples == 75


def test_several_runs_are_evaluated_a_snapshot_each_in_turn_so_a_stop_keeps_every_run(trained):
    other = run(CONFIG.with_optimizer("sgd"))
    alone = [over_training(r) for r in (trained, other)]
    together = interleaved([trained, other])
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a.step, b.step)
        np.testing.assert_allclose(a.lambda_max, b.lambda_max, rtol=1e-12)
    calls = []
    stopped = interleaved([trained, other], progress=lambda done, total: calls.append((done, total)),
                          should_stop=lambda: len(calls) >= 5)
    assert calls[-1] == (5, 8)
    assert [len(c.step) for c in stopped] == [3, 2]  # 0, 10, 20 of the first; 0, 10 of the second


def test_every_and_limits(trained):
    assert over_training(trained, every=3).step.tolist() == [0, 30]
    with pytest.raises(ValueError, match="every"):
        over_training(trained, every=0)


def test_hessian_plane_spans_the_top_eigenvectors(trained):
    s = setup(CONFIG)
    batch = (s.x_train, s.y_train)
    plane = L.hessian_plane(s.model, s.loss, batch, trained.final_weights)
    dense = H.dense_hessian(s.model, s.loss, batch, weights=trained.final_weights).numpy()
    vals, vecs = np.linalg.eigh(dense)
    for d, v in ((plane.d1, vecs[:, -1]), (plane.d2, vecs[:, -2])):
        assert abs(abs(d @ v) - 1) < 1e-6
    np.testing.assert_allclose(plane.info["eigenvalues"], vals[[-1, -2]], rtol=1e-6)
    np.testing.assert_array_equal(plane.origin, trained.final_weights)


def test_cli_surface_and_hessian(tmp_path, trained):
    path = trained.save(tmp_path / "r.npz")
    assert main(["surface", "--run", str(path), "--plane", "pca", "--resolution", "9", "--out", str(tmp_path / "s")]) == 0
    with np.load(tmp_path / "s.npz") as surf:
        assert surf["loss"].shape == (9, 9) and surf["traj_alpha"].shape == (4,)
        assert surf["loss"][4, 4] == pytest.approx(trained.final_train_loss, rel=1e-9)
        assert surf["traj_off_plane"][-1] == pytest.approx(0, abs=1e-12)  # the plane is centred on θ_final
    meta = json.loads((tmp_path / "s.json").read_text())
    assert meta["plane"] == "pca" and sum(meta["explained_variance"]) <= 1 + 1e-12
    assert main(["hessian", "--run", str(path), "--k", "3", "--out", str(tmp_path / "h")]) == 0
    summary = json.loads((tmp_path / "h.json").read_text())
    assert len(summary["eigenvalues"]) == 3 and summary["eigenvalues"][0] >= summary["eigenvalues"][1]
    assert summary["lambda_max_over_training"]["lambda_max"][-1] == pytest.approx(summary["eigenvalues"][0], rel=1e-6)


def test_cli_reports_a_missing_file(tmp_path, capsys):
    assert main(["hessian", "--run", str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz" in capsys.readouterr().err


def test_cli_sweep_writes_the_grid(tmp_path):
    out = tmp_path / "grid"
    assert main(["sweep", "--x-values", "0.01,0.1", "--y-values", "0.1,1", "--set", "steps=5", "--set", "n_samples=64",
                 "--set", "width=8", "--no-lambda-max", "--quiet", "--out", str(out)]) == 0
    rows = (tmp_path / "grid.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("seed,i,j,lr,rho")
    with np.load(tmp_path / "grid.npz") as data:
        assert data["final_test_acc"].shape == (1, 2, 2)
