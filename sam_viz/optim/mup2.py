"""μP² (Haas, Xu, Cevher, Vankadara, NeurIPS 2024): SAM on a μP network with layerwise perturbation scaling, so
that every layer stays effectively perturbed and the best (η, ρ) stays in place as the width grows.

For an MLP of hidden width n with base width n₀ (r = n/n₀; at n = n₀ everything below is plain SAM and SGD), after
spec §6b (``moritzhaas/large-lr-width-scaling``, ``--perturb mpp`` with independent gradient norms)::

    layer roles:          input      hidden     output
    μP SGD learning rate  η·r        η          η/r
    radius ρ_l            ρ·r        ρ          ρ/r        (perturb_mode="mpp", μP²)
    gradient-norm scale   r^½        1          r^−½

    N   = sqrt(Σ_l (scale_l ‖g_l‖)²)           # one global normaliser over the scaled layer gradients
    e_l = ρ_l g_l / (N + 1e−12)
    θ  ← SGD(θ, ∇L_B(θ + e)) with each layer's μP learning rate (momentum, weight decay as torch's SGD)

``perturb_mode="global"`` perturbs every layer with ρ·r^−½ under the plain norm (μP-global); ``"naive"`` is plain
SAM's e under μP's learning rates (μP-naive). The model itself must be μP-initialised (``Config.parameterization
= "mup"``; ``models.mup_init_std``).

A *layer* is a weight matrix and its bias (``linear_layers``), in the order of the weights: the first is the input
layer, the last the output layer. Biases take their layer's factors,
this project's reading (the code groups parameters by layer). The mapping of the code's "mpp" mode to μP² is the
spec's [INFERRED] reading of its names and the paper's Fig. 1 caption.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..models import DEFAULT_BASE_WIDTH, MAX_WIDTH, layer_roles
from .functional import NORM_EPS, PerTensor, State, Tensors, _full, at, global_norm, per_run, sgd_init, sgd_update
from .oracle import Oracle
from .programs import Program, Report
from .variant import MOMENTUM, HParamSpec, Variant, lr_spec, rho_spec

MODES = ("mpp", "global", "naive")


def linear_layers(params: Tensors) -> list[list[int]]:
    """Each layer's tensors as indices, ``[weight, bias]``: the layers in the order of their weight matrices (two or
    more dimensions beside the run axis); the k-th vector of length m is the bias of the k-th weight with m output
    features that has none yet, so both an MLP's ``parameters()`` order and weights-then-biases parameter groups
    pair up right.

    Raises:
        ValueError: no weight matrix, or a vector no weight matrix takes.
    """
    weights = [i for i, p in enumerate(params) if p.dim() >= 3]
    if not weights:
        raise ValueError("mup2: no weight matrix among the parameters (μP² needs an MLP's linear layers)")
    layers = {i: [i] for i in weights}
    for i, p in enumerate(params):
        if p.dim() >= 3:
            continue
        owner = next((w for w in weights if params[w].shape[1] == p.shape[1] and len(layers[w]) == 1), None)
        if owner is None:
            raise ValueError(f"mup2: parameter {i} (a vector of {p.shape[1]}) is no weight matrix's bias")
        layers[owner].append(i)
    return [layers[w] for w in weights]


def width_ratio(params: Tensors, layers: list[list[int]], base_width: int) -> float:
    """r = n/n₀, with n the hidden width: the input layer's output features."""
    return params[layers[0][0]].shape[1] / base_width


def layer_factors(role: str, r: float, mode: str) -> tuple[float, float, float]:
    """(learning-rate factor, radius factor, gradient-norm scale) of a layer with this role (module docstring)."""
    lr = {"input": r, "hidden": 1.0, "output": 1.0 / r}[role]
    if mode == "mpp":
        return lr, {"input": r, "hidden": 1.0, "output": 1.0 / r}[role], {"input": math.sqrt(r), "hidden": 1.0,
                                                                         "output": 1.0 / math.sqrt(r)}[role]
    if mode == "global":
        return lr, 1.0 / math.sqrt(r), 1.0
    return lr, 1.0, 1.0


