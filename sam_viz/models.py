"""Models for the tasks in ``sam_viz.data``, with seed-only deterministic initialisation.

Classification tasks use a logistic regression, an MLP or (for ``digits``) a small
CNN; analytic tasks use ``PlanePoint``, whose single parameter is the point on the
loss surface. Every network is initialised from an explicit ``torch.Generator``, so
the starting weights depend on ``seed`` alone, never on the global torch RNG.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import ANALYTIC, CLASSIFICATION, TASKS, Dataset, analytic_loss, check_int

ACTIVATIONS = ("tanh", "relu", "gelu", "sigmoid", "softplus", "elu")
MAX_DEPTH = 8
MAX_WIDTH = 1024
# sp: PyTorch's default initialisation; mup: the maximal-update parameterisation of an MLP (``mup_init_std``)
PARAMETERIZATIONS = ("sp", "mup")
DEFAULT_BASE_WIDTH = 32

_ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


@dataclass(frozen=True)
class ModelInfo:
    """Static description of a model.

    Attributes:
        name: Model name, the key in ``MODELS``.
        description: One line shown in the app.
        kinds: Task kinds the model fits.
        tasks: If set, the only task names the model fits.
    """

    name: str
    description: str
    kinds: tuple[str, ...]
    tasks: tuple[str, ...] | None = None

    def fits(self, task: str, kind: str) -> bool:
        """Tells whether the model can be built for a task.

        Args:
            task: Task name.
            kind: Task kind, ``"classification"`` or ``"analytic"``.

        Returns:
            True if the model fits the task.
        """
        return kind in self.kinds and (self.tasks is None or task in self.tasks)


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo("logistic", "Multinomial logistic regression: one linear layer.", (CLASSIFICATION,)),
        ModelInfo("mlp", "Multilayer perceptron: `depth` hidden layers of `width` units.", (CLASSIFICATION,)),
        ModelInfo("cnn", "Two conv + max-pool blocks and a linear head, 1,898 parameters (digits only).",
                  (CLASSIFICATION,), tasks=("digits",)),
        ModelInfo("point", "The parameters are the point w on the analytic loss surface.", (ANALYTIC,)),
    )
}


class Network(nn.Module):
    """A classifier whose layers are held in ``self.layers`` (names like ``layers.0.weight``).

    Args:
        layers: The layers, applied in order to inputs of shape (N, d).
    """

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Maps inputs (N, d) to logits (N, C)."""
        return self.layers(x)


class PlanePoint(nn.Module):
    """The "model" of an analytic task: its one parameter ``w`` is a point on the plane.

    Args:
        task: Name of the analytic task whose loss surface the point lives on.
        start: Initial value of ``w``.

    Attributes:
        task: Name of the analytic task.
        weight: The parameter w, shape (2,). Named "weight" because it is the model's weight: rules that act on
            weight tensors only (ASAM's T = |θ| + η) act on it, so ASAM's neighbourhood here is its ellipse.
        w: The same parameter (the name it had before).
    """

    def __init__(self, task: str, start: tuple[float, float]) -> None:
        super().__init__()
        self.task = task
        self.weight = nn.Parameter(torch.tensor(start, dtype=torch.float64))

    @property
    def w(self) -> nn.Parameter:
        return self.weight

    def forward(self, x: Tensor) -> Tensor:
        """Per-sample losses ``f(w) + xi_i . w`` for noise vectors ``x`` of shape (B, 2).

        Args:
            x: Noise vectors ``xi_i``, shape (B, 2), same dtype as ``w``.

        Returns:
            Per-sample losses, shape (B,); their mean is the minibatch loss.
        """
        return analytic_loss(self.task, self.weight) + x @ self.weight


