"""The training loop: ``train(configs) -> [Run]`` trains R ≥ 1 configs as stacked runs; everything else calls it.

Parameters of the R runs are stacked along a leading "runs" dimension; each step hands them, the optimizer's
state and the per-run hyperparameters to the registry's step program (``sam_viz.optim.programs``) with a
``ModelOracle`` (``sam_viz.oracle``) that evaluates the loss and gradient at any stacked point. Every step's
metrics (losses, gradient norms, ‖e_t‖, how much of e_t lies along the full-batch gradient) are written into one
tensor on the device and moved to the host once, when the runs end (or when a progress callback reads a row).

``run(config)`` is ``train([config])[0]``; ``run_many`` and ``lockstep`` group configs by optimizer and train each
group stacked; ``stepwise`` yields one step at a time. A run whose loss turns NaN/inf is recorded at that step and
frozen (it leaves the stack; the others go on); a stop request keeps everything computed so far.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .config import Config, shared_validation
from .data import TASKS, Dataset, make_dataset
from .deferred_eval import DeferredEvaluation, deferrable
from .models import accuracy, build_model, loss_fn
from .optim import OPTIMIZERS, REPORT_FIELDS, global_norm, validate
from .oracle import ModelOracle
from .records import STEP_FIELDS, Run

MAX_SNAPSHOT_VALUES = 20_000_000  # S·P per snapshot array: 80 MB in float32, 160 MB in float64
# the per-step series kept on the device, (fields, runs, steps); "step" and "elapsed" are known on the host
RECORD_FIELDS = tuple(f for f in STEP_FIELDS if f not in ("step", "elapsed"))
MAX_EXTRA_COLUMNS = 64  # columns of one method-specific 2-D series (μP²'s layers)

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
    x_val: Tensor | None = None  # the validation split carved out of the training set (empty without one)
    y_val: Tensor | None = None

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
                           test_fraction=config.test_fraction, seed=config.data_seed, n_classes=config.n_classes,
                           val_fraction=config.validation_share, label_noise=config.label_noise, data=config.data)
    start = None if config.start_x is None and config.start_y is None else _start(config, dataset)
    model = build_model(dataset, config.model, depth=config.depth, width=config.width, activation=config.activation,
                        seed=config.seed, dtype=dtype, device=device, start=start,
                        parameterization=config.parameterization, base_width=config.base_width)
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
                 tensor(dataset.x_test, False), tensor(dataset.y_test, True), device,
                 tensor(dataset.x_val, False), tensor(dataset.y_val, True))


def _start(config: Config, dataset: Dataset) -> tuple[float | None, float | None]:
    """The start point, the task's default filling a missing coordinate (a task without one, a classification task,
    keeps the None: build_model then says that only the point model takes a start)."""
    default = (TASKS[dataset.name].start if dataset.name in TASKS else None) or (None, None)
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


def train(configs: Sequence[Config], *, progress: ProgressFn | None = None, should_stop: StopFn | None = None,
          diagnostics: bool = True) -> list[Run]:
    """Train ``configs`` as stacked runs, recording every step of each as its own ``Run``.

    The configs may differ in the optimizer's float hyperparameters (lr, rho, betas, ...) and in ``seed``; all
    else (task, model, optimizer, steps, batch size, bool and choice hyperparameters) must be the same. Runs with
    the same seed share θ_0 and the minibatch order, as separate runs of those configs do, and each run's numbers
    are those of ``run`` on its config, to rounding.

    Args:
        configs: R ≥ 1 configs.
        progress: called after each step as ``progress(steps done, steps, row)``; ``row`` maps ``STEP_FIELDS``
            to the first still-active run's floats, read from the device only when looked up (``row.active``
            and ``row.diverged`` count the runs).
        should_stop: polled before each step; True ends every run there, keeping what was computed
            (``Run.stopped``).
        diagnostics: record the full-gradient cosines and the snapshots (every ``snapshot_every`` steps). The
            sweep turns them off: then only θ_0 and θ_n are kept and ``full_grad_norm``/``cos_eps_fullgrad``
            are NaN.

    Returns:
        One Run per config, in order.

    Raises:
        ValueError: configs that differ beyond hyperparameters and seed, or invalid settings (see ``setup``).
            Divergence never raises: it is recorded.
    """
    runs = _Runs(configs, diagnostics=diagnostics)
    while runs.running:
        if should_stop is not None and should_stop():
            runs.stopped = True
            break
        runs.step()
        if progress is not None:
            progress(runs.t, runs.steps, runs.row())
    return runs.finish()


def run(config: Config, *, progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> Run:
    """Train ``config`` and record every step: ``train([config])[0]``.

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
    return train([config], progress=progress, should_stop=should_stop)[0]


