"""Optimizers against oracles (pytorch-optimizer, torch.optim, literal re-implementations) and invariants."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import pytorch_optimizer as po
import torch
from torch import nn

from sam_viz.optim import OPTIMIZERS, BatchClosure, SAMOptimizer, make, make_rule, validate

STEPS = 6


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double()


def _batches(n: int = STEPS, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (16,), generator=g))
            for _ in range(n)]


def _flat(model: nn.Module) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()


def _train(model: nn.Module, opt: torch.optim.Optimizer, batches, scale: float = 1.0) -> list[np.ndarray]:
    """The documented calling convention: backward at θ, then step(closure)."""
    path = [_flat(model)]
    for x, y in batches:
        def closure():
            opt.zero_grad()
            loss = scale * nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss
        closure()
        opt.step(closure)
        path.append(_flat(model))
    return path


def _ours(name: str, seed: int = 0, batches=None, scale: float = 1.0, **hp) -> list[np.ndarray]:
    model = _model(seed)
    return _train(model, make(name, model.parameters(), **hp), batches or _batches(), scale)


def _assert_paths_close(a, b, rtol=1e-5, atol=1e-9):
    for t, (pa, pb) in enumerate(zip(a, b)):
        np.testing.assert_allclose(pa, pb, rtol=rtol, atol=atol, err_msg=f"step {t}")


# ---- oracles: pytorch-optimizer 4.1.0 ------------------------------------------------------------------------

BASE_KW = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_equals_pytorch_optimizer(adaptive):
    model = _model()
    oracle = po.SAM(model.parameters(), torch.optim.SGD, rho=0.05, adaptive=adaptive, **BASE_KW)
    expected = _train(model, oracle, _batches())
    ours = _ours("sam", rho=0.05, adaptive=adaptive, **BASE_KW)
    _assert_paths_close(ours, expected)
    assert np.abs(ours[-1] - ours[0]).max() > 1e-3  # the run moved: the comparison is not vacuous


@pytest.mark.parametrize("sigma,lmbda", [(1.0, 0.9), (0.5, 0.6), (1.0, 0.3)])
def test_fsam_equals_pytorch_optimizer(sigma, lmbda):
    model = _model()
    oracle = po.FriendlySAM(model.parameters(), torch.optim.SGD, rho=0.05, sigma=sigma, lmbda=lmbda, **BASE_KW)
    expected = _train(model, oracle, _batches())
    _assert_paths_close(_ours("fsam", rho=0.05, sigma=sigma, lmbda=lmbda, **BASE_KW), expected)


def test_sam_with_adamw_base_equals_pytorch_optimizer():
    model = _model()
    oracle = po.SAM(model.parameters(), torch.optim.AdamW, rho=0.1, lr=1e-2, weight_decay=1e-2)
    expected = _train(model, oracle, _batches())
    _assert_paths_close(_ours("sam", rho=0.1, base="adamw", lr=1e-2, weight_decay=1e-2), expected)


# ---- oracles: torch.optim ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,torch_cls,hp", [
    ("sgd", torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}),
    ("sgd", torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("adam", torch.optim.Adam, {"lr": 1e-2, "weight_decay": 1e-3}),
])
def test_one_pass_methods_equal_torch(name, torch_cls, hp):
    model = _model()
    expected = _train(model, torch_cls(model.parameters(), **hp), _batches())
    _assert_paths_close(_ours(name, **hp), expected, rtol=1e-10)


@pytest.mark.parametrize("name", ["sam", "asam", "fsam", "msam"])
@pytest.mark.parametrize("base,torch_cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)])
def test_rho_zero_gives_the_base_optimizer(name, base, torch_cls):
    hp = {"lr": 0.05, "weight_decay": 1e-3} | ({"momentum": 0.9} if base == "sgd" else {})
    model = _model()
    expected = _train(model, torch_cls(model.parameters(), **hp), _batches())
    _assert_paths_close(_ours(name, rho=0.0, base=base, **hp), expected, rtol=1e-10)


def test_lightsam2_rho_zero_is_adagrad():
    eps = 1e-3
    model = _model()
    oracle = torch.optim.Adagrad(model.parameters(), lr=0.1, initial_accumulator_value=eps**2, eps=0.0)
    expected = _train(model, oracle, _batches())
    _assert_paths_close(_ours("lightsam2", rho=0.0, lr=0.1, eps=eps), expected, rtol=1e-10)


def test_fsam_sigma_zero_is_sam():
    _assert_paths_close(_ours("fsam", sigma=0.0, lmbda=0.7, **BASE_KW), _ours("sam", **BASE_KW), rtol=1e-12)


# ---- literal re-implementations of the spec's recurrences -----------------------------------------------------

@torch.enable_grad()
def _grad(model, x, y, scale=1.0):
    model.zero_grad()
    loss = scale * nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def _reference_path(model, batches, step_fn, scale=1.0):
    """Run ``step_fn(params, s, grad_at)`` with plain tensors: the oracle owns no code with sam_viz."""
    path = [_flat(model)]
    state: dict = {}
    for x, y in batches:
        s = _grad(model, x, y, scale)

        def grad_at(eps, x=x, y=y):
            with torch.no_grad():
                for p, e in zip(model.parameters(), eps):
                    p.add_(e)
            g = _grad(model, x, y, scale)
            with torch.no_grad():
                for p, e in zip(model.parameters(), eps):
                    p.sub_(e)
            return g

        with torch.no_grad():
            step_fn(list(model.parameters()), s, grad_at, state)
        path.append(_flat(model))
    return path


def _lightsam(variant: int, rho: float, lr: float, eps: float = 1e-8, b1: float = 0.9, b2: float = 0.999):
    def step(params, s, grad_at, st):
        if not st:
            st["u"] = [torch.full_like(p, eps**2) for p in params]
            st["v"] = [torch.full_like(p, eps**2) for p in params]
            st["r"] = [torch.zeros_like(p) for p in params]
            st["m"] = [torch.zeros_like(p) for p in params]
            st["u1"] = st["v1"] = eps**2
        if variant == 1:
            st["u1"] += sum(float((x * x).sum()) for x in s)
            e = [rho * x / st["u1"] ** 0.5 for x in s]
        elif variant == 2:
            e = []
            for x, u in zip(s, st["u"]):
                u += x * x
                e.append(rho * x / u.sqrt())
        else:
            e = []
            for x, r, u in zip(s, st["r"], st["u"]):
                r.mul_(b1).add_((1 - b1) * x)
                u.mul_(b2).add_((1 - b2) * x * x)
                e.append(rho * r / u.sqrt())
        st.setdefault("eps_norms", []).append(float(torch.sqrt(sum((x * x).sum() for x in e))))
        st.setdefault("eps_inf", []).append(max(float(x.abs().max()) for x in e))
        g = grad_at(e)
        if variant == 1:
            st["v1"] += sum(float((x * x).sum()) for x in g)
            for p, x in zip(params, g):
                p -= lr * x / st["v1"] ** 0.5
        elif variant == 2:
            for p, x, v in zip(params, g, st["v"]):
                v += x * x
                p -= lr * x / v.sqrt()
        else:
            for p, x, m, v in zip(params, g, st["m"], st["v"]):
                m.mul_(b1).add_((1 - b1) * x)
                v.mul_(b2).add_((1 - b2) * x * x)
                p -= lr * m / v.sqrt()
    return step


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_lightsam_follows_the_spec_recurrences(variant):
    rho, lr = (0.1, 0.1) if variant < 3 else (0.01, 1e-2)
    expected = _reference_path(_model(), _batches(), _lightsam(variant, rho, lr))
    _assert_paths_close(_ours(f"lightsam{variant}", rho=rho, lr=lr), expected, rtol=1e-10)


def test_lightsam_perturbation_bounds():
    for variant, norm_key in [(1, "eps_norms"), (2, "eps_inf")]:
        state_probe: dict = {}
        step = _lightsam(variant, rho=0.3, lr=0.1)
        _reference_path(_model(), _batches(), lambda *a, st=state_probe: step(*a[:3], st))
        assert max(state_probe[norm_key]) <= 0.3 * (1 + 1e-12)
    # and the adapter reports the same bound for I: ‖e‖ ≤ ρ, with equality (up to ε) at the first step
    model = _model()
    opt = make("lightsam1", model.parameters(), rho=0.3, lr=0.1)
    x, y = _batches(1)[0]
    _train(model, opt, [(x, y)])
    assert opt.last.eps_norm == pytest.approx(0.3, rel=1e-6)
    assert opt.last.effective_rho == pytest.approx(0.3 / opt.last.grad_norm, rel=1e-6)


@pytest.mark.parametrize("name,rtol", [("lightsam1", 1e-12), ("lightsam2", 1e-6)])
def test_lightsam_loss_scale_invariance(name, rtol):
    # ε = 1e-8 enters only through u_0 = ε², so scaling the loss by c changes nothing but round-off
    base = _ours(name, rho=0.1, lr=0.1)
    scaled = _ours(name, rho=0.1, lr=0.1, scale=1000.0)
    _assert_paths_close(scaled, base, rtol=rtol, atol=1e-9)


def test_sam_is_not_loss_scale_invariant():
    base, scaled = _ours("sam", **BASE_KW), _ours("sam", scale=1000.0, **BASE_KW)
    assert np.abs(base[-1] - scaled[-1]).max() > 1e-2


def test_msam_norm_and_direction():
    model = _model()
    x, y = _batches(1)[0]
    s = _grad(model, x, y)
    opt = make("msam", model.parameters(), rho=0.2)
    opt.first_step()
    e = torch.cat([q.reshape(-1) for q in opt._pending[0]])
    s_flat = torch.cat([q.reshape(-1) for q in s])
    s_norm = s_flat.norm()
    assert float(e.norm()) == pytest.approx(0.2 / float(torch.sqrt(1 + s_norm**2)), rel=1e-10)
    assert float(torch.nn.functional.cosine_similarity(e, s_flat, dim=0)) == pytest.approx(1.0, abs=1e-12)


def _official_asam(rho: float, eta: float, lr: float, momentum: float, names):
    """SamsungLabs/ASAM asam.py, literally: T = |w| + η on 'weight' tensors, e = ρ T²s/(‖Ts‖ + 1e-16), SGD base."""
    def step(params, s, grad_at, st):
        ts = [p.abs() + eta if "weight" in n else torch.ones_like(p) for p, n in zip(params, names)]
        norm = torch.sqrt(sum(((t * x) ** 2).sum() for t, x in zip(ts, s))) + 1e-16
        e = [rho * t * t * x / norm for t, x in zip(ts, s)]
        g = grad_at(e)
        bufs = st.setdefault("buf", [None] * len(params))
        for i, (p, x) in enumerate(zip(params, g)):
            bufs[i] = x.clone() if bufs[i] is None else momentum * bufs[i] + x
            p -= lr * bufs[i]
    return step


def test_asam_follows_the_official_form():
    model = _model()
    names = [n for n, _ in model.named_parameters()]
    expected = _reference_path(model, _batches(), _official_asam(0.5, 0.01, 0.1, 0.9, names))
    model = _model()
    opt = make("asam", model.named_parameters(), rho=0.5, eta=0.01, lr=0.1, momentum=0.9)
    _assert_paths_close(_train(model, opt, _batches()), expected, rtol=1e-10)


def test_adasam_follows_its_spec():
    rho, lr, b1, b2, eps = 0.05, 1e-2, 0.9, 0.999, 1e-8

    def step(params, s, grad_at, st):
        if not st:
            st.update(m=[torch.zeros_like(p) for p in params], v=[torch.zeros_like(p) for p in params],
                      vh=[torch.full_like(p, eps**2) for p in params])
        norm = torch.sqrt(sum((x * x).sum() for x in s))
        g = grad_at([rho * x / (norm + 1e-12) for x in s])
        for p, x, m, v, vh in zip(params, g, st["m"], st["v"], st["vh"]):
            m.mul_(b1).add_((1 - b1) * x)
            v.mul_(b2).add_((1 - b2) * x * x)
            vh.copy_(torch.maximum(vh, v))
            p -= lr * m / vh.sqrt()

    expected = _reference_path(_model(), _batches(), step)
    _assert_paths_close(_ours("adasam", rho=rho, lr=lr), expected, rtol=1e-10)


# ---- the batched core equals K separate runs ---------------------------------------------------------------

@pytest.mark.parametrize("name,hp", [
    ("sam", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}),
    ("fsam", {"lr": 0.1, "sigma": 0.7, "lmbda": 0.6}),
    ("asam", {"lr": 0.1}),
    ("lightsam1", {"lr": 0.1}),
    ("lightsam2", {"lr": 0.1}),
    ("lightsam3", {"lr": 1e-2}),
    ("adasam", {"lr": 1e-2}),
    ("msam", {"lr": 0.1, "base": "adam"}),
    ("adam", {"lr": 1e-2}),
])
def test_batched_core_equals_separate_runs(name, hp):
    rhos = [0.0, 0.05, 0.3]
    seeds = [0, 1, 2]
    two_pass = OPTIMIZERS[name].two_pass
    separate = [_ours(name, seed=s, **hp, **({"rho": r} if two_pass else {})) for s, r in zip(seeds, rhos)]

    models = [_model(s) for s in seeds]
    names = [n for n, _ in models[0].named_parameters()]
    stacked = [torch.stack([dict(m.named_parameters())[n].detach() for m in models]) for n in names]
    full_hp = validate(name, hp | ({"rho": torch.tensor(rhos, dtype=torch.float64)} if two_pass else {}))
    rule = make_rule(name, full_hp.get("base", "sgd"))
    state = rule.init(stacked, full_hp)

    def grads_at(params, x, y):
        out = []
        for k, m in enumerate(models):
            with torch.no_grad():
                for p, n in zip(m.parameters(), names):
                    p.copy_(params[names.index(n)][k])
            out.append(_grad(m, x, y))
        return [torch.stack([o[i] for o in out]) for i in range(len(names))]

    for x, y in _batches():
        s = grads_at(stacked, x, y)
        if rule.perturb is None:
            g = s
        else:
            extra = {"names": names} if rule.takes_names else {}
            eps, _ = rule.perturb(stacked, s, state, full_hp, **extra)
            g = grads_at([p + e for p, e in zip(stacked, eps)], x, y)
        with torch.no_grad():
            rule.update(stacked, g, state, full_hp)
    for k in range(3):
        np.testing.assert_allclose(torch.cat([p[k].reshape(-1) for p in stacked]).numpy(), separate[k][-1],
                                   rtol=1e-10, atol=1e-12)


# ---- every variant: validation, convergence, reports --------------------------------------------------------

@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_decreases_a_parabola(name):
    target = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    w = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    lr = {"adam": 0.05, "adasam": 0.05, "lightsam3": 0.05, "lightsam1": 1.0, "lightsam2": 1.0}.get(name, 0.1)
    if name == "mup2":  # μP² perturbs layers: the same parabola in two weight matrices (input, output layer)
        target = target.reshape(3, 1) * torch.ones(3, 2, dtype=torch.float64)
        w = nn.Parameter(torch.zeros(3, 2, dtype=torch.float64))
        v = nn.Parameter(torch.zeros(2, 3, dtype=torch.float64))
        opt = make(name, [w, v], lr=lr, base_width=3)

        def parabola():
            return ((w - target) ** 2).sum() + ((v - target.T) ** 2).sum()
    else:
        opt = make(name, [w], lr=lr)

        def parabola():
            return ((w - target) ** 2).sum()

    def closure():
        opt.zero_grad()
        loss = parabola()
        loss.backward()
        return loss

    if OPTIMIZERS[name].batch_closure:  # the same parabola as a mean of 8 per-sample losses
        class Parabola(nn.Module):
            def __init__(self):
                super().__init__()
                self.w = w

            def forward(self, x):
                return ((self.w - target) ** 2).sum() * x

        closure = BatchClosure(Parabola(), lambda out, y: out, torch.ones(8, dtype=torch.float64),
                               torch.zeros(8), heldout=(torch.ones(8, dtype=torch.float64), torch.zeros(8)))

    first = float(closure().detach())
    for _ in range(100):
        closure()
        opt.step(closure)
    assert float(closure().detach()) < 0.05 * first
    assert opt.last is not None and np.isfinite(opt.last.effective_lr)


def test_reports_describe_the_step():
    model = _model()
    opt = make("sam", model.parameters(), rho=0.07, **BASE_KW)
    x, y = _batches(1)[0]
    s = torch.cat([q.reshape(-1) for q in _grad(model, x, y)])
    opt.step(lambda: nn.functional.cross_entropy(model(x), y).backward() or nn.functional.cross_entropy(model(x), y))
    report = opt.last
    e = torch.cat([q.reshape(-1) for q in report.perturbation])
    assert report.eps_norm == pytest.approx(0.07, rel=1e-9)
    assert float(e.norm()) == pytest.approx(0.07, rel=1e-9)
    assert report.grad_norm == pytest.approx(float(s.norm()), rel=1e-12)
    assert float(torch.nn.functional.cosine_similarity(e, s, dim=0)) == pytest.approx(1.0, abs=1e-12)
    assert report.effective_rho == 0.07 and report.effective_lr == 0.1


def test_validation_messages_name_the_parameter():
    params = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="rho"):
        make("sam", params, rho=-1)
    with pytest.raises(ValueError, match="lr"):
        make("sgd", params, lr=float("nan"))
    with pytest.raises(ValueError, match="sigma"):
        make("sam", params, sigma=1.0)  # not a SAM hyperparameter
    with pytest.raises(ValueError, match="Unknown optimizer"):
        make("samm", params)
    with pytest.raises(ValueError, match="base"):
        make("sam", params, base="rmsprop")
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        make("adam", params, betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="closure"):
        w = nn.Parameter(torch.ones(2))
        opt = make("sam", [w])
        (w**2).sum().backward()
        opt.step()


def test_every_default_is_valid_and_in_range():
    for name, info in OPTIMIZERS.items():
        assert validate(name) == {k: s.default for k, s in info.hparams.items()}
        assert info.status in ("stable", "experimental")
        for key, spec in info.hparams.items():
            assert spec.help, (name, key)


def test_lr_scheduler_and_state_dict_work():
    model = _model()
    opt = make("fsam", model.parameters(), **BASE_KW)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    _train(model, opt, _batches(2))
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    clone = make("fsam", _model().parameters(), **BASE_KW)
    clone.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert clone.state["core"]["perturb_step"] == 2


def test_sam_optimizer_is_a_torch_optimizer():
    assert issubclass(SAMOptimizer, torch.optim.Optimizer)
