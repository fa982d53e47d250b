"""mSAM, micro-batch SAM (m-sharpness: Foret et al. 2021; Behdin et al. 2023): every micro-batch takes its own
SAM perturbation, and the descent averages the gradients they give.

The canonical form (Keras ``SharpnessAwareMinimization(num_batch_splits=m)``)::

    split the step's batch into m equal shards B_1 … B_m (index tensors into the batch)
    for each shard i:  s_i = ∇L_{B_i}(θ),  e_i = ρ s_i/(‖s_i‖ + 1e-12),  h_i = ∇L_{B_i}(θ + e_i)
    θ ← base(θ, mean_i h_i)                        # Keras sums the h_i; the mean keeps the batch gradient's scale

m = 1 is SAM (the step's own gradient, no index tensors). A batch of B samples gives shards of ⌊B/m⌋ samples and
the last B mod m samples sit the step out, as the training loop drops a last incomplete minibatch (minibatches
are reshuffled every epoch, so a different remainder each time; a full batch always leaves out its last B mod m
samples: pick m dividing it). m > B is an error. Cost: 2m backward passes over B samples in all, SAM's FLOPs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .functional import BASES, State, Tensors, global_norm, sam_perturb
from .oracle import Oracle
from .programs import Program, Report
from .variant import HParamSpec, Variant, plain_gd, sam_hparams


def mbsam_init(params: Tensors, hp: dict) -> State:
    return BASES[hp["base"]][0](params, hp)


def shards(batch_size: int, m: int, device: torch.device) -> list[Tensor]:
    """The m micro-batches as index tensors into the step's batch: m equal shards of ⌊B/m⌋, the remainder left out.

    Raises:
        ValueError: more micro-batches than samples.
    """
    if m > batch_size:
        raise ValueError(f"Invalid m for mbsam: {m} micro-batches need at least {m} samples per step, "
                         f"the step's batch has {batch_size}")
    size = batch_size // m
    return list(torch.arange(m * size, device=device).reshape(m, size))


def mean_pairwise_cosine(perturbations: Sequence[Sequence[Tensor]]) -> Tensor:
    """The mean over pairs i < j of cos(e_i, e_j) per run, (R,); NaN for one perturbation (no pair)."""
    flat = torch.stack([torch.cat([t.reshape(t.shape[0], -1) for t in e], dim=1) for e in perturbations], dim=1)
    m = flat.shape[1]
    if m < 2:
        return torch.full((flat.shape[0],), math.nan, dtype=flat.dtype, device=flat.device)
    unit = flat / flat.norm(dim=2, keepdim=True).clamp_min(1e-30)
    gram = unit @ unit.transpose(1, 2)  # (R, m, m)
    off_diagonal = gram.sum(dim=(1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(dim=1)
    return off_diagonal / (m * (m - 1))


def mbsam_step(params: list[Tensor], state: State, hp: dict, oracle: Oracle, names: Sequence[str]) -> Report:
    """One mSAM step (module docstring). The reported perturbation is the mean of the e_i (its norm falls below ρ
    as the micro-batches disagree); ``extra`` holds their mean pairwise cosine."""
    m = hp["m"]
    if m == 1:  # SAM itself, on the step's own (shared) gradient
        batches: list = ["step"]
    else:
        batches = shards(oracle.step_batch_size(), m, params[0].device)
    ascents, perturbations, descents, losses, infos = [], [], [], [], []
    for batch in batches:
        s_i = oracle.grad(batch=batch).grads
        e_i, info_i = sam_perturb(params, s_i, state, hp)
        probe = oracle.grad(torch._foreach_add(list(params), list(e_i)), batch=batch)
        ascents.append(s_i)
        perturbations.append(e_i)
        descents.append(probe.grads)
        losses.append(probe.loss)
        infos.append(info_i)
    cosine = mean_pairwise_cosine(perturbations)
    if m == 1:
        info, eps, g, perturbed_loss = infos[0], perturbations[0], descents[0], losses[0]
    else:
        s = [torch.stack(parts).mean(dim=0) for parts in zip(*ascents)]  # the shards' batch gradient
        eps = [torch.stack(parts).mean(dim=0) for parts in zip(*perturbations)]
        g = [torch.stack(parts).mean(dim=0) for parts in zip(*descents)]
        perturbed_loss = torch.stack(losses).mean(dim=0)
        info = {"grad_norm": global_norm(s), "eps_norm": global_norm(eps), "effective_rho": infos[0]["effective_rho"]}
    lr = BASES[hp["base"]][1](params, g, state, hp)["effective_lr"]
    return {**info, "perturbed_grad_norm": global_norm(g), "effective_lr": lr, "perturbed_loss": perturbed_loss,
            "perturbation": eps, "extra": {"microbatch_cosine": cosine}}

VARIANT = Variant(
    name="mbsam", label="mSAM (micro-batch)",
    description="m-sharpness: split the batch into m micro-batches, perturb each with its own gradient and "
                "average the gradients at the m perturbed points.",
    update_rule="e_i = ρ s_i/‖s_i‖ on micro-batch i;  θ ← base_step(θ, mean_i ∇L_i(θ + e_i))",
    paper="Foret et al., SAM (ICLR 2021) §4 m-sharpness; Behdin, Song, Gupta, Keerthi, Acharya, Ocejo, Mazumder, "
          "On Statistical Properties of Sharpness-Aware Minimization: mSAM (arXiv 2302.09693, 2023)",
    paper_url="https://arxiv.org/abs/2302.09693",
    reference_code="keras SharpnessAwareMinimization(num_batch_splits=m)", status="stable",
    hparams=sam_hparams(0.05, m=HParamSpec(4, kind="int", low=1, high=64,
                                           help="Micro-batches m the step's batch is split into, each with its own "
                                                "perturbation (1 gives SAM; a remainder of B mod m sits out).")),
    program=Program(mbsam_init, mbsam_step, two_pass=True),
    latex=r"s_{t,i} = \nabla L_{B_i}(\theta_t),\; e_{t,i} = \rho\,\frac{s_{t,i}}{\lVert s_{t,i}\rVert},\qquad "
          r"\theta_{t+1} = \mathrm{base}\Big(\theta_t,\ \frac1m \sum_{i=1}^m \nabla L_{B_i}(\theta_t + e_{t,i})\Big)",
    where="Perturbations: the micro-batch perturbations' mean pairwise cosine (1: they agree, as in SAM; lower: "
          "each shard probes its own direction) and ‖mean e_i‖ below ρ. Equal shards of ⌊B/m⌋ samples, the last "
          "B mod m of each batch left out (this project's choice; the mean of the shard gradients follows the "
          "paper's averaged form, Keras sums them).",
    series={"microbatch_cosine": "mSAM: mean pairwise cosine of the micro-batch perturbations e_i"},
    batch_closure=True,
    gd_limit=plain_gd,
)