def stepwise(config: Config, *, should_stop: StopFn | None = None) -> Generator[tuple[int, Mapping[str, float]], None, Run]:
    """``run`` one step at a time: yields ``(steps done, the step's scalars)`` after each step and returns the Run.

    Several runs advanced in turn stay in step with each other, so a stop leaves every one of them with the same
    number of steps (``lockstep``).
    """
    runs = _Runs([config])
    while runs.running:
        if should_stop is not None and should_stop():
            runs.stopped = True
            break
        runs.step()
        yield runs.t, runs.row()
    return runs.finish()[0]


def lockstep(configs: Sequence[Config], *, progress: Callable[[int, int], None] | None = None,
             should_stop: StopFn | None = None) -> list[Run]:
    """Train several configs (any optimizers) side by side, so that they share the steps done.

    Configs that ``train`` can stack (same optimizer and settings) form one group; the groups advance in turn, one
    step each per round. A stop (``should_stop`` is polled once per round) leaves every run with the same number
    of steps, and progress counts rounds: ``progress(steps done by the slowest run, the most steps asked)``. A
    run that diverges or finishes early leaves the round; the others go on.
    """
    total, rounds = max((c.steps for c in configs), default=0), 0
    # the first poll comes before the set-up, as it always has: a stop during the set-up still gets one step
    stopping = should_stop is not None and should_stop()
    groups = [(members, _Runs([configs[i] for i in members])) for members in _groups(configs)]
    while any(g.running for _, g in groups):
        if rounds > 0:
            stopping = should_stop is not None and should_stop()
        if stopping:
            for _, g in groups:
                g.stopped = g.stopped or g.running
            break
        for _, g in groups:
            if g.running:
                g.step()
        rounds += 1
        if progress is not None:
            progress(rounds, total)
    return _ungroup(len(configs), [(members, g.finish()) for members, g in groups])


def run_many(config: Config, optimizers: Sequence[tuple[str, Mapping[str, Any]]], **kwargs: Any) -> list[Run]:
    """Runs of several optimizers from the same θ_0 and the same minibatch order (same ``config.seed``), on the
    same training samples (with LETS among them, every run leaves out its validation split: ``shared_validation``).

    The runs are grouped by optimizer (and its bool/choice hyperparameters); each group is one stacked ``train``
    call, the groups one after another.

    Args:
        config: everything but the optimizer.
        optimizers: (registry name, hyperparameters) pairs; unspecified hyperparameters take their defaults.
        **kwargs: passed to each group's ``train`` (progress, should_stop).
    """
    configs = shared_validation([config.with_optimizer(name, **dict(hp)) for name, hp in optimizers])
    return _ungroup(len(configs), [(members, train([configs[i] for i in members], **kwargs))
                                   for members in _groups(configs)])


# ------------------------------------------------------------------------------------------------- the loop


def group_key(config: Config) -> tuple[Any, ...]:
    """What stacked runs must share: every Config field but the seed and the float hyperparameters (counts,
    switches and choices change a step's shape)."""
    specs = OPTIMIZERS[config.optimizer].hparams
    fields = tuple((f.name, getattr(config, f.name)) for f in dataclasses.fields(config)
                   if f.name not in ("seed", "hparams"))
    return fields + tuple((k, v) for k, v in config.hparams if specs[k].kind in ("bool", "choice", "int"))


def _groups(configs: Sequence[Config]) -> list[list[int]]:
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(group_key(c), []).append(i)
    return list(groups.values())


def _ungroup(n: int, results: Sequence[tuple[Sequence[int], Sequence[Run]]]) -> list[Run]:
    out: list[Run | None] = [None] * n
    for members, runs in results:
        for i, r in zip(members, runs):
            out[i] = r
    return out  # type: ignore[return-value]


