"""Records the engine hands to the views: frozen dataclasses of numpy arrays that round-trip through ``.npz``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .config import Config
from .data import class_count

# Per-step series of a Run, in the order they are documented and saved.
STEP_FIELDS = (
    "step", "batch_loss", "train_loss", "train_acc", "test_loss", "test_acc", "grad_norm", "perturbed_grad_norm",
    "perturbed_loss", "eps_norm", "effective_rho", "effective_lr", "full_grad_norm", "cos_eps_fullgrad", "elapsed",
    "grad_calls", "grad_evals", "grad_samples", "perturbed_params",
)
COST_FIELDS = ("grad_calls", "grad_evals", "grad_samples", "perturbed_params")  # added after the first release: NaN in old files
SCALAR_FIELDS = ("final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc", "diverged",
                 "diverged_step", "stopped", "wall_time", "device")


@dataclass(frozen=True, eq=False)
class Run:
    """One training run. Per-step arrays have length n = steps completed (fewer than ``config.steps`` when the
    run diverged or was stopped); entry t describes step t, taken at θ_t. NaN marks "not computed".

    Attributes:
        config: the Config that produced the run.
        step: (n,) int64, 0..n-1.
        batch_loss: (n,) minibatch loss at θ_t (the loss the step used).
        train_loss, train_acc, test_loss, test_acc: (n,) full train/test set at θ_t, every ``eval_every`` steps;
            accuracy is NaN for analytic tasks, test metrics NaN when there is no test set.
        grad_norm: (n,) ‖s_t‖, minibatch gradient at θ_t.
        perturbed_grad_norm: (n,) ‖g_t‖, minibatch gradient at θ_t + e_t (= grad_norm for one-pass methods).
        perturbed_loss: (n,) minibatch loss at θ_t + e_t (NaN for one-pass methods).
        eps_norm: (n,) ‖e_t‖.
        effective_rho, effective_lr: (n,) see ``sam_viz.optim.StepReport``.
        full_grad_norm: (n,) ‖∇L(θ_t)‖ on the full train set, every ``fullgrad_every`` steps.
        cos_eps_fullgrad: (n,) cos(e_t, ∇L(θ_t)): the share of the perturbation along the full gradient (F-SAM's
            decomposition: ‖e‖·cos is the full-gradient part, ‖e‖·sqrt(1 − cos²) the minibatch-noise part);
            NaN for one-pass methods and between ``fullgrad_every`` steps.
        elapsed: (n,) seconds since the start of training, after step t.
        grad_calls: (n,) gradient evaluations (backward passes) the step's program asked for; the loop's own
            diagnostics (full-batch gradient, evaluation) are not counted.
        grad_samples: (n,) samples that took part in those backward passes, summed (ESAM's selected samples,
            mSAM's micro-batches, SSAM's Fisher samples).
        grad_evals: (n,) ``grad_samples`` in units of the step's batch: the cost axis (a SAM step: 2; ESAM with
            γ = 0.5: about 1.5; SSAM-F at a mask refresh: 2 + num_samples/B; SGD: 1).
        perturbed_params: (n,) parameter entries the perturbation e_t moved (nonzero entries; 0 for one-pass
            methods).
        snapshot_step: (S,) int64 steps of the snapshots: every ``snapshot_every``-th step and the final step n.
        weights: (S, P) θ at those steps, flattened in ``param_names`` order (float64 for float64 runs, else
            float32). Memory: S ≤ 2,001 and S·P ≤ ``MAX_SNAPSHOT_VALUES`` (checked before training).
        perturbations: (S, P) e_t at those steps; the final row (no step taken there) is NaN.
        param_names, param_shapes: how to unflatten a snapshot into the model's tensors.
        final_train_loss, final_train_acc, final_test_loss, final_test_acc: at θ_n, after the last step.
        diverged: the loss became NaN or infinite; ``diverged_step`` is the step (-1 otherwise); the run ended
            there cleanly and everything before is kept.
        stopped: stopped early on request (progress kept).
        wall_time: seconds spent training; device: the device that ran it.
        extra: method-specific per-step series, name → (n,) or (n, L) (for example SSAM's ``mask_density``,
            μP²'s per-layer ``layer_eps_ratio``); NaN where a step did not compute it. ``extra_labels`` names the
            L columns of a 2-D series.
    """

    config: Config
    step: np.ndarray
    batch_loss: np.ndarray
    train_loss: np.ndarray
    train_acc: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray
    grad_norm: np.ndarray
    perturbed_grad_norm: np.ndarray
    perturbed_loss: np.ndarray
    eps_norm: np.ndarray
    effective_rho: np.ndarray
    effective_lr: np.ndarray
    full_grad_norm: np.ndarray
    cos_eps_fullgrad: np.ndarray
    elapsed: np.ndarray
    snapshot_step: np.ndarray
    weights: np.ndarray
    perturbations: np.ndarray
    param_names: tuple[str, ...]
    param_shapes: tuple[tuple[int, ...], ...]
    final_train_loss: float
    final_train_acc: float
    final_test_loss: float
    final_test_acc: float
    diverged: bool
    diverged_step: int
    stopped: bool
    wall_time: float
    device: str
    grad_calls: np.ndarray = None  # type: ignore[assignment]  # filled with NaN by __post_init__ when absent
    grad_evals: np.ndarray = None  # type: ignore[assignment]
    grad_samples: np.ndarray = None  # type: ignore[assignment]
    perturbed_params: np.ndarray = None  # type: ignore[assignment]
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    extra_labels: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in COST_FIELDS:  # runs saved before these series existed
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.full(self.step.shape[0], np.nan))

    @property
    def n_steps(self) -> int:
        """Steps completed."""
        return int(self.step.shape[0])

    @property
    def n_params(self) -> int:
        return int(self.weights.shape[1])

    @property
    def final_weights(self) -> np.ndarray:
        """θ_n, the parameters after the last step (P,)."""
        return self.weights[-1]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary: the config (flat), the data's class count, the final metrics and the run's status.

        The config's ``n_classes`` sets the blobs task's classes only, so for other tasks it is left out (it would
        say 3 for digits); ``n_classes`` beside it is the task's real count (0 for analytic losses).
        """
        scalars = {name: getattr(self, name) for name in SCALAR_FIELDS}
        config = self.config.to_flat()
        if self.config.task != "blobs":
            config.pop("n_classes", None)
        return json_ready({"config": config, "n_classes": class_count(self.config.task, self.config.n_classes, self.config.data),
                           "n_steps": self.n_steps, "n_params": self.n_params, **scalars})

    def save(self, path: str | Path | BinaryIO) -> Path | BinaryIO:
        """Write the run to ``path`` (``.npz``, or an open binary file): every array, plus config and scalars as JSON."""
        arrays = {name: getattr(self, name) for name in (*STEP_FIELDS, "snapshot_step", "weights", "perturbations")}
        arrays.update({_EXTRA + name: values for name, values in self.extra.items()})
        meta = {**self.summary(), "param_names": list(self.param_names),
                "param_shapes": [list(s) for s in self.param_shapes],
                "extra_labels": {k: list(v) for k, v in self.extra_labels.items()}}
        target = path if hasattr(path, "write") else Path(path)
        np.savez_compressed(target, meta=np.array(json.dumps(meta)), **arrays)
        if hasattr(path, "write"):
            return path
        return target if target.suffix == ".npz" else target.with_name(target.name + ".npz")

    @classmethod
    def load(cls, path: str | Path | BinaryIO) -> Run:
        """Read a run written by ``save`` (a path or an open binary file)."""
        with np.load(path if hasattr(path, "read") else Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in data.files if name != "meta" and not name.startswith(_EXTRA)}
            extra = {name[len(_EXTRA):]: data[name] for name in data.files if name.startswith(_EXTRA)}
        return cls(
            extra=extra, extra_labels={k: tuple(v) for k, v in meta.get("extra_labels", {}).items()},
            config=Config.from_flat(meta["config"]),
            param_names=tuple(meta["param_names"]),
            param_shapes=tuple(tuple(s) for s in meta["param_shapes"]),
            **{name: float("nan") if meta[name] is None else meta[name] for name in SCALAR_FIELDS},
            **arrays,
        )

    def equal_arrays(self, other: Run) -> bool:
        """Bit-identical results (timings excluded): the determinism check."""
        for f in dataclasses.fields(self):
            if f.name in ("elapsed", "wall_time"):
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "extra":
                if a.keys() != b.keys() or not all(np.array_equal(a[k], b[k], equal_nan=True) for k in a):
                    return False
                continue
            if isinstance(a, np.ndarray):
                if a.shape != b.shape or a.dtype != b.dtype or not np.array_equal(a, b, equal_nan=True):
                    return False
            elif a != b and not (isinstance(a, float) and np.isnan(a) and np.isnan(b)):
                return False
        return True


_EXTRA = "extra__"  # the prefix of a method-specific series in a saved .npz


def output_path(prefix: str | Path, extension: str) -> Path:
    """``PREFIX.extension`` for the command line's ``--out PREFIX``: appended, so a dot in the prefix
    (``runs/a.v2``) is kept rather than taken for a suffix to replace."""
    prefix = Path(prefix)
    return prefix.with_name(prefix.name + extension)


def json_ready(value: Any) -> Any:
    """Numpy arrays and scalars → Python lists and numbers, recursively; NaN/inf → None, so the JSON is standard
    (a diverged run or an unevaluated snapshot holds NaN)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_ready(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
