"""The anatomy of one optimizer step on a 2-D analytic task: what the step program asked for and did, step by step.

``anatomy(config, methods)`` trains each method from the same θ₀ with the engine's own training loop
(``sam_viz.train``) and records, at every step, the numbers the registry's step program actually used. Nothing is
re-derived: the loop's oracle is wrapped by a recording oracle, so

* the ascent gradient s_t is the gradient the program asked for at θ_t,
* the probe θ_t + e_t is the point the program asked the oracle to evaluate, and the gradient there is its answer,
* e_t is the perturbation the program reported, and the update is θ_{t+1} − θ_t as the parameters moved,
* the optimizer state at step t is the real state of a run trained to step t.

A step's neighbourhood is the set e_t was chosen from: SAM's ρ-ball; ASAM's ellipse {e : ‖T⁻¹e‖ ≤ ρ} with
T = diag(|θ_t| + η) on tensors named "weight" and I elsewhere (``functional.asam_perturb``'s rule; the point model's
parameter is its weight, so on the analytic tasks ASAM's neighbourhood is an ellipse); the LightSAM methods' shrinking ball of radius
‖e_t‖ (LightSAM-I: ρ‖s_t‖/√u_t ≤ ρ). Each e_t is also split into its component along the full-batch gradient at θ_t
and the rest (the gradient noise part), which is what F-SAM is about: it removes the full-gradient part.

``step_from(config, theta, methods)`` takes one step of each method from the same point θ_t with fresh optimizer
state, for a side-by-side comparison on the same step.

>>> from sam_viz.config import Config
>>> a = anatomy(Config(task="sharp_flat", model="point", steps=5, dtype="float64"), ["sgd", "sam"])
>>> s = a.at(0)["sam"]
>>> bool(abs(s.probe - (s.theta + s.perturbation)).max() < 1e-15)
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .config import Config
from .data import ANALYTIC, TASKS, analytic_loss
from .optim import OPTIMIZERS
from .records import Run
from .train import _Runs

MAX_ANATOMY_STEPS = 500  # the view steps through training one step at a time: more steps teach nothing new
MAX_ANATOMY_METHODS = 8  # side by side on one row of panels

Method = str | tuple[str, Mapping[str, Any]]  # a registry name, or (name, hyperparameters)


@dataclass(frozen=True)
class Neighbourhood:
    """The set the step chose e_t from, centred on θ_t.

    Attributes:
        kind: ``"ball"`` (a disc of radius ``semi_axes[0]``) or ``"ellipse"`` (axis-aligned).
        center: θ_t, shape (2,).
        semi_axes: the half-widths along the two coordinates, shape (2,) (equal for a ball).
        label: what the radius is, for a legend ("ρ-ball", "‖T⁻¹e‖ ≤ ρ", "radius ‖e_t‖").
    """

    kind: str
    center: np.ndarray
    semi_axes: np.ndarray
    label: str


@dataclass(frozen=True)
class StepAnatomy:
    """One step t of one method, as the step program took it. Vectors are shape (2,), float64.

    Attributes:
        method: the registry name; label: its display name.
        step: t.
        theta: θ_t.
        loss: the step batch's loss at θ_t.
        ascent_grad: s_t, the first gradient the program asked for at θ_t (SGD: the gradient it descends along).
        full_grad: the full-batch gradient at θ_t.
        perturbation: e_t as the program reported it; None for one-pass methods (SGD, Adam).
        probe: the first point away from θ_t the program evaluated (θ_t + e_t); None for one-pass methods.
        probe_grad: the oracle's gradient at ``probe``; None for one-pass methods.
        update: θ_{t+1} − θ_t.
        theta_next: θ_{t+1}.
        effective_rho: the radius scale the program reported (SAM: ρ; LightSAM-I: ρ/√u_t; 0 without e_t).
        effective_lr: the learning rate the program reported (SGD, SAM: η; LightSAM-I: η/√v_t): the figure draws
            gradients times it, so they are displacements on the plane's own scale.
        neighbourhood: the set e_t was chosen from (module docstring); None for one-pass methods.
        eps_full_part: the component of e_t along ``full_grad``; None without e_t.
        eps_noise_part: e_t − ``eps_full_part``, the part orthogonal to the full gradient; None without e_t.
    """

    method: str
    label: str
    step: int
    theta: np.ndarray
    loss: float
    ascent_grad: np.ndarray
    full_grad: np.ndarray
    perturbation: np.ndarray | None
    probe: np.ndarray | None
    probe_grad: np.ndarray | None
    update: np.ndarray
    theta_next: np.ndarray
    effective_rho: float
    effective_lr: float
    neighbourhood: Neighbourhood | None
    eps_full_part: np.ndarray | None
    eps_noise_part: np.ndarray | None


@dataclass(frozen=True)
class Anatomy:
    """Every method's run and its step reports, all from the same θ₀.

    Attributes:
        config: the shared configuration (its ``optimizer`` is replaced per method).
        methods: the registry names, in the order asked.
        runs: the engine's ``Run`` of each method (snapshots at every step).
        steps: per method, one ``StepAnatomy`` per step taken.
    """

    config: Config
    methods: tuple[str, ...]
    runs: dict[str, Run]
    steps: dict[str, list[StepAnatomy]]

    @property
    def n_steps(self) -> int:
        """Steps the longest run took (a run whose loss turned NaN/inf stopped there, ``diverged``)."""
        return max(len(s) for s in self.steps.values())

    @property
    def diverged(self) -> dict[str, int]:
        """The methods whose run diverged, with the step it diverged at."""
        return {m: r.diverged_step for m, r in self.runs.items() if r.diverged}

    def at(self, t: int) -> dict[str, StepAnatomy]:
        """Step ``t`` of every method that took it (a diverged run has no steps after its divergence)."""
        if not 0 <= t < self.n_steps:
            raise ValueError(f"Invalid step: {t}; the runs have steps 0..{self.n_steps - 1}")
        return {m: self.steps[m][t] for m in self.methods if t < len(self.steps[m])}


class _RecordingOracle:
    """The loop's oracle, unchanged, with every gradient request the program makes written down."""

    def __init__(self, oracle: Any) -> None:
        self._oracle = oracle
        self.requests: list[tuple[np.ndarray | None, Any, np.ndarray]] = []  # (point, batch, gradient)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._oracle, name)

    def grad(self, point: Sequence[Tensor] | None = None, **kwargs: Any):
        probe = self._oracle.grad(point, **kwargs)
        self.requests.append((None if point is None else _vector(point), kwargs.get("batch", "step"),
                              _vector(probe.grads)))
        return probe


