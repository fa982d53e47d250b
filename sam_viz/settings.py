"""App settings as one validated record that round-trips through the URL query string (no UI imports).

Everything a view shows is a function of ``Settings``: the experiment (task, model, the optimizers to compare and
their hyperparameters, steps, batch, seed) and the view options (plane, span, resolution, ...). ``from_query``
never raises: a bad or out-of-range value is replaced or clamped and a note says what was changed, so a shared
link always opens. ``to_query`` writes only what differs from the defaults, so links stay short.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import dataset_store
from .config import DEFAULT_VAL_FRACTION, MAX_LABEL_NOISE, Config, bool_from_text
from .data import CSV_TASK, TASKS, start_limits, task_info, train_size
from .models import ACTIVATIONS, PARAMETERIZATIONS
from .optim import OPTIMIZERS

MAX_RUNS = 4


@dataclass(frozen=True)
class FieldSpec:
    """A setting's type and limits as the app enforces them (the engine enforces its own too)."""

    kind: str  # "int", "float", "bool", "choice", "floats"
    low: float = -math.inf
    high: float = math.inf
    choices: tuple[str, ...] = ()
    label: str = ""
    help: str = ""


RunSpec = tuple[str, tuple[tuple[str, Any], ...]]  # (optimizer, sorted hyperparameter overrides)


def _f(default: Any, spec: FieldSpec) -> Any:
    return field(default=default, metadata={"spec": spec})


PLANES = ("pca", "random", "hessian", "three_points")
SWEEP_AXES = ("rho", "lr", "width")  # the optimizer's ρ and η, and the MLP's width (whole numbers)
# the values a width axis takes where a link or a switch of axis gives none that are widths
WIDTH_AXIS_VALUES = (8.0, 16.0, 32.0, 64.0)
SWEEP_METRICS = ("test_acc", "test_loss", "train_loss", "lambda_max")
SERIES = ("test_acc", "test_loss", "train_loss", "batch_loss", "grad_norm", "eps_norm", "effective_rho", "effective_lr")


