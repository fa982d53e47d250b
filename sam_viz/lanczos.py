"""Lanczos with full re-orthogonalisation, and the extreme eigenpairs of a symmetric operator it gives.

One kernel serves λ_max, the top k, the lowest eigenvalues and (in ``sam_viz.density``) stochastic Lanczos
quadrature. ``top_eigenvalues(A, k)`` takes anything with ``A @ v`` and ``.dim`` (see
``sam_viz.linear_operator``): build a Hessian operator first with ``sam_viz.hvp.make_hvp``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import Tensor

from .dense import dense_eigh
from .linear_operator import Operator, check_operator, device_of, dim_of, dtype_of, matmat, randn

METHODS = ("auto", "lanczos", "dense")
# Lanczos keeps every basis vector (full re-orthogonalisation), so its default length is capped by memory too.
LANCZOS_MAX_ITERS = 300
LANCZOS_MAX_BYTES = 2**29
# Default `tol` per dtype. The Ritz residual cannot drop below the HVP's own rounding error (measured 6e-7·‖H‖ ≈ 5ε
# on the float32 tanh MLP of benchmarks/bench_hessian.py), so float32 asks for 1e-4, not a 1e-6 it may never reach;
# the eigenvalue error is then ≤ 1e-4·|λ_max| and typically ≈ residual²/gap (4e-7 relative on that MLP).
DEFAULT_TOL = {torch.float64: 1e-6, torch.float32: 1e-4}
FALLBACK_TOL = 1e-2  # float16 / bfloat16
# With full re-orthogonalisation the Lanczos bound |β_m s_mi| equals ‖A q − θ q‖ up to that rounding floor, so the
# residuals are recomputed with explicit products only when tol < VERIFY_BELOW·ε, i.e. within 100× of the floor.
VERIFY_BELOW = 500


@dataclass(frozen=True, eq=False)
class EigenResult:
    """Extreme eigenvalues of a symmetric operator with their Ritz residuals.

    Attributes:
        eigenvalues: (k,) the largest eigenvalues, descending.
        residuals: (k,) ‖A q − λ q‖ of each Ritz pair: recomputed with explicit products if ``verified``, else the
            Lanczos bound |β_m s_mi|, which equals it up to the HVP's rounding error.
        converged: (k,) bool, residual ≤ tol·‖A‖ (‖A‖ estimated by the largest |Ritz value|); then some true
            eigenvalue lies within the residual of the reported one (typically within residual²/gap).
        eigenvectors: (dim, k) unit Ritz vectors, in the operator's dtype.
        smallest: (s,) the smallest eigenvalues, ascending (most negative first); empty unless asked for.
        smallest_residuals, smallest_converged: (s,) as above, for ``smallest``.
        smallest_eigenvectors: (dim, s).
        matvecs: products with A spent, including any residual check.
        method: "lanczos" or "dense".
        iters: Lanczos steps taken (the dimension for "dense").
        tol: the tolerance used.
        verified: whether ``residuals`` come from explicit products (always for "dense").
    """

    eigenvalues: np.ndarray
    residuals: np.ndarray
    converged: np.ndarray
    eigenvectors: np.ndarray
    smallest: np.ndarray
    smallest_residuals: np.ndarray
    smallest_converged: np.ndarray
    smallest_eigenvectors: np.ndarray
    matvecs: int
    method: str
    iters: int
    tol: float
    verified: bool


class Lanczos:
    """Lanczos, one step at a time, keeping the full basis: A Q_m = Q_m T_m + β_m q_{m+1} e_mᵀ.

    The state of one run (``lanczos``, ``top_eigenvalues`` and ``spectral_density`` drive it): ``step()`` adds a
    basis vector, ``ritz()`` gives T_m's eigenpairs and residual bounds, ``vectors(S)`` the Ritz vectors.

    With ``restart`` set, a breakdown (an invariant subspace) continues from a fresh random vector orthogonal to
    the basis, with a zero coupling in T: a single start vector only ever sees one copy of a repeated eigenvalue.
    """

    def __init__(self, A: Operator, v0: Tensor, restart: torch.Generator | None = None) -> None:
        self.A = A
        self.dim = v0.shape[0]
        self.restart = restart
        self.Q = torch.empty(min(self.dim, 16), self.dim, dtype=v0.dtype, device=v0.device)  # rows: basis vectors
        self.Q[0] = v0 / v0.norm()
        self.alpha: list[float] = []
        self.beta: list[float] = []
        self.matvecs = 0
        self.exhausted = False  # no new direction: an invariant subspace (without restart) or the whole space
        self._scale = 0.0

    @property
    def m(self) -> int:
        """Steps taken."""
        return len(self.alpha)

    def step(self) -> None:
        """One Lanczos step: one product with A, re-orthogonalised twice against the whole basis."""
        j = self.m
        q = self.Q[j]
        w = (self.A @ q).to(q.dtype)
        self.matvecs += 1
        a = float(q @ w)
        w = w - a * q
        if j > 0:
            w = w - self.beta[j - 1] * self.Q[j - 1]
        w = self._orthogonalise(w, j + 1)
        b = float(w.norm())
        self.alpha.append(a)
        self._scale = max(self._scale, abs(a), b)
        if j + 1 == self.dim:
            self.beta.append(b)
            self.exhausted = True
        elif b > _breakdown(q.dtype) * self._scale:
            self.beta.append(b)
            self._store(j + 1, w / b)
        elif self.restart is not None:
            self._restart(j + 1)
        else:
            self.beta.append(b)
            self.exhausted = True

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values (ascending), T's eigenvectors S, and the residual bounds |β_m S[m-1, i]|."""
        theta, S = eigh_tridiagonal(np.asarray(self.alpha), np.asarray(self.beta[:-1]))
        return theta, S, np.abs(self.beta[-1] * S[-1])

    def vectors(self, S: np.ndarray) -> Tensor:
        """Ritz vectors Q_m S, shape (dim, columns of S)."""
        return self.Q[: self.m].T @ torch.as_tensor(S, dtype=self.Q.dtype, device=self.Q.device)

    def _orthogonalise(self, w: Tensor, n: int) -> Tensor:
        basis = self.Q[:n]
        for _ in range(2):  # "twice is enough" (Kahan, Parlett): one pass leaves O(ε·κ) overlap
            w = w - basis.T @ (basis @ w)
        return w

    def _restart(self, j: int) -> None:
        r = self._orthogonalise(randn(self.dim, self.restart, self.Q.dtype, self.Q.device), j)
        norm = float(r.norm())
        self.beta.append(0.0)
        if norm < math.sqrt(self.dim) * 1e-3:  # the basis already spans (numerically) everything
            self.exhausted = True
        else:
            self._store(j, r / norm)

    def _store(self, j: int, q: Tensor) -> None:
        if j == self.Q.shape[0]:
            grown = torch.empty(min(2 * j, self.dim), self.dim, dtype=self.Q.dtype, device=self.Q.device)
            grown[:j] = self.Q
            self.Q = grown
        self.Q[j] = q