def build_model(
    dataset: Dataset,
    model: str = "mlp",
    *,
    depth: int = 2,
    width: int = 32,
    activation: str = "tanh",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    start: tuple[float, float] | None = None,
    parameterization: str = "sp",
    base_width: int = DEFAULT_BASE_WIDTH,
) -> nn.Module:
    """Builds a freshly initialised model for a data set.

    Weights are drawn in float64 on the CPU from ``torch.Generator().manual_seed(seed)``
    with PyTorch's default scheme and then cast, so float32 and float64 models start
    from the same point up to rounding and the global RNG is left untouched.

    Args:
        dataset: The data set the model will be trained on.
        model: A key of ``MODELS``.
        depth: Hidden layers of the MLP, in [0, 8]; 0 gives logistic regression.
        width: Units per hidden layer of the MLP, in [1, 1024].
        activation: One of ``ACTIVATIONS`` (MLP and CNN).
        seed: Initialisation seed, a non-negative integer (``point`` has no random
            initialisation and ignores it).
        dtype: Floating dtype of the parameters.
        device: Device of the parameters.
        start: Initial point of the ``point`` model; defaults to the task's start.
        parameterization: ``"sp"`` (PyTorch's default initialisation) or ``"mup"`` (the MLP's μP initialisation,
            ``mup_init_std``; needs ``model="mlp"`` and ``depth >= 1``).
        base_width: The width n₀ at which the μP model's initialisation is the standard one (r = width/n₀ = 1).

    Returns:
        The model; classifiers map (N, d) inputs to (N, C) logits, ``point`` maps
        (B, 2) noise vectors to (B,) per-sample losses.

    Raises:
        ValueError: If an argument is invalid or the model does not fit the task.
    """
    _validate(dataset, model, depth, width, activation, seed, dtype, start)
    check_parameterization(parameterization, base_width, model, depth)
    if model == "point":
        net: nn.Module = PlanePoint(dataset.name, start if start is not None else TASKS[dataset.name].start)
    else:
        net = _network(dataset, model, depth, width, activation)
        if parameterization == "mup":
            _initialise_mup(net, seed, width / base_width)
        else:
            _initialise(net, seed)
    return net.to(device=device, dtype=dtype)


def check_parameterization(parameterization: str, base_width: int, model: str, depth: int) -> None:
    """Raises ValueError unless the parameterisation fits the model (μP: an MLP with hidden layers)."""
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"Invalid parameterization: {parameterization!r}; valid: {', '.join(PARAMETERIZATIONS)}")
    check_int("base_width", base_width, 1, MAX_WIDTH)
    if parameterization == "mup" and (model != "mlp" or depth < 1):
        raise ValueError(f"Invalid parameterization: 'mup' needs an MLP with at least one hidden layer "
                         f"(got model={model!r}, depth={depth})")


def mup_init_std(role: str, fan_in: int, width: int, width_ratio: float) -> float:
    """The μP initialisation's standard deviation of a weight matrix (spec §6b, after Haas et al.'s code), with
    r = width/n₀ so that the base width n₀ has the standard ones: input √2/√fan_in, hidden √2/√n, output
    √2/√(n·r) (∝ 1/n as the width grows: the output layer starts small). Biases start at zero."""
    if role == "input":
        return math.sqrt(2.0 / fan_in)
    if role == "hidden":
        return math.sqrt(2.0 / width)
    return math.sqrt(2.0 / (width * width_ratio))


def layer_roles(n_layers: int) -> tuple[str, ...]:
    """The μP role of each of an MLP's linear layers, in order: input, hidden …, output."""
    if n_layers < 2:
        raise ValueError(f"μP needs an input and an output layer, got {n_layers} layer(s)")
    return ("input",) + ("hidden",) * (n_layers - 2) + ("output",)


@torch.no_grad()
def _initialise_mup(net: nn.Module, seed: int, width_ratio: float) -> None:
    """Gaussian μP weights (``mup_init_std``) and zero biases, drawn from a private generator."""
    generator = torch.Generator().manual_seed(seed)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    width = linears[0].out_features
    for role, module in zip(layer_roles(len(linears)), linears):
        std = mup_init_std(role, module.in_features, width, width_ratio)
        module.weight.normal_(0.0, std, generator=generator)
        module.bias.zero_()