class _Runs:
    """R stacked runs in training: parameters (R, ...), the program's state, per-run hyperparameters, records.

    Args:
        configs: the runs; they share ``group_key``.
        diagnostics: see ``train``.
    """

    def __init__(self, configs: Sequence[Config], *, diagnostics: bool = True) -> None:
        if not configs:
            raise ValueError("Invalid configs: at least one is needed")
        if len({group_key(c) for c in configs}) > 1:
            raise ValueError("Invalid configs: stacked runs may differ only in float hyperparameters and seed "
                             "(use lockstep or run_many for different optimizers or settings)")
        self.configs, self.config = list(configs), configs[0]
        self.diagnostics, self.steps = diagnostics, self.config.steps
        seeds = sorted({c.seed for c in configs})
        setups = {seed: setup(self.config.replace(seed=seed)) for seed in seeds}  # θ_0 of each seed
        self.s = s = setups[self.config.seed]
        self.device, self.dtype = s.device, s.x_train.dtype
        self.names = [n for n, _ in s.model.named_parameters()]
        self.shapes = tuple(tuple(p.shape) for _, p in s.model.named_parameters())
        models = [dict(setups[c.seed].model.named_parameters()) for c in configs]
        self.params = [torch.stack([m[n].detach() for m in models]) for n in self.names]
        self.variant = OPTIMIZERS[self.config.optimizer]
        self.hp = validate(self.config.optimizer, _stacked_hp(configs, self.dtype, self.device))
        with torch.no_grad():
            self.state = self.variant.program.init(self.params, self.hp)
        # "heldout" is the validation split (LETS), never the test split the runs are judged on
        self.oracle = ModelOracle(s.model, s.loss, s.dataset.kind, (s.x_train, s.y_train), (s.x_val, s.y_val))
        self.params = self.oracle.adopt(self.params)
        n = len(configs)
        self.orders = {seed: BatchOrder(s.x_train.shape[0], self.config.batch_size, seed, s.device) for seed in seeds}
        self.seed_of = torch.tensor([seeds.index(c.seed) for c in configs], device=s.device)
        self.active = np.arange(n)  # original position of each stacked run
        # (steps, fields, runs): a step's rows are one contiguous block, written by one stack
        self.record = torch.full((self.steps, len(RECORD_FIELDS), n), math.nan, dtype=self.dtype, device=s.device)
        self.nan = torch.full((n,), math.nan, dtype=self.dtype, device=s.device)
        self.elapsed = np.full(self.steps, math.nan)
        self.diverged_step = np.full(n, -1, dtype=np.int64)
        self.extra: dict[str, Tensor] = {}  # method-specific series (steps, runs[, L]), allocated on first sight
        self.extra_labels: dict[str, tuple[str, ...]] = {}
        self._constants: dict[tuple[float, int], Tensor] = {}
        self.frozen: dict[int, Tensor] = {}  # θ at the diverged step, per diverged run
        self.snapshots: list[tuple[int, np.ndarray, Tensor, Tensor | None]] = []  # (t, runs, θ_t, e_t)
        self.columns = torch.arange(n, device=s.device)  # ``active`` on the device
        # the test split's per-step metrics, a batch of steps at a time (bit-identical however many are batched)
        metrics = [(RECORD_FIELDS.index("test_loss"), s.loss)]
        if s.classification:
            metrics.append((RECORD_FIELDS.index("test_acc"), accuracy))
        self.deferred = (DeferredEvaluation(self.oracle, s.x_test, s.y_test, metrics, n)
                         if s.x_test.shape[0] and deferrable(s.model) else None)
        self.t, self.stopped = 0, False
        self.started = time.perf_counter()

    @property
    def running(self) -> bool:
        return self.t < self.steps and len(self.active) > 0 and not self.stopped

    # ------------------------------------------------------------------ one step

    @torch.no_grad()
    def step(self) -> None:
        """Step t of every active run: evaluate, mark divergence, run the step program, record."""
        t, c = self.t, self.config
        full_batch = c.batch_size == 0
        self.oracle.begin(self.params, self._batch())
        probe, outputs = self.oracle.at_theta("step")
        rows: dict[str, Tensor] = {"batch_loss": probe.loss}
        with_full = self.diagnostics and t % c.fullgrad_every == 0
        # minibatch steps: one pass over the whole train set serves both the evaluation and the full gradient
        full = self.oracle.at_theta("train") if with_full and not full_batch else None
        if t % c.eval_every == 0:
            if full_batch:  # the step's batch is the train set: its loss is the train loss
                rows["train_loss"] = probe.loss
            self._evaluate(rows, outputs if full_batch else (None if full is None else full[1]),
                           test=self.deferred is None)
            if self.deferred is not None:
                self.deferred.keep(t, self.columns, self.params)
        # the one host sync per step: a diverged run is recorded, then frozen (one run: a float is the cheapest)
        finite = math.isfinite(probe.loss.item()) if len(self.active) == 1 else bool(torch.isfinite(probe.loss).all())
        if not finite:
            bad = ~torch.isfinite(probe.loss)
            self._diverge(t, rows, bad)
            if len(self.active) == 0:
                self._tick(t)
                return
            rows = _take(rows, ~bad)
            probe = self.oracle.at_theta("step")[0]
            full = self.oracle.at_theta("train") if full is not None else None
        snapshot = t % c.snapshot_every == 0 if self.diagnostics else t == 0
        theta = _flat(self.params).clone() if snapshot else None
        full_grad = _flat(probe.grads if full_batch else full[0].grads) if with_full else None
        # full batch: θ_t's gradient is the full one; its norm as the programs take it (the same numbers as their
        # grad_norm, which for SAMPa is another gradient's), before a program could touch it
        full_norm = global_norm(probe.grads) if with_full and full_batch else None
        report = self.variant.program.step(self.params, self.state, self.hp, self.oracle, self.names)
        rows.update({k: report[k] for k in REPORT_FIELDS})
        eps = None if report["perturbation"] is None else _flat(report["perturbation"])
        rows.update(self._cost(eps))
        self._write_extra(t, report.get("extra", {}), report.get("extra_labels", {}))
        if full_grad is not None:
            full_norm = full_grad.norm(dim=1) if full_norm is None else full_norm
            rows["full_grad_norm"] = full_norm
            if eps is not None:  # cos = ⟨e, ∇L⟩ / (‖e‖‖∇L‖) from the norms at hand: one kernel, not three
                denominator = (_as(report["eps_norm"], self.dtype) * full_norm).clamp_min(1e-30)
                rows["cos_eps_fullgrad"] = (eps * full_grad).sum(1) / denominator
        if theta is not None:
            self.snapshots.append((t, self.active.copy(), theta, None if eps is None else eps.clone()))
        self._write(t, rows, None)
        if self.deferred is not None and self.deferred.full:
            self.deferred.flush(self.record)
        self._tick(t)

    def flush(self) -> None:
        """Write the deferred test metrics of the steps so far into the record."""
        if self.deferred is not None:
            self.deferred.flush(self.record)

    def _tick(self, t: int) -> None:
        self.elapsed[t] = time.perf_counter() - self.started
        self.t = t + 1

    def _batch(self) -> tuple[Tensor, Tensor, int | None]:
        """This step's (x, y, in_dim): shared by all runs (full batch, one seed) or one minibatch per run."""
        s = self.s
        if self.config.batch_size == 0:
            return s.x_train, s.y_train, None
        idx = [order.next() for order in self.orders.values()]  # every seed's order advances, as in its run
        if len(idx) == 1:
            return s.x_train[idx[0]], s.y_train[idx[0]], None
        active = torch.as_tensor(self.active, device=self.device)
        per_run = torch.stack(idx)[self.seed_of[active]]
        return s.x_train[per_run], s.y_train[per_run], 0

    def _evaluate(self, rows: dict[str, Tensor], train_outputs: Tensor | None, *, test: bool = True) -> None:
        """Full train (reusing the whole train set's outputs when the step computed them) and, with ``test``, test
        metrics."""
        s = self.s
        for split, x, y, out in (("train", s.x_train, s.y_train, train_outputs), ("test", s.x_test, s.y_test, None)):
            if x.shape[0] == 0 or (split == "test" and not test):
                continue
            out = self.oracle.outputs(self.params, x) if out is None else out
            if f"{split}_loss" not in rows:
                rows[f"{split}_loss"] = self.oracle.metric(s.loss, out, y)
            if s.classification:
                rows[f"{split}_acc"] = self.oracle.metric(accuracy, out, y)

    def _diverge(self, t: int, rows: Mapping[str, Tensor], bad: Tensor) -> None:
        """Record step t of the runs in ``bad`` (batch loss and evaluation), freeze them and drop them."""
        self._write(t, rows, bad)
        mask = bad.cpu().numpy()
        theta = _flat(self.params)
        for pos, k in enumerate(self.active):
            if mask[pos]:
                self.diverged_step[k] = t
                self.frozen[int(k)] = theta[pos].clone()
        keep = ~bad
        runs = len(self.active)
        self.params = _take(self.params, keep, runs)
        self.state = _take(self.state, keep, runs)
        self.hp = _take(self.hp, keep, runs)
        self.active = self.active[~mask]
        self.columns = self.columns[keep]
        self.oracle.drop(keep, self.params)

    def _write(self, t: int, rows: Mapping[str, Tensor], mask: Tensor | None) -> None:
        """Store step t's rows (one value per active run) for the active runs, or only those in ``mask``."""
        nan = self.nan[:len(self.active)]
        values = [_as(rows[f], self.dtype) if f in rows else nan for f in RECORD_FIELDS]
        if mask is None and len(self.active) == self.record.shape[2]:  # every run active: stack in place
            torch.stack(values, out=self.record[t])
            return
        stacked = torch.stack(values)
        where = torch.as_tensor(self.active, device=self.device)
        if mask is not None:
            stacked, where = stacked[:, mask], where[mask]
        self.record[t][:, where] = stacked

    def _cost(self, eps: Tensor | None) -> dict[str, Tensor]:
        """The step's cost as the oracle counted it: backward passes, samples in them, parameter entries moved."""
        oracle, n = self.oracle, len(self.active)
        moved = self._constant(0.0, n) if eps is None else torch.count_nonzero(eps, dim=1)
        if isinstance(oracle.grad_samples, Tensor):  # masked requests: per-run sample counts
            samples = oracle.grad_samples
            evals = samples / oracle.step_batch_size()
        else:  # the same for every run: cached device constants, no per-step allocation
            samples = self._constant(oracle.grad_samples, n)
            evals = self._constant(oracle.grad_samples / oracle.step_batch_size(), n)
        calls = oracle.grad_calls if isinstance(oracle.grad_calls, Tensor) else self._constant(float(oracle.grad_calls), n)
        return {"grad_calls": calls, "grad_samples": samples,
                "grad_evals": evals, "perturbed_params": moved}

    def _constant(self, value: float, n: int) -> Tensor:
        key = (float(value), n)
        if key not in self._constants:
            self._constants[key] = torch.full((n,), float(value), dtype=self.dtype, device=self.device)
        return self._constants[key]

    def _write_extra(self, t: int, extra: Mapping[str, Tensor], labels: Mapping[str, Sequence[str]]) -> None:
        """Store step t's method-specific series ((R,) or (R, L) per name) for the active runs."""
        where = torch.as_tensor(self.active, device=self.device)
        for name, values in extra.items():
            if name not in self.extra:
                if values.dim() > 2 or (values.dim() == 2 and values.shape[1] > MAX_EXTRA_COLUMNS):
                    raise ValueError(f"Invalid extra series {name!r}: (R,) or (R, L ≤ {MAX_EXTRA_COLUMNS}) per step, "
                                     f"got {tuple(values.shape)}")
                self.extra[name] = torch.full((self.steps, self.record.shape[2], *values.shape[1:]), math.nan,
                                              dtype=self.dtype, device=self.device)
                if name in labels:
                    self.extra_labels[name] = tuple(labels[name])
            self.extra[name][t][where] = _as(values, self.dtype)

    def row(self) -> _Row:
        """The last step's scalars of the first active run (or of run 0), read lazily."""
        k = int(self.active[0]) if len(self.active) else 0
        return _Row(self, k, self.t - 1)

    # ------------------------------------------------------------------ results

    @torch.no_grad()
    def finish(self) -> list[Run]:
        """The Runs, with final metrics at θ_n for the runs that did not diverge."""
        self.flush()
        final: dict[str, Tensor] = {}
        if len(self.active):
            self._evaluate(final, None)
        final_host = {k: v.cpu().double().numpy() for k, v in final.items()}
        theta_n = _flat(self.params).cpu().numpy() if len(self.active) else None
        record = self.record.cpu().double().numpy().transpose(1, 2, 0)  # (fields, runs, steps)
        extra = {name: values.cpu().double().numpy().swapaxes(0, 1) for name, values in self.extra.items()}
        snapshots = [(t, runs, theta.cpu().numpy(), None if e is None else e.cpu().numpy())
                     for t, runs, theta, e in self.snapshots]
        wall = time.perf_counter() - self.started
        out = []
        for k, config in enumerate(self.configs):
            diverged = self.diverged_step[k] >= 0
            n = int(self.diverged_step[k]) + 1 if diverged else self.t
            steps, weights, perturbations = [], [], []
            for t, runs, theta, e in snapshots:
                where = np.flatnonzero(runs == k)
                if where.size:
                    steps.append(t)
                    weights.append(theta[where[0]])
                    perturbations.append(np.zeros_like(theta[where[0]]) if e is None else e[where[0]])
            pos = np.flatnonzero(self.active == k)
            last = self.frozen[k].cpu().numpy() if diverged else theta_n[pos[0]]
            steps.append(n)
            weights.append(last)
            perturbations.append(np.full_like(last, np.nan))
            metrics = {name: (math.nan if diverged or name not in final_host else float(final_host[name][pos[0]]))
                       for name in ("train_loss", "train_acc", "test_loss", "test_acc")}
            series = {name: record[f, k, :n] for f, name in enumerate(RECORD_FIELDS)}
            out.append(Run(
                config=config, step=np.arange(n, dtype=np.int64), elapsed=self.elapsed[:n].copy(), **series,
                snapshot_step=np.asarray(steps, dtype=np.int64), weights=np.stack(weights),
                perturbations=np.stack(perturbations).astype(weights[0].dtype),
                param_names=tuple(self.names), param_shapes=self.shapes,
                final_train_loss=metrics["train_loss"], final_train_acc=metrics["train_acc"],
                final_test_loss=metrics["test_loss"], final_test_acc=metrics["test_acc"],
                diverged=bool(diverged), diverged_step=int(self.diverged_step[k]), stopped=self.stopped,
                wall_time=wall, device=str(self.device),
                extra={name: values[k, :n].copy() for name, values in extra.items()},
                extra_labels=dict(self.extra_labels),
            ))
        return out


