"""ESAM (Du et al., Efficient Sharpness-Aware Minimization, ICLR 2022): SAM that perturbs a random share of the
parameter tensors (SWP, β) and takes the second gradient on the sharpest samples only (SDS, γ).

The step, after dydjw9/Efficient_SAM ``utils/Esam.py``::

    s = ∇L_B(θ);  K = tensors kept for this ascent (each with probability β, drawn after the previous step)
    e = ρ s_K / (β (‖s_K‖ + 1e-12))                      # s_K: s with the other tensors zeroed; ‖·‖ over K
    Δ_i = ℓ_i(θ + e) − ℓ_i(θ)                           # per-sample sharpness, two forward passes
    S = {i : Δ_i > the ⌊γB⌋-th largest Δ}               # every sample when γ ≥ 0.99
    θ ← base(θ, ∇L_S(θ + e))                             # the descent moves every tensor

β = γ = 1 is SAM. Departures from the official code, all this project's choices: the stability constant is SAM's
1e-12 (the code adds 1e-7), so β = γ = 1 equals ``sam`` exactly; when S is empty (ties, as every Δ_i = 0 at ρ = 0,
or ⌊γB⌋ ≤ 1, where the code fails) the step keeps every sample; the tensor draws come from per-run generators
(``draws``), and the first step keeps every tensor as the code does (its first draw follows the first step).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .draws import run_seeds, uniform
from .functional import BASES, PerTensor, State, Tensors, _first, at, global_norm, per_run, sam_perturb
from .oracle import Oracle
from .programs import Program, Report
from .variant import HParamSpec, Variant, plain_gd, sam_hparams

ALL_SAMPLES = 0.99  # the official code keeps every sample from this γ up
_SWP_STREAM = 1  # ``draws`` stream of the tensor sampling


def esam_init(params: Tensors, hp: dict) -> State:
    return {"esam_step": 0, "esam_seeds": run_seeds(params), **BASES[hp["base"]][0](params, hp)}


def kept_tensors(seeds: Tensor, step: int, n_tensors: int, beta: object) -> Tensor:
    """SWP's draw: which tensors take part in step ``step``'s ascent, ``(R, n_tensors)`` bool; each is kept with
    probability β (its group's β under the adapter). Step 0 keeps all (the official code draws after a step)."""
    if step == 0:
        return torch.ones(seeds.shape[0], n_tensors, dtype=torch.bool, device=seeds.device)
    u = uniform(seeds, step, _SWP_STREAM, n_tensors)
    beta_cols = [per_run(at(beta, i), u[:, i]) for i in range(n_tensors)]
    return torch.stack([u[:, i] <= b for i, b in enumerate(beta_cols)], dim=1)


def sharpest_samples(sharpness: Tensor, gamma: object) -> Tensor:
    """SDS's selection, ``(R, B)`` bool: per run, the samples whose sharpness is strictly above the ⌊γB⌋-th largest
    (every sample when γ ≥ 0.99, or when that leaves none).

    ⌊γB⌋ is taken in float64 after rounding γB to 1e-3, so a γ stored in float32 (stacked runs) counts as the same
    number of samples as the Python float of a single run.
    """
    runs, batch = sharpness.shape
    gamma = torch.as_tensor(gamma, dtype=torch.float64, device=sharpness.device).expand(runs)
    count = torch.floor(torch.round(gamma * batch * 1000) / 1000).long()
    ordered = sharpness.sort(dim=1, descending=True).values
    cutoff = ordered.gather(1, (count - 1).clamp(0, batch - 1).unsqueeze(1))
    selected = (sharpness > cutoff) & (count > 0).unsqueeze(1)
    every = (gamma >= ALL_SAMPLES) | ~selected.any(dim=1)
    return selected | every.unsqueeze(1)


def _radius(rho: object, beta: object, n_tensors: int) -> object:
    """ρ/β, per tensor when either differs by parameter group."""
    if isinstance(rho, PerTensor) or isinstance(beta, PerTensor):
        return PerTensor(at(rho, i) / at(beta, i) for i in range(n_tensors))
    return rho / beta


def esam_step(params: list[Tensor], state: State, hp: dict, oracle: Oracle, names: Sequence[str]) -> Report:
    """One ESAM step (module docstring); ``extra`` holds the shares of tensors perturbed and samples kept."""
    step = state["esam_step"]
    state["esam_step"] = step + 1
    s = oracle.grad().grads
    keep = kept_tensors(state["esam_seeds"], step, len(s), hp["beta"])
    s_kept = [g * per_run(keep[:, i].to(g.dtype), g) for i, g in enumerate(s)]  # × 1 is exact: β = 1 is SAM
    radius = _radius(hp["rho"], hp["beta"], len(s))
    eps, info = sam_perturb(params, s_kept, state, {"rho": radius})
    probe_point = torch._foreach_add(list(params), list(eps))
    gamma = _first(hp["gamma"])
    runs = s[0].shape[0]
    if not isinstance(gamma, Tensor) and gamma >= ALL_SAMPLES:  # every sample: SAM's second pass, no forwards
        probe = oracle.grad(probe_point)
        perturbed_loss = probe.loss
        kept_share = torch.ones(runs, dtype=s[0].dtype, device=s[0].device)
    else:
        before = oracle.loss(per_sample=True).per_sample
        after = oracle.loss(probe_point, per_sample=True).per_sample
        selected = sharpest_samples(after - before, gamma)
        probe = oracle.grad(probe_point, mask=selected)
        perturbed_loss = after.mean(dim=1)  # the whole batch's loss at θ + e, comparable with other methods
        kept_share = selected.to(s[0].dtype).mean(dim=1)
    lr = BASES[hp["base"]][1](params, probe.grads, state, hp)["effective_lr"]
    extra = {"tensors_perturbed_share": keep.to(s[0].dtype).mean(dim=1), "samples_kept_share": kept_share}
    return {**info, "grad_norm": global_norm(s), "perturbed_grad_norm": global_norm(probe.grads),
            "effective_lr": lr, "perturbed_loss": perturbed_loss, "perturbation": eps, "extra": extra}


VARIANT = Variant(
    name="esam", label="ESAM",
    description="Efficient SAM: perturb a random share β of the tensors (radius ρ/β) and take the second gradient "
                "on the sharpest samples only (a share γ).",
    update_rule="e = ρ s_K/(β‖s_K‖), K ~ Bernoulli(β) per tensor;  θ ← base_step(θ, ∇L_S(θ + e)), "
                "S = {i: ℓ_i(θ+e) − ℓ_i(θ) > ⌊γB⌋-th largest}",
    paper="Du, Yan, Feng, Zhou, Zhen, Goh, Tan, Efficient Sharpness-aware Minimization for Improved Training of "
          "Neural Networks (ICLR 2022)",
    paper_url="https://arxiv.org/abs/2110.03141", reference_code="dydjw9/Efficient_SAM utils/Esam.py",
    status="stable",
    hparams=sam_hparams(
        0.05,
        beta=HParamSpec(0.5, low=0.01, high=1.0, help="β (SWP): each parameter tensor joins the ascent with "
                                                      "probability β; the radius is ρ/β (1 perturbs every tensor)."),
        gamma=HParamSpec(0.5, low=0.0, high=1.0, help="γ (SDS): the second gradient uses the samples sharper than "
                                                      "the ⌊γB⌋-th sharpest (0.99 or more: every sample)."),
    ),
    program=Program(esam_init, esam_step, two_pass=True),
    latex=r"K_t \sim \mathrm{Bernoulli}(\beta)\ \text{per tensor},\; e_t = \frac{\rho}{\beta}\,"
          r"\frac{s_{t,K}}{\lVert s_{t,K}\rVert},\; S_t = \{i : \ell_i(\theta_t + e_t) - \ell_i(\theta_t) > "
          r"c_{\lfloor\gamma B\rfloor}\},\qquad \theta_{t+1} = \mathrm{base}\big(\theta_t,\ \nabla L_{S_t}"
          r"(\theta_t + e_t)\big)",
    where="Perturbations: the shares of tensors perturbed and of samples kept per step; gradient evaluations per "
          "step fall below SAM's 2 as γ drops. This project's choices (not the paper's): SAM's 1e-12 in the norm "
          "(the code adds 1e-7), the whole batch when no sample is strictly above the cut-off (ρ = 0, ties, "
          "⌊γB⌋ ≤ 1), per-run seeded tensor draws; the first step perturbs every tensor, as the code does.",
    series={"tensors_perturbed_share": "ESAM: share of parameter tensors perturbed (SWP)",
            "samples_kept_share": "ESAM: share of samples in the second gradient (SDS)"},
    batch_closure=True,
    gd_limit=plain_gd,
)