@dataclass(frozen=True)
class Settings:
    """The whole state of the app; the URL holds the fields that differ from these defaults."""

    task: str = _f("moons", FieldSpec("choice", choices=(*TASKS, CSV_TASK), label="Task", help="Data set, or a 2-D analytic loss whose parameters are the plane; csv: your own table (upload it below)."))
    data: str = _f("", FieldSpec("str", label="Data set", help="The csv task's uploaded table: the hash it is kept under on this server."))
    heldout: float = _f(0.25, FieldSpec("float", 0.05, 0.5, label="Held-out share", help="Share of your table's rows held out for test metrics (the csv task; the others hold out a quarter)."))
    n: int = _f(256, FieldSpec("int", 16, 4000, label="Samples", help="Samples generated (analytic tasks: simulated noise vectors)."))
    noise: float = _f(0.2, FieldSpec("float", 0.0, 3.0, label="Noise", help="Input noise of the data; for analytic tasks the std of simulated minibatch-gradient noise."))
    lnoise: float = _f(0.0, FieldSpec("float", 0.0, MAX_LABEL_NOISE, label="Label noise", help="Share of the training labels flipped to another class (test and validation labels stay true): a network that fits them memorises noise. Classification tasks only."))
    model: str = _f("mlp", FieldSpec("choice", choices=("mlp", "logistic", "cnn"), label="Model", help="Network (analytic tasks always train the point itself)."))
    depth: int = _f(2, FieldSpec("int", 0, 4, label="Hidden layers"))
    width: int = _f(16, FieldSpec("int", 2, 128, label="Width", help="Units per hidden layer."))
    act: str = _f("tanh", FieldSpec("choice", choices=ACTIVATIONS, label="Activation"))
    param: str = _f("sp", FieldSpec("choice", choices=PARAMETERIZATIONS, label="Parameterisation", help="sp: PyTorch's default initialisation; mup: μP (an MLP's input, hidden and output layers initialised at their μP scales; μP² adds per-layer learning rates and radii). At the base width both start alike."))
    bw: int = _f(16, FieldSpec("int", 2, 128, label="Base width", help="μP's base width n₀: at Width = n₀, μP² is plain SAM; the ratio Width/n₀ scales its layers."))
    runs: tuple[RunSpec, ...] = _f((("sgd", ()), ("sam", ())), FieldSpec("runs", label="Optimizers"))
    steps: int = _f(150, FieldSpec("int", 5, 3000, label="Steps"))
    batch: int = _f(0, FieldSpec("int", 0, 4000, label="Batch size", help="0 = full batch; smaller batches add gradient noise."))
    seed: int = _f(0, FieldSpec("int", 0, 10_000, label="Seed", help="Initialisation and batch order, shared by every optimizer."))
    seeds: int = _f(1, FieldSpec("int", 1, 5, label="Seeds", help="Runs per optimizer with seeds seed, seed + 1, …: the curves show their mean ± std (the paths on the surface are the first seed's)."))
    # the task's own domain (data.start_limits) narrows these: _consistent clamps to it
    start_x: float = _f(math.nan, FieldSpec("float", -100.0, 100.0, label="Start w1", help="Analytic tasks: starting point (blank: the task's default; a click on the loss surface sets it too)."))
    start_y: float = _f(math.nan, FieldSpec("float", -100.0, 100.0, label="Start w2"))
    val: float = _f(DEFAULT_VAL_FRACTION, FieldSpec("float", 0.05, 0.5, label="Validation share", help="Share of the training samples held out as a validation split when a compared optimizer learns on one (LETS); every compared run then trains on the same remaining samples. Ignored otherwise."))
    # view options: changing these never retrains
    plane: str = _f("pca", FieldSpec("choice", choices=PLANES, label="Plane", help="pca: the trajectories' top-2 principal components; random: filter-normalised directions (Li et al.); hessian: top-2 Hessian eigenvectors; three_points: through the final weights of the first three runs."))
    span: float = _f(1.0, FieldSpec("float", 0.05, 5.0, label="Span", help="Half-width of the grid, as a multiple of the trajectories' extent (pca, three_points) or in direction units."))
    res: int = _f(31, FieldSpec("int", 11, 81, label="Resolution", help="Grid points per axis."))
    log: bool = _f(False, FieldSpec("bool", label="Log colour scale"))
    view3d: bool = _f(False, FieldSpec("bool", label="3-D surface"))
    series: str = _f("test_acc", FieldSpec("choice", choices=SERIES, label="Metric"))
    snap: int = _f(-1, FieldSpec("int", -1, 2000, label="Snapshot", help="Snapshot shown in the decision boundary and Hessian views (-1: the last)."))
    k: int = _f(5, FieldSpec("int", 1, 20, label="Top-k eigenvalues"))
    trace: bool = _f(False, FieldSpec("bool", label="Also estimate tr H over training", help="Hutch++ at about 12 snapshots per run (slower)."))
    exact: bool = _f(False, FieldSpec("bool", label="Exact (dense) spectrum", help="Dense eigendecomposition for models up to 5,000 parameters."))
    sx: str = _f("rho", FieldSpec("choice", choices=SWEEP_AXES, label="x axis"))
    sxv: tuple[float, ...] = _f((0.01, 0.03, 0.1, 0.3, 1.0), FieldSpec("floats", 0.0, 10.0, label="x values"))
    sy: str = _f("lr", FieldSpec("choice", choices=("lr", "rho", "width"), label="y axis"))
    syv: tuple[float, ...] = _f((0.01, 0.03, 0.1, 0.3, 1.0), FieldSpec("floats", 1e-6, 10.0, label="y values"))
    smetric: str = _f("test_acc", FieldSpec("choice", choices=SWEEP_METRICS, label="Heatmap metric"))
    sseeds: int = _f(1, FieldSpec("int", 1, 5, label="Seeds", help="Seeds per cell (seed, seed + 1, …): the heatmaps show the mean over seeds, the hover its std."))
    preset: str = _f("", FieldSpec("str", label="Preset"))
    astep: int = _f(0, FieldSpec("int", 0, 10_000, label="Step t", help="The step the Step anatomy page shows."))
    present: bool = _f(False, FieldSpec("bool", label="Presenter mode", help="For a projector: no sidebar, large fonts, wide charts. The link keeps it (present=1 in any link turns it on)."))

    # ------------------------------------------------------------------ experiment → engine configs

    def seed_configs(self) -> list[list[Config]]:
        """``configs()`` for each of the ``seeds`` seeds (seed, seed + 1, …): one data set, other θ_0 and batches."""
        return [[c.replace(seed=c.seed + k) for c in self.configs()] for k in range(self.seeds)]

    def configs(self) -> list[Config]:
        """One engine Config per compared run: same data, θ_0 and batch order (one seed)."""
        analytic = task_info(self.task).kind == "analytic"
        common = dict(task=self.task, n_samples=self.n, noise=self.noise, steps=self.steps, batch_size=self.batch,
                      seed=self.seed, snapshot_every=max(1, self.steps // 100), test_fraction=self.test_fraction,
                      val_fraction=self.val_fraction)
        if self.task == CSV_TASK:
            common["data"] = self.data
        if analytic:
            common.update(model="point", start_x=None if math.isnan(self.start_x) else self.start_x,
                          start_y=None if math.isnan(self.start_y) else self.start_y, dtype="float64")
        else:  # model and batch fit the task: from_query made them so
            common.update(model=self.model, depth=self.depth, width=self.width, activation=self.act,
                          parameterization=self.param, base_width=self.bw, label_noise=self.lnoise)
        return [Config(optimizer=name, hparams=dict(hp), **common) for name, hp in self.runs]

    @property
    def needs_validation(self) -> bool:
        """Whether a compared optimizer learns on a validation split (LETS)."""
        return any(OPTIMIZERS[name].needs_validation for name, _ in self.runs)

    @property
    def val_fraction(self) -> float | None:
        """The validation share of every compared run: ``val`` when one of them learns on a validation split
        (so SGD and SAM beside LETS train on the same samples as LETS), else none (the training set is whole)."""
        return self.val if self.needs_validation else None

    @property
    def test_fraction(self) -> float:
        """The share of the data held out: a quarter on classification tasks, ``heldout`` on your own table, none on
        analytic ones."""
        if self.task == CSV_TASK:
            return self.heldout
        return 0.0 if task_info(self.task).kind == "analytic" else 0.25

    @property
    def labels(self) -> list[str]:
        """Display names of the runs: each optimizer's label with the hyperparameters set for it; where an optimizer
        runs more than once, the hyperparameters that differ between its runs (defaults included): short, and no
        two runs read alike."""
        names = [name for name, _ in self.runs]
        out = []
        for name, hp in self.runs:
            label = OPTIMIZERS[name].label
            shown = dict(hp)
            if names.count(name) > 1:
                defaults = {k: s.default for k, s in OPTIMIZERS[name].hparams.items()}
                alike = [{**defaults, **dict(other)} for n, other in self.runs if n == name]
                full = {**defaults, **shown}
                differ = {k for k in full if len({repr(a.get(k)) for a in alike}) > 1}
                shown = {k: v for k, v in full.items() if k in differ}
            text = ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items())
            out.append(f"{label} ({text})" if text else label)
        return out


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


