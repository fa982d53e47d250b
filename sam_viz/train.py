"""Training runs: ``run(config) -> Run``, and ``run_many`` for several optimizers from one initialisation.

Each step follows the documented calling convention (backward at θ_t, then ``opt.step(closure)`` on the same
batch) and records what the views need: losses, gradient norms, the perturbation e_t and how much of it lies
along the full-batch gradient. Divergence (NaN/inf loss) ends a run cleanly and marks it; a stop request keeps
everything computed so far.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .config import Config
from .data import TASKS, Dataset, make_dataset
from .models import accuracy, build_model, flatten, loss_fn
from .optim import make
from .records import STEP_FIELDS, Run

MAX_SNAPSHOT_VALUES = 20_000_000  # S·P per snapshot array: 80 MB in float32, 160 MB in float64

ProgressFn = Callable[[int, int, Mapping[str, float]], None]
StopFn = Callable[[], bool]


def resolve_device(device: str) -> torch.device:
    """"auto" → CUDA when available, else CPU; a named CUDA device must exist.

    Raises:
        ValueError: CUDA requested but not available.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"Invalid device: {device!r}; CUDA is not available on this machine (use auto or cpu)")
    return torch.device(device)


def resolve_dtype(dtype: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[dtype]


@dataclass(frozen=True)
class Setup:
    """A config made concrete: data on the device, the model at θ_0, its loss. Built once per run."""

    config: Config
    dataset: Dataset
    model: torch.nn.Module
    loss: Callable[[Tensor, Tensor], Tensor]
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    device: torch.device

    @property
    def classification(self) -> bool:
        return self.dataset.kind == "classification"


def setup(config: Config) -> Setup:
    """Build the data set and the model of ``config`` on its device and dtype.

    Raises:
        ValueError: invalid task/model settings, a batch larger than the train set, or snapshots over the
            memory bound.
    """
    device, dtype = resolve_device(config.device), resolve_dtype(config.dtype)
    dataset = make_dataset(config.task, n_samples=config.n_samples, noise=config.noise,
                           test_fraction=config.test_fraction, seed=config.data_seed, n_classes=config.n_classes)
    start = None if config.start_x is None and config.start_y is None else _start(config, dataset)
    model = build_model(dataset, config.model, depth=config.depth, width=config.width, activation=config.activation,
                        seed=config.seed, dtype=dtype, device=device, start=start)
    n_train = dataset.x_train.shape[0]
    if config.batch_size > n_train:
        raise ValueError(f"Invalid batch_size: {config.batch_size} exceeds the {n_train} training samples (0 = full batch)")
    n_params = sum(p.numel() for p in model.parameters())
    n_snapshots = config.steps // config.snapshot_every + 2
    if n_snapshots * n_params > MAX_SNAPSHOT_VALUES:
        raise ValueError(f"Invalid snapshot_every: {n_snapshots} snapshots of {n_params} parameters exceed "
                         f"{MAX_SNAPSHOT_VALUES:,} values; raise snapshot_every")

    def tensor(a: np.ndarray, is_label: bool) -> Tensor:
        return torch.as_tensor(a, dtype=torch.int64 if is_label else dtype, device=device)

    return Setup(config, dataset, model, loss_fn(dataset.kind),
                 tensor(dataset.x_train, False), tensor(dataset.y_train, True),
                 tensor(dataset.x_test, False), tensor(dataset.y_test, True), device)


def _start(config: Config, dataset: Dataset) -> tuple[float | None, float | None]:
    """The start point, the task's default filling a missing coordinate (a task without one, a classification task,
    keeps the None: build_model then says that only the point model takes a start)."""
    default = TASKS[dataset.name].start or (None, None)
    return (default[0] if config.start_x is None else config.start_x,
            default[1] if config.start_y is None else config.start_y)


class BatchOrder:
    """Minibatch indices: a fresh permutation every epoch from a generator seeded by ``seed`` alone."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device) -> None:
        self.n, self.batch_size, self.device = n, batch_size, device
        self.generator = torch.Generator().manual_seed(seed)
        self.queue: list[Tensor] = []

    def next(self) -> Tensor | None:
        if self.batch_size == 0:
            return None  # full batch
        if not self.queue:
            perm = torch.randperm(self.n, generator=self.generator)
            usable = self.n - self.n % self.batch_size
            self.queue = list(perm[:usable].split(self.batch_size))[::-1]
        return self.queue.pop().to(self.device)


def run(config: Config, *, progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> Run:
    """Train ``config`` and record every step.

    Args:
        config: the run.
        progress: called after each step as ``progress(step, total, metrics)`` with the step's scalars.
        should_stop: polled before each step; returning True ends the run early, keeping what was computed
            (``Run.stopped`` is then True).

    Returns:
        The Run (numpy arrays only).

    Raises:
        ValueError: invalid settings (see ``setup``). Divergence never raises: it is recorded.
    """
    steps = stepwise(config, should_stop=should_stop)
    while True:
        try:
            t, row = next(steps)
        except StopIteration as done:
            return done.value
        if progress is not None:
            progress(t, config.steps, row)


def stepwise(config: Config, *, should_stop: StopFn | None = None) -> Generator[tuple[int, Mapping[str, float]], None, Run]:
    """``run`` one step at a time: yields ``(steps done, the step's scalars)`` after each step and returns the Run.

    Several runs advanced in turn stay in step with each other, so a stop leaves every one of them with the same
    number of steps (``lockstep``).
    """
    s = setup(config)
    model, params = s.model, list(s.model.parameters())
    names = tuple(n for n, _ in model.named_parameters())
    opt = make(config.optimizer, model.named_parameters(), **config.hp)
    order = BatchOrder(s.x_train.shape[0], config.batch_size, config.seed, s.device)
    series: dict[str, list[float]] = {name: [] for name in STEP_FIELDS}
    snapshot_steps: list[int] = []
    weights: list[np.ndarray] = []
    perturbations: list[np.ndarray] = []
    diverged_step, stopped = -1, False
    started = time.perf_counter()

    for t in range(config.steps):
        if should_stop is not None and should_stop():
            stopped = True
            break
        idx = order.next()
        xb, yb = (s.x_train, s.y_train) if idx is None else (s.x_train[idx], s.y_train[idx])

        def closure() -> Tensor:
            opt.zero_grad()
            loss = s.loss(model(xb), yb)
            loss.backward()
            return loss

        row = dict.fromkeys(STEP_FIELDS, math.nan)
        row["step"] = t
        opt.zero_grad()
        outputs = model(xb)
        loss = s.loss(outputs, yb)
        row["batch_loss"] = float(loss.detach())
        with_full_grad = t % config.fullgrad_every == 0
        # minibatch steps: one forward of the whole train set serves both the evaluation and the full gradient
        full_outputs = outputs if idx is None else (model(s.x_train) if with_full_grad else None)
        if t % config.eval_every == 0:
            _evaluate(s, row, train_outputs=full_outputs)
        if not math.isfinite(row["batch_loss"]):
            diverged_step = t
            _append(series, row, started)
            break
        loss.backward()
        full_grad = _full_gradient(s, params, idx, full_outputs) if with_full_grad else None
        theta = flatten(model).cpu().numpy() if t % config.snapshot_every == 0 else None
        opt.step(closure)
        report = opt.last
        e = torch.cat([p.reshape(-1) for p in report.perturbation])
        row.update(grad_norm=report.grad_norm, perturbed_grad_norm=report.perturbed_grad_norm,
                   eps_norm=report.eps_norm, effective_rho=report.effective_rho, effective_lr=report.effective_lr,
                   perturbed_loss=math.nan if report.perturbed_loss is None else report.perturbed_loss)
        if full_grad is not None:
            row["full_grad_norm"] = float(full_grad.norm())
            if opt.info.two_pass:
                row["cos_eps_fullgrad"] = float(torch.nn.functional.cosine_similarity(e, full_grad, dim=0, eps=1e-30))
        if theta is not None:
            snapshot_steps.append(t)
            weights.append(theta)
            perturbations.append(e.detach().cpu().numpy())
        _append(series, row, started)
        yield t + 1, row

    n_done = len(series["step"])
    final = dict.fromkeys(("train_loss", "train_acc", "test_loss", "test_acc"), math.nan)
    if diverged_step < 0:
        _evaluate(s, final)
    snapshot_steps.append(n_done)
    weights.append(flatten(model).cpu().numpy())
    perturbations.append(np.full_like(weights[-1], np.nan))
    return Run(
        config=config,
        **{name: np.asarray(values, dtype=np.int64 if name == "step" else np.float64) for name, values in series.items()},
        snapshot_step=np.asarray(snapshot_steps, dtype=np.int64),
        weights=np.stack(weights),
        perturbations=np.stack(perturbations).astype(weights[0].dtype),
        param_names=names,
        param_shapes=tuple(tuple(p.shape) for p in params),
        final_train_loss=final["train_loss"], final_train_acc=final["train_acc"],
        final_test_loss=final["test_loss"], final_test_acc=final["test_acc"],
        diverged=diverged_step >= 0, diverged_step=diverged_step, stopped=stopped,
        wall_time=time.perf_counter() - started, device=str(s.device),
    )


def lockstep(configs: Sequence[Config], *, progress: Callable[[int, int], None] | None = None,
             should_stop: StopFn | None = None) -> list[Run]:
    """Train several configs side by side, one step of each in turn, so that they share the steps done.

    A stop (``should_stop`` is polled once per round) leaves every run with the same number of steps, and progress
    counts rounds: ``progress(steps done by the slowest run, the most steps asked)``. A run that diverges or finishes
    early leaves the round; the others go on.
    """
    stopping = [False]  # read by every run before its next step, set once per round
    pending = {i: stepwise(c, should_stop=lambda: stopping[0]) for i, c in enumerate(configs)}
    runs: dict[int, Run] = {}
    total, rounds = max((c.steps for c in configs), default=0), 0
    while pending:
        stopping[0] = should_stop is not None and should_stop()
        for i in list(pending):
            try:
                next(pending[i])
            except StopIteration as finished:
                runs[i] = finished.value
                del pending[i]
        if pending:  # this round took a step
            rounds += 1
            if progress is not None:
                progress(rounds, total)
    return [runs[i] for i in range(len(configs))]


def run_many(config: Config, optimizers: Sequence[tuple[str, Mapping[str, Any]]], **kwargs: Any) -> list[Run]:
    """Runs of several optimizers from the same θ_0 and the same minibatch order (same ``config.seed``).

    Args:
        config: everything but the optimizer.
        optimizers: (registry name, hyperparameters) pairs; unspecified hyperparameters take their defaults.
        **kwargs: passed to ``run`` (progress, should_stop).
    """
    return [run(config.with_optimizer(name, **dict(hp)), **kwargs) for name, hp in optimizers]


# ------------------------------------------------------------------------------------------------- helpers


def _append(series: dict[str, list[float]], row: Mapping[str, float], started: float) -> None:
    for name in STEP_FIELDS:
        series[name].append(row[name])
    series["elapsed"][-1] = time.perf_counter() - started


@torch.no_grad()
def _evaluate(s: Setup, row: dict[str, float], train_outputs: Tensor | None = None) -> None:
    """Full train (reusing the whole train set's outputs when the step computed them) and test metrics."""
    for split, x, y, outputs in (("train", s.x_train, s.y_train, train_outputs), ("test", s.x_test, s.y_test, None)):
        if x.shape[0] == 0:
            continue
        out = s.model(x) if outputs is None else outputs.detach()
        row[f"{split}_loss"] = float(s.loss(out, y))
        if s.classification:
            row[f"{split}_acc"] = float(accuracy(out, y))


def _full_gradient(s: Setup, params: Sequence[Tensor], idx: Tensor | None, train_outputs: Tensor) -> Tensor:
    """∇L(θ_t) on the whole train set, flattened, from the train set's outputs (with their graph); in full-batch
    training it is the step's gradient, already in ``.grad``."""
    if idx is None:
        return torch.cat([p.grad.reshape(-1) for p in params]).detach().clone()
    grads = torch.autograd.grad(s.loss(train_outputs, s.y_train), params)
    return torch.cat([g.reshape(-1) for g in grads])
