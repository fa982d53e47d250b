"""What a registry entry is: ``Variant`` (one optimizer: rule, hyperparameters, paper, teaching text, the facts the
views need) and ``HParamSpec`` (one hyperparameter), with the specs many entries share.

Each optimizer's entry is built from these, in ``registry.py`` or in the method's own module
(``sam_viz/optim/<method>.py``), and ``registry.OPTIMIZERS`` collects them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .programs import Program

BASE_CHOICES = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class HParamSpec:
    """One hyperparameter.

    Attributes:
        default: value used when the caller gives none.
        kind: "float", "int" (a count: micro-batches, a refresh period), "bool", "choice" or "pair" (two floats,
            e.g. Adam's betas).
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


def never(hp: Mapping[str, Any]) -> bool:
    return False


def plain_gd(hp: Mapping[str, Any]) -> bool:
    """Full-batch gradient descent without momentum (an SGD base): its sharpness stops near 2/η."""
    return hp.get("momentum", 0.0) == 0 and hp.get("base", "sgd") == "sgd"


@dataclass(frozen=True)
class Variant:
    """A registry entry: everything about one optimizer in one place.

    Attributes:
        name: registry name (``sam_viz.optim.make(name, ...)``).
        label: display name.
        description: one line: what the method does.
        update_rule: the update in one line of plain maths.
        paper: citation; ``paper_url`` its link; ``reference_code`` the code it follows.
        status: "stable", or "experimental" for methods whose rules come from unreviewed or third-party sources.
        hparams: name → spec, in display order.
        program: the step program (``programs.Program``) the engine and the adapter run.
        latex: the update in LaTeX (the Learn page).
        where: which view shows the method's effect (the Learn page).
        series: the method's own per-step diagnostics (``report["extra"]`` → ``Run.extra``): name → one-line
            label the Perturbations view titles its chart with (a 2-D series is drawn as small multiples, one
            line per column).
        batch_closure: whether the ``torch.optim`` adapter needs a ``BatchClosure`` (a closure that knows its batch:
            sub-batches, per-sample losses, a held-out or the previous batch) rather than a plain closure.
        needs_validation: whether a step asks for the ``"heldout"`` batch (LETS learns ρ on it): the training loop
            then carves a validation split out of the training set (``Config.val_fraction``), and runs compared
            with it in the app train on the same remaining samples.
        uses_previous_batch: whether a step asks for the ``"previous"`` batch (SAMPa): the ``torch.optim`` adapter
            then keeps that batch in its ``state_dict``, so that a resumed run goes on exactly.
        parameterization: the model parameterisation the method is defined for (``"mup"``: μP²), or "" for any;
            ``Config`` refuses another.
        gd_limit: ``gd_limit(hp) -> bool``, whether plain gradient descent's 2/η stability limit applies to a run
            with these hyperparameters (read it through ``gd_stability_limit``).
    """

    name: str
    label: str
    description: str
    update_rule: str
    paper: str
    paper_url: str
    reference_code: str
    status: str
    hparams: dict[str, HParamSpec]
    program: Program
    latex: str = ""
    where: str = ""
    series: Mapping[str, str] = field(default_factory=dict)
    batch_closure: bool = False
    needs_validation: bool = False
    uses_previous_batch: bool = False
    parameterization: str = ""
    gd_limit: Callable[[Mapping[str, Any]], bool] = never

    @property
    def two_pass(self) -> bool:
        """Whether a step needs the loss away from θ_t (a closure, in the ``torch.optim`` adapter)."""
        return self.program.two_pass

    def gd_stability_limit(self, hp: Mapping[str, Any] | None = None) -> bool:
        """Whether the 2/η line (plain gradient descent's edge of stability) applies to a run of this optimizer.

        Args:
            hp: the run's hyperparameters (missing ones take the registry defaults).
        """
        from .registry import validate  # the registry imports this module

        return self.gd_limit(validate(self.name, hp))


OptimizerInfo = Variant  # the name of earlier releases


def lr_spec(default: float, help_: str = "Learning rate η of the descent step.") -> HParamSpec:
    return HParamSpec(default, low=1e-7, high=10.0, log=True, ui_low=1e-5, help=help_)


def rho_spec(default: float, help_: str = "Perturbation radius ρ: how far the ascent step probes (0 gives the base optimizer).") -> HParamSpec:
    return HParamSpec(default, low=0.0, high=10.0, log=True, ui_low=1e-4, help=help_)


MOMENTUM = HParamSpec(0.9, low=0.0, high=0.999, help="Heavy-ball momentum of the SGD step.")
NESTEROV = HParamSpec(False, kind="bool", help="Nesterov momentum (SGD base only).")
WD_COUPLED = HParamSpec(0.0, low=0.0, high=1.0, help="Weight decay (added to the gradient; decoupled for adamw).")
WD_DECOUPLED = HParamSpec(0.0, low=0.0, high=1.0, help="Decoupled weight decay: θ ← θ(1 − η·wd); 0 in the theory.")
BETAS = HParamSpec((0.9, 0.999), kind="pair", low=0.0, high=0.9999, help="Exponential decay rates (β1, β2) of the moment estimates.")
ADAM_EPS = HParamSpec(1e-8, low=1e-16, high=1e-2, log=True, help="Adam's ε added to sqrt(v) (adam/adamw base).")
ACC_EPS = HParamSpec(1e-8, low=1e-12, high=1.0, log=True, help="ε: accumulators start at ε² (the only stabiliser; no ε is added later).")
BASE = HParamSpec("sgd", kind="choice", choices=BASE_CHOICES, help="Base optimizer of the descent step (momentum SGD by default).")
ADAPTIVE = HParamSpec(False, kind="bool", help="Scale-invariant (ASAM-style, η = 0) perturbation: e ∝ θ²⊙s / ‖|θ|⊙s‖.")


def sam_hparams(rho: float, lr: float = 0.1, **extra: HParamSpec) -> dict[str, HParamSpec]:
    return {"lr": lr_spec(lr), "rho": rho_spec(rho), **extra, "base": BASE, "momentum": MOMENTUM,
            "weight_decay": WD_COUPLED, "nesterov": NESTEROV, "betas": BETAS, "eps": ADAM_EPS}


LIGHTSAM = "Cheng et al., LightSAM: Parameter-Agnostic SAM (arXiv 2505.24399, 2025)"
THIRD_PARTY = "third-party renderings (spec §1); no official code"
SAM_STEP = "\\theta_{t+1} = \\mathrm{base}\\big(\\theta_t,\\ \\nabla L_B(\\theta_t + e_t)\\big)"