DEFAULTS = Settings()
# the experiment: every field before the view options (changing one retrains)
EXPERIMENT_FIELDS = tuple(f.name for f in dataclasses.fields(Settings))[: [f.name for f in dataclasses.fields(Settings)].index("plane")]


def cell_settings(settings: Settings, config: Config) -> Settings:
    """A sweep cell opened on its own: the experiment of ``settings`` with one run, ``config``'s optimizer and its
    non-default hyperparameters; the view options start from the defaults."""
    defaults = OPTIMIZERS[config.optimizer].hparams
    hp = tuple(sorted((k, v) for k, v in config.hp.items() if v != defaults[k].default))
    experiment = {name: getattr(settings, name) for name in EXPERIMENT_FIELDS}
    if task_info(settings.task).kind != "analytic":  # a cell of a width sweep has its own width
        experiment["width"] = config.width
    return Settings(**{**experiment, "runs": ((config.optimizer, hp),)})
_SPECS: dict[str, FieldSpec] = {f.name: f.metadata["spec"] for f in dataclasses.fields(Settings)}


def spec(name: str) -> FieldSpec:
    return _SPECS[name]


AXIS_FIELDS = {"sxv": "sx", "syv": "sy"}  # a values box and the setting naming its axis


def axis_range(axis: str, key: str) -> tuple[float, float]:
    """The values the box ``key`` ("sxv" or "syv") takes on ``axis``: widths within the app's Width range, else
    the box's own range (ρ may be 0 on x; a learning rate must be > 0, which the sweep view checks)."""
    box = spec("width") if axis == "width" else spec(key)
    return float(box.low), float(box.high)


def axis_default(axis: str, key: str) -> tuple[float, ...]:
    """What the box ``key`` holds on ``axis`` when nothing usable was given."""
    return WIDTH_AXIS_VALUES if axis == "width" else getattr(DEFAULTS, key)


def fits_axis(axis: str, key: str, values: Sequence[float]) -> bool:
    """Whether ``values`` are values of ``axis`` as the box ``key`` takes them (widths: whole numbers in range)."""
    low, high = axis_range(axis, key)
    return all(low <= v <= high and (axis != "width" or v == round(v)) for v in values)


