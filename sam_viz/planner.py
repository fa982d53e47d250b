"""An explicit, inspectable planner that picks the fastest surface evaluator by timing, like FFTW's wisdom.

Every evaluator in ``sam_viz.evaluators`` gives the same surface to float tolerance, so choosing among them by a
measurement changes only the time a surface takes, never its numbers. The choice is still state, so it lives
here and nowhere else: a ``SurfacePlanner`` records one ``Choice`` per set-up (model architecture, loss, data
size, device, dtype, accuracy flag), and its ``choices`` can be printed, saved to JSON, loaded on another run, and
fixed by hand. ``sam_viz.surface.surface(..., evaluator="auto")`` asks ``default_planner()`` unless it is given
``planner=``; any named evaluator bypasses planning.

>>> planner = SurfacePlanner()
>>> planner.choose(model, loss_fn, batch, plane)        # doctest: +SKIP
'mlp'
>>> planner.choices                                     # doctest: +SKIP
{'Sequential#3f2a…|P=4482|loss=cross_entropy|n=2000|cpu|torch.float32|accuracy=True': Choice('mlp', 8, 'measured')}
>>> planner.save("wisdom.json"); SurfacePlanner().load("wisdom.json")   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .evaluators import EVALUATORS, Evaluator, build, candidates, default_evaluator, model_device_dtype

if TYPE_CHECKING:
    from .planes import Plane

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]

ROUNDS = 2  # interleaved timing rounds, best rate kept: one short timing follows the machine's load too closely
WISDOM_VERSION = 1


@dataclass(frozen=True)
class Choice:
    """The evaluator a planner uses for one set-up.

    Attributes:
        evaluator: a key of ``sam_viz.evaluators.EVALUATORS``.
        chunk: points per call; None lets ``build`` pick the largest offered for that evaluator.
        source: "measured" (timed here), "default" (``default_evaluator``, no timing), "fixed" (by ``fix``) or
            "loaded" (from a saved file).
    """

    evaluator: str
    chunk: int | None = None
    source: str = "measured"


class SurfacePlanner:
    """Chooses, records and reports the surface evaluator per set-up.

    Args:
        measure: time the candidates on a set-up it has not seen (FFTW_MEASURE); False takes
            ``default_evaluator`` without timing (FFTW_ESTIMATE), so a plan never depends on machine load.
        rounds: interleaved timing rounds per candidate.

    Attributes:
        measure, rounds: as given.
        timings: {key: {"name/chunk": points per second}} of every measurement made, for inspection.
    """

    def __init__(self, *, measure: bool = True, rounds: int = ROUNDS) -> None:
        self.measure = measure
        self.rounds = rounds
        self.timings: dict[str, dict[str, float]] = {}
        self._choices: dict[str, Choice] = {}

    def __repr__(self) -> str:
        return f"SurfacePlanner(measure={self.measure}, choices={len(self._choices)})"

    @property
    def choices(self) -> dict[str, Choice]:
        """A copy of the recorded choices, by set-up key."""
        return dict(self._choices)

    @staticmethod
    def key(model: nn.Module, loss_fn: LossFn, batch: Batch, accuracy: bool = False) -> str:
        """The set-up key choices are recorded under: architecture, loss, data size, device, dtype, accuracy.

        Args:
            model: the network (its ``repr`` and parameter count name the architecture).
            loss_fn: the loss (its qualified name).
            batch: ``(x, y)``; only the number of samples counts.
            accuracy: whether accuracy is computed too.

        Returns:
            A readable string, stable across processes.
        """
        arch = hashlib.sha1(repr(model).encode()).hexdigest()[:10]
        n_params = sum(p.numel() for p in model.parameters())
        device, dtype = model_device_dtype(model)
        loss = getattr(loss_fn, "__qualname__", repr(loss_fn))
        return (f"{type(model).__name__}#{arch}|P={n_params}|loss={loss}|n={int(batch[0].shape[0])}|{device}|{dtype}"
                f"|accuracy={bool(accuracy)}")

    def choose(self, model: nn.Module, loss_fn: LossFn, batch: Batch, plane: Plane, accuracy: bool = False) -> str:
        """The evaluator's name for this set-up (see ``plan``).

        Args:
            model: the network.
            loss_fn: ``loss_fn(outputs, y)``.
            batch: ``(x, y)`` on the model's device.
            plane: a plane of the model (the candidates are timed on its points).
            accuracy: whether accuracy is computed too.

        Returns:
            A key of ``sam_viz.evaluators.EVALUATORS``.
        """
        return self.plan(model, loss_fn, batch, plane, accuracy).evaluator

    def plan(self, model: nn.Module, loss_fn: LossFn, batch: Batch, plane: Plane, accuracy: bool = False) -> Choice:
        """The recorded choice for this set-up; on a new one, time the candidates (or take the default) first.

        Args:
            model: the network.
            loss_fn: ``loss_fn(outputs, y)``.
            batch: ``(x, y)`` on the model's device.
            plane: a plane of the model.
            accuracy: whether accuracy is computed too.

        Returns:
            The ``Choice``, now recorded under ``key(model, loss_fn, batch, accuracy)``.
        """
        key = self.key(model, loss_fn, batch, accuracy)
        if key not in self._choices:
            if self.measure:
                self._choices[key] = self._measure(key, model, loss_fn, batch, plane, accuracy)
            else:
                self._choices[key] = Choice(default_evaluator(model), None, "default")
        return self._choices[key]

    def fix(self, key: str, evaluator: str, chunk: int | None = None) -> None:
        """Record ``evaluator`` for ``key`` by hand (it then wins over any measurement).

        Args:
            key: a set-up key, as ``key`` computes it.
            evaluator: a key of ``EVALUATORS``.
            chunk: points per call, or None for the evaluator's default.

        Raises:
            ValueError: an unknown evaluator or a chunk below 1.
        """
        if evaluator not in EVALUATORS:
            raise ValueError(f"Invalid evaluator: {evaluator!r}; valid: {', '.join(EVALUATORS)}")
        if chunk is not None and int(chunk) < 1:
            raise ValueError(f"Invalid chunk: {chunk}")
        self._choices[key] = Choice(evaluator, None if chunk is None else int(chunk), "fixed")

    def forget(self, key: str | None = None) -> None:
        """Drop the choice (and timings) for ``key``, or all of them."""
        if key is None:
            self._choices.clear()
            self.timings.clear()
        else:
            self._choices.pop(key, None)
            self.timings.pop(key, None)

    def save(self, path: str | os.PathLike) -> None:
        """Write the choices as JSON (FFTW's ``export_wisdom``).

        Args:
            path: the file to write.
        """
        data = {"version": WISDOM_VERSION, "torch": torch.__version__,
                "choices": {k: asdict(c) for k, c in self._choices.items()}}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)

    def load(self, path: str | os.PathLike) -> SurfacePlanner:
        """Merge choices saved by ``save`` into this planner (FFTW's ``import_wisdom``); loaded ones win.

        Args:
            path: a file written by ``save``.

        Returns:
            This planner.

        Raises:
            ValueError: a file of another version, or an unknown evaluator in it.
        """
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("version") != WISDOM_VERSION:
            raise ValueError(f"Invalid planner file {path}: version {data.get('version')!r}, expected {WISDOM_VERSION}")
        for key, c in data["choices"].items():
            if c["evaluator"] not in EVALUATORS:
                raise ValueError(f"Invalid planner file {path}: unknown evaluator {c['evaluator']!r}")
            self._choices[key] = Choice(c["evaluator"], c.get("chunk"), "loaded")
        return self

    def _measure(self, key: str, model: nn.Module, loss_fn: LossFn, batch: Batch, plane: Plane,
                 accuracy: bool) -> Choice:
        built: list[tuple[str, int, Evaluator]] = []
        for name, chunk in candidates(model, batch[0].shape[0]):
            try:
                built.append((name, chunk, build(name, model, loss_fn, batch, plane, accuracy, chunk)))
            except (RuntimeError, ValueError):  # e.g. no oneDNN in this build: skip that evaluator
                continue
        rates = [0.0] * len(built)
        for _ in range(self.rounds):
            for i, (_, _, evaluator) in enumerate(built):
                if rates[i] < 0:
                    continue
                try:
                    rates[i] = max(rates[i], _points_per_second(evaluator))
                except (RuntimeError, NotImplementedError, TypeError):  # an op vmap cannot batch; a moved private op
                    rates[i] = -1.0
        self.timings[key] = {f"{name}/{chunk}": rate for (name, chunk, _), rate in zip(built, rates)}
        best = max(range(len(built)), key=rates.__getitem__)
        return Choice(built[best][0], built[best][1], "measured")


_DEFAULT = SurfacePlanner()


def default_planner() -> SurfacePlanner:
    """The planner ``surface(..., evaluator="auto")`` uses when none is passed."""
    return _DEFAULT


def set_default_planner(planner: SurfacePlanner) -> SurfacePlanner:
    """Replace the default planner (e.g. with a loaded or a ``measure=False`` one); returns the previous one."""
    global _DEFAULT
    previous, _DEFAULT = _DEFAULT, planner
    return previous


def _points_per_second(evaluator: Evaluator) -> float:
    k = evaluator.chunk()
    pts = max(2 * k, 32)  # at least two calls: one chunk's time swings with the machine's load
    a = torch.linspace(-1, 1, pts, device=evaluator.device, dtype=evaluator.dtype)
    evaluator(a[:k], a[:k])  # warm-up
    _sync(evaluator.device)
    start = time.perf_counter()
    for i in range(0, pts, k):
        evaluator(a[i:i + k], a[i:i + k])
    _sync(evaluator.device)
    return pts / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":  # kernels run asynchronously: wait for them before reading the clock
        torch.cuda.synchronize(device)