class _Row(Mapping):
    """One run's scalars at one step, read from the device on first lookup (a progress bar that shows no numbers
    costs no host sync). ``active`` and ``diverged`` count the stacked runs."""

    def __init__(self, runs: _Runs, k: int, t: int) -> None:
        self._runs, self._k, self._t = runs, k, t
        self._values: dict[str, float] | None = None
        self.active, self.diverged = len(runs.active), int((runs.diverged_step >= 0).sum())

    def _load(self) -> dict[str, float]:
        if self._values is None:
            self._runs.flush()
            values = self._runs.record[self._t, :, self._k].tolist()
            self._values = {"step": self._t, **dict(zip(RECORD_FIELDS, values)),
                            "elapsed": float(self._runs.elapsed[self._t])}
        return self._values

    def __getitem__(self, key: str) -> float:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(STEP_FIELDS)

    def __len__(self) -> int:
        return len(STEP_FIELDS)


def _stacked_hp(configs: Sequence[Config], dtype: torch.dtype, device: torch.device) -> dict[str, Any]:
    """The configs' hyperparameters: a value shared by every run as it is, a float that differs as a (R,) tensor
    (a pair entry by entry)."""
    specs = OPTIMIZERS[configs[0].optimizer].hparams
    out: dict[str, Any] = {}
    for key, value in configs[0].hparams:
        values = [c.hp[key] for c in configs]
        if all(v == value for v in values) or specs[key].kind not in ("float", "pair"):
            out[key] = value
        elif specs[key].kind == "pair":
            out[key] = tuple(torch.tensor([v[i] for v in values], dtype=dtype, device=device) for i in range(2))
        else:
            out[key] = torch.tensor(values, dtype=dtype, device=device)
    return out


def _as(t: Tensor, dtype: torch.dtype) -> Tensor:
    return t if t.dtype == dtype else t.to(dtype)


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    """Per-run flattening (R, P), in parameter order."""
    return torch.cat([t.reshape(t.shape[0], -1) for t in tensors], dim=1)


def _take(obj: Any, keep: Tensor, runs: int | None = None) -> Any:
    """``obj`` with only the runs in ``keep``: every tensor whose leading dimension is the run count."""
    runs = int(keep.shape[0]) if runs is None else runs
    if isinstance(obj, Tensor):
        return obj[keep] if obj.dim() > 0 and obj.shape[0] == runs else obj
    if isinstance(obj, list):
        return [_take(o, keep, runs) for o in obj]
    if isinstance(obj, tuple):  # a pair hyperparameter of per-run tensors
        return tuple(_take(o, keep, runs) for o in obj)
    if isinstance(obj, dict):
        return {key: _take(value, keep, runs) for key, value in obj.items()}
    return obj  # numbers, step counters, strings