def fit_axes(settings: Settings) -> Settings:
    """``settings`` with each values box that does not hold values of its axis (after a switch from ρ to width, or
    back) set to that axis's defaults."""
    changes = {key: axis_default(getattr(settings, axis), key) for key, axis in AXIS_FIELDS.items()
               if not fits_axis(getattr(settings, axis), key, getattr(settings, key))}
    return dataclasses.replace(settings, **changes) if changes else settings


# ---------------------------------------------------------------------------------------------- runs spec text


def format_runs(runs: Sequence[RunSpec]) -> str:
    """``sgd;sam:rho=0.05,lr=0.1`` — one entry per run, hyperparameter overrides after a colon."""
    parts = []
    for name, hp in runs:
        text = ",".join(f"{k}={_hp_text(v)}" for k, v in hp)
        parts.append(f"{name}:{text}" if text else name)
    return ";".join(parts)


def _hp_text(v: Any) -> str:
    if isinstance(v, tuple):
        return "/".join(repr(float(x)) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) else str(v)


def parse_runs(text: str, notes: list[str]) -> tuple[RunSpec, ...]:
    """Parse ``format_runs`` text; unknown optimizers are dropped and out-of-range values clamped, with notes."""
    runs: list[RunSpec] = []
    for entry in [e.strip() for e in str(text).split(";") if e.strip()]:
        name, _, rest = entry.partition(":")
        name = name.strip().lower()
        if name not in OPTIMIZERS:
            notes.append(f"runs: unknown optimizer {name!r} was dropped (valid: {', '.join(OPTIMIZERS)})")
            continue
        hp = {}
        for item in [i for i in rest.split(",") if i.strip()]:
            key, _, raw = item.partition("=")
            key = key.strip()
            specs = OPTIMIZERS[name].hparams
            if key not in specs:
                notes.append(f"runs: {name} has no hyperparameter {key!r}; ignored")
                continue
            value = _coerce_hparam(name, key, raw.strip(), notes)
            if value is not None and value != specs[key].default:
                hp[key] = value
        if len(runs) == MAX_RUNS:
            notes.append(f"runs: at most {MAX_RUNS} optimizers are compared; the rest were dropped")
            break
        runs.append((name, tuple(sorted(hp.items()))))
    if not runs:
        notes.append("runs: no valid optimizer given; using the defaults")
        return DEFAULTS.runs
    return tuple(runs)


def _coerce_hparam(opt: str, key: str, raw: str, notes: list[str]) -> Any:
    s = OPTIMIZERS[opt].hparams[key]
    if s.kind in ("bool", "choice"):
        return _option(f"runs: {opt} {key}", raw, s.kind, s.choices, s.default, notes)
    if s.kind == "pair":
        parts = raw.replace(",", "/").split("/")
        try:
            values = tuple(_clamp_number(float(p), s.low, s.high, f"runs: {opt} {key}", notes) for p in parts)
        except ValueError:
            values = ()
        if len(values) != 2:
            notes.append(f"runs: {opt} {key}={raw!r} is not two numbers; using {s.default}")
            return None
        return values
    try:
        number = float(raw)
    except ValueError:
        notes.append(f"runs: {opt} {key}={raw!r} is not a number; using {s.default}")
        return None
    if not math.isfinite(number):
        notes.append(f"runs: {opt} {key}={raw!r} is not finite; using {s.default}")
        return None
    if s.kind == "int" and number != int(number):
        notes.append(f"runs: {opt} {key}={raw!r} is not a whole number; using {round(number)}")
        number = float(round(number))
    value = _clamp_number(number, s.low, s.high, f"runs: {opt} {key}", notes)
    return int(value) if s.kind == "int" else value


def _option(what: str, raw: str, kind: str, choices: Sequence[str], default: Any, notes: list[str]) -> Any:
    """A bool or a choice from URL text; None (and a note naming the fallback) when it is neither."""
    if kind == "bool":
        value = bool_from_text(raw)
        if value is None:
            notes.append(f"{what}={raw!r} is not true/false; using {default}")
        return value
    if raw in choices:
        return raw
    notes.append(f"{what}={raw!r} is not one of {', '.join(choices)}; using {default}")
    return None


def _clamp_number(value: float, low: float, high: float, what: str, notes: list[str]) -> float:
    if value < low or value > high:
        clamped = min(max(value, low), high)
        notes.append(f"{what}={value:g} is outside [{low:g}, {high:g}]; clamped to {clamped:g}")
        return clamped
    return value


