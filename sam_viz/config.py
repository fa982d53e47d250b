"""``Config``: one training run as a frozen, hashable record that round-trips through a flat dict of primitives.

The flat dict is what the app puts in the URL and the command line takes as flags, so every value is a str,
int, float or bool, and ``Config.from_flat`` accepts the same values as strings. Limits are enforced here and in
``train`` (the engine), whatever the caller.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .data import ANALYTIC, CSV_TASK, TASKS, start_limits
from .dataset_store import check_key
from .models import DEFAULT_BASE_WIDTH, check_parameterization
from .optim import OPTIMIZERS, validate

MAX_STEPS = 20_000
# the validation share a run gets when its optimizer learns on a validation split (LETS) and none was set
DEFAULT_VAL_FRACTION = 0.2
MAX_VAL_FRACTION = 0.9
MAX_LABEL_NOISE = 0.9
MAX_SNAPSHOTS = 2_001
DTYPES = ("float32", "float64")


def _f(default: Any, help_: str) -> Any:
    return field(default=default, metadata={"help": help_})


@dataclass(frozen=True)
class Config:
    """Everything that determines a run; the same Config gives bit-identical arrays on the CPU.

    Each field's meaning is in its ``metadata["help"]`` (the command line and the app show the same text).
    ``hparams`` holds every hyperparameter of ``optimizer`` as sorted (name, value) pairs with the defaults
    filled in, so two Configs that train alike compare and hash alike; pass a mapping
    (``Config(hparams={"rho": 0.1})``) or use ``with_optimizer`` / ``replace``.
    """

    task: str = _f("moons", "Data set or analytic loss (see `python -m sam_viz tasks`); csv: your own table (`data`).")
    data: str | None = _f(None, "The csv task's data set: the hash of a table in this server's store (`train --csv` "
                                "and the app's upload put it there). Other tasks: unset.")
    n_samples: int = _f(512, "Samples generated (analytic tasks: simulated noise vectors); digits caps at 1,797.")
    noise: float = _f(0.2, "Input noise of the 2-D generators; analytic tasks: std of the simulated gradient noise.")
    test_fraction: float = _f(0.25, "Share of the samples held out for test metrics (analytic tasks have none).")
    val_fraction: float | None = _f(None, "Share of the training samples moved into a validation split, never "
                                          "trained on (LETS learns ρ on it; the test split stays unseen). Unset: "
                                          f"{DEFAULT_VAL_FRACTION} for optimizers that learn on a validation split, "
                                          "none (0) for the others. Runs compared side by side should share it (the "
                                          "app and run_many do), so that they train on the same samples.")
    label_noise: float = _f(0.0, f"Share of the training labels flipped to another class (uniformly among the "
                                 f"others, fixed by `data_seed`), in [0, {MAX_LABEL_NOISE}]; the test and "
                                 "validation splits keep their true labels. Classification tasks only.")
    n_classes: int = _f(3, "Classes of the blobs task.")
    data_seed: int = _f(0, "Seed of the data generator, apart from `seed` so one data set serves many seeds.")
    model: str = _f("mlp", "logistic, mlp, cnn (digits) or point (analytic tasks: the parameters are the plane).")
    depth: int = _f(2, "Hidden layers of the MLP.")
    width: int = _f(32, "Units per hidden layer of the MLP.")
    activation: str = _f("tanh", "MLP/CNN activation: tanh, relu, gelu, sigmoid, softplus, elu.")
    parameterization: str = _f("sp", "sp (PyTorch's default initialisation) or mup (μP initialisation of an MLP "
                                     "with hidden layers; mup2 trains with its per-layer learning rates).")
    base_width: int = _f(DEFAULT_BASE_WIDTH, "μP's base width n₀: at width = n₀ the μP model and mup2 are the "
                                             "standard ones (r = width/n₀ = 1).")
    start_x: float | None = _f(None, "Start of the point model, first coordinate (default: the task's start).")
    start_y: float | None = _f(None, "Start of the point model, second coordinate (default: the task's start).")
    optimizer: str = _f("sam", "Optimizer registry name (see `python -m sam_viz optimizers`).")
    hparams: Any = field(default=(), metadata={"help": "Hyperparameters of the optimizer, sorted (name, value) pairs."})
    steps: int = _f(200, f"Optimizer steps (at most {MAX_STEPS:,}).")
    batch_size: int = _f(0, "Minibatch size; 0 = full batch. Batches are drawn without replacement, reshuffled "
                            "every epoch, the last incomplete batch dropped.")
    seed: int = _f(0, "Model initialisation and minibatch order: runs with one seed share θ_0 and batches.")
    device: str = _f("auto", "auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")
    dtype: str = _f("float32", "float32 or float64.")
    snapshot_every: int = _f(10, f"Keep θ_t and e_t every k steps, plus the final θ (at most {MAX_SNAPSHOTS:,} snapshots).")
    eval_every: int = _f(1, "Evaluate full train and test loss/accuracy every k steps (NaN between).")
    fullgrad_every: int = _f(1, "Full-batch gradient for cos(e_t, ∇L) every k steps (NaN between).")

    def __post_init__(self) -> None:
        given = dict(self.hparams)
        variant = OPTIMIZERS.get(self.optimizer)
        if variant is not None and "base_width" in variant.hparams:  # the model's n₀ is the optimizer's (μP²)
            given["base_width"] = self.base_width
        check_parameterization(self.parameterization, self.base_width, self.model, self.depth)
        if variant is not None and variant.parameterization and variant.parameterization != self.parameterization:
            raise ValueError(f"Invalid parameterization for {self.optimizer}: it trains a "
                             f"parameterization={variant.parameterization!r} model, got {self.parameterization!r}")
        checked = validate(self.optimizer, given)
        object.__setattr__(self, "hparams", tuple(sorted(checked.items())))
        _check_data(self.task, self.data)
        _check_int("steps", self.steps, 1, MAX_STEPS)
        _check_int("batch_size", self.batch_size, 0, 1_000_000)
        _check_int("seed", self.seed, 0, 2**31 - 1)
        _check_int("data_seed", self.data_seed, 0, 2**31 - 1)
        _check_int("n_classes", self.n_classes, 2, 10)
        for name in ("snapshot_every", "eval_every", "fullgrad_every"):
            _check_int(name, getattr(self, name), 1, MAX_STEPS)
        if self.steps // self.snapshot_every + 2 > MAX_SNAPSHOTS:
            raise ValueError(f"Invalid snapshot_every: {self.snapshot_every} keeps more than {MAX_SNAPSHOTS} "
                             f"snapshots over {self.steps} steps; use at least {math.ceil(self.steps / (MAX_SNAPSHOTS - 2))}")
        if self.dtype not in DTYPES:
            raise ValueError(f"Invalid dtype: {self.dtype!r}; valid: {', '.join(DTYPES)}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"Invalid device: {self.device!r}; valid: auto, cpu, cuda, cuda:N")
        for name in ("noise", "test_fraction", "label_noise"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"Invalid {name}: {value!r} is not a finite number")
        for name in ("start_x", "start_y"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not math.isfinite(float(value))):
                raise ValueError(f"Invalid {name}: {value!r} is not a finite number")
        _check_start(self.task, self.start_x, self.start_y)
        if not 0.0 <= self.label_noise <= MAX_LABEL_NOISE:
            raise ValueError(f"Invalid label_noise: {self.label_noise!r} (valid: a share in [0, {MAX_LABEL_NOISE}])")
        if self.label_noise > 0 and TASKS.get(self.task) is not None and TASKS[self.task].kind == ANALYTIC:
            raise ValueError(f"Invalid label_noise: {self.label_noise!r} for the analytic task {self.task!r}, which has "
                             "no labels; label noise applies to classification tasks only (use 0)")
        object.__setattr__(self, "label_noise", float(self.label_noise))  # 0 and 0.0 compare and hash alike anyway
        value = self.val_fraction
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not (math.isfinite(value) and 0.0 <= value <= MAX_VAL_FRACTION)):
            raise ValueError(f"Invalid val_fraction: {value!r} (valid: unset, or a number in [0, {MAX_VAL_FRACTION}])")
        # canonical, so that Configs that train alike compare alike: an optimizer that learns on a validation
        # split gets the default share when none is set; for the others 0 and unset are the same (no split)
        if OPTIMIZERS[self.optimizer].needs_validation:
            if value is None:
                object.__setattr__(self, "val_fraction", DEFAULT_VAL_FRACTION)
            elif value == 0:
                raise ValueError(f"Invalid val_fraction for {self.optimizer}: 0 leaves no validation split, and "
                                 f"{self.optimizer} learns on one (use a share in (0, {MAX_VAL_FRACTION}])")
        elif value == 0:
            object.__setattr__(self, "val_fraction", None)
        elif value is not None:
            object.__setattr__(self, "val_fraction", float(value))

    @property
    def validation_share(self) -> float:
        """The share of the training samples held out for validation (0: no validation split)."""
        return 0.0 if self.val_fraction is None else float(self.val_fraction)

    @property
    def hp(self) -> dict[str, Any]:
        """The hyperparameters as a dict (every one, defaults included)."""
        return dict(self.hparams)

    def with_optimizer(self, optimizer: str, **hparams: Any) -> Config:
        """The same run with another optimizer (its hyperparameters start from the registry defaults)."""
        return dataclasses.replace(self, optimizer=optimizer, hparams=hparams)

    def replace(self, **changes: Any) -> Config:
        """A copy with fields changed; hyperparameter names (lr, rho, ...) may be given directly."""
        fields_ = {f.name for f in dataclasses.fields(self)}
        hp_changes = {k: v for k, v in changes.items() if k not in fields_}
        base = {k: v for k, v in changes.items() if k in fields_}
        hp = dict(self.hparams) if "optimizer" not in base else {}
        hp.update(dict(base.pop("hparams", ())))
        hp.update(hp_changes)
        return dataclasses.replace(self, **base, hparams=hp)

    # ------------------------------------------------------------------ flat dict (URL, CLI, JSON)

    def to_flat(self) -> dict[str, Any]:
        """A flat dict of primitives: every field except ``hparams``, then each hyperparameter by name.

        Pairs (Adam's betas) become "b1,b2" strings; None start coordinates are left out.
        """
        flat: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "hparams" or value is None:
                continue
            flat[f.name] = value
        for key, value in self.hparams:
            flat[key] = ",".join(repr(float(v)) for v in value) if isinstance(value, tuple) else value
        return flat

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> Config:
        """Inverse of ``to_flat``; also parses strings ("0.1", "true", "0.9,0.999") as from a URL or command line.

        Raises:
            ValueError: an unknown key, an unparsable value, or a value outside its range (named in the message).
        """
        fields_ = {f.name: f for f in dataclasses.fields(cls) if f.name != "hparams"}
        optimizer = str(flat.get("optimizer", cls.optimizer))
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer: {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        specs = OPTIMIZERS[optimizer].hparams
        kwargs: dict[str, Any] = {}
        hparams: dict[str, Any] = {}
        for key, raw in flat.items():
            if key in fields_:
                kwargs[key] = _parse_field(key, fields_[key].default, raw)
            elif key in specs:
                hparams[key] = _parse_hparam(key, specs[key].kind, raw)
            else:
                raise ValueError(f"Unknown setting: {key!r} (not a Config field nor a hyperparameter of {optimizer})")
        return cls(**kwargs, hparams=hparams)


def shared_validation(configs: list[Config]) -> list[Config]:
    """Configs to compare side by side, made to train on the same samples: where one optimizer learns on a
    validation split (LETS), every config without a split of its own gets that optimizer's share, so SGD and SAM
    beside LETS lose the same validation samples from their training set. Without such an optimizer the configs
    are returned unchanged."""
    shares = [c.val_fraction for c in configs if OPTIMIZERS[c.optimizer].needs_validation]
    if not shares:
        return list(configs)
    return [c if c.val_fraction is not None else dataclasses.replace(c, val_fraction=shares[0]) for c in configs]


def _check_data(task: str, data: Any) -> None:
    """The csv task takes the key of a stored table; every other task none."""
    if task == CSV_TASK:
        if data is None:
            raise ValueError(f"Invalid data: unset; the {CSV_TASK!r} task needs the hash of an uploaded data set")
        check_key(data)
    elif data is not None:
        raise ValueError(f"Invalid data: {data!r} for the task {task!r}; only the {CSV_TASK!r} task takes data")


def _check_start(task: str, start_x: float | None, start_y: float | None) -> None:
    """An analytic task's start lies in its domain (``data.start_limits``). Other tasks are left to ``train``,
    which says that only the point model takes a start."""
    if TASKS.get(task) is None or TASKS[task].kind != ANALYTIC:
        return
    for name, value, (low, high) in zip(("start_x", "start_y"), (start_x, start_y), start_limits(task)):
        if value is not None and not low <= float(value) <= high:
            raise ValueError(f"Invalid {name}: {value!r} is outside the {task} task's domain [{low:g}, {high:g}] "
                             "(its plot window widened by its size on each side)")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"Invalid {name}: {value!r} (valid: integers in [{low}, {high}])")


def bool_from_text(raw: Any) -> bool | None:
    """true/1/yes/on → True, false/0/no/off → False (any case), anything else → None."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    return None


def _parse_bool(key: str, raw: Any) -> bool:
    value = bool_from_text(raw)
    if value is None:
        raise ValueError(f"Invalid {key}: {raw!r} (expected true or false)")
    return value


def _parse_field(key: str, default: Any, raw: Any) -> Any:
    try:
        if key in ("start_x", "start_y", "val_fraction"):
            return None if raw in (None, "", "none", "None") else float(raw)
        if key == "data":
            return None if raw in (None, "", "none", "None") else str(raw)
        if isinstance(default, bool):
            return _parse_bool(key, raw)
        if isinstance(default, int):
            number = float(raw) if not isinstance(raw, int) else raw
            if isinstance(raw, bool) or number != int(number):
                raise ValueError
            return int(number)
        if isinstance(default, float):
            return float(raw)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"Invalid {key}: {raw!r} is not a {type(default).__name__}") from None
    return str(raw)


def _parse_hparam(key: str, kind: str, raw: Any) -> Any:
    if kind == "bool":
        return _parse_bool(key, raw)
    if kind == "pair":
        parts = raw.split(",") if isinstance(raw, str) else list(raw)
        try:
            return tuple(float(p) for p in parts)
        except (TypeError, ValueError):
            raise ValueError(f"Invalid {key}: {raw!r} (expected two numbers, e.g. 0.9,0.999)") from None
    if kind == "choice":
        return str(raw)
    try:
        number = float(raw)
        return int(number) if kind == "int" and number == int(number) else number
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {key}: {raw!r} is not a number") from None
