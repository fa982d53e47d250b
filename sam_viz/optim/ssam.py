"""SSAM (Mi et al., Make Sharpness-Aware Minimization Stronger: A Sparsified Perturbation Approach, NeurIPS 2022):
SAM whose perturbation touches only the coordinates a binary mask keeps.

The step, after Mi-Peng/Sparse-Sharpness-Aware-Minimization ``solver/sam.py``::

    e = ρ s/(‖s‖ + 1e-12) ⊙ M          # the norm over the whole gradient, so ‖e‖ ≤ ρ
    θ ← base(θ, ∇L_B(θ + e))

M keeps round((1 − sparsity)·N) of the N parameter entries, one global choice over all tensors, and is refreshed
every ``update_every`` steps:

* SSAM-F (``mask="fisher"``): M keeps the entries with the largest empirical Fisher Σ_i (∇ℓ_i)², summed over
  ``num_samples`` single-sample gradients (the first samples of the step's batch: minibatches are reshuffled,
  so these are random training samples), computed before the step's perturbation.
* SSAM-D (``mask="dynamic"``): M starts random; at each refresh, after the step's perturbation, the live entries
  with the smallest |s| die at the rate drop_rate·(1 + cos(π t/T))/2 (T = ``drop_horizon``) and as many dead
  entries grow back at random.

sparsity 0 is SAM (no mask, no Fisher passes). This project's readings, where the code works in epochs and with a
data loader of its own: refreshes every ``update_every`` steps (the code: every ``update_freq`` epochs, at the
epoch's first batch); the first Fisher mask is computed at step 0, before the first perturbation (the code starts
from an all-zero mask, which makes its first epoch plain SGD at twice the cost: unhelpful in a run of a few hundred
steps); the Fisher samples come from the step's batch (the code draws them from the training set); the death-rate
horizon T is a hyperparameter (the code uses the number of epochs, which a step program does not know); the kept
and dropped counts are rounded so that M keeps exactly its share (the code's floors drift by an entry or two); SAM's
1e-12 in the norm (the code adds 1e-7); SSAM-D's random draws come from per-run generators (``draws``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .draws import run_seeds, uniform
from .functional import BASES, State, Tensors, _first, global_norm, sam_perturb
from .oracle import Oracle
from .programs import Program, Report
from .variant import SAM_STEP, HParamSpec, Variant, plain_gd, sam_hparams

_INIT_STREAM, _GROWTH_STREAM = 1, 2  # ``draws`` streams: SSAM-D's initial mask, its regrowth


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(t.shape[0], -1) for t in tensors], dim=1)


def _per_run64(h: object, runs: int, device: torch.device) -> Tensor:
    """A hyperparameter as (R,) float64 (the first group's value under the adapter: the mask is one global choice)."""
    return torch.as_tensor(_first(h), dtype=torch.float64, device=device).expand(runs)


def keep_count(n_entries: int, sparsity: Tensor) -> Tensor:
    """Entries a mask keeps, round((1 − sparsity) N) per run, (R,) int64 (rounded, not floored, so a sparsity stored
    in float32 keeps as many entries as the same Python float)."""
    return torch.round(n_entries * (1 - sparsity)).long()


def top_entries(scores: Tensor, count: Tensor) -> Tensor:
    """Per run, exactly ``count[r]`` entries with the largest scores, (R, N) bool; ties go to the earlier entry."""
    order = scores.sort(dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order).contiguous())
    return ranks < count.unsqueeze(1)


def fisher_scores(oracle: Oracle, n_samples: int, like: Tensor, for_runs: Tensor | None = None) -> list[Tensor]:
    """The empirical Fisher Σ_i (∇ℓ_i)² per parameter entry over the first ``n_samples`` samples of the step's
    batch, one single-sample gradient each (as the reference code's batch-size-1 loader): (R, *shape) per tensor.
    ``for_runs`` ((R,) bool): the runs whose mask needs the scores (the passes count only for them)."""
    scores: list[Tensor] | None = None
    for i in range(n_samples):
        g = oracle.grad(batch=torch.tensor([i], device=like.device), for_runs=for_runs).grads
        if scores is None:
            scores = [gi * gi for gi in g]
        else:
            for score, gi in zip(scores, g):
                score.addcmul_(gi, gi)
    return scores