def layer_labels(n_layers: int) -> tuple[str, ...]:
    """Column labels of the per-layer series: input, hidden 1 …, output."""
    roles = layer_roles(n_layers)
    return tuple("hidden " + str(k) if role == "hidden" else role for k, role in enumerate(roles))


def _layer_norm(tensors: Tensors, layer: list[int]) -> Tensor:
    return global_norm([tensors[i] for i in layer])


# per step and matrix, warm-started from the step before (the first step starts cold: more)
POWER_ITERATIONS, FIRST_POWER_ITERATIONS = 3, 30


def _start_vectors(params: Tensors) -> list[Tensor]:
    """Power-iteration vectors: 1/√k for each weight matrix (k input features), an unused (R, 1) for the rest."""
    return [torch.full((p.shape[0], p.shape[2] if p.dim() >= 3 else 1), 1.0 / math.sqrt(p.shape[2] if p.dim() >= 3
            else 1), dtype=p.dtype, device=p.device) for p in params]


def spectral_norm(matrix: Tensor, vector: Tensor, iterations: int = POWER_ITERATIONS) -> Tensor:
    """σ_max of each run's matrix (R, m, k) by power iteration on MᵀM from ``vector`` (R, k), which is updated in
    place to the new estimate of the top right singular vector (so the next step starts close). A lower bound that
    converges geometrically; ``tests/test_mup2.py`` checks it against ``torch.linalg.matrix_norm(ord=2)``."""
    m = matrix.reshape(matrix.shape[0], matrix.shape[1], -1)
    v = vector
    for _ in range(iterations):
        v = torch.einsum("rmk,rm->rk", m, torch.einsum("rmk,rk->rm", m, v))
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)
    vector.copy_(v)
    return torch.einsum("rmk,rk->rm", m, v).norm(dim=1)


def mup2_init(params: Tensors, hp: dict) -> State:
    """SGD's state and the power-iteration vectors of the per-layer diagnostic (θ_l's and e_l's top singular
    vectors)."""
    return {**sgd_init(params, hp), "sv_theta": _start_vectors(params), "sv_eps": _start_vectors(params)}


def mup2_perturbation(params: Tensors, grads: Tensors, hp: dict) -> tuple[list[Tensor], list[float], list[list[int]]]:
    """e (one tensor per parameter), each tensor's μP learning-rate factor and the layers (module docstring)."""
    layers = linear_layers(params)
    r = width_ratio(params, layers, int(hp["base_width"]))
    factors = [layer_factors(role, r, hp["perturb_mode"]) for role in layer_roles(len(layers))]
    norm = torch.sqrt(sum((scale * _layer_norm(grads, layer)) ** 2 for layer, (_, _, scale) in zip(layers, factors)))
    eps: list[Tensor] = [None] * len(params)  # type: ignore[list-item]
    lr_factor = [1.0] * len(params)
    for layer, (lr_f, rho_f, _) in zip(layers, factors):
        for i in layer:
            scale = per_run(at(hp["rho"], i), norm) * rho_f / (norm + NORM_EPS)
            eps[i] = grads[i] * per_run(scale, grads[i])
            lr_factor[i] = lr_f
    return eps, lr_factor, layers


