"""The optimizer registry: each optimizer's step program, hyperparameters (defaults, ranges, scale, help), paper,
status, teaching text and the facts the views need, one ``Variant`` per method.

The app builds its widgets from ``OPTIMIZERS``; the engine validates every hyperparameter against it with
``validate`` (a ``ValueError`` naming the parameter and its range), so a limit holds whatever the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from . import esam, gsam, lets, looksam, mbsam, mup2, sampa, ssam, wsam
from .functional import (
    BASES,
    Rule,
    adam_init,
    adam_update,
    adasam_init,
    adasam_update,
    asam_perturb,
    fsam_init,
    fsam_perturb,
    lightsam1_init,
    lightsam1_perturb,
    lightsam1_update,
    lightsam2_init,
    lightsam2_perturb,
    lightsam2_update,
    lightsam3_init,
    lightsam3_perturb,
    lightsam3_update,
    msam_perturb,
    sam_perturb,
    sgd_init,
    sgd_update,
)
from .programs import ascent_descent, descent
from .variant import (  # noqa: F401
    ACC_EPS,
    ADAM_EPS,
    ADAPTIVE,
    BASE_CHOICES,
    BETAS,
    LIGHTSAM,
    MOMENTUM,
    NESTEROV,
    SAM_STEP,
    THIRD_PARTY,
    WD_COUPLED,
    WD_DECOUPLED,
    HParamSpec,
    OptimizerInfo,
    Variant,
    lr_spec,
    plain_gd,
    rho_spec,
    sam_hparams,
)

OPTIMIZERS: dict[str, Variant] = {
    "sgd": Variant(
        name="sgd", label="SGD", description="Stochastic gradient descent with heavy-ball momentum.",
        update_rule="θ ← θ − η b,  b ← μ b + (g + wd·θ)",
        paper="Robbins & Monro (1951); Polyak (1964)", paper_url="https://doi.org/10.1214/aoms/1177729586",
        reference_code="torch.optim.SGD", status="stable",
        hparams={"lr": lr_spec(0.1), "momentum": MOMENTUM, "weight_decay": WD_COUPLED, "nesterov": NESTEROV},
        program=descent((sgd_init, sgd_update)),
        latex=r"b_t = \mu\, b_{t-1} + \nabla L_B(\theta_t) + \lambda\theta_t,\qquad \theta_{t+1} = \theta_t - \eta\, b_t",
        where="Loss surface: the baseline path; Hessian: λ_max rises during training (full-batch GD without momentum "
              "stops near 2/η, the edge of stability).",
        gd_limit=plain_gd,
    ),
    "adam": Variant(
        name="adam", label="Adam", description="Adaptive moment estimation with bias correction.",
        update_rule="θ ← θ − η m̂/(sqrt(v̂) + ε)",
        paper="Kingma & Ba, Adam (ICLR 2015)", paper_url="https://arxiv.org/abs/1412.6980",
        reference_code="torch.optim.Adam", status="stable",
        hparams={"lr": lr_spec(1e-3), "betas": BETAS, "eps": ADAM_EPS, "weight_decay": WD_COUPLED},
        program=descent((adam_init, adam_update)),
        latex=r"m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\; v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\qquad "
              r"\theta_{t+1} = \theta_t - \eta\,\frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}",
        where="Loss surface: sign-like steps along the valley floor; compare with LightSAM-III.",
    ),
    "sam": Variant(
        name="sam", label="SAM",
        description="Sharpness-aware minimization: descend with the gradient taken at the worst point of a ρ-ball.",
        update_rule="e = ρ s/‖s‖;  θ ← base_step(θ, ∇L(θ + e))",
        paper="Foret, Kleiner, Mobahi, Neyshabur, Sharpness-Aware Minimization (ICLR 2021)",
        paper_url="https://arxiv.org/abs/2010.01412", reference_code="davda54/sam sam.py", status="stable",
        hparams=sam_hparams(0.05, adaptive=ADAPTIVE),
        program=ascent_descent(sam_perturb),
        latex=r"s_t = \nabla L_B(\theta_t),\; e_t = \rho\,\frac{s_t}{\lVert s_t\rVert},\qquad " + SAM_STEP,
        where="Perturbations: the probe θ + e sits on a sphere of radius ρ; Radius sensitivity: the band of good ρ.",
        gd_limit=plain_gd,
    ),
    "asam": Variant(
        name="asam", label="ASAM",
        description="Adaptive SAM: the ρ-ball is measured relative to the weights' scale (T = |θ| + η).",
        update_rule="e = ρ T² s/‖T s‖,  T = diag(|θ|) + η I on weights, I on biases",
        paper="Kwon, Kim, Park, Choi, ASAM (ICML 2021)", paper_url="https://arxiv.org/abs/2102.11600",
        reference_code="SamsungLabs/ASAM asam.py", status="stable",
        hparams=sam_hparams(0.5, eta=HParamSpec(0.01, low=0.0, high=1.0, help="η in T = |θ| + η: keeps the ball open where weights are 0.")),
        program=ascent_descent(asam_perturb, takes_names=True),
        latex=r"T_t = \mathrm{diag}(|\theta_t|) + \eta I,\; e_t = \rho\,\frac{T_t^2 s_t}{\lVert T_t s_t\rVert},\qquad " + SAM_STEP,
        where="Perturbations: the probe scales with each weight's size, so ‖e‖ differs from ρ.",
        gd_limit=plain_gd,
    ),
    "fsam": Variant(
        name="fsam", label="F-SAM",
        description="Friendly-SAM: remove the full-gradient component (an EMA of past gradients) from the perturbation.",
        update_rule="d = s − σ m;  m ← λ m + (1−λ) s;  e = ρ d/‖d‖",
        paper="Li, Zhou, He, Cheng, Huang, Friendly Sharpness-Aware Minimization (CVPR 2024)",
        paper_url="https://arxiv.org/abs/2403.12350", reference_code="nblt/F-SAM utils.py (FriendlySAM)", status="stable",
        hparams=sam_hparams(
            0.05,
            sigma=HParamSpec(1.0, low=0.0, high=2.0, help="σ: how much of the estimated full gradient to remove (0 gives SAM)."),
            lmbda=HParamSpec(0.9, low=0.0, high=0.999, help="λ: decay of the EMA that estimates the full gradient."),
            adaptive=ADAPTIVE,
        ),
        program=ascent_descent(fsam_perturb, fsam_init),
        latex=r"d_t = s_t - \sigma m_{t-1},\; m_t = \lambda m_{t-1} + (1-\lambda) s_t,\; e_t = \rho\,\frac{d_t}{\lVert d_t\rVert},\qquad " + SAM_STEP,
        where="Perturbations: cos(e, ∇L) drops towards 0 — the full-gradient part is removed.",
        gd_limit=plain_gd,
    ),
    "lightsam1": Variant(
        name="lightsam1", label="LightSAM-I",
        description="SAM with AdaGrad-Norm in both steps: scalar adaptive radius and learning rate.",
        update_rule="u += ‖s‖²; e = ρ s/sqrt(u);  v += ‖g‖²; θ ← θ − η g/sqrt(v)",
        paper=LIGHTSAM, paper_url="https://arxiv.org/abs/2505.24399", reference_code=THIRD_PARTY, status="experimental",
        hparams={"lr": lr_spec(0.1), "rho": rho_spec(0.1), "eps": ACC_EPS, "weight_decay": WD_DECOUPLED},
        program=ascent_descent(lightsam1_perturb, base=(lightsam1_init, lightsam1_update)),
        latex=r"u_t = u_{t-1} + \lVert s_t\rVert^2,\; e_t = \frac{\rho\, s_t}{\sqrt{u_t}},\; "
              r"v_t = v_{t-1} + \lVert g_t\rVert^2,\qquad \theta_{t+1} = \theta_t - \frac{\eta\, g_t}{\sqrt{v_t}}",
        where="Perturbations: the effective radius ρ/√u_t and learning rate η/√v_t shrink on their own; Radius "
              "sensitivity: a flat map.",
    ),
    "lightsam2": Variant(
        name="lightsam2", label="LightSAM-II",
        description="SAM with AdaGrad in both steps: per-coordinate adaptive radius and learning rate.",
        update_rule="u += s⊙s; e = ρ s/sqrt(u);  v += g⊙g; θ ← θ − η g/sqrt(v)",
        paper=LIGHTSAM, paper_url="https://arxiv.org/abs/2505.24399", reference_code=THIRD_PARTY, status="experimental",
        hparams={"lr": lr_spec(0.1), "rho": rho_spec(0.1), "eps": ACC_EPS, "weight_decay": WD_DECOUPLED},
        program=ascent_descent(lightsam2_perturb, base=(lightsam2_init, lightsam2_update)),
        latex=r"u_t = u_{t-1} + s_t^2,\; e_t = \frac{\rho\, s_t}{\sqrt{u_t}},\; v_t = v_{t-1} + g_t^2,\qquad "
              r"\theta_{t+1} = \theta_t - \frac{\eta\, g_t}{\sqrt{v_t}}",
        where="Perturbations: per-coordinate effective radius and learning rate (median shown); Radius sensitivity.",
    ),
    "lightsam3": Variant(
        name="lightsam3", label="LightSAM-III",
        description="SAM with Adam in both steps (separate moments for ascent and descent).",
        update_rule="r,u ← Adam moments of s; e = ρ r/sqrt(u);  m,v ← moments of g; θ ← θ − η m/sqrt(v)",
        paper=LIGHTSAM, paper_url="https://arxiv.org/abs/2505.24399", reference_code=THIRD_PARTY, status="experimental",
        hparams={"lr": lr_spec(1e-3), "rho": rho_spec(0.01), "betas": BETAS, "eps": ACC_EPS, "weight_decay": WD_DECOUPLED,
                 "bias_correction": HParamSpec(False, kind="bool", help="Divide the moments by (1 − β^t) as Adam does (off in the renderings).")},
        program=ascent_descent(lightsam3_perturb, base=(lightsam3_init, lightsam3_update)),
        latex=r"r_t, u_t = \mathrm{Adam\ moments}(s_t),\; e_t = \frac{\rho\, r_t}{\sqrt{u_t}},\; "
              r"m_t, v_t = \mathrm{Adam\ moments}(g_t),\qquad \theta_{t+1} = \theta_t - \frac{\eta\, m_t}{\sqrt{v_t}}",
        where="Loss surface and Perturbations: large early probes (no bias correction), Adam-like steps.",
    ),
    "adasam": Variant(
        name="adasam", label="AdaSAM", description="SAM's perturbation with an AMSGrad-style descent (no bias correction).",
        update_rule="e = ρ s/‖s‖;  m, v ← moments of g; v̂ = max(v̂, v); θ ← θ − η m/sqrt(v̂)",
        paper="Sun et al., AdaSAM (arXiv 2303.00565, 2023)", paper_url="https://arxiv.org/abs/2303.00565",
        reference_code="third-party renderings (spec §6)", status="experimental",
        hparams={"lr": lr_spec(1e-3), "rho": rho_spec(0.05), "betas": BETAS, "eps": ACC_EPS, "weight_decay": WD_DECOUPLED},
        program=ascent_descent(sam_perturb, base=(adasam_init, adasam_update)),
        latex=r"e_t = \rho\,\frac{s_t}{\lVert s_t\rVert},\; m_t, v_t = \mathrm{Adam\ moments}(g_t),\; "
              r"\hat v_t = \max(\hat v_{t-1}, v_t),\qquad \theta_{t+1} = \theta_t - \frac{\eta\, m_t}{\sqrt{\hat v_t}}",
        where="Perturbations: SAM's probe with an AMSGrad-style effective learning rate.",
    ),
    "msam": Variant(
        name="msam", label="Monge-SAM", description="SAM under the metric I + s sᵀ: the radius shrinks where the gradient is large.",
        update_rule="e = ρ s/(‖s‖ sqrt(1 + ‖s‖²))",
        paper="Jacobsen & Arvanitidis, Monge SAM (arXiv 2502.08448, 2025)", paper_url="https://arxiv.org/abs/2502.08448",
        reference_code="paper equations (spec §6)", status="experimental",
        hparams=sam_hparams(0.05),
        program=ascent_descent(msam_perturb),
        latex=r"e_t = \frac{\rho}{\sqrt{1 + \lVert s_t\rVert^2}}\,\frac{s_t}{\lVert s_t\rVert},\qquad " + SAM_STEP,
        where="Perturbations: ‖e‖ = ρ/√(1 + ‖s‖²) is small while gradients are large, then grows to ρ.",
        gd_limit=plain_gd,
    ),
}


# Methods added after the first release keep their rule and entry in their own module (``sam_viz/optim/<name>.py``,
# each defining ``VARIANT``); they join the registry here, in display order.
NEW_METHODS: tuple[Variant, ...] = (ssam.VARIANT, esam.VARIANT, mbsam.VARIANT, sampa.VARIANT, lets.VARIANT,
                                    mup2.VARIANT, gsam.VARIANT, looksam.VARIANT, wsam.VARIANT)
OPTIMIZERS.update({variant.name: variant for variant in NEW_METHODS})

def make_rule(name: str, base: str = "sgd") -> Rule:
    """The (init, perturb, update) pieces of an ascent–descent or descent optimizer (``Program.phases``).

    Raises:
        ValueError: an unknown optimizer or base, or a program without separable phases.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer: {name!r}")
    if base not in BASES:
        raise ValueError(f"Invalid base: {base!r}; valid: {sorted(BASES)}")
    phases = OPTIMIZERS[name].program.phases
    if phases is None:
        raise ValueError(f"{name}: its step program has no separate ascent and descent phases")
    return phases(base)


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
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise ValueError(f"Invalid {key} for {opt}: {value!r} (expected a whole number in [{spec.low:g}, {spec.high:g}])")
        number = int(value)
        if not spec.low <= number <= spec.high:
            raise ValueError(f"Invalid {key} for {opt}: {value!r} (valid range [{spec.low:g}, {spec.high:g}])")
        return number
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
