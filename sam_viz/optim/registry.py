"""The optimizer registry: each optimizer's hyperparameters (defaults, ranges, scale, help), paper and status.

The app builds its widgets from ``OPTIMIZERS``; the engine validates every hyperparameter against it with
``validate`` (a ``ValueError`` naming the parameter and its range), so a limit holds whatever the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

BASE_CHOICES = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class HParamSpec:
    """One hyperparameter.

    Attributes:
        default: value used when the caller gives none.
        kind: "float", "bool", "choice" or "pair" (two floats, e.g. Adam's betas).
        low, high: inclusive valid range (floats, and each entry of a pair).
        log: whether a slider should use a logarithmic scale (then it starts at ``ui_low`` > 0).
        ui_low: smallest value a log slider offers (0 stays valid when ``low`` is 0).
        choices: valid values of a "choice".
        help: one sentence for the app's ``help=`` text and the command line.
    """

    default: Any
    kind: str = "float"
    low: float = -math.inf
    high: float = math.inf
    log: bool = False
    ui_low: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""


@dataclass(frozen=True)
class OptimizerInfo:
    """A registry entry.

    Attributes:
        name: registry name (``sam_viz.optim.make(name, ...)``).
        label: display name.
        description: one line: what the method does.
        update_rule: the update in one line of plain maths.
        paper: citation; ``paper_url`` its link; ``reference_code`` the code it follows.
        status: "stable", or "experimental" for methods whose rules come from unreviewed or third-party sources.
        two_pass: whether a step needs the gradient at θ + e (a closure).
        hparams: name → spec, in display order.
    """

    name: str
    label: str
    description: str
    update_rule: str
    paper: str
    paper_url: str
    reference_code: str
    status: str
    two_pass: bool
    hparams: dict[str, HParamSpec]


def _lr(default: float, help_: str = "Learning rate η of the descent step.") -> HParamSpec:
    return HParamSpec(default, low=1e-7, high=10.0, log=True, ui_low=1e-5, help=help_)


def _rho(default: float, help_: str = "Perturbation radius ρ: how far the ascent step probes (0 gives the base optimizer).") -> HParamSpec:
    return HParamSpec(default, low=0.0, high=10.0, log=True, ui_low=1e-4, help=help_)


_MOMENTUM = HParamSpec(0.9, low=0.0, high=0.999, help="Heavy-ball momentum of the SGD step.")
_NESTEROV = HParamSpec(False, kind="bool", help="Nesterov momentum (SGD base only).")
_WD_COUPLED = HParamSpec(0.0, low=0.0, high=1.0, help="Weight decay (added to the gradient; decoupled for adamw).")
_WD_DECOUPLED = HParamSpec(0.0, low=0.0, high=1.0, help="Decoupled weight decay: θ ← θ(1 − η·wd); 0 in the theory.")
_BETAS = HParamSpec((0.9, 0.999), kind="pair", low=0.0, high=0.9999, help="Exponential decay rates (β1, β2) of the moment estimates.")
_ADAM_EPS = HParamSpec(1e-8, low=1e-16, high=1e-2, log=True, help="Adam's ε added to sqrt(v) (adam/adamw base).")
_ACC_EPS = HParamSpec(1e-8, low=1e-12, high=1.0, log=True, help="ε: accumulators start at ε² (the only stabiliser; no ε is added later).")
_BASE = HParamSpec("sgd", kind="choice", choices=BASE_CHOICES, help="Base optimizer of the descent step (momentum SGD by default).")
_ADAPTIVE = HParamSpec(False, kind="bool", help="Scale-invariant (ASAM-style, η = 0) perturbation: e ∝ θ²⊙s / ‖|θ|⊙s‖.")


def _sam_base(rho: float, lr: float = 0.1, **extra: HParamSpec) -> dict[str, HParamSpec]:
    return {"lr": _lr(lr), "rho": _rho(rho), **extra, "base": _BASE, "momentum": _MOMENTUM,
            "weight_decay": _WD_COUPLED, "nesterov": _NESTEROV, "betas": _BETAS, "eps": _ADAM_EPS}


OPTIMIZERS: dict[str, OptimizerInfo] = {
    "sgd": OptimizerInfo(
        "sgd", "SGD", "Stochastic gradient descent with heavy-ball momentum.",
        "θ ← θ − η b,  b ← μ b + (g + wd·θ)",
        "Robbins & Monro (1951); Polyak (1964)", "https://doi.org/10.1214/aoms/1177729586",
        "torch.optim.SGD", "stable", False,
        {"lr": _lr(0.1), "momentum": _MOMENTUM, "weight_decay": _WD_COUPLED, "nesterov": _NESTEROV},
    ),
    "adam": OptimizerInfo(
        "adam", "Adam", "Adaptive moment estimation with bias correction.",
        "θ ← θ − η m̂/(sqrt(v̂) + ε)",
        "Kingma & Ba, Adam (ICLR 2015)", "https://arxiv.org/abs/1412.6980",
        "torch.optim.Adam", "stable", False,
        {"lr": _lr(1e-3), "betas": _BETAS, "eps": _ADAM_EPS, "weight_decay": _WD_COUPLED},
    ),
    "sam": OptimizerInfo(
        "sam", "SAM", "Sharpness-aware minimization: descend with the gradient taken at the worst point of a ρ-ball.",
        "e = ρ s/‖s‖;  θ ← base_step(θ, ∇L(θ + e))",
        "Foret, Kleiner, Mobahi, Neyshabur, Sharpness-Aware Minimization (ICLR 2021)",
        "https://arxiv.org/abs/2010.01412", "davda54/sam sam.py", "stable", True,
        _sam_base(0.05, adaptive=_ADAPTIVE),
    ),
    "asam": OptimizerInfo(
        "asam", "ASAM", "Adaptive SAM: the ρ-ball is measured relative to the weights' scale (T = |θ| + η).",
        "e = ρ T² s/‖T s‖,  T = diag(|θ|) + η I on weights, I on biases",
        "Kwon, Kim, Park, Choi, ASAM (ICML 2021)", "https://arxiv.org/abs/2102.11600",
        "SamsungLabs/ASAM asam.py", "stable", True,
        _sam_base(0.5, eta=HParamSpec(0.01, low=0.0, high=1.0, help="η in T = |θ| + η: keeps the ball open where weights are 0.")),
    ),
    "fsam": OptimizerInfo(
        "fsam", "F-SAM", "Friendly-SAM: remove the full-gradient component (an EMA of past gradients) from the perturbation.",
        "d = s − σ m;  m ← λ m + (1−λ) s;  e = ρ d/‖d‖",
        "Li, Zhou, He, Cheng, Huang, Friendly Sharpness-Aware Minimization (CVPR 2024)",
        "https://arxiv.org/abs/2403.12350", "nblt/F-SAM utils.py (FriendlySAM)", "stable", True,
        _sam_base(
            0.05,
            sigma=HParamSpec(1.0, low=0.0, high=2.0, help="σ: how much of the estimated full gradient to remove (0 gives SAM)."),
            lmbda=HParamSpec(0.9, low=0.0, high=0.999, help="λ: decay of the EMA that estimates the full gradient."),
            adaptive=_ADAPTIVE,
        ),
    ),
    "lightsam1": OptimizerInfo(
        "lightsam1", "LightSAM-I", "SAM with AdaGrad-Norm in both steps: scalar adaptive radius and learning rate.",
        "u += ‖s‖²; e = ρ s/sqrt(u);  v += ‖g‖²; θ ← θ − η g/sqrt(v)",
        "Cheng et al., LightSAM: Parameter-Agnostic SAM (arXiv 2505.24399, 2025)",
        "https://arxiv.org/abs/2505.24399", "third-party renderings (spec §1); no official code", "experimental", True,
        {"lr": _lr(0.1), "rho": _rho(0.1), "eps": _ACC_EPS, "weight_decay": _WD_DECOUPLED},
    ),
    "lightsam2": OptimizerInfo(
        "lightsam2", "LightSAM-II", "SAM with AdaGrad in both steps: per-coordinate adaptive radius and learning rate.",
        "u += s⊙s; e = ρ s/sqrt(u);  v += g⊙g; θ ← θ − η g/sqrt(v)",
        "Cheng et al., LightSAM: Parameter-Agnostic SAM (arXiv 2505.24399, 2025)",
        "https://arxiv.org/abs/2505.24399", "third-party renderings (spec §1); no official code", "experimental", True,
        {"lr": _lr(0.1), "rho": _rho(0.1), "eps": _ACC_EPS, "weight_decay": _WD_DECOUPLED},
    ),
    "lightsam3": OptimizerInfo(
        "lightsam3", "LightSAM-III", "SAM with Adam in both steps (separate moments for ascent and descent).",
        "r,u ← Adam moments of s; e = ρ r/sqrt(u);  m,v ← moments of g; θ ← θ − η m/sqrt(v)",
        "Cheng et al., LightSAM: Parameter-Agnostic SAM (arXiv 2505.24399, 2025)",
        "https://arxiv.org/abs/2505.24399", "third-party renderings (spec §1); no official code", "experimental", True,
        {"lr": _lr(1e-3), "rho": _rho(0.01), "betas": _BETAS, "eps": _ACC_EPS, "weight_decay": _WD_DECOUPLED,
         "bias_correction": HParamSpec(False, kind="bool", help="Divide the moments by (1 − β^t) as Adam does (off in the renderings).")},
    ),
    "adasam": OptimizerInfo(
        "adasam", "AdaSAM", "SAM's perturbation with an AMSGrad-style descent (no bias correction).",
        "e = ρ s/‖s‖;  m, v ← moments of g; v̂ = max(v̂, v); θ ← θ − η m/sqrt(v̂)",
        "Sun et al., AdaSAM (arXiv 2303.00565, 2023)", "https://arxiv.org/abs/2303.00565",
        "third-party renderings (spec §6)", "experimental", True,
        {"lr": _lr(1e-3), "rho": _rho(0.05), "betas": _BETAS, "eps": _ACC_EPS, "weight_decay": _WD_DECOUPLED},
    ),
    "msam": OptimizerInfo(
        "msam", "Monge-SAM", "SAM under the metric I + s sᵀ: the radius shrinks where the gradient is large.",
        "e = ρ s/(‖s‖ sqrt(1 + ‖s‖²))",
        "Jacobsen & Arvanitidis, Monge SAM (arXiv 2502.08448, 2025)", "https://arxiv.org/abs/2502.08448",
        "paper equations (spec §6)", "experimental", True,
        _sam_base(0.05),
    ),
}


def validate(name: str, hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check ``hparams`` against the registry and fill in defaults.

    Args:
        name: registry name.
        hparams: given values; numbers, or per-run tensors of shape (R,) for batched use.

    Returns:
        Every hyperparameter of ``name``: the given values (floats/tuples normalised) and defaults for the rest.

    Raises:
        ValueError: unknown optimizer or hyperparameter, wrong type, or a value outside its range (the message
            names the parameter and its range).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer: {name!r}; valid: {', '.join(OPTIMIZERS)}")
    specs = OPTIMIZERS[name].hparams
    given = dict(hparams or {})
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise ValueError(f"Invalid hyperparameter(s) for {name}: {', '.join(unknown)}; valid: {', '.join(specs)}")
    return {key: _check(name, key, spec, given.get(key, spec.default)) for key, spec in specs.items()}


def _check(opt: str, key: str, spec: HParamSpec, value: Any) -> Any:
    if spec.kind == "bool":
        if isinstance(value, (bool, int)) and value in (0, 1):
            return bool(value)
        raise ValueError(f"Invalid {key} for {opt}: {value!r} (expected true or false)")
    if spec.kind == "choice":
        if value in spec.choices:
            return value
        raise ValueError(f"Invalid {key} for {opt}: {value!r}; valid: {', '.join(spec.choices)}")
    if spec.kind == "pair":
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(","))
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(f"Invalid {key} for {opt}: {value!r} (expected two numbers in [{spec.low}, {spec.high}])")
        return tuple(_check_number(opt, f"{key}[{i}]", spec, v) for i, v in enumerate(value))
    return _check_number(opt, key, spec, value)


def _check_number(opt: str, key: str, spec: HParamSpec, value: Any) -> float | torch.Tensor:
    if isinstance(value, torch.Tensor):
        bad = ~torch.isfinite(value) | (value < spec.low) | (value > spec.high)
        if value.dim() > 1 or bool(bad.any()):
            raise ValueError(f"Invalid {key} for {opt}: per-run values must be a 1-D tensor in [{spec.low}, {spec.high}]")
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {key} for {opt}: {value!r} is not a number") from None
    if isinstance(value, bool) or not math.isfinite(number) or not spec.low <= number <= spec.high:
        raise ValueError(f"Invalid {key} for {opt}: {value!r} (valid range [{spec.low:g}, {spec.high:g}])")
    return number