def mup2_step(params: list[Tensor], state: State, hp: dict, oracle: Oracle, names: Sequence[str]) -> Report:
    """One μP² step (module docstring); ``extra["layer_eps_ratio"]`` holds ‖e_l‖₂/‖W_l‖₂ per layer, (R, L): the
    spectral norms of the weight matrix's perturbation and of the weight (biases left out)."""
    s = oracle.grad().grads
    eps, lr_factor, layers = mup2_perturbation(params, s, hp)
    probe = oracle.grad(torch._foreach_add(list(params), eps))
    # the effective perturbation of a layer: the spectral norm of its weight's e relative to the weight's own, which
    # μP keeps Θ(1) (the Frobenius ratio of a hidden layer falls as n^−½ even when e moves its outputs as much)
    k = FIRST_POWER_ITERATIONS if state["step"] == 0 else POWER_ITERATIONS
    ratio = torch.stack([spectral_norm(eps[layer[0]], state["sv_eps"][layer[0]], k)
                         / spectral_norm(params[layer[0]], state["sv_theta"][layer[0]], k).clamp_min(1e-30)
                         for layer in layers], dim=1)
    per_layer_lr = PerTensor(at(hp["lr"], i) * f for i, f in enumerate(lr_factor))
    sgd_update(params, probe.grads, state, {**hp, "lr": per_layer_lr})
    return {"grad_norm": global_norm(s), "eps_norm": global_norm(eps), "effective_rho": _full(params, hp["rho"]),
            "perturbed_grad_norm": global_norm(probe.grads), "effective_lr": _full(params, hp["lr"]),
            "perturbed_loss": probe.loss, "perturbation": eps,
            "extra": {"layer_eps_ratio": ratio}, "extra_labels": {"layer_eps_ratio": layer_labels(len(layers))}}


VARIANT = Variant(
    name="mup2", label="μP²",
    description="SAM on a μP network with layerwise perturbation radii (input ρ·r, hidden ρ, output ρ/r, r = n/n₀) "
                "and μP's per-layer learning rates, so every layer stays perturbed as the width grows and (η, ρ) "
                "transfer across widths.",
    update_rule="e_l = ρ_l g_l / sqrt(Σ_l (c_l‖g_l‖)²), ρ_l = ρ·(r, 1, 1/r), c_l = (√r, 1, 1/√r);  "
                "θ_l ← SGD(θ_l, ∇L(θ + e)_l) with lr η·(r, 1, 1/r)",
    paper="Haas, Xu, Cevher, Vankadara, μP²: Effective Sharpness Aware Minimization Requires Layerwise Perturbation "
          "Scaling (NeurIPS 2024)",
    paper_url="https://arxiv.org/abs/2411.00075",
    reference_code="moritzhaas/large-lr-width-scaling mlp_experiments/utils (--perturb mpp|global|naive; spec §6b)",
    status="experimental",
    hparams={
        "lr": lr_spec(0.1),
        "rho": rho_spec(0.05),
        "perturb_mode": HParamSpec("mpp", kind="choice", choices=MODES,
                                   help="mpp: μP²'s layerwise radii; global: ρ·r^−½ in every layer (μP-global); "
                                        "naive: plain SAM's perturbation (μP-naive). μP's learning rates in all."),
        "base_width": HParamSpec(DEFAULT_BASE_WIDTH, kind="int", low=1, high=MAX_WIDTH,
                                 help="n₀: the width at which μP² is plain SAM (r = n/n₀). Under Config it is the "
                                      "model's base_width."),
        "momentum": MOMENTUM,
        "weight_decay": HParamSpec(0.0, low=0.0, high=1.0, help="Weight decay, added to the gradient (torch SGD)."),
    },
    program=Program(mup2_init, mup2_step, two_pass=True),
    latex=r"e_l = \frac{\rho_l\, g_l}{\sqrt{\sum_k (c_k \lVert g_k\rVert)^2}},\; \rho_l = \rho\,(r, 1, r^{-1}),\;"
          r" c_l = (r^{1/2}, 1, r^{-1/2}),\qquad \theta_{l} \leftarrow \mathrm{SGD}\big(\theta_l,\ \eta\,(r, 1, r^{-1})"
          r",\ \nabla_l L_B(\theta_t + e_t)\big)",
    where="Perturbations: ‖e_l‖₂/‖W_l‖₂ per layer (input, hidden, output; spectral norms of the weight matrices, by "
          "warm-started power iteration), one line each: μP² keeps every layer's near constant as the width grows, "
          "plain SAM's input layer fades. Needs a μP-initialised MLP "
          "(parameterization=mup); at the base width it is plain SAM. This project's reading: the mapping of the "
          "reference code's 'mpp' mode to μP², biases with their layer's factors, r = width/base width.",
    series={"layer_eps_ratio": "μP²: ‖e_l‖₂ / ‖W_l‖₂ per layer (spectral norms)"},
    parameterization="mup",
)