def _validate(
    dataset: Dataset,
    model: str,
    depth: int,
    width: int,
    activation: str,
    seed: int,
    dtype: torch.dtype,
    start: tuple[float, float] | None,
) -> None:
    """Raises ValueError naming the first invalid argument of ``build_model``."""
    if model not in MODELS:
        raise ValueError(f"Invalid model: {model!r}; valid: {', '.join(MODELS)}")
    if not MODELS[model].fits(dataset.name, dataset.kind):
        valid = [name for name, info in MODELS.items() if info.fits(dataset.name, dataset.kind)]
        raise ValueError(f"Invalid model: {model!r} does not fit task {dataset.name!r}; valid: {', '.join(valid)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"Invalid activation: {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    check_int("depth", depth, 0, MAX_DEPTH)
    check_int("width", width, 1, MAX_WIDTH)
    check_int("seed", seed, 0, 2**63 - 1)
    if not dtype.is_floating_point:
        raise ValueError(f"Invalid dtype: {dtype}; valid: a floating dtype such as torch.float32")
    if start is not None:
        if model != "point":
            raise ValueError(f"Invalid start: {start!r}; only the 'point' model takes a start")
        if len(start) != 2 or not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in start):
            raise ValueError(f"Invalid start: {start!r}; valid: two finite numbers")


def _network(dataset: Dataset, model: str, depth: int, width: int, activation: str) -> Network:
    """Creates the classifier with uninitialised float64 parameters on the CPU."""
    # Building on the meta device skips the modules' own initialisation, which would
    # draw from (and advance) the global RNG.
    with torch.device("meta"):
        if model == "cnn":
            layers = _cnn_layers(activation)
        else:
            layers = _mlp_layers(dataset.input_dim, dataset.n_classes, depth if model == "mlp" else 0,
                                 width, activation)
        net = Network(layers)
    return net.to_empty(device="cpu").to(torch.float64)


def _mlp_layers(d: int, n_classes: int, depth: int, width: int, activation: str) -> list[nn.Module]:
    """``depth`` hidden Linear + activation blocks, then a linear head."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d if i == 0 else width, width), _ACTIVATION_MODULES[activation]()]
    layers.append(nn.Linear(width if depth else d, n_classes))
    return layers


def _cnn_layers(activation: str) -> list[nn.Module]:
    """The 1,898-parameter CNN for 8x8 digits flattened to 64 features."""
    act = _ACTIVATION_MODULES[activation]
    return [
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 8, 3, padding=1), act(), nn.MaxPool2d(2),  # -> 8 x 4 x 4
        nn.Conv2d(8, 16, 3, padding=1), act(), nn.MaxPool2d(2),  # -> 16 x 2 x 2
        nn.Flatten(),
        nn.Linear(64, 10),
    ]


@torch.no_grad()
def _initialise(net: nn.Module, seed: int) -> None:
    """PyTorch's default Linear/Conv2d initialisation, drawn from a private generator."""
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            # fan_in is what one output unit sees: in_features (x kernel area).
            bound = 1.0 / math.sqrt(module.weight[0].numel())
            nn.init.uniform_(module.bias, -bound, bound, generator=generator)


def _mean_output(outputs: Tensor, y: Tensor) -> Tensor:
    """Mean of per-sample losses; ``y`` is unused but keeps the loss signature."""
    return outputs.mean()


def flatten(model: nn.Module) -> Tensor:
    """The model's parameters as one detached (P,) vector in ``named_parameters()`` order, on its device: the
    inverse of ``split_parameters``. The model is not modified."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def split_parameters(model: nn.Module, flat: Tensor) -> dict[str, Tensor]:
    """Flat parameter vectors (…, P) → ``{name: (…, *shape)}`` views in ``named_parameters()`` order.

    The inverse of concatenating the flattened parameters: what ``torch.func.functional_call`` takes to run the
    model at any point of parameter space (a snapshot, a grid point, a stack of them) without touching it.
    """
    out, offset = {}, 0
    lead = flat.shape[:-1]
    for name, p in model.named_parameters():
        n = p.numel()
        out[name] = flat[..., offset:offset + n].reshape(*lead, *p.shape)
        offset += n
    return out


def loss_fn(dataset_kind: str) -> Callable[[Tensor, Tensor], Tensor]:
    """Returns the training loss for a task kind.

    Args:
        dataset_kind: ``"classification"`` or ``"analytic"``.

    Returns:
        ``loss(outputs, y)``: mean cross-entropy of logits for classification, the
        mean of ``PlanePoint``'s per-sample losses for analytic tasks.

    Raises:
        ValueError: If the kind is unknown.
    """
    if dataset_kind == CLASSIFICATION:
        return F.cross_entropy
    if dataset_kind == ANALYTIC:
        return _mean_output
    raise ValueError(f"Invalid dataset_kind: {dataset_kind!r}; valid: {CLASSIFICATION}, {ANALYTIC}")


def accuracy(outputs: Tensor, y: Tensor) -> Tensor:
    """Fraction of examples whose largest logit is the label.

    Args:
        outputs: Logits, shape (N, C).
        y: Integer labels, shape (N,).

    Returns:
        A 0-d tensor in [0, 1], in the dtype of ``outputs``; NaN when N is 0.
    """
    return (outputs.argmax(dim=1) == y).to(outputs.dtype).mean()
