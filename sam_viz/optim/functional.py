"""Functional cores of every optimizer: pure update rules over lists of tensors with a leading "runs" dimension.

Every tensor a rule sees has shape ``(R, *param_shape)``: R independent runs (R = 1 for an ordinary optimizer,
R = cells of a ρ × lr grid for a batched sweep). Hyperparameters are Python numbers or tensors of shape ``(R,)``,
or a ``PerTensor`` tuple with one such value per parameter tensor (the adapter's parameter groups); global norms
are taken per run over all parameter tensors, whatever their values. Rules change parameters and state in place and
never allocate state after ``init``, so the same code serves the ``torch.optim`` adapter and batched sweeps.

A SAM-type method is ``perturb`` (build e_t from the ascent gradient s_t at θ_t) and then ``update`` (move θ_t with
the gradient g_t taken at θ_t + e_t); plain SGD/Adam have no ``perturb``. ``programs`` assembles these pieces into
step programs over a gradient oracle. Shared pieces are written once: ``global_norm``, ``per_run``, and the base
updates ``sgd_update`` / ``adam_update``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

Tensors = Sequence[Tensor]
HParam = float | Tensor  # a number, or one value per run with shape (R,) (or a PerTensor of these)
State = dict[str, Any]
Info = dict[str, Tensor]  # per-run diagnostics, each of shape (R,)

NORM_EPS = 1e-12  # davda54/sam and pytorch-optimizer add this to ‖s‖ before dividing


# --------------------------------------------------------------------------------------------------- helpers


class PerTensor(tuple):
    """A hyperparameter with one value (number or per-run tensor) per parameter tensor, aligned with the lists a
    rule sees: how ``torch.optim`` parameter groups reach a rule. Rules read entry i with ``at(h, i)``; reductions
    over all tensors (global norms, LightSAM-I's scalar accumulators) stay global, and reports use entry 0."""


def at(h: Any, i: int) -> Any:
    """The value of hyperparameter ``h`` for tensor ``i`` (``h`` itself unless it is a ``PerTensor``)."""
    return h[i] if isinstance(h, PerTensor) else h


def _first(h: Any) -> Any:
    return at(h, 0)


def _map(h: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` applied to a hyperparameter, entry by entry for a ``PerTensor``."""
    return PerTensor(fn(v) for v in h) if isinstance(h, PerTensor) else fn(h)



def per_run(h: HParam, like: Tensor) -> HParam:
    """Reshape a per-run hyperparameter ``(R,)`` so it broadcasts against ``like`` ``(R, ...)``; numbers pass."""
    if isinstance(h, Tensor) and h.dim() > 0:
        return h.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))
    return h


def sq_norm(tensors: Tensors) -> Tensor:
    """Squared global L2 norm per run: Σ over all tensors and coordinates, shape (R,)."""
    if tensors[0].shape[0] == 1:  # one run (the torch.optim adapter): one fused kernel over all tensors
        return torch.stack(torch._foreach_norm(list(tensors))).square().sum().reshape(1)
    return sum(t.reshape(t.shape[0], -1).pow(2).sum(1) for t in tensors)


def global_norm(tensors: Tensors) -> Tensor:
    """Global L2 norm per run over all tensors, shape (R,)."""
    return sq_norm(tensors).sqrt()


def _median_per_run(tensors: Tensors) -> Tensor:
    """Median over all coordinates per run: a robust summary of a per-coordinate quantity, shape (R,)."""
    flat = torch.cat([t.reshape(t.shape[0], -1) for t in tensors], dim=1)
    return flat.median(dim=1).values


def _median_rate(x: HParam, accumulators: Tensors) -> Tensor:
    """Median over coordinates of x/sqrt(a): the effective radius or learning rate of a per-coordinate method."""
    return _median_per_run([per_run(at(x, i), a) / a.sqrt() for i, a in enumerate(accumulators)])


def _ema_moments(m: Tensor, v: Tensor, g: Tensor, beta1: HParam, beta2: HParam) -> None:
    """Adam's moments in place: m = β1 m + (1−β1) g, v = β2 v + (1−β2) g²."""
    b1, b2 = per_run(beta1, g), per_run(beta2, g)
    m.mul_(b1).add_((1 - b1) * g)
    v.mul_(b2).add_((1 - b2) * g * g)


def _full(tensors: Tensors, value: HParam) -> Tensor:
    """A (R,) tensor holding ``value`` (number or per-run tensor) in the parameters' dtype and device."""
    ref, value = tensors[0], _first(value)
    if isinstance(value, Tensor):
        return value.to(device=ref.device, dtype=ref.dtype).expand(ref.shape[0]).clone()
    return torch.full((ref.shape[0],), float(value), device=ref.device, dtype=ref.dtype)


def _zeros_like(params: Tensors) -> list[Tensor]:
    return [torch.zeros_like(p) for p in params]


def _filled_like(params: Tensors, value: HParam) -> list[Tensor]:
    return [torch.full_like(p, at(value, i)) for i, p in enumerate(params)]


# --------------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """The two phases of an ascent–descent optimizer as pure functions (``programs.Program.phases``; the step
    program itself is what the engine and the adapter's ``step`` run).

    Attributes:
        init: ``init(params, hp) -> state``; allocates every state tensor once.
        perturb: ``perturb(params, grads, state, hp) -> (eps, info)`` or None for one-pass methods. ``grads`` is the
            ascent gradient s_t at θ_t; ``eps`` has the shapes of ``params``; ``info`` holds ``grad_norm``,
            ``eps_norm`` and ``effective_rho`` per run.
        update: ``update(params, grads, state, hp) -> info`` moves θ_t in place with ``grads`` (g_t, taken at
            θ_t + e_t for SAM types, s_t otherwise); ``info`` holds ``effective_lr`` per run.
        takes_names: whether ``perturb`` needs parameter names (ASAM scales only weight tensors).
    """

    init: Callable[..., State]
    perturb: Callable[..., tuple[list[Tensor], Info]] | None
    update: Callable[..., Info]
    takes_names: bool = False


# ---- base updates -------------------------------------------------------------------------------------------


def sgd_init(params: Tensors, hp: dict) -> State:
    return {"step": 0, "momentum_buffer": _zeros_like(params)}


def sgd_update(params: Tensors, grads: Tensors, state: State, hp: dict) -> Info:
    """torch.optim.SGD (dampening 0): d = g + wd·θ; b = μ·b + d (b = d at the first step); θ -= lr·(d + μ·b if
    nesterov else b). Matches torch to rounding so SAM's oracle (pytorch-optimizer over torch SGD) holds."""
    state["step"] += 1
    first = state["step"] == 1
    lr, wd, mom = hp["lr"], hp.get("weight_decay", 0.0), hp.get("momentum", 0.0)
    nesterov = hp.get("nesterov", False)
    if not any(isinstance(h, (Tensor, PerTensor)) for h in (lr, wd, mom, nesterov)):  # the common case, checked first
        _sgd_foreach(list(params), list(grads), state["momentum_buffer"], lr, wd, mom, nesterov, first)
        return {"effective_lr": _full(params, lr)}
    numbers = not any(isinstance(at(h, i), Tensor) for h in (lr, wd, mom) for i in range(len(params)))
    for i, (p, g, buf) in enumerate(zip(params, grads, state["momentum_buffer"])):
        lr_i, wd_i, mom_i, nesterov_i = at(lr, i), at(wd, i), at(mom, i), at(nesterov, i)
        if numbers:  # per-group numbers: the same kernels as the fused path, one tensor at a time
            _sgd_foreach([p], [g], [buf], lr_i, wd_i, mom_i, nesterov_i, first)
            continue
        d = g + per_run(wd_i, p) * p if _nonzero(wd_i) else g
        if _nonzero(mom_i):
            if first:
                buf.copy_(d)
            else:
                buf.mul_(per_run(mom_i, p)).add_(d)
            d = d + per_run(mom_i, p) * buf if nesterov_i else buf
        p.sub_(per_run(lr_i, p) * d)
    return {"effective_lr": _full(params, lr)}


def _sgd_foreach(params: list[Tensor], grads: list[Tensor], bufs: list[Tensor], lr: float, wd: float, mom: float,
                 nesterov: bool, first: bool) -> None:
    """The same SGD step with numbers for hyperparameters, in fused multi-tensor kernels (the common case: one run
    or one shared value), so the step costs no more Python than torch.optim.SGD's."""
    d = torch._foreach_add(grads, params, alpha=wd) if wd != 0 else grads
    if mom != 0:
        if first:
            torch._foreach_copy_(bufs, d)
        else:
            torch._foreach_mul_(bufs, mom)
            torch._foreach_add_(bufs, d)
        d = torch._foreach_add(d, bufs, alpha=mom) if nesterov else bufs
    torch._foreach_add_(params, d, alpha=-lr)


def adam_init(params: Tensors, hp: dict) -> State:
    return {"step": 0, "exp_avg": _zeros_like(params), "exp_avg_sq": _zeros_like(params)}


def adam_update(params: Tensors, grads: Tensors, state: State, hp: dict, *, decoupled: bool = False) -> Info:
    """torch.optim.Adam / AdamW with bias correction: m, v EMAs; θ -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps).
    Weight decay is added to g (Adam) or applied as θ *= 1 - lr·wd (AdamW, ``decoupled``)."""
    state["step"] += 1
    t = state["step"]
    lr, wd, eps, betas = hp["lr"], hp.get("weight_decay", 0.0), hp.get("eps", 1e-8), hp.get("betas", (0.9, 0.999))
    if decoupled:
        _decoupled_decay(params, hp)
    for i, (p, g, m, v) in enumerate(zip(params, grads, state["exp_avg"], state["exp_avg_sq"])):
        wd_i, (beta1, beta2) = at(wd, i), at(betas, i)
        if _nonzero(wd_i) and not decoupled:
            g = g + per_run(wd_i, p) * p
        _ema_moments(m, v, g, beta1, beta2)
        b1, b2 = per_run(beta1, p), per_run(beta2, p)
        step_size = per_run(at(lr, i), p) / (1 - b1**t)
        denom = v.sqrt() / _sqrt(1 - b2**t) + per_run(at(eps, i), p)
        p.sub_(step_size * m / denom)
    return {"effective_lr": _full(params, lr)}


def adamw_update(params: Tensors, grads: Tensors, state: State, hp: dict) -> Info:
    return adam_update(params, grads, state, hp, decoupled=True)


BASES: dict[str, tuple[Callable[..., State], Callable[..., Info]]] = {
    "sgd": (sgd_init, sgd_update),
    "adam": (adam_init, adam_update),
    "adamw": (adam_init, adamw_update),
}


def _nonzero(h: HParam) -> bool:
    """False only for a number that is exactly 0 (a per-run tensor may be 0 in some runs: apply it anyway)."""
    if isinstance(h, PerTensor):
        return any(_nonzero(v) for v in h)
    return isinstance(h, Tensor) or h != 0


def _sqrt(x: HParam) -> HParam:
    return x.sqrt() if isinstance(x, Tensor) else math.sqrt(x)


# ---- perturbations -----------------------------------------------------------------------------------------


def _normalized_ascent(grads: Tensors, rho: HParam, norm: Tensor) -> list[Tensor]:
    """ρ s/(‖s‖ + 1e-12), with ‖s‖ = ``norm`` global and ρ per tensor for a ``PerTensor``."""
    if isinstance(rho, PerTensor):
        return [g * per_run(per_run(at(rho, i), norm) / (norm + NORM_EPS), g) for i, g in enumerate(grads)]
    scale = per_run(rho, norm) / (norm + NORM_EPS)
    if scale.shape[0] == 1:  # one run: a fused multiply by the 1-element scale
        return list(torch._foreach_mul(list(grads), scale.reshape(())))
    return [g * per_run(scale, g) for g in grads]


def sam_perturb(params: Tensors, grads: Tensors, state: State, hp: dict) -> tuple[list[Tensor], Info]:
    """SAM (Foret et al. 2021): e = ρ s/(‖s‖ + 1e-12). With ``adaptive`` (davda54's ASAM form, η = 0, all tensors):
    e = ρ θ²⊙s / (‖|θ|⊙s‖ + 1e-12)."""
    rho, adaptive = hp["rho"], hp.get("adaptive", False)
    grad_norm = global_norm(grads)
    if isinstance(adaptive, PerTensor) and not any(adaptive):
        adaptive = False
    if adaptive:  # per group as pytorch-optimizer: |θ| enters the global norm, θ² the step, on adaptive tensors
        flags = [at(adaptive, i) for i in range(len(grads))]
        scaled_norm = global_norm([p.abs() * g if a else g for p, g, a in zip(params, grads, flags)])
        scales = _map(rho, lambda r: per_run(r, scaled_norm) / (scaled_norm + NORM_EPS))
        eps = [(p * p * g if a else g) * per_run(at(scales, i), g)
               for i, (p, g, a) in enumerate(zip(params, grads, flags))]
        return eps, _perturb_info(eps, grad_norm, rho)
    eps = _normalized_ascent(grads, rho, grad_norm)
    return eps, _perturb_info(eps, grad_norm, rho, eps_norm=_normalized_norm(rho, grad_norm))


def asam_perturb(
    params: Tensors, grads: Tensors, state: State, hp: dict, *, names: Sequence[str]
) -> tuple[list[Tensor], Info]:
    """ASAM (Kwon et al. 2021, SamsungLabs/ASAM ``asam.py``): T = |θ| + η on tensors whose name contains "weight",
    T = I elsewhere (biases); e = ρ T²s / (‖T s‖ + 1e-12). (The official code adds 1e-16; 1e-12 as in SAM here.)"""
    rho, eta = hp["rho"], hp.get("eta", 0.01)
    grad_norm = global_norm(grads)
    t_ops = [p.abs() + per_run(at(eta, i), p) if "weight" in n else None
             for i, (p, n) in enumerate(zip(params, names))]
    t_grads = [g if t is None else t * g for g, t in zip(grads, t_ops)]
    t_norm = global_norm(t_grads)
    scales = _map(rho, lambda r: per_run(r, grad_norm) / (t_norm + NORM_EPS))
    eps = [tg * per_run(at(scales, i), tg) if t is None else t * tg * per_run(at(scales, i), tg)
           for i, (tg, t) in enumerate(zip(t_grads, t_ops))]
    return eps, _perturb_info(eps, grad_norm, rho)


def fsam_init(params: Tensors, hp: dict) -> State:
    return {"ema": _zeros_like(params), "perturb_step": 0}


def fsam_perturb(params: Tensors, grads: Tensors, state: State, hp: dict) -> tuple[list[Tensor], Info]:
    """Friendly-SAM (Li et al. 2024), the official nblt/F-SAM ``utils.py`` form: d_t = s_t − σ m_{t−1}, then
    m_t = λ m_{t−1} + (1−λ) s_t, with m_1 = d_1 = s_1; e = ρ d/(‖d‖ + 1e-12) (adaptive: as SAM's adaptive form).

    The paper writes d_t = s_t − σ m_t (EMA updated first); both agree after normalisation only when σ = 1.
    """
    sigma, lmbda = hp.get("sigma", 1.0), hp.get("lmbda", 0.9)
    state["perturb_step"] += 1
    first = state["perturb_step"] == 1
    diffs = []
    for i, (g, m) in enumerate(zip(grads, state["ema"])):
        if first:
            m.copy_(g)
            diffs.append(g)
        else:
            lmbda_i = per_run(at(lmbda, i), g)
            diffs.append(g - per_run(at(sigma, i), g) * m)
            m.mul_(lmbda_i).add_((1 - lmbda_i) * g)
    eps, info = sam_perturb(params, diffs, state, hp)
    return eps, {**info, "grad_norm": global_norm(grads)}  # ‖s‖, not ‖d‖; e's norm is SAM's closed form


def msam_perturb(params: Tensors, grads: Tensors, state: State, hp: dict) -> tuple[list[Tensor], Info]:
    """Monge-SAM (Jacobsen & Arvanitidis 2025), metric G = I + s sᵀ: e = ρ s / (‖s‖ sqrt(1 + ‖s‖²)), so
    ‖e‖ = ρ/sqrt(1 + ‖s‖²): SAM's direction, a radius that shrinks where the gradient is large."""
    rho = hp["rho"]
    grad_norm = global_norm(grads)
    radius = _map(rho, lambda r: per_run(r, grad_norm) / torch.sqrt(1 + grad_norm * grad_norm))
    eps = _normalized_ascent(grads, radius, grad_norm)
    return eps, _perturb_info(eps, grad_norm, radius, eps_norm=_normalized_norm(radius, grad_norm))


def _normalized_norm(rho: HParam, grad_norm: Tensor) -> Tensor | None:
    """‖ρ s/(‖s‖ + 1e-12)‖ in closed form (saves a pass over e); None (measure e) when ρ varies by tensor."""
    if isinstance(rho, PerTensor):
        return None
    return per_run(rho, grad_norm) * grad_norm / (grad_norm + NORM_EPS)


def one_pass_info(grads: Tensors) -> Info:
    """The perturbation report of a one-pass method (SGD, Adam): no perturbation, the step uses s_t itself."""
    grad_norm = global_norm(grads)
    return {"grad_norm": grad_norm, "eps_norm": torch.zeros_like(grad_norm), "effective_rho": torch.zeros_like(grad_norm)}


def _perturb_info(eps: Tensors, grad_norm: Tensor, effective_rho: HParam, eps_norm: Tensor | None = None) -> Info:
    return {"grad_norm": grad_norm, "eps_norm": global_norm(eps) if eps_norm is None else eps_norm,
            "effective_rho": _full(eps, effective_rho)}


# ---- LightSAM I / II / III and AdaSAM: adaptive perturbation and update in one rule ------------------------


def lightsam1_init(params: Tensors, hp: dict) -> State:
    eps0 = hp.get("eps", 1e-8) ** 2
    return {"u": _full(params, eps0), "v": _full(params, eps0)}


def lightsam1_perturb(params: Tensors, grads: Tensors, state: State, hp: dict) -> tuple[list[Tensor], Info]:
    """LightSAM-I (AdaGrad-Norm): u_t = u_{t−1} + ‖s_t‖² (scalar, global), e_t = ρ s_t/sqrt(u_t); ‖e_t‖ ≤ ρ."""
    grad_sq = sq_norm(grads)
    state["u"].add_(grad_sq)
    radius = _map(hp["rho"], lambda r: per_run(r, state["u"]) / state["u"].sqrt())
    eps = [g * per_run(at(radius, i), g) for i, g in enumerate(grads)]
    return eps, _perturb_info(eps, grad_sq.sqrt(), radius)


def lightsam1_update(params: Tensors, grads: Tensors, state: State, hp: dict) -> Info:
    """v_t = v_{t−1} + ‖g_t‖²; θ -= η g_t/sqrt(v_t) (η/sqrt(v_t) is the effective learning rate)."""
    state["v"].add_(sq_norm(grads))
    lr_t = _map(hp["lr"], lambda lr: per_run(lr, state["v"]) / state["v"].sqrt())
    _decoupled_decay(params, hp)
    for i, (p, g) in enumerate(zip(params, grads)):
        p.sub_(g * per_run(at(lr_t, i), g))
    return {"effective_lr": _first(lr_t).clone()}


def lightsam2_init(params: Tensors, hp: dict) -> State:
    eps0 = _map(hp.get("eps", 1e-8), lambda e: e**2)
    return {"u": _filled_like(params, eps0), "v": _filled_like(params, eps0)}


def lightsam2_perturb(params: Tensors, grads: Tensors, state: State, hp: dict) -> tuple[list[Tensor], Info]:
    """LightSAM-II (AdaGrad): u_t = u_{t−1} + s_t², e_t = ρ s_t/sqrt(u_t) per coordinate; ‖e_t‖_∞ ≤ ρ."""
    rho = hp["rho"]
    for u, g in zip(state["u"], grads):
        u.add_(g * g)
    eps = [per_run(at(rho, i), g) * g / u.sqrt() for i, (g, u) in enumerate(zip(grads, state["u"]))]
    radius = _median_rate(rho, state["u"])
    return eps, _perturb_info(eps, global_norm(grads), radius)


def lightsam2_update(params: Tensors, grads: Tensors, state: State, hp: dict) -> Info:
    """v_t = v_{t−1} + g_t²; θ -= η g_t/sqrt(v_t) per coordinate (effective lr: median of η/sqrt(v_t))."""
    lr = hp["lr"]
    _decoupled_decay(params, hp)
    for i, (p, g, v) in enumerate(zip(params, grads, state["v"])):
        v.add_(g * g)
        p.sub_(per_run(at(lr, i), p) * g / v.sqrt())
    return {"effective_lr": _median_rate(lr, state["v"])}


def lightsam3_init(params: Tensors, hp: dict) -> State:
    eps0 = _map(hp.get("eps", 1e-8), lambda e: e**2)
    return {"r": _zeros_like(params), "u": _filled_like(params, eps0),
            "m": _zeros_like(params), "v": _filled_like(params, eps0), "perturb_step": 0, "step": 0}


def _adam_direction(first: Tensor, second: Tensor, t: int, betas: tuple[HParam, HParam], bias_correction: bool) -> Tensor:
    """m/sqrt(v), optionally with Adam's bias corrections (1−β1^t), (1−β2^t)."""
    if not bias_correction:
        return first / second.sqrt()
    b1, b2 = per_run(betas[0], first), per_run(betas[1], first)
    return (first / (1 - b1**t)) / (second / (1 - b2**t)).sqrt()


def lightsam3_perturb(params: Tensors, grads: Tensors, state: State, hp: dict) -> tuple[list[Tensor], Info]:
    """LightSAM-III (Adam): r_t = β1 r + (1−β1) s, u_t = β2 u + (1−β2) s², e_t = ρ r_t/sqrt(u_t).

    No bias correction by default (the third-party renderings have none, so the first ascent step is about
    3.16 ρ·sign(s) per coordinate); ``bias_correction=True`` divides by (1−β^t) as Adam does."""
    rho, betas, bc = hp["rho"], hp.get("betas", (0.9, 0.999)), hp.get("bias_correction", False)
    state["perturb_step"] += 1
    for i, (g, r, u) in enumerate(zip(grads, state["r"], state["u"])):
        _ema_moments(r, u, g, *at(betas, i))
    directions = [_adam_direction(r, u, state["perturb_step"], at(betas, i), at(bc, i))
                  for i, (r, u) in enumerate(zip(state["r"], state["u"]))]
    eps = [per_run(at(rho, i), d) * d for i, d in enumerate(directions)]
    radius = _median_rate(rho, state["u"])
    return eps, _perturb_info(eps, global_norm(grads), radius)


def lightsam3_update(params: Tensors, grads: Tensors, state: State, hp: dict) -> Info:
    """m_t = β1 m + (1−β1) g, v_t = β2 v + (1−β2) g², θ -= η m_t/sqrt(v_t) (no ε in the denominator: v_0 = ε²)."""
    lr, betas, bc = hp["lr"], hp.get("betas", (0.9, 0.999)), hp.get("bias_correction", False)
    state["step"] += 1
    _decoupled_decay(params, hp)
    for i, (p, g, m, v) in enumerate(zip(params, grads, state["m"], state["v"])):
        _ema_moments(m, v, g, *at(betas, i))
        p.sub_(per_run(at(lr, i), p) * _adam_direction(m, v, state["step"], at(betas, i), at(bc, i)))
    return {"effective_lr": _median_rate(lr, state["v"])}


def adasam_init(params: Tensors, hp: dict) -> State:
    eps0 = _map(hp.get("eps", 1e-8), lambda e: e**2)
    return {"m": _zeros_like(params), "v": _zeros_like(params), "v_max": _filled_like(params, eps0)}


def adasam_update(params: Tensors, grads: Tensors, state: State, hp: dict) -> Info:
    """AdaSAM (Sun et al. 2023) descent: m = β1 m + (1−β1) g, v = β2 v + (1−β2) g², v̂ = max(v̂, v) with v̂_{−1} = ε²
    (AMSGrad), θ -= lr m/sqrt(v̂); no bias correction, no ε in the denominator. The ascent is SAM's."""
    lr, betas = hp["lr"], hp.get("betas", (0.9, 0.999))
    _decoupled_decay(params, hp)
    for i, (p, g, m, v, vmax) in enumerate(zip(params, grads, state["m"], state["v"], state["v_max"])):
        _ema_moments(m, v, g, *at(betas, i))
        torch.maximum(vmax, v, out=vmax)
        p.sub_(per_run(at(lr, i), p) * m / vmax.sqrt())
    return {"effective_lr": _median_rate(lr, state["v_max"])}


def _decoupled_decay(params: Tensors, hp: dict) -> None:
    """θ *= 1 − lr·wd (AdamW-style; the adaptive SAM variants' theory has no weight decay, default 0)."""
    wd = hp.get("weight_decay", 0.0)
    if _nonzero(wd):
        for i, p in enumerate(params):
            if _nonzero(at(wd, i)):
                p.mul_(1 - per_run(at(hp["lr"], i), p) * per_run(at(wd, i), p))