def death_rate(drop_rate: Tensor, step: int, horizon: int) -> Tensor:
    """SSAM-D's cosine-decayed death rate drop_rate·(1 + cos(π t/T))/2, 0 from t = T on."""
    return drop_rate * (1 + math.cos(math.pi * min(step, horizon) / horizon)) / 2


def ssam_init(params: Tensors, hp: dict) -> State:
    seeds = run_seeds(params)
    runs, device = params[0].shape[0], params[0].device
    n_entries = sum(p[0].numel() for p in params)
    masks = [torch.ones_like(p) for p in params]
    if hp["mask"] == "dynamic":  # a random mask of the stated share
        scores = uniform(seeds, 0, _INIT_STREAM, n_entries)
        _store(masks, top_entries(scores, keep_count(n_entries, _per_run64(hp["sparsity"], runs, device))))
    nan = torch.full((runs,), math.nan, dtype=params[0].dtype, device=device)
    return {"ssam_step": 0, "ssam_seeds": seeds, "ssam_mask": masks, "ssam_overlap": nan,
            **BASES[hp["base"]][0](params, hp)}


def _store(masks: list[Tensor], flat: Tensor) -> None:
    """Write a flat (R, N) mask into the per-tensor masks in place (the adapter keeps them as parameter state)."""
    start = 0
    for mask in masks:
        size = mask[0].numel()
        mask.copy_(flat[:, start:start + size].reshape(mask.shape))
        start += size


def _overlap(old: Tensor, new: Tensor) -> Tensor:
    """Share of the old mask's live entries that the new one keeps, (R,); NaN where the old one kept none."""
    live = old.sum(dim=1).double()
    shared = (old & new).sum(dim=1).double()
    return torch.where(live > 0, shared / live.clamp_min(1), torch.full_like(live, math.nan))


def ssam_step(params: list[Tensor], state: State, hp: dict, oracle: Oracle, names: Sequence[str]) -> Report:
    """One SSAM step (module docstring); ``extra`` holds the mask's density and its overlap with the previous
    step's mask."""
    step = state["ssam_step"]
    state["ssam_step"] = step + 1
    s = oracle.grad().grads
    runs, device, dtype = s[0].shape[0], s[0].device, s[0].dtype
    masks = state["ssam_mask"]
    dense = not isinstance(hp["sparsity"], Tensor) and _first(hp["sparsity"]) == 0  # SAM: no mask to compute
    refresh = step % hp["update_every"] == 0 and not dense
    sparsity = _per_run64(hp["sparsity"], runs, device)
    overlap = state["ssam_overlap"].clone() if hp["mask"] == "dynamic" else torch.ones(runs, dtype=dtype, device=device)
    sparse = sparsity > 0  # a sparsity-0 run among sparse ones keeps a full mask: SAM, at SAM's cost
    if hp["mask"] == "fisher" and refresh and bool(sparse.any()):
        n_samples = min(hp["num_samples"], oracle.step_batch_size())
        scores = _flat(fisher_scores(oracle, n_samples, s[0], for_runs=None if bool(sparse.all()) else sparse))
        old = _flat(masks) > 0.5
        new = top_entries(scores, keep_count(scores.shape[1], sparsity))
        overlap = _overlap(old, new).to(dtype) if step > 0 else torch.full_like(overlap, math.nan)
        _store(masks, new)
    elif dense and step == 0:
        overlap = torch.full_like(overlap, math.nan)
    state["ssam_overlap"].fill_(1.0)

    eps, info = sam_perturb(params, s, state, hp)
    if not dense:
        eps = [e * mask for e, mask in zip(eps, masks)]
        info = {**info, "eps_norm": global_norm(eps)}
    live = _flat(masks) > 0.5
    density = live.to(dtype).mean(dim=1)

    if hp["mask"] == "dynamic" and refresh:  # after the perturbation, as the reference code: it serves the next step
        n_entries = live.shape[1]
        kept = live.sum(dim=1)
        rate = death_rate(_per_run64(hp["drop_rate"], runs, device), step, hp["drop_horizon"])
        deaths = torch.minimum(torch.round(kept * rate).long(), n_entries - kept)
        magnitude = _flat(s).abs().double()
        survivors = top_entries(torch.where(live, magnitude, torch.full_like(magnitude, -1.0)), kept - deaths)
        growth = uniform(state["ssam_seeds"], step, _GROWTH_STREAM, n_entries)
        grown = top_entries(torch.where(live, torch.full_like(growth, -1.0), growth), deaths)
        new = survivors | grown
        state["ssam_overlap"].copy_(_overlap(live, new).to(dtype))
        _store(masks, new)

    probe = oracle.grad(torch._foreach_add(list(params), list(eps)))
    lr = BASES[hp["base"]][1](params, probe.grads, state, hp)["effective_lr"]
    return {**info, "perturbed_grad_norm": global_norm(probe.grads), "effective_lr": lr,
            "perturbed_loss": probe.loss, "perturbation": eps,
            "extra": {"mask_density": density, "mask_overlap": overlap}}


