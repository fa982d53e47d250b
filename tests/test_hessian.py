"""Hessian operator and spectral estimators against dense float64 oracles (torch.autograd.functional.hessian)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from sam_viz import hessian as hs
from sam_viz.models import flatten

MODES = hs.MODES
# torch itself calls the deprecated torch.jit.script the first time jvp loads its decompositions.
pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
              pytest.mark.usefixtures("one_thread")]


# ---------------------------------------------------------------------------------------------------- fixtures


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double()


def _data(model_kind: str = "mlp", n: int = 64, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (n, 2) if model_kind == "mlp" else (n, 1, 6, 6)
    return torch.randn(*shape, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def _case(kind: str) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    return (_mlp() if kind == "mlp" else _cnn()), _data(kind)


def _oracle(model: nn.Module, loss_fn, batch) -> torch.Tensor:
    """The dense Hessian by torch.autograd.functional.hessian over all parameters, flattened in order."""
    x, y = batch
    named = {n: p.detach() for n, p in model.named_parameters()}
    shapes = [p.shape for p in named.values()]
    flat0 = torch.cat([p.reshape(-1) for p in named.values()])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts = torch.split(flat, [math.prod(s) for s in shapes])
        params = {n: c.view(s) for n, c, s in zip(named, parts, shapes, strict=True)}
        return loss_fn(functional_call(model, params, (x,)), y)

    return torch.autograd.functional.hessian(loss, flat0)


@pytest.fixture(scope="module")
def mlp_case():
    """The MLP after 800 heavy-ball steps (loss 0.08): at a trained point the spectrum has a few outliers over a bulk.

    A hand-written loop, because torch.optim's first step costs ~1 s of lazy imports.
    """
    model, (x, y) = _case("mlp")
    params = list(model.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    for _ in range(800):
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), params)
        with torch.no_grad():
            for p, g, m in zip(params, grads, velocity, strict=True):
                p.sub_(0.5 * m.mul_(0.9).add_(g))
    batch = (x, y)
    H = _oracle(model, F.cross_entropy, batch)
    return model, batch, H, torch.linalg.eigvalsh(H).flip(0).numpy()


def _spd(dim: int, eigenvalues: np.ndarray, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    return Q @ torch.diag(torch.as_tensor(eigenvalues, dtype=torch.float64)) @ Q.T


class _Quadratic(nn.Module):
    """L(w) = ½ wᵀAw: the Hessian is A exactly."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, dim, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w


class _VectorOnly:
    """An operator that only knows ``@`` for vectors and ``.dim``: estimators must not need more."""

    def __init__(self, A: torch.Tensor) -> None:
        self.A, self.dim, self.dtype, self.device = A, A.shape[0], A.dtype, A.device

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        assert v.ndim == 1
        return self.A @ v