def _breakdown(dtype: torch.dtype) -> float:
    # β below this (relative to ‖T‖) is rounding noise, not a new Krylov direction. Keep it tiny: a restart drops
    # the coupling, which moves the eigenvalues by up to β (sqrt(ε) = 3e-4 in float32 would exceed the tolerance).
    return 100 * torch.finfo(dtype).eps


def extend(run: Lanczos, m: int) -> None:
    """Step ``run`` until it has ``m`` steps or is exhausted."""
    while run.m < m and not run.exhausted:
        run.step()


def lanczos(A: Operator, iters: int, *, seed: int = 0, v0: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Lanczos tridiagonalisation with full re-orthogonalisation (twice per step): A Q = Q T + β_m q_{m+1} e_mᵀ.

    Stops early on breakdown (β ≈ 0: the Krylov space is invariant and T's eigenvalues are exact).

    Args:
        A: a symmetric square tensor, or an operator with ``A @ v`` and ``.dim``.
        iters: steps m (capped at the dimension).
        seed: seed of the Gaussian start vector, if ``v0`` is None.
        v0: start vector (normalised here).

    Returns:
        ``(alpha, beta, Q)``: alpha (m,) T's diagonal and beta (m,) with T's off-diagonal in ``beta[:-1]`` and
        the final residual norm β_m in ``beta[-1]`` (both float64 on the CPU); Q (dim, m) orthonormal basis.

    Raises:
        ValueError: if ``iters`` < 1 or ``v0`` is zero.
    """
    A = check_operator(A)
    if iters < 1:
        raise ValueError(f"Invalid iters: {iters}")
    dim = dim_of(A)
    if v0 is None:
        v0 = randn(dim, torch.Generator().manual_seed(seed), dtype_of(A), device_of(A))
    if not bool(torch.any(v0 != 0)):
        raise ValueError("v0 must be non-zero")
    run = Lanczos(A, v0.to(device=device_of(A), dtype=dtype_of(A)))
    extend(run, min(iters, dim))
    alpha, beta = (torch.tensor(values, dtype=torch.float64) for values in (run.alpha, run.beta))
    return alpha, beta, run.Q[: run.m].T.contiguous()


def top_eigenvalues(A: Operator, k: int = 1, *, iters: int | None = None, tol: float | None = None, seed: int = 0,
                    smallest: int = 0, max_iters: int | None = None, method: str = "auto",
                    verify: bool | None = None) -> EigenResult:
    """The k largest (and ``smallest`` lowest) eigenpairs A q = λ q by Lanczos, with residuals ‖A q − λ q‖.

    ``iters=None`` grows the Krylov space one step at a time from 2(k + smallest) + 3 steps (checking costs a
    tridiagonal eigensolve, ~20 µs, against ~1 ms per HVP) and stops once every requested Ritz pair's bound
    |β_m s_mi| is ≤ tol·‖A‖. Near the HVP's rounding floor (tol < 500·ε, or ``verify=True``) that bound is too
    optimistic, so it then confirms with explicit products (one block): if they disagree it keeps going, unless the
    true residual has stopped falling (it sits on the floor). A value that did not converge within ``max_iters`` is
    reported as such (``converged`` False), never silently. Like any Krylov method it can miss an eigenvalue whose
    eigenvector is nearly orthogonal to the random start; another ``seed`` is a cheap check. Small operators
    (dim ≤ max(2(k + smallest) + 10, 20)) and ``method="dense"`` use a full eigendecomposition instead.

    Args:
        A: a symmetric square tensor, or an operator with ``@`` and ``.dim`` (e.g. ``make_hvp(model, loss, batch)``).
        k: how many of the largest eigenvalues.
        iters: fixed number of Lanczos steps; None chooses adaptively.
        tol: relative residual tolerance; None: 1e-6 in float64, 1e-4 in float32 (HVP rounding sets the floor).
        seed: seed of the start vector.
        smallest: how many of the lowest eigenvalues (negative curvature), from the same run.
        max_iters: cap for the adaptive run; None: min(dim, 300, what fits in 512 MiB of basis vectors).
        method: "auto", "lanczos" or "dense".
        verify: recompute the residuals with explicit products; None: only when tol < 500·ε (see above).

    Returns:
        An ``EigenResult``.

    Raises:
        ValueError: for k < 1, smallest < 0, k + smallest > dim, iters < 1, an unknown method, or a dense request
            too large.
    """
    A = check_operator(A)
    dim, dtype, device = dim_of(A), dtype_of(A), device_of(A)
    if k < 1 or smallest < 0 or k + smallest > dim:
        raise ValueError(f"Invalid k={k}, smallest={smallest} for dimension {dim}")
    if iters is not None and iters < 1:
        raise ValueError(f"Invalid iters: {iters}")
    if method not in METHODS:
        raise ValueError(f"Invalid method: {method!r}; expected one of {METHODS}")
    tol = _default_tol(dtype) if tol is None else tol
    n_want = k + smallest
    if method == "dense" or (method == "auto" and iters is None and dim <= max(2 * n_want + 10, 20)):
        return _dense_eigen(A, k, smallest, tol)
    if max_iters is None:
        itemsize = torch.finfo(dtype).bits // 8
        max_iters = min(dim, LANCZOS_MAX_ITERS, max(n_want + 2, LANCZOS_MAX_BYTES // (dim * itemsize)))
    verify = tol < VERIFY_BELOW * torch.finfo(dtype).eps if verify is None else verify
    generator = torch.Generator().manual_seed(seed)
    run = Lanczos(A, randn(dim, generator, dtype, device), restart=generator)
    if iters is not None:
        extend(run, min(iters, dim))
        return _finish(A, run, k, smallest, tol, verify)
    extend(run, min(max_iters, 2 * n_want + 3))
    verify_after, last_checked = 0, math.inf
    while True:
        theta, S, bounds = run.ritz()
        pick = _pick(len(theta), k, smallest)
        scale = float(np.abs(theta).max())
        out_of_steps = run.exhausted or run.m >= max_iters
        if bool(np.all(bounds[pick] <= tol * scale)) and (not verify or run.m >= verify_after):
            if not verify:
                return _finish(A, run, k, smallest, tol, verify)
            checked = _residuals(A, run, theta, S, pick)
            worst = float(checked[1].max())
            # Stop when confirmed, out of steps, or stagnant: the bound says converged but the true residual did not
            # halve since the last check, i.e. it sits on the HVP's rounding floor and more steps will not help.
            if worst <= tol * scale or out_of_steps or worst > 0.5 * last_checked:
                return _finish(A, run, k, smallest, tol, verify, checked)
            verify_after, last_checked = run.m + max(2, run.m // 4), worst
        if out_of_steps:
            return _finish(A, run, k, smallest, tol, verify)
        run.step()


def _pick(m: int, k: int, smallest: int) -> np.ndarray:
    """Indices into ascending Ritz values: the top k (descending), then the lowest ``smallest`` (ascending)."""
    top = np.arange(m - 1, max(m - 1 - k, -1), -1)
    low = np.arange(min(smallest, max(m - len(top), 0)))
    return np.concatenate([top, low]).astype(int)


def _residuals(A: Operator, run: Lanczos, theta: np.ndarray, S: np.ndarray,
               pick: np.ndarray) -> tuple[Tensor, np.ndarray]:
    """Ritz vectors of ``pick`` and their explicit residual norms ‖A y − θ y‖ (one block product)."""
    Y = run.vectors(S[:, pick])
    AY = matmat(A, Y).to(Y.dtype)
    run.matvecs += Y.shape[1]
    th = torch.as_tensor(theta[pick], dtype=Y.dtype, device=Y.device)
    return Y, torch.linalg.vector_norm(AY - Y * th, dim=0).cpu().double().numpy()


def _finish(A: Operator, run: Lanczos, k: int, smallest: int, tol: float, verify: bool,
            checked: tuple[Tensor, np.ndarray] | None = None) -> EigenResult:
    theta, S, bounds = run.ritz()
    pick = _pick(len(theta), k, smallest)
    if checked is None:
        checked = _residuals(A, run, theta, S, pick) if verify else (run.vectors(S[:, pick]), bounds[pick])
    scale = float(np.abs(theta).max())
    return _result(theta[pick], checked[1], checked[0], k, tol, scale, run.matvecs, "lanczos", run.m, verify)


def _dense_eigen(A: Operator, k: int, smallest: int, tol: float) -> EigenResult:
    evals, evecs, M64, dtype = dense_eigh(A)
    dim = M64.shape[0]
    pick = torch.as_tensor(_pick(dim, k, smallest), device=evals.device)
    theta, Y = evals[pick], evecs[:, pick]
    res = torch.linalg.vector_norm(M64 @ Y - Y * theta, dim=0).cpu().numpy()
    scale = float(evals.abs().max())
    return _result(theta.cpu().numpy(), res, Y.to(dtype), k, tol, scale, dim if not isinstance(A, Tensor) else 0,
                   "dense", dim, True)


def _result(theta: np.ndarray, res: np.ndarray, Y: Tensor, k: int, tol: float, scale: float, matvecs: int,
            method: str, iters: int, verified: bool) -> EigenResult:
    ok = res <= tol * scale
    vectors = Y.detach().cpu().numpy()
    return EigenResult(eigenvalues=theta[:k], residuals=res[:k], converged=ok[:k], eigenvectors=vectors[:, :k],
                       smallest=theta[k:], smallest_residuals=res[k:], smallest_converged=ok[k:],
                       smallest_eigenvectors=vectors[:, k:], matvecs=matvecs, method=method, iters=iters, tol=tol,
                       verified=verified)


def _default_tol(dtype: torch.dtype) -> float:
    return DEFAULT_TOL.get(dtype, FALLBACK_TOL)