_COUNT = {"kind": "int", "low": 1, "high": 20_000}

VARIANT = Variant(
    name="ssam", label="SSAM",
    description="Sparse SAM: perturb only the entries a binary mask keeps, chosen by the empirical Fisher "
                "(SSAM-F) or grown and pruned during training (SSAM-D).",
    update_rule="e = ρ s/‖s‖ ⊙ M,  M keeps (1 − sparsity)·N entries;  θ ← base_step(θ, ∇L(θ + e))",
    paper="Mi, Shen, Ren, Zhou, Sun, Ji, Tao, Make Sharpness-Aware Minimization Stronger: A Sparsified "
          "Perturbation Approach (NeurIPS 2022)",
    paper_url="https://arxiv.org/abs/2210.05177",
    reference_code="Mi-Peng/Sparse-Sharpness-Aware-Minimization solver/sam.py (SSAMF, SSAMD)", status="stable",
    hparams=sam_hparams(
        0.05,
        mask=HParamSpec("fisher", kind="choice", choices=("fisher", "dynamic"),
                        help="How the mask is chosen: fisher (largest empirical Fisher, SSAM-F) or dynamic "
                             "(random start, drop the smallest |s|, regrow at random: SSAM-D)."),
        sparsity=HParamSpec(0.5, low=0.0, high=1.0, help="Share of the parameter entries left unperturbed (0 gives "
                                                         "SAM; the paper's runs use 0.5)."),
        update_every=HParamSpec(10, **_COUNT, help="Steps between mask refreshes (the first mask: at step 0)."),
        num_samples=HParamSpec(16, kind="int", low=1, high=1024,
                               help="SSAM-F: single-sample gradients in the Fisher score (at most the batch; the "
                                    "paper's CIFAR runs use 16)."),
        drop_rate=HParamSpec(0.5, low=0.0, high=1.0, help="SSAM-D: share of the live entries replaced at a refresh, "
                                                          "decayed by a cosine over drop_horizon steps."),
        drop_horizon=HParamSpec(200, **_COUNT, help="SSAM-D: steps T over which the death rate decays to 0 (the "
                                                    "code's T is the run's epochs; set it to the run's steps)."),
    ),
    program=Program(ssam_init, ssam_step, two_pass=True),
    latex=r"e_t = \rho\,\frac{s_t}{\lVert s_t\rVert} \odot M_t,\; "
          r"M_t = \mathrm{top}_{(1-\mathrm{sparsity})N}\Big(\textstyle\sum_i (\nabla \ell_i)^2\Big)\ "
          r"\text{(SSAM-F)},\qquad " + SAM_STEP,
    where="Perturbations: the mask's density (1 − sparsity) and its overlap with the previous step's mask (1 "
          "between refreshes); ‖e‖ falls below ρ, and gradient evaluations jump at SSAM-F's refreshes (its "
          "single-sample Fisher passes). This project's readings (see the module docstring): refreshes in steps, "
          "the first Fisher mask at step 0, Fisher samples from the step's batch, the drop_horizon "
          "hyperparameter, exact rounded shares, SAM's 1e-12 in the norm.",
    series={"mask_density": "SSAM: share of parameter entries the mask perturbs",
            "mask_overlap": "SSAM: share of the previous step's mask kept"},
    batch_closure=True,
    gd_limit=plain_gd,
)