def _vector(tensors: Sequence[Tensor]) -> np.ndarray:
    """One run's parameters as a flat float64 vector."""
    return torch.cat([t[0].reshape(-1) for t in tensors]).detach().cpu().double().numpy().copy()


def _number(h: Any) -> float:
    return float(h.reshape(-1)[0]) if isinstance(h, Tensor) else float(h)


def _neighbourhood(method: str, theta: np.ndarray, eps: np.ndarray, hp: Mapping[str, Any],
                   names: Sequence[str]) -> Neighbourhood:
    if method == "asam":  # functional.asam_perturb: T = |θ| + η on "weight" tensors, I elsewhere
        rho, eta = _number(hp["rho"]), _number(hp.get("eta", 0.01))
        scale = np.abs(theta) + eta if all("weight" in n for n in names) else np.ones(2)
        kind = "ellipse" if not np.allclose(scale, scale[0]) else "ball"
        return Neighbourhood(kind, theta, rho * scale, "‖T⁻¹e‖ ≤ ρ")
    if method.startswith("lightsam") or "rho" not in hp:
        radius = float(np.linalg.norm(eps))
        return Neighbourhood("ball", theta, np.full(2, radius), "radius ‖e_t‖")
    return Neighbourhood("ball", theta, np.full(2, _number(hp["rho"])), "ρ-ball")


def _check(config: Config, methods: Sequence[Method]) -> list[tuple[str, dict[str, Any]]]:
    if TASKS[config.task].kind != ANALYTIC or config.model != "point":
        raise ValueError(f"Invalid task: {config.task!r} with model {config.model!r}; the step anatomy needs a 2-D "
                         f"analytic task and the point model: {', '.join(n for n, t in TASKS.items() if t.kind == ANALYTIC)}")
    if not 1 <= config.steps <= MAX_ANATOMY_STEPS:
        raise ValueError(f"Invalid steps: {config.steps}; the step anatomy takes 1..{MAX_ANATOMY_STEPS}")
    if not 1 <= len(methods) <= MAX_ANATOMY_METHODS:
        raise ValueError(f"Invalid methods: {len(methods)} given; 1..{MAX_ANATOMY_METHODS} allowed")
    out = []
    for m in methods:
        name, hp = (m, {}) if isinstance(m, str) else (m[0], dict(m[1]))
        if name not in OPTIMIZERS:
            raise ValueError(f"Invalid method: {name!r}; valid: {', '.join(OPTIMIZERS)}")
        if name in (n for n, _ in out):
            raise ValueError(f"Invalid methods: {name!r} is given twice")
        out.append((name, hp))
    return out