# ---------------------------------------------------------------------------------------------- query string


def from_query(query: Mapping[str, Any]) -> tuple[Settings, list[str]]:
    """Settings from URL query parameters. Never raises: invalid values fall back or are clamped, with notes.

    Args:
        query: parameter → value (a string, or a list of strings when the key repeats: the last one counts).

    Returns:
        (settings, notes): one note per value that was changed or ignored.
    """
    notes: list[str] = []
    values: dict[str, Any] = {}
    boxes: dict[str, str] = {}
    for key, raw in query.items():
        raw = raw[-1] if isinstance(raw, (list, tuple)) and raw else raw
        if key not in _SPECS:
            notes.append(f"{key}: not a setting; ignored")
            continue
        if key in AXIS_FIELDS:  # the axis's values: read once the axis is known
            boxes[key] = str(raw)
            continue
        value = _coerce(key, str(raw), notes)
        if value is not None:
            values[key] = value
    for key, axis_field in AXIS_FIELDS.items():
        axis = values.get(axis_field, getattr(DEFAULTS, axis_field))
        value = _axis_values(key, axis, boxes[key], notes) if key in boxes else None
        if value is None and axis == "width":
            value = WIDTH_AXIS_VALUES  # the ρ defaults are no widths
        if value is not None:
            values[key] = value
    return _consistent(dataclasses.replace(DEFAULTS, **values), notes), notes


def _axis_values(key: str, axis: str, raw: str, notes: list[str]) -> tuple[float, ...] | None:
    """A values box from URL text, on its axis: 1 to 9 finite numbers clamped to the axis's range, widths rounded
    to whole numbers; None (and a note) when there are none."""
    if axis != "width":
        return _coerce(key, raw, notes)
    low, high = axis_range(axis, key)
    numbers = _finite_numbers(raw)
    if not 1 <= len(numbers) <= 9:
        notes.append(f"{key}={raw!r} is not 1 to 9 widths; using {_text(key, WIDTH_AXIS_VALUES)}")
        return None
    whole = []
    for n in numbers:
        if n != round(n):
            notes.append(f"{key}: width {n:g} is not a whole number; rounded to {round(n)}")
        whole.append(float(round(n)))
    return tuple(sorted({_clamp_number(n, low, high, f"{key} (width)", notes) for n in whole}))


def _finite_numbers(raw: str) -> list[float]:
    """The finite numbers of a comma-separated list; none at all when any part is not a number."""
    try:
        numbers = [float(p) for p in raw.split(",") if p.strip()]
    except ValueError:
        return []
    return [n for n in numbers if math.isfinite(n)]


def _coerce(key: str, raw: str, notes: list[str]) -> Any:
    s = _SPECS[key]
    default = getattr(DEFAULTS, key)
    if s.kind == "runs":
        return parse_runs(raw, notes)
    if s.kind == "str":
        return raw[:64]
    if s.kind in ("bool", "choice"):
        return _option(key, raw, s.kind, s.choices, default, notes)
    if s.kind == "floats":
        numbers = _finite_numbers(raw)
        if not 1 <= len(numbers) <= 9:
            notes.append(f"{key}={raw!r} is not 1 to 9 numbers; using the defaults")
            return None
        return tuple(sorted({_clamp_number(n, s.low, s.high, key, notes) for n in numbers}))
    try:
        number = float(raw)
    except ValueError:
        notes.append(f"{key}={raw!r} is not a number; using {default}")
        return None
    if key in ("start_x", "start_y") and math.isnan(number):
        return math.nan  # the one NaN object: equal Settings compare equal (a parsed NaN is not the same object)
    if not math.isfinite(number):
        notes.append(f"{key}={raw!r} is not finite; using {default}")
        return None
    if s.kind == "int":
        if number != int(number):
            notes.append(f"{key}={raw!r} is not a whole number; rounded to {round(number)}")
        number = round(number)
    number = _clamp_number(number, s.low, s.high, key, notes)
    return int(number) if s.kind == "int" else float(number)


