"""Training tasks: small classification data sets and 2-D analytic loss surfaces.

Two kinds of task live here:

* ``"classification"``: generated 2-D point clouds (moons, circles, spirals, xor,
  blobs) and scikit-learn's bundled 8x8 ``digits`` images, split into a stratified
  train and test set.
* ``"analytic"``: a closed-form loss ``f(w)`` on the plane. The model's parameters
  *are* the point ``w = (w1, w2)``, so the landscape can be drawn exactly. To give
  stochastic optimisers something to average over, the data set holds ``N`` noise
  vectors ``xi_i`` with mean zero and the per-sample loss is
  ``f_i(w) = f(w) + xi_i . w``: the full-batch loss is exactly ``f(w)`` and a
  minibatch gradient is ``grad f(w) + mean_B xi``.

Nothing is downloaded; every array is a deterministic function of the arguments.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits, make_blobs, make_circles, make_moons
from sklearn.model_selection import train_test_split

CLASSIFICATION = "classification"
ANALYTIC = "analytic"

MIN_SAMPLES = 8
MAX_SAMPLES = 20_000
DIGITS_IMAGES = 1797  # scikit-learn's bundled 8×8 digits
MAX_TEST_FRACTION = 0.9
MAX_LABEL_NOISE = 0.9
MIN_CLASSES = 2
MAX_CLASSES = 10
# scikit-learn's ``random_state`` accepts seeds up to 2**32 - 1.
MAX_SEED = 2**32 - 1

# Shape constants of the hand-written generators.
SPIRAL_TURNS = 1.5  # turns of each arm; the arms are 1 / (2 * turns) apart radially
SPIRAL_MIN_RADIUS = 0.1  # keeps the two arms from meeting at the origin
CIRCLES_FACTOR = 0.5  # inner / outer radius for ``circles``
BLOB_RADIUS = 2.0  # blob centres sit evenly on a circle of this radius

# ``sharp_flat``: f(w) = -exp(-(w1 - 2)^2 - w2^2)                  (flat well)
#                        -exp(-SHARP_X w1^2 - SHARP_Y w2^2)         (sharp well)
#                        + BOWL ||w - (1, 0)||^2                    (confinement)
# The sharp well is wide along w1 (so gradient descent coming from the left is
# funnelled into it) but only ~0.1 wide along w2, which makes it invisible to a SAM
# perturbation of radius rho >= 0.1 pointing across it. The bowl keeps the loss
# coercive and pulls trajectories that leave the sharp well towards the flat one.
# Resulting minima: sharp (0.2305, 0), f = -0.831, Hessian eigenvalues (2.07, 94.2);
# flat (1.7497, 0), f = -0.821, eigenvalues (1.78, 4.56), so lambda_max differs 20x.
# With lr = 0.015 (GD is stable in the sharp well, 0.015 * 94.2 < 2) and the start
# (-0.8, 0.6), GD settles in the sharp minimum and SAM with rho >= 0.1 in the flat one.
SHARP_X = 1.25
SHARP_Y = 50.0
BOWL = 0.25

# ``saddle``: f(w) = w1^2 - w2^2 + w2^4 / 2 has a saddle at the origin and minima
# at (0, +-1) with value -0.5; the quartic keeps it bounded below.
# ``noisy_quadratic``: f(w) = (w1^2 + QUADRATIC_CONDITION * w2^2) / 2.
QUADRATIC_CONDITION = 20.0


@dataclass(frozen=True, eq=False)
class Dataset:
    """A task's data, ready to be turned into tensors.

    Attributes:
        name: Task name, a key of ``TASKS``.
        kind: ``"classification"`` or ``"analytic"``.
        x_train: Training inputs, float64 of shape (N, d). For analytic tasks these
            are the noise vectors ``xi_i``.
        y_train: Training labels, int64 of shape (N,); all zeros for analytic tasks.
        x_test: Test inputs, float64 of shape (M, d); M may be 0.
        y_test: Test labels, int64 of shape (M,).
        n_classes: Number of classes, 0 for analytic tasks.
        input_dim: Number of input features d.
        x_val: Validation inputs carved out of the training set, float64 of shape
            (V, d); V is 0 unless ``make_dataset`` was asked for a validation split.
        y_val: Validation labels, int64 of shape (V,).
        flipped: Indices into ``y_train`` of the labels that label noise flipped, sorted int64 of shape (F,);
            empty without label noise.
        y_train_clean: The training labels before any flip, int64 of shape (N,) (``y_train`` itself without
            label noise).
        class_names: One name per class where the data name them (an uploaded table's label values); empty for
            the generated tasks, whose classes are "class 0", "class 1", ...
        feature_names: One name per input where the data name them (a table's columns); empty otherwise.
    """

    name: str
    kind: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    input_dim: int
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    flipped: np.ndarray | None = None
    y_train_clean: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.x_val is None:  # no validation split: empty arrays, so every caller sees the same types
            object.__setattr__(self, "x_val", np.zeros((0, self.x_train.shape[1])))
            object.__setattr__(self, "y_val", np.zeros(0, dtype=np.int64))
        if self.flipped is None:  # no label noise: nothing flipped, the clean labels are the labels
            object.__setattr__(self, "flipped", np.zeros(0, dtype=np.int64))
            object.__setattr__(self, "y_train_clean", self.y_train)


@dataclass(frozen=True)
class TaskInfo:
    """Static description of a task, used to build it and to lay out the app.

    Attributes:
        name: Task name, the key in ``TASKS``.
        kind: ``"classification"`` or ``"analytic"``.
        description: One line shown in the app.
        default_n_samples: Suggested ``n_samples`` (for analytic tasks, the number of
            noise vectors).
        default_noise: Suggested ``noise``.
        start: Analytic tasks: default starting point ``(w1, w2)``.
        xlim: Analytic tasks: plot window along ``w1``.
        ylim: Analytic tasks: plot window along ``w2``.
        minima: Analytic tasks: known local minima, for markers in plots.
        suggested_lr: Analytic tasks: a plain gradient-descent step size that is
            stable at every listed minimum (curvatures differ 100x between tasks).
        suggested_rho: Analytic tasks: a SAM radius that matches the landscape's
            length scale.
    """

    name: str
    kind: str
    description: str
    default_n_samples: int = 512
    default_noise: float = 0.1
    start: tuple[float, float] | None = None
    xlim: tuple[float, float] | None = None
    ylim: tuple[float, float] | None = None
    minima: tuple[tuple[float, float], ...] = ()
    suggested_lr: float | None = None
    suggested_rho: float | None = None


TASKS: dict[str, TaskInfo] = {
    task.name: task
    for task in (
        TaskInfo("moons", CLASSIFICATION, "Two interleaving half circles (2-D, 2 classes).",
                 default_noise=0.15),
        TaskInfo("circles", CLASSIFICATION, "A small circle inside a large one (2-D, 2 classes).",
                 default_noise=0.08),
        TaskInfo("spirals", CLASSIFICATION, "Two interleaved spiral arms (2-D, 2 classes).",
                 default_noise=0.08),
        TaskInfo("xor", CLASSIFICATION, "Quadrants of [-1, 1]^2 labelled by sign(x*y) (2-D, 2 classes)."),
        TaskInfo("blobs", CLASSIFICATION, "Gaussian blobs on a circle, one per class (2-D).",
                 default_noise=1.0),
        TaskInfo("digits", CLASSIFICATION, "8x8 handwritten digits from scikit-learn (64-D, 10 classes).",
                 default_n_samples=DIGITS_IMAGES, default_noise=0.0),
        TaskInfo("sharp_flat", ANALYTIC,
                 "A sharp and a flat minimum of similar depth: GD falls into the sharp one, SAM finds the flat one.",
                 start=(-0.8, 0.6), xlim=(-1.5, 3.5), ylim=(-1.5, 1.5),
                 minima=((0.230534, 0.0), (1.749747, 0.0)), suggested_lr=0.015, suggested_rho=0.15),
        TaskInfo("rosenbrock", ANALYTIC, "Rosenbrock's banana valley (1 - w1)^2 + 100 (w2 - w1^2)^2.",
                 start=(-1.2, 1.0), xlim=(-2.0, 2.0), ylim=(-1.0, 3.0),
                 minima=((1.0, 1.0),), suggested_lr=0.001, suggested_rho=0.05),
        TaskInfo("himmelblau", ANALYTIC, "Himmelblau's function: four minima of equal value 0.",
                 start=(-0.6, -0.6), xlim=(-5.0, 5.0), ylim=(-5.0, 5.0),
                 minima=((3.0, 2.0), (-2.805118086953, 3.131312518251),
                         (-3.779310253378, -3.283185991286), (3.584428340330, -1.848126526964)),
                 suggested_lr=0.01, suggested_rho=0.1),
        TaskInfo("saddle", ANALYTIC, "A saddle at the origin between minima at (0, +-1): w1^2 - w2^2 + w2^4 / 2.",
                 start=(2.0, 0.01), xlim=(-2.5, 2.5), ylim=(-2.0, 2.0),
                 minima=((0.0, 1.0), (0.0, -1.0)), suggested_lr=0.05, suggested_rho=0.05),
        TaskInfo("noisy_quadratic", ANALYTIC,
                 "An ill-conditioned bowl (w1^2 + 20 w2^2) / 2 with strong minibatch noise.",
                 default_noise=1.0, start=(-2.5, 1.0), xlim=(-3.0, 3.0), ylim=(-2.0, 2.0),
                 minima=((0.0, 0.0),), suggested_lr=0.05, suggested_rho=0.1),
    )
}


# Your own data: a classification task whose table is uploaded (``from_csv``, ``sam_viz.dataset_store``), not listed
# in ``TASKS`` (it cannot be built from a name alone: it needs ``data``).
CSV_INFO = TaskInfo("csv", CLASSIFICATION, "Your own CSV table: numeric features and a label column.")


def task_info(name: str) -> TaskInfo:
    """The ``TaskInfo`` of a task of ``TASKS`` or of the ``"csv"`` task.

    Raises:
        ValueError: an unknown task.
    """
    if name == CSV_INFO.name:
        return CSV_INFO
    if name not in TASKS:
        raise ValueError(f"Invalid task: {name!r}; valid: {', '.join(TASKS)}, {CSV_INFO.name}")
    return TASKS[name]


def start_limits(name: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """The start points an analytic task accepts: ((w1 low, w1 high), (w2 low, w2 high)).

    Its plot window widened by the window's own size on each side: the largest window the loss-surface view draws
    (``scene``), so a start picked on the map, a run's θ_t and a hand-typed link all fit, and a typo such as
    ``start_x=1e6`` (where the loss overflows) does not.

    Raises:
        ValueError: a task that is not analytic (only the point model takes a start).
    """
    info = task_info(name)
    if info.kind != ANALYTIC or info.xlim is None or info.ylim is None:
        raise ValueError(f"Invalid task: {name!r} has no start point (only the analytic tasks' point model takes one)")

    def widened(lim: tuple[float, float]) -> tuple[float, float]:
        size = lim[1] - lim[0]
        return float(lim[0] - size), float(lim[1] + size)

    return widened(info.xlim), widened(info.ylim)


def _sharp_flat(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    flat = torch.exp(-((w1 - 2.0) ** 2) - w2**2)
    sharp = torch.exp(-SHARP_X * w1**2 - SHARP_Y * w2**2)
    return -flat - sharp + BOWL * ((w1 - 1.0) ** 2 + w2**2)


def _rosenbrock(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    return (1.0 - w1) ** 2 + 100.0 * (w2 - w1**2) ** 2


def _himmelblau(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    return (w1**2 + w2 - 11.0) ** 2 + (w1 + w2**2 - 7.0) ** 2


def _saddle(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    return w1**2 - w2**2 + 0.5 * w2**4


def _noisy_quadratic(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    return 0.5 * (w1**2 + QUADRATIC_CONDITION * w2**2)


_ANALYTIC_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "sharp_flat": _sharp_flat,
    "rosenbrock": _rosenbrock,
    "himmelblau": _himmelblau,
    "saddle": _saddle,
    "noisy_quadratic": _noisy_quadratic,
}


def analytic_loss(name: str, w: torch.Tensor) -> torch.Tensor:
    """Evaluates an analytic task's loss ``f`` (without minibatch noise).

    Args:
        name: Name of an analytic task, e.g. ``"rosenbrock"``.
        w: Points of shape (..., 2), any floating dtype; differentiable.

    Returns:
        The loss at every point, shape (...).

    Raises:
        ValueError: If ``name`` is not an analytic task or ``w`` is not (..., 2).
    """
    if name not in _ANALYTIC_LOSSES:
        raise ValueError(f"Invalid name: {name!r}; valid analytic tasks: {', '.join(_ANALYTIC_LOSSES)}")
    if w.ndim == 0 or w.shape[-1] != 2:
        raise ValueError(f"Invalid w: shape {tuple(w.shape)}; valid: (..., 2)")
    return _ANALYTIC_LOSSES[name](w[..., 0], w[..., 1])


def make_dataset(
    name: str,
    *,
    n_samples: int = 512,
    noise: float = 0.1,
    test_fraction: float = 0.25,
    seed: int = 0,
    n_classes: int = 3,
    val_fraction: float = 0.0,
    label_noise: float = 0.0,
    data: str | None = None,
) -> Dataset:
    """Builds a task's data set deterministically.

    Args:
        name: Task name, a key of ``TASKS``.
        n_samples: Number of examples before the split (for ``digits`` a cap on the
            1,797 images; for analytic tasks the number of noise vectors).
        noise: Standard deviation of the Gaussian input noise (for analytic tasks of
            the noise vectors; ignored by ``digits``).
        test_fraction: Share of the examples held out for testing, in [0, 0.9];
            ignored by analytic tasks, whose test arrays are always empty.
        seed: Seed for every random choice, in [0, 2**32 - 1].
        n_classes: Number of blobs for ``blobs``, in [2, 10]; ignored otherwise.
        val_fraction: Share of the *training* examples moved into a validation split
            (``x_val``, ``y_val``), in [0, 0.9]; the test split is untouched. 0 (the
            default) leaves the training set exactly as it is without the option.
        label_noise: Share of the *training* labels flipped, in [0, 0.9]: exactly
            ``round(label_noise * N_train)`` of them (after the validation split is carved
            out), each to another class drawn uniformly; which ones and to what follow
            ``seed`` alone. The test and validation splits keep their true labels.
            Classification tasks only.
        data: The ``"csv"`` task's data set, the key of a table in ``sam_viz.dataset_store`` (see ``from_csv``);
            ``test_fraction`` and ``seed`` split it, ``n_samples``, ``noise`` and ``n_classes`` are ignored.

    Returns:
        The data set; the same arguments always give identical arrays.

    Raises:
        ValueError: If an argument is out of range or the task is unknown, or label
            noise is asked of an analytic task.
    """
    if name == CSV_TASK or data is not None:
        dataset = _stored_csv(name, data, test_fraction, seed)
        check_int("seed", seed, 0, MAX_SEED)
        _check_real("val_fraction", val_fraction, 0.0, MAX_TEST_FRACTION)
        _check_real("label_noise", label_noise, 0.0, MAX_LABEL_NOISE)
        if val_fraction > 0:
            dataset = _with_validation(dataset, val_fraction, seed)
        return _with_label_noise(dataset, label_noise, seed) if label_noise > 0 else dataset
    if name not in TASKS:
        raise ValueError(f"Invalid name: {name!r}; valid: {', '.join(TASKS)}, {CSV_TASK} (with data)")
    check_int("n_samples", n_samples, MIN_SAMPLES, MAX_SAMPLES)
    _check_real("noise", noise, 0.0)
    _check_real("test_fraction", test_fraction, 0.0, MAX_TEST_FRACTION)
    check_int("seed", seed, 0, MAX_SEED)
    check_int("n_classes", n_classes, MIN_CLASSES, MAX_CLASSES)
    _check_real("val_fraction", val_fraction, 0.0, MAX_TEST_FRACTION)
    _check_real("label_noise", label_noise, 0.0, MAX_LABEL_NOISE)
    if label_noise > 0 and TASKS[name].kind == ANALYTIC:
        raise ValueError(f"Invalid label_noise: {label_noise!r} for the analytic task {name!r}, which has no "
                         "labels; label noise applies to classification tasks only (use 0)")

    if TASKS[name].kind == ANALYTIC:
        dataset = _analytic_dataset(name, n_samples, noise, seed)
    else:
        x, y, classes = _generate(name, n_samples, noise, seed, n_classes)
        x_train, y_train, x_test, y_test = _split(x, y, _n_test(len(y), test_fraction), seed)
        dataset = Dataset(name, CLASSIFICATION, x_train, y_train, x_test, y_test, classes, x.shape[1])
    if val_fraction > 0:
        dataset = _with_validation(dataset, val_fraction, seed)
    return _with_label_noise(dataset, label_noise, seed) if label_noise > 0 else dataset


def _stored_csv(name: str, data: str | None, test_fraction: float, seed: int) -> Dataset:
    """The ``"csv"`` task's data set ``data`` from the store, split and standardised (see ``from_csv``)."""
    from . import dataset_store  # its own module, imported when a stored table is asked for

    if name != CSV_TASK:
        raise ValueError(f"Invalid data: {data!r} for the task {name!r}; only the {CSV_TASK!r} task takes data")
    if data is None:
        raise ValueError(f"Invalid data: None; the {CSV_TASK!r} task needs the hash of an uploaded data set")
    return table_dataset(dataset_store.get(data), heldout=test_fraction, seed=seed)


def _with_label_noise(dataset: Dataset, share: float, seed: int) -> Dataset:
    """``dataset`` with ``round(share · N_train)`` training labels flipped, each to one of the other classes
    uniformly. Applied after the validation split is carved out, so that split (and the test split) stay clean.
    The draws have their own stream (``[seed, 2]``): the samples, the splits and the batches do not move."""
    n_train = len(dataset.y_train)
    n_flip = round(share * n_train)
    rng = np.random.default_rng([seed, 2])
    flipped = np.sort(rng.choice(n_train, size=n_flip, replace=False)).astype(np.int64)
    # an offset in 1..C-1 added modulo C is a uniform draw among the other classes, never the label itself
    offset = rng.integers(1, dataset.n_classes, size=n_flip)
    y_train = dataset.y_train.copy()
    y_train[flipped] = (y_train[flipped] + offset) % dataset.n_classes
    return dataclasses.replace(dataset, y_train=y_train, flipped=flipped, y_train_clean=dataset.y_train)


def _with_validation(dataset: Dataset, val_fraction: float, seed: int) -> Dataset:
    """``dataset`` with a share of its training examples moved into a validation split (stratified as the test
    split is). Analytic tasks: the remaining noise vectors are centred again, so the full-batch training loss is
    still exactly f(w); the validation vectors are a finite sample of the noise, as a held-out set would be.

    Raises:
        ValueError: no training example would be left.
    """
    n_train = len(dataset.y_train)
    n_val = _n_test(n_train, val_fraction)
    if n_val >= n_train:
        raise ValueError(f"Invalid val_fraction: {val_fraction!r} leaves none of the {n_train} training samples "
                         "to train on")
    if dataset.kind == ANALYTIC:
        order = np.random.default_rng([seed, 1]).permutation(n_train)  # its own stream: the noise stays as drawn
        x_val, y_val = dataset.x_train[order[:n_val]], dataset.y_train[order[:n_val]]
        x_train, y_train = dataset.x_train[order[n_val:]], dataset.y_train[order[n_val:]]
        x_train = x_train - x_train.mean(axis=0)
    else:
        x_train, y_train, x_val, y_val = _split(dataset.x_train, dataset.y_train, n_val, seed)
    return dataclasses.replace(dataset, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                               y_train_clean=y_train)


def class_count(name: str, n_classes: int = 3, data: str | None = None) -> int:
    """Classes of task ``name`` (0 for analytic losses): ``n_classes`` only for blobs, whose count it sets; for the
    ``"csv"`` task, those of its stored table ``data``."""
    if name == CSV_TASK:
        from . import dataset_store

        return len(dataset_store.get(data).class_names)
    if TASKS[name].kind == ANALYTIC:
        return 0
    return {"blobs": n_classes, "digits": 10}.get(name, 2)


def train_size(name: str, n_samples: int, test_fraction: float, val_fraction: float = 0.0,
               data: str | None = None) -> int:
    """How many training examples ``make_dataset(name, n_samples=…, test_fraction=…, val_fraction=…, data=…)``
    holds, without building it (e.g. to check a batch size before training)."""
    if name == CSV_TASK:
        from . import dataset_store

        total = len(dataset_store.get(data).y)
        n_train = total - _n_test(total, test_fraction)
    elif TASKS[name].kind == ANALYTIC:
        n_train = n_samples
    else:
        total = min(n_samples, DIGITS_IMAGES) if name == "digits" else n_samples
        n_train = total - _n_test(total, test_fraction)
    return n_train - _n_test(n_train, val_fraction)


def _n_test(total: int, test_fraction: float) -> int:
    """Held-out examples: any positive fraction holds out at least one."""
    return max(1, round(total * test_fraction)) if test_fraction > 0 else 0


def check_int(param: str, value: int, low: int, high: int) -> None:
    """Raises ValueError unless ``value`` is an integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"Invalid {param}: {value!r}; valid: an integer in [{low}, {high}]")


def _check_real(param: str, value: float, low: float, high: float = math.inf) -> None:
    """Raises ValueError unless ``value`` is a finite real number in [low, high]."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not (math.isfinite(value) and low <= value <= high)):
        valid = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise ValueError(f"Invalid {param}: {value!r}; valid: a finite number {valid}")


def _analytic_dataset(name: str, n_samples: int, noise: float, seed: int) -> Dataset:
    """Draws the centred noise vectors that make an analytic task stochastic."""
    xi = np.random.default_rng(seed).normal(0.0, noise, size=(n_samples, 2))
    # Centring makes the full-batch loss mean_i f_i(w) equal f(w) (up to rounding).
    xi -= xi.mean(axis=0)
    return Dataset(
        name=name,
        kind=ANALYTIC,
        x_train=xi,
        y_train=np.zeros(n_samples, dtype=np.int64),
        x_test=np.zeros((0, 2)),
        y_test=np.zeros(0, dtype=np.int64),
        n_classes=0,
        input_dim=2,
    )


def _generate(name: str, n: int, noise: float, seed: int, n_classes: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Returns all examples ``(x, y)`` of a classification task and its class count."""
    if name == "moons":
        x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    elif name == "circles":
        x, y = make_circles(n_samples=n, noise=noise, factor=CIRCLES_FACTOR, random_state=seed)
    elif name == "spirals":
        x, y = _spirals(n, noise, seed)
    elif name == "xor":
        x, y = _xor(n, noise, seed)
    elif name == "blobs":
        x, y = _blobs(n, noise, seed, n_classes)
    else:
        x, y = _digits(n, seed)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64), class_count(name, n_classes)


def _spirals(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two spiral arms, the second rotated by pi, with radius growing to 1."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    # sqrt spreads the points evenly along the arm instead of crowding the centre.
    t = np.sqrt(rng.uniform(SPIRAL_MIN_RADIUS**2, 1.0, size=n))
    angle = 2.0 * np.pi * SPIRAL_TURNS * t + np.pi * y
    x = t[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return x + rng.normal(0.0, noise, size=x.shape), y


def _xor(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points in [-1, 1]^2 labelled 1 where x*y > 0, then jittered."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    return x + rng.normal(0.0, noise, size=x.shape), y


def _blobs(n: int, noise: float, seed: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian blobs of std ``noise`` centred evenly on a circle."""
    angles = 2.0 * np.pi * np.arange(n_classes) / n_classes
    centres = BLOB_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return make_blobs(n_samples=n, centers=centres, cluster_std=noise, random_state=seed)


def _digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The bundled digits scaled to [0, 1], cut down to ``n`` images class-evenly."""
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    if n >= len(y):
        return x, y
    x, y, _, _ = _split(x, y, len(y) - n, seed)
    return x, y


def _split(
    x: np.ndarray, y: np.ndarray, n_test: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffles and splits off ``n_test`` examples, stratified when possible.

    Stratification needs at least two examples per class and at least one example
    per class on each side; for tiny sets where that fails the split is a plain
    shuffled split instead of an error.

    Returns:
        ``(x_train, y_train, x_test, y_test)``.
    """
    n = len(y)
    if n_test == 0:
        order = np.random.default_rng(seed).permutation(n)
        return x[order], y[order], np.zeros((0, x.shape[1])), np.zeros(0, dtype=np.int64)
    counts = np.bincount(y)
    counts = counts[counts > 0]
    stratifiable = counts.min() >= 2 and min(n_test, n - n_test) >= len(counts)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=n_test, random_state=seed, stratify=y if stratifiable else None
    )
    return x_train, y_train, x_test, y_test


# Your own data (a CSV table) lives in its own module; it is re-exported here beside the generated tasks.
from .csv_data import CSV_TASK, from_csv, table_dataset  # noqa: E402, F401  (from_csv re-exported)