def _record(config: Config) -> tuple[Run, list[StepAnatomy]]:
    """Train ``config`` with the engine's loop, its step program's oracle recorded."""
    runs = _Runs([config.replace(snapshot_every=1, fullgrad_every=1)])
    name, label, program = config.optimizer, OPTIMIZERS[config.optimizer].label, runs.variant.program
    steps: list[StepAnatomy] = []

    def recording_step(params: list[Tensor], state: Any, hp: dict, oracle: Any, names: Sequence[str]) -> dict:
        theta = _vector(params)
        full = _vector(oracle.at_theta("train")[0].grads)  # computed once per step by the loop; cached, free here
        loss = float(oracle.at_theta("step")[0].loss.reshape(-1)[0])
        recorder = _RecordingOracle(oracle)
        report = program.step(params, state, hp, recorder, names)
        after = _vector(params)
        at_theta = [r for r in recorder.requests if r[0] is None]
        away = [r for r in recorder.requests if r[0] is not None]
        eps = None if report["perturbation"] is None else _vector(report["perturbation"])
        full_part = noise_part = hood = None
        if eps is not None:
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging run's last steps overflow: inf/NaN then
                direction = full / max(np.linalg.norm(full), 1e-300)
                full_part = float(eps @ direction) * direction
                noise_part = eps - full_part
                hood = _neighbourhood(name, theta, eps, hp, names)
        steps.append(StepAnatomy(
            method=name, label=label, step=runs.t, theta=theta, loss=loss,
            ascent_grad=at_theta[0][2] if at_theta else full, full_grad=full, perturbation=eps,
            probe=away[0][0] if away and eps is not None else None,
            probe_grad=away[0][2] if away and eps is not None else None,
            update=after - theta, theta_next=after, effective_rho=_number(report["effective_rho"]),
            effective_lr=_number(report["effective_lr"]),
            neighbourhood=hood, eps_full_part=full_part, eps_noise_part=noise_part))
        return report

    runs.variant = dataclasses.replace(runs.variant, program=dataclasses.replace(program, step=recording_step))
    while runs.running:
        runs.step()
    return runs.finish()[0], steps


def anatomy(config: Config, methods: Sequence[Method]) -> Anatomy:
    """Train each method from the same θ₀ and record every step's report (module docstring).

    Args:
        config: a 2-D analytic task with the point model (``start_x``/``start_y`` set θ₀); its ``optimizer`` and
            ``hparams`` are replaced by each method's.
        methods: registry names, or ``(name, hyperparameters)`` pairs (defaults fill the rest).

    Returns:
        The runs and their step reports.

    Raises:
        ValueError: a task that is not analytic, more than ``MAX_ANATOMY_STEPS`` steps, an unknown or repeated
            method, or more than ``MAX_ANATOMY_METHODS`` methods.
    """
    chosen = _check(config, methods)
    runs, steps = {}, {}
    for name, hp in chosen:
        runs[name], steps[name] = _record(config.with_optimizer(name, **hp))
    return Anatomy(config, tuple(n for n, _ in chosen), runs, steps)


def loss_function(task: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The exact loss f(w1, w2) of an analytic task (no gradient noise) on numpy grids, for the figure's contour."""
    if TASKS.get(task) is None or TASKS[task].kind != ANALYTIC:
        raise ValueError(f"Invalid task: {task!r}; valid: {', '.join(n for n, t in TASKS.items() if t.kind == ANALYTIC)}")

    def loss(w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
        w = torch.stack([torch.as_tensor(w1, dtype=torch.float64), torch.as_tensor(w2, dtype=torch.float64)], -1)
        return analytic_loss(task, w).numpy()

    return loss


def step_from(config: Config, theta: Sequence[float], methods: Sequence[Method]) -> dict[str, StepAnatomy]:
    """One step of each method from the same point θ_t, every method with fresh state (as at its step 0).

    Fresh state is what makes the comparison the same step from the same θ_t: each run's own state at step t
    (momenta, F-SAM's EMA, LightSAM's accumulators) comes from its own path, which passed elsewhere. Minibatch
    tasks take the batch of step 0.

    Args:
        config: as for ``anatomy`` (its ``steps`` and start are replaced).
        theta: the point θ_t, two numbers.
        methods: as for ``anatomy``.

    Returns:
        Each method's step 0 from ``theta``, by name.
    """
    if len(theta) != 2 or not all(np.isfinite(theta)):
        raise ValueError(f"Invalid theta: {theta!r}; two finite numbers are needed")
    start = config.replace(steps=1, start_x=float(theta[0]), start_y=float(theta[1]))
    return {name: steps[0] for name, steps in anatomy(start, methods).steps.items()}