def _consistent(settings: Settings, notes: list[str]) -> Settings:
    """Fix combinations that are valid one by one but not together."""
    changes: dict[str, Any] = _stored_data(settings, notes)
    if changes:
        settings = dataclasses.replace(settings, **changes)
    if settings.model == "cnn" and settings.task != "digits":
        notes.append("model=cnn needs the digits task; using mlp")
        changes["model"] = "mlp"
    changes.update(_parameterization(settings, notes))
    changes.update(_start_in_domain(settings, notes))
    n_train = train_size(settings.task, settings.n, settings.test_fraction, settings.val_fraction or 0.0,
                         settings.data or None)
    if settings.batch > n_train:
        notes.append(f"batch={settings.batch} exceeds the {n_train} training samples; using full batch")
        changes["batch"] = 0
    return dataclasses.replace(settings, **changes) if changes else settings


def _stored_data(settings: Settings, notes: list[str]) -> dict[str, Any]:
    """The csv task needs a table this server holds; a link to one it does not hold opens the default task."""
    if settings.task != CSV_TASK:
        if settings.data:
            notes.append(f"data: only the {CSV_TASK} task takes an uploaded data set; ignored")
            return {"data": ""}
        return {}
    if not settings.data:
        notes.append(f"task={CSV_TASK} needs an uploaded data set (data=<hash>); using the default task "
                     f"{DEFAULTS.task}: upload a CSV file in the sidebar")
    elif not dataset_store.has(settings.data):
        notes.append(f"data={settings.data}: this server does not hold that uploaded data set (uploads are kept only "
                     f"on the server they were made on, and old ones are cleared); using the default task "
                     f"{DEFAULTS.task}: upload the CSV file again to use it")
    else:
        return {}
    return {"task": DEFAULTS.task, "data": ""}


def _start_in_domain(settings: Settings, notes: list[str]) -> dict[str, Any]:
    """An analytic task's start point clamped to the task's domain (``data.start_limits``), as ``Config`` requires;
    other tasks ignore the start (their model is a network)."""
    if task_info(settings.task).kind != "analytic":
        return {}
    changes: dict[str, Any] = {}
    for name, (low, high) in zip(("start_x", "start_y"), start_limits(settings.task)):
        value = getattr(settings, name)
        if not math.isnan(value) and not low <= value <= high:
            changes[name] = _clamp_number(value, low, high, f"{name} ({settings.task}'s domain)", notes)
    return changes


def _parameterization(settings: Settings, notes: list[str]) -> dict[str, Any]:
    """μP fits an MLP with hidden layers; a method defined on a μP model (μP²) makes the model μP."""
    needs = {OPTIMIZERS[name].parameterization for name, _ in settings.runs} - {""}
    if task_info(settings.task).kind == "analytic":
        if needs:
            names = [name for name, _ in settings.runs if OPTIMIZERS[name].parameterization]
            notes.append(f"{', '.join(names)} trains a μP network, not an analytic task's point; using sam instead")
            return {"runs": tuple(("sam", ()) if OPTIMIZERS[n].parameterization else (n, hp)
                                  for n, hp in settings.runs), "param": "sp"}
        return {"param": "sp"} if settings.param != "sp" else {}
    changes: dict[str, Any] = {}
    if needs and settings.param not in needs:
        names = [name for name, _ in settings.runs if OPTIMIZERS[name].parameterization]
        notes.append(f"{', '.join(names)} trains a μP network; using param=mup")
        changes["param"] = next(iter(needs))
    if changes.get("param", settings.param) == "mup" and (settings.model != "mlp" or settings.depth < 1):
        notes.append(f"μP needs an MLP with hidden layers; using model=mlp with depth {max(1, settings.depth)}")
        changes.update(model="mlp", depth=max(1, settings.depth))
    return changes


def to_query(settings: Settings) -> dict[str, str]:
    """The query parameters that differ from the defaults (as strings)."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(Settings):
        value, default = getattr(settings, f.name), getattr(DEFAULTS, f.name)
        if value == default or (isinstance(value, float) and math.isnan(value) and math.isnan(default)):
            continue
        out[f.name] = _text(f.name, value)
    return out


def _text(key: str, value: Any) -> str:
    kind = _SPECS[key].kind
    if kind == "runs":
        return format_runs(value)
    if kind == "floats":
        return ",".join(f"{v:g}" for v in value)
    if kind == "bool":
        return "true" if value else "false"
    if kind == "float":
        return f"{value:g}"
    return str(value)


def replace(settings: Settings, **changes: Any) -> Settings:
    """A copy with changes, passed through the same validation as a URL (bad values raise ValueError here)."""
    notes: list[str] = []
    query = {**to_query(settings), **{k: _text(k, v) if k in _SPECS else v for k, v in changes.items()}}
    result, notes = from_query(query)
    if notes:
        raise ValueError("; ".join(notes))
    return result