# ---------------------------------------------------------------------------------------------------- HVP


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("mode", MODES)
def test_hvp_equals_autograd_hessian(kind, mode):
    model, batch = _case(kind)
    H = _oracle(model, F.cross_entropy, batch)
    op = hs.make_hvp(model, F.cross_entropy, batch, mode=mode)
    assert op.dim == H.shape[0] and op.dtype == torch.float64 and op.device == torch.device("cpu")
    v = torch.randn(op.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(op @ v, H @ v, atol=1e-10, rtol=0)
    torch.testing.assert_close(op.to_dense(), H, atol=1e-10, rtol=0)
    torch.testing.assert_close(hs.dense_hessian(model, F.cross_entropy, batch, mode=mode), H, atol=1e-10, rtol=0)
    r = hs.top_eigenvalues(op, k=3, smallest=1)
    exact = torch.linalg.eigvalsh(H).numpy()
    np.testing.assert_allclose(np.r_[r.eigenvalues, r.smallest], np.r_[exact[::-1][:3], exact[0]], rtol=0,
                               atol=1e-6 * abs(exact).max())


@pytest.mark.parametrize("mode", MODES)
def test_block_product_counts_columns(mode, mlp_case):
    model, batch, H, _ = mlp_case
    op = hs.make_hvp(model, F.cross_entropy, batch, mode=mode)
    op.block_size = 4  # forces the block to be split
    V = torch.randn(op.dim, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(op @ V, H @ V, atol=1e-10, rtol=0)
    assert op.matvecs == 10
    with pytest.raises(ValueError, match="Expected a vector"):
        op @ torch.ones(op.dim + 1, dtype=torch.float64)


@pytest.mark.parametrize("mode", MODES)
def test_block_strategies_agree_and_defaults_are_fixed(mode, mlp_case):
    model, batch, H, _ = mlp_case
    V = torch.randn(H.shape[0], 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for strategy in hs.STRATEGIES:
        op = hs.make_hvp(model, F.cross_entropy, batch, mode=mode, strategy=strategy)
        assert op.block_strategy == strategy and not op.vmap_fallback
        torch.testing.assert_close(op @ V, H @ V, atol=1e-10, rtol=0)
    # No strategy named: the documented default for the device and mode, every time (no timing, no shared state).
    ops = [hs.make_hvp(model, F.cross_entropy, batch, mode=mode) for _ in range(2)]
    for op in ops:
        torch.testing.assert_close(op @ V, H @ V, atol=1e-10, rtol=0)
        assert op.block_strategy == hs.default_strategy("cpu", mode) == hs.DEFAULT_STRATEGY[("cpu", mode)]
    assert hs.default_strategy("cuda", mode) == "vmap"
    with pytest.raises(ValueError, match="Invalid strategy"):
        hs.make_hvp(model, F.cross_entropy, batch, strategy="auto")


def test_vmap_falls_back_to_a_loop_only_by_default():
    H = _spd(12, np.linspace(-1.0, 2.0, 12))
    V = torch.randn(12, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def no_batching_rule(v: torch.Tensor, batched: bool) -> torch.Tensor:
        if batched:
            raise RuntimeError("vmap: no batching rule")
        return H @ v

    def operator(strategy):
        return hs.HessianOperator(("w",), (torch.Size([12]),), torch.float64, torch.device("cpu"), "stateless", 1,
                                  None, no_batching_rule, strategy=strategy)

    default = operator(None)
    assert default.block_strategy == "vmap" and default.vmap_fallback
    torch.testing.assert_close(default @ V, H @ V, atol=1e-12, rtol=0)
    assert default.block_strategy == "loop"  # the switch is visible on the operator
    with pytest.raises(RuntimeError, match="no batching rule"):
        operator("vmap") @ V


@pytest.mark.parametrize("mode", MODES)
def test_param_filter_gives_the_sub_block(mode, mlp_case):
    model, batch, H, _ = mlp_case
    names = [n for n, _ in model.named_parameters()]
    sizes = [p.numel() for p in model.parameters()]
    offsets = np.cumsum([0, *sizes])
    chosen = [n for n in names if n.startswith("2.")]
    idx = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i, n in enumerate(names) if n in chosen])
    for flt in ("2.", lambda n: n.startswith("2.")):
        op = hs.make_hvp(model, F.cross_entropy, batch, mode=mode, param_filter=flt)
        assert op.names == tuple(chosen)
        torch.testing.assert_close(op.to_dense(), H[np.ix_(idx, idx)], atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="selects no parameter"):
        hs.make_hvp(model, F.cross_entropy, batch, param_filter="nope")


def test_max_samples_is_a_seeded_subset(mlp_case):
    model, (x, y), _, _ = mlp_case
    a = hs.make_hvp(model, F.cross_entropy, (x, y), max_samples=20, seed=5)
    b = hs.make_hvp(model, F.cross_entropy, (x, y), max_samples=20, seed=5)
    c = hs.make_hvp(model, F.cross_entropy, (x, y), max_samples=20, seed=6)
    assert a.n_samples == 20 and np.array_equal(a.sample_indices, b.sample_indices)
    assert not np.array_equal(a.sample_indices, c.sample_indices)
    assert len(np.unique(a.sample_indices)) == 20
    idx = torch.as_tensor(a.sample_indices)
    torch.testing.assert_close(a.to_dense(), _oracle(model, F.cross_entropy, (x[idx], y[idx])), atol=1e-10, rtol=0)
    assert hs.make_hvp(model, F.cross_entropy, (x, y), max_samples=10_000).n_samples == len(x)


@pytest.mark.parametrize("mode", MODES)
def test_loss_without_curvature_gives_zero(mode):
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    op = hs.make_hvp(model, lambda out, y: out.mean(), (x, x), mode=mode)
    assert torch.count_nonzero(op.to_dense()) == 0
    # Partly: with a linear read-out the last bias has a constant gradient, the other layers do not.
    mlp, batch = _case("mlp")
    H = _oracle(mlp, lambda out, y: out.mean(), batch)
    assert torch.count_nonzero(H[-3:]) == 0 and torch.count_nonzero(H[:-3]) > 0
    op = hs.make_hvp(mlp, lambda out, y: out.mean(), batch, mode=mode)
    torch.testing.assert_close(op.to_dense(), H, atol=1e-10, rtol=0)


def test_dtype_option_gives_a_float64_reference_of_a_float32_model(mlp_case):
    model64, batch, H, _ = mlp_case
    model32 = copy.deepcopy(model64).float()
    x, y = batch
    op = hs.make_hvp(model32, F.cross_entropy, (x.float(), y), dtype=torch.float64)
    assert op.dtype == torch.float64
    assert next(model32.parameters()).dtype == torch.float32
    # The only difference left is the float32 rounding of the weights themselves.
    torch.testing.assert_close(op.to_dense(), H, atol=1e-5, rtol=0)


def test_weights_and_unflatten(mlp_case):
    model, batch, _, _ = mlp_case
    flat = flatten(model)
    parts = hs.unflatten(model, flat.numpy())
    assert list(parts) == [n for n, _ in model.named_parameters()]
    for (_, p), t in zip(model.named_parameters(), parts.values()):
        assert torch.equal(p.detach(), t) and t.data_ptr() != p.data_ptr()
    with pytest.raises(ValueError, match=f"Expected {flat.numel()} values"):
        hs.unflatten(model, flat[:-1])
    moved = flat + 0.1 * torch.randn(flat.shape, dtype=flat.dtype, generator=torch.Generator().manual_seed(0))
    other = copy.deepcopy(model)
    torch.nn.utils.vector_to_parameters(moved, other.parameters())
    H_moved = _oracle(other, F.cross_entropy, batch)
    torch.testing.assert_close(hs.make_hvp(model, F.cross_entropy, batch, weights=moved.numpy()).to_dense(), H_moved,
                               atol=1e-10, rtol=0)
    result = hs.eigen_at(model, F.cross_entropy, batch, moved.numpy(), k=2)
    exact = torch.linalg.eigvalsh(H_moved).flip(0).numpy()
    np.testing.assert_allclose(result.eigenvalues, exact[:2], rtol=1e-6)
    assert torch.equal(flatten(model), flat)


# -------------------------------------------------------------------------------------------------- the caller's model


def _snapshot(model: nn.Module) -> dict:
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "buffers": [b.clone() for b in model.buffers()],
    }


def _assert_same(before: dict, model: nn.Module) -> None:
    after = _snapshot(model)
    assert after["requires_grad"] == before["requires_grad"]
    assert after["training"] == before["training"]
    for key in ("params", "buffers"):
        assert all(torch.equal(a, b) for a, b in zip(before[key], after[key])), key
    for a, b in zip(before["grads"], after["grads"]):
        assert (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_the_callers_model_is_never_changed(mode, training):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).double()
    model.train(training)
    x, y = _data("mlp", n=32)
    F.cross_entropy(model(x), y).backward()  # the caller has gradients lying around
    model[0].bias.requires_grad_(False)  # and a frozen parameter
    model[0].bias.grad = None
    before = _snapshot(model)
    batch = (x, y)
    op = hs.make_hvp(model, F.cross_entropy, batch, mode=mode)
    op @ torch.ones(op.dim, dtype=torch.float64)
    op @ torch.ones(op.dim, 3, dtype=torch.float64)
    kw = {"mode": mode}
    hs.top_eigenvalues(model, F.cross_entropy, batch, k=2, smallest=1, **kw)
    hs.trace(model, F.cross_entropy, batch, matvecs=12, **kw)
    hs.spectral_density(model, F.cross_entropy, batch, iters=10, n_vectors=2, **kw)
    hs.dense_eigenvalues(model, F.cross_entropy, batch, **kw)
    hs.dense_hessian(model, F.cross_entropy, batch, **kw)
    hs.lanczos(op, 5)
    hs.eigen_at(model, F.cross_entropy, batch, flatten(model) * 1.01, **kw)
    hs.make_hvp(model, F.cross_entropy, batch, max_samples=8, param_filter="3.", **kw).to_dense()
    _assert_same(before, model)


# ---------------------------------------------------------------------------------------------------- Lanczos


def test_lanczos_decomposition_and_breakdown():
    A = _spd(40, np.linspace(-1.0, 4.0, 40))
    alpha, beta, Q = hs.lanczos(A, 15, seed=1)
    T = torch.diag(alpha) + torch.diag(beta[:-1], 1) + torch.diag(beta[:-1], -1)
    torch.testing.assert_close(Q.T @ Q, torch.eye(15, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(Q.T @ A @ Q, T, atol=1e-12, rtol=0)
    # Three distinct eigenvalues: the Krylov space is invariant after three steps.
    B = _spd(30, np.repeat([3.0, 1.0, -2.0], 10))
    alpha, beta, Q = hs.lanczos(B, 20)
    assert len(alpha) == 3 and Q.shape == (30, 3) and beta[-1] < 1e-10
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(np.diag(alpha) + np.diag(beta[:-1], 1)
                                                          + np.diag(beta[:-1], -1))), [-2.0, 1.0, 3.0], atol=1e-12)


def test_quadratic_gives_exactly_its_spectrum():
    spectrum = np.concatenate([[7.0, 5.0, 5.0, 2.0], np.linspace(-0.5, 1.0, 36), [-3.0]])
    A = _spd(41, spectrum, seed=2)
    model = _Quadratic(41)

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * out @ A @ out

    batch = (torch.zeros(1, 1), torch.zeros(1))
    expected = np.sort(spectrum)[::-1]
    for mode in MODES:
        np.testing.assert_allclose(hs.dense_eigenvalues(model, loss_fn, batch, mode=mode), expected, atol=1e-12)
        r = hs.top_eigenvalues(model, loss_fn, batch, k=4, smallest=2, mode=mode, method="lanczos")
        assert r.method == "lanczos" and r.converged.all() and r.smallest_converged.all()
        # The repeated 5.0 needs the restart: a single Krylov sequence sees one copy only.
        np.testing.assert_allclose(r.eigenvalues, [7.0, 5.0, 5.0, 2.0], atol=1e-8)
        np.testing.assert_allclose(r.smallest, [-3.0, -0.5], atol=1e-8)


def test_top_eigenvalues_match_the_dense_spectrum(mlp_case):
    model, batch, H, exact = mlp_case
    r1 = hs.top_eigenvalues(model, F.cross_entropy, batch)
    assert r1.method == "lanczos" and r1.converged.all() and r1.tol == 1e-6
    assert abs(r1.eigenvalues[0] - exact[0]) <= 1e-6 * exact[0]
    r5 = hs.top_eigenvalues(model, F.cross_entropy, batch, k=5, smallest=3)
    assert r5.converged.all() and r5.smallest_converged.all()
    np.testing.assert_allclose(r5.eigenvalues, exact[:5], rtol=0, atol=1e-6 * exact[0])
    # Negative curvature: the lowest three, most negative first.
    assert exact[-1] < 0
    np.testing.assert_allclose(r5.smallest, exact[::-1][:3], rtol=0, atol=1e-6 * exact[0])
    # Far above float64's rounding floor the Lanczos bound is reported, and it is the true ‖H q − λ q‖.
    assert not r5.verified and r5.matvecs == r5.iters < 123
    checked = hs.top_eigenvalues(model, F.cross_entropy, batch, k=5, smallest=3, verify=True)
    assert checked.verified and checked.matvecs == checked.iters + 8
    for r in (r5, checked):
        q = torch.as_tensor(r.eigenvectors)
        true_res = torch.linalg.vector_norm(H @ q - q * torch.as_tensor(r.eigenvalues), dim=0).numpy()
        np.testing.assert_allclose(r.residuals, true_res, atol=1e-10)


def test_estimators_accept_tensors_and_vector_only_operators():
    A = _spd(60, np.linspace(0.0, 1.0, 60) ** 3 * 10.0, seed=4)
    exact = np.linalg.eigvalsh(A.numpy())[::-1]
    for op in (A, _VectorOnly(A)):
        r = hs.top_eigenvalues(op, k=3)
        np.testing.assert_allclose(r.eigenvalues, exact[:3], rtol=1e-6)
        tr = hs.trace(op, matvecs=30)
        assert abs(tr.estimate - exact.sum()) <= 3 * tr.stderr
        assert hs.spectral_density(op, iters=10, n_vectors=2).density.shape == (500,)
        np.testing.assert_allclose(hs.dense_eigenvalues(op), exact, atol=1e-10)
    with pytest.raises(TypeError, match="only apply to a model"):
        hs.top_eigenvalues(A, mode="stateless")


def test_too_few_iterations_are_reported_as_not_converged():
    # A cluster of 200 eigenvalues in [1, 1.01]: two Lanczos steps cannot resolve the top one.
    A = _spd(200, np.linspace(1.0, 1.01, 200), seed=5)
    r = hs.top_eigenvalues(A, k=1, iters=2)
    assert r.iters == 2 and not r.converged[0] and r.residuals[0] > r.tol * r.eigenvalues[0]
    capped = hs.top_eigenvalues(A, k=1, max_iters=10)
    assert capped.iters == 10 and not capped.converged[0]
    full = hs.top_eigenvalues(A, k=1)
    assert full.converged[0] and abs(full.eigenvalues[0] - 1.01) <= full.residuals[0] + 1e-12


def test_an_unreachable_tolerance_stops_on_the_rounding_floor(mlp_case):
    model, (x, y), _, exact = mlp_case
    model32 = copy.deepcopy(model).float()
    r = hs.top_eigenvalues(model32, F.cross_entropy, (x.float(), y), k=1, tol=1e-12)
    # float32 HVPs cannot give a 1e-12 residual: the Lanczos bound would claim it, the explicit check (automatic
    # this close to the rounding floor) does not. Stop early, keep the accurate value, say it did not converge.
    assert r.verified and not r.converged[0] and r.iters < 60 and r.tol == 1e-12
    assert abs(r.eigenvalues[0] - exact[0]) < 1e-5 * exact[0]
    default = hs.top_eigenvalues(model32, F.cross_entropy, (x.float(), y))
    assert default.tol == 1e-4 and default.converged[0] and not default.verified
    assert abs(default.eigenvalues[0] - exact[0]) < 1e-5 * exact[0]


def test_small_operators_use_the_dense_method():
    A = _spd(12, np.arange(12.0))
    r = hs.top_eigenvalues(A, k=2, smallest=1)
    assert r.method == "dense" and r.iters == 12
    np.testing.assert_allclose(r.eigenvalues, [11.0, 10.0], atol=1e-12)
    np.testing.assert_allclose(r.smallest, [0.0], atol=1e-12)
    with pytest.raises(ValueError, match="Invalid k"):
        hs.top_eigenvalues(A, k=10, smallest=5)


# ---------------------------------------------------------------------------------------------------- trace and density


def test_hutchpp_is_unbiased_and_beats_hutchinson(mlp_case):
    model, batch, H, _ = mlp_case
    true = float(torch.trace(H))
    pp = hs.trace(model, F.cross_entropy, batch, matvecs=60, seed=0)
    plain = hs.trace(model, F.cross_entropy, batch, matvecs=60, seed=0, method="hutchinson")
    assert pp.method == "hutch++" and pp.matvecs == 60
    assert abs(pp.estimate - true) <= 3 * pp.stderr
    assert abs(plain.estimate - true) <= 3 * plain.stderr
    assert pp.stderr < 0.05 * plain.stderr  # measured: 0.01-0.02
    # Over seeds, the errors in units of stderr look like a standard normal.
    z = [(hs.trace(H, matvecs=30, seed=s).estimate - true) / hs.trace(H, matvecs=30, seed=s).stderr
         for s in range(20)]
    assert abs(np.mean(z)) < 1.0 and 0.4 < np.std(z) < 2.0


def test_hutchpp_is_exact_once_the_sketch_spans_everything():
    A = _spd(5, [3.0, 2.0, 1.0, -1.0, 0.5])
    r = hs.trace(A, matvecs=15)
    assert r.estimate == pytest.approx(5.5, abs=1e-12) and r.stderr == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 4"):
        hs.trace(A, matvecs=3)


def test_slq_density_integrates_to_one_and_has_the_right_mean(mlp_case):
    model, batch, _, exact = mlp_case
    d = hs.spectral_density(model, F.cross_entropy, batch, iters=40, n_vectors=8, seed=0)
    assert d.nodes.shape == d.weights.shape == (8, 40) and d.matvecs == 320
    np.testing.assert_allclose(d.weights.sum(axis=1), 1.0, atol=1e-10)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=1e-3)
    # Σ_j τ_j θ_j = vᵀHv per unit Rademacher vector: a Hutchinson estimate of tr H / dim.
    per_vector = (d.weights * d.nodes).sum(axis=1)
    stderr = per_vector.std(ddof=1) / math.sqrt(len(per_vector))
    assert abs(per_vector.mean() - exact.sum() / len(exact)) <= 4 * stderr
    # Gauss quadrature finds the extreme eigenvalue as its outer node.
    assert d.nodes.max() == pytest.approx(exact[0], rel=1e-8)


def test_slq_with_full_dimension_recovers_the_spectrum():
    spectrum = np.array([4.0, 2.0, 2.0, 1.0, 0.0, -1.0])
    d = hs.spectral_density(_spd(6, spectrum), iters=50, n_vectors=3)
    # Repeated eigenvalue: each run breaks down after 5 steps and is padded with zero weights.
    assert d.nodes.shape == (3, 6) and np.all(d.weights[:, 5] == 0)
    for nodes, weights in zip(d.nodes, d.weights):
        np.testing.assert_allclose(np.sort(nodes[weights > 0]), [-1.0, 0.0, 1.0, 2.0, 4.0], atol=1e-10)


# ---------------------------------------------------------------------------------------------------- limits


def test_dense_size_limit():
    torch.manual_seed(0)
    big = nn.Linear(100, 50)  # 5,050 parameters
    batch = (torch.randn(4, 100), torch.randint(0, 50, (4,)))
    assert sum(p.numel() for p in big.parameters()) > hs.MAX_DENSE_PARAMS
    for call in (lambda: hs.dense_hessian(big, F.cross_entropy, batch),
                 lambda: hs.dense_eigenvalues(big, F.cross_entropy, batch),
                 lambda: hs.make_hvp(big, F.cross_entropy, batch).to_dense()):
        with pytest.raises(ValueError, match="MAX_DENSE_PARAMS = 5,000"):
            call()
    # A block under the limit is fine.
    assert hs.dense_hessian(big, F.cross_entropy, batch, param_filter="bias").shape == (50, 50)


def test_invalid_arguments():
    model, batch = _case("mlp")
    with pytest.raises(ValueError, match="Invalid mode"):
        hs.make_hvp(model, F.cross_entropy, batch, mode="fast")
    with pytest.raises(ValueError, match="Invalid max_samples"):
        hs.make_hvp(model, F.cross_entropy, batch, max_samples=0)
    with pytest.raises(ValueError, match="needs loss_fn and batch"):
        hs.trace(model)
    with pytest.raises(ValueError, match="scalar"):
        hs.make_hvp(model, lambda out, y: out, batch)
    with pytest.raises(ValueError, match="non-zero"):
        hs.lanczos(torch.eye(3, dtype=torch.float64), 2, v0=torch.zeros(3))
    with pytest.raises(ValueError, match="Invalid iters"):
        hs.top_eigenvalues(torch.eye(30, dtype=torch.float64), iters=0)
