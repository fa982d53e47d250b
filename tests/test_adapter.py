"""SAMOptimizer as a drop-in ``torch.optim.Optimizer``: checkpoints, parameter groups, frozen parameters,
LR schedulers, closures and ``zero_grad``, for every registry optimizer (float64, fixed seeds)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import pytorch_optimizer as po
import torch
from torch import nn

from sam_viz.optim import OPTIMIZERS, BatchClosure, make

STEPS = 6

# hyperparameters that make every optimizer move visibly, with weight decay wherever there is one
HP = {
    "sgd": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3},
    "adam": {"lr": 1e-2, "weight_decay": 1e-3},
    "sam": {"lr": 0.1, "rho": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
    "asam": {"lr": 0.1, "rho": 0.5, "momentum": 0.9, "weight_decay": 5e-4},
    "fsam": {"lr": 0.1, "rho": 0.05, "sigma": 0.7, "lmbda": 0.6, "momentum": 0.9},
    "lightsam1": {"lr": 0.1, "rho": 0.1, "weight_decay": 1e-3},
    "lightsam2": {"lr": 0.1, "rho": 0.1, "weight_decay": 1e-3},
    "lightsam3": {"lr": 1e-2, "rho": 0.01, "weight_decay": 1e-3},
    "adasam": {"lr": 1e-2, "rho": 0.05, "weight_decay": 1e-3},
    "msam": {"lr": 0.1, "rho": 0.05, "base": "adam", "weight_decay": 1e-3},
    "gsam": {"lr": 0.1, "rho": 0.05, "rho_min": 0.01, "alpha": 0.4, "momentum": 0.9, "weight_decay": 5e-4},
    "looksam": {"lr": 0.1, "rho": 0.1, "k": 2, "alpha": 0.7, "momentum": 0.9, "weight_decay": 5e-4},  # both kinds of step
    "wsam": {"lr": 0.1, "rho": 0.05, "gamma": 0.9, "momentum": 0.9, "weight_decay": 5e-4},
    "ssam": {"lr": 0.1, "rho": 0.05, "sparsity": 0.5, "update_every": 2, "num_samples": 4, "momentum": 0.9},
    "esam": {"lr": 0.1, "rho": 0.05, "beta": 0.6, "gamma": 0.5, "momentum": 0.9, "weight_decay": 5e-4},
    "mbsam": {"lr": 0.1, "rho": 0.05, "m": 4, "momentum": 0.9, "weight_decay": 5e-4},
    "sampa": {"lr": 0.1, "rho": 0.1, "lmbda": 0.3, "momentum": 0.9, "weight_decay": 5e-4},
    "lets": {"lr": 0.1, "rho": 0.05, "rho_lr": 10.0, "every": 2, "momentum": 0.9, "weight_decay": 5e-4},
    "mup2": {"lr": 0.1, "rho": 0.05, "base_width": 4, "momentum": 0.9, "weight_decay": 5e-4},  # r = 8/4 = 2
}
NAMES = list(OPTIMIZERS)
TWO_PASS = [name for name in NAMES if OPTIMIZERS[name].two_pass]


def test_every_registry_optimizer_is_covered():
    assert set(HP) == set(OPTIMIZERS)


class MLP(nn.Module):
    """Two layers, plus a layer the loss never uses (its gradients stay None)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.hidden, self.out, self.unused = nn.Linear(3, 8), nn.Linear(8, 2), nn.Linear(2, 2)
        self.double()

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x)))


def _batches(n: int = STEPS, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (16,), generator=g))
            for _ in range(n)]


def _used(model: MLP) -> list[nn.Parameter]:
    return [*model.hidden.parameters(), *model.out.parameters()]


def _split(model: MLP) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Weights and biases of the used layers."""
    return [model.hidden.weight, model.out.weight], [model.hidden.bias, model.out.bias]


def _flat(params) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in params]).numpy().copy()


def _heldout(seed: int = 99) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed held-out batch (LETS' validation gradient)."""
    return _batches(1, seed=seed)[0]


def _per_sample_ce(out, y):
    return nn.functional.cross_entropy(out, y, reduction="none")


def _closure(model, opt, x, y, set_to_none=True):
    """The step's closure: a ``BatchClosure`` for the methods that ask for sub-batches, per-sample losses or a
    held-out batch (``Variant.batch_closure``), else a plain one."""
    if getattr(opt, "name", None) in OPTIMIZERS and OPTIMIZERS[opt.name].batch_closure:
        return BatchClosure(model, _per_sample_ce, x, y, heldout=_heldout())

    def closure():
        opt.zero_grad(set_to_none=set_to_none)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss
    return closure


def _train(model, opt, batches, before_step=None, set_to_none=True) -> list[np.ndarray]:
    """The documented convention: backward at θ, then step(closure); ``before_step(t)`` runs before each step."""
    path = [_flat(model.parameters())]
    for t, (x, y) in enumerate(batches):
        closure = _closure(model, opt, x, y, set_to_none)
        closure()
        if before_step is not None:
            before_step(t)
        opt.step(closure)
        path.append(_flat(model.parameters()))
    return path


def _assert_same_path(a, b):
    for t, (pa, pb) in enumerate(zip(a, b, strict=True)):
        np.testing.assert_array_equal(pa, pb, err_msg=f"step {t}")


def _assert_same_state(a, b):
    """Two state dicts (or parts) hold equal values: tensors bit for bit, the rest by ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert set(a) == set(b), (set(a), set(b))
        for key in a:
            _assert_same_state(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same_state(x, y)
    else:
        assert a == b


# ---- checkpoints ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trips(name):
    model = MLP()
    opt = make(name, model.parameters(), **HP[name])
    _train(model, opt, _batches(3))
    saved = opt.state_dict()
    assert "old_p" not in str(saved["state"])  # θ_t is not kept after the step
    if "step" in saved["state"]["core"]:  # the saved counters are this step's, not the optimizer's later ones
        _train(model, opt, _batches(1))
        assert saved["state"]["core"]["step"] == 3 and opt.state["core"]["step"] == 4
    clone = make(name, MLP(seed=5).parameters(), **HP[name])
    clone.load_state_dict(saved)
    _assert_same_state(clone.state_dict(), saved)


@pytest.mark.parametrize("name", NAMES)
def test_resume_from_checkpoint_is_exact(name):
    batches, k = _batches(), 3
    model = MLP()
    opt = make(name, model.parameters(), **HP[name])
    expected = _train(model, opt, batches)

    model = MLP()
    opt = make(name, model.parameters(), **HP[name])
    before = _train(model, opt, batches[:k])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    resumed_model = MLP(seed=7)  # a fresh model and optimizer: everything comes from the checkpoint
    resumed_model.load_state_dict(checkpoint["model"])
    resumed = make(name, resumed_model.parameters(), **HP[name])
    resumed.load_state_dict(checkpoint["opt"])
    after = _train(resumed_model, resumed, batches[k:])

    _assert_same_path(before + after[1:], expected)
    _assert_same_state(resumed.state_dict()["state"], _state_after(name, batches))
    assert resumed.last is not None and np.isfinite(resumed.last.effective_lr)


def _state_after(name, batches):
    model = MLP()
    opt = make(name, model.parameters(), **HP[name])
    _train(model, opt, batches)
    return opt.state_dict()["state"]


def test_checkpoint_holds_per_parameter_state_like_torch():
    model = MLP()
    opt = make("sam", model.parameters(), **HP["sam"])
    _train(model, opt, _batches(2))
    state = opt.state_dict()["state"]
    assert state[0]["momentum_buffer"].shape == model.hidden.weight.shape
    assert state["core"]["step"] == 2
    reference = torch.optim.SGD(_used(model), lr=0.1)
    assert set(reference.state_dict()) == set(opt.state_dict())


# ---- parameter groups -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_two_groups_with_equal_hparams_equal_one_group(name):
    model = MLP()
    weights, biases = _split(model)  # the same order of tensors: a global norm's sum depends on it by round-off
    one = _train(model, make(name, weights + biases, **HP[name]), _batches())
    model = MLP()
    weights, biases = _split(model)
    two = _train(model, make(name, [{"params": weights}, {"params": biases}], **HP[name]), _batches())
    _assert_same_path(two, one)


def _group_hp(name):
    """The second group's own lr (and weight decay, momentum where the optimizer has them)."""
    specs = OPTIMIZERS[name].hparams
    own = {"lr": HP[name]["lr"] * 0.3}
    if "weight_decay" in specs:
        own["weight_decay"] = 0.0 if HP[name].get("weight_decay") else 1e-2
    if "momentum" in specs and HP[name].get("base", "sgd") == "sgd":
        own["momentum"] = 0.5
    return own


# SAMPa's look-ahead y = θ − η(…) takes every group's lr, and the gradient at y enters every tensor's update
LR_IN_THE_GRADIENT = {"sampa"}


@pytest.mark.parametrize("name", [n for n in NAMES if n not in LR_IN_THE_GRADIENT])
def test_a_group_steps_with_its_own_lr_and_weight_decay(name):
    # one step from the same point: the perturbation does not depend on lr or weight decay, so each group moves as
    # it would in a one-group optimizer with that group's hyperparameters
    x, y = _batches(1)[0]
    own = _group_hp(name)
    runs = {}
    for label, groups in [("a", lambda w, b: [{"params": w + b}]),
                          ("b", lambda w, b: [{"params": w + b, **own}]),
                          ("ab", lambda w, b: [{"params": w}, {"params": b, **own}])]:
        model = MLP()
        weights, biases = _split(model)
        _train(model, make(name, groups(weights, biases), **HP[name]), [(x, y)])
        runs[label] = (_flat(weights), _flat(biases))
    np.testing.assert_allclose(runs["ab"][0], runs["a"][0], rtol=1e-14, atol=0)
    np.testing.assert_allclose(runs["ab"][1], runs["b"][1], rtol=1e-14, atol=0)
    assert np.abs(runs["a"][1] - runs["b"][1]).max() > 1e-6  # the group's own values matter


@pytest.mark.parametrize("name", NAMES)
def test_a_group_with_lr_zero_does_not_move(name):
    model = MLP()
    weights, biases = _split(model)
    start = _flat(biases)
    opt = make(name, [{"params": weights}, {"params": biases}], **HP[name])
    opt.param_groups[1]["lr"] = 0.0  # as a scheduler may set it (the registry's range starts above 0)
    path = _train(model, opt, _batches())
    np.testing.assert_array_equal(_flat(biases), start)
    assert np.abs(path[-1] - path[0]).max() > 1e-3


# LETS learns one ρ for all groups; SAMPa's first perturbation is 0 (its look-ahead gradient starts at zero)
NO_GROUP_RHO_AT_THE_FIRST_STEP = {"lets", "sampa"}


@pytest.mark.parametrize("name", [n for n in TWO_PASS if n not in NO_GROUP_RHO_AT_THE_FIRST_STEP])
def test_group_rho_scales_a_global_normalisation(name):
    # e of each tensor is its group's ρ times a normalisation over all groups: at the first step, each group's
    # perturbation equals that of a one-group optimizer with the group's ρ
    x, y = _batches(1)[0]
    rho = HP[name]["rho"]
    eps = {}
    for label, groups in [("a", lambda w, b: [{"params": w + b}]),
                          ("b", lambda w, b: [{"params": w + b, "rho": 3 * rho}]),
                          ("ab", lambda w, b: [{"params": w}, {"params": b, "rho": 3 * rho}])]:
        model = MLP()
        weights, biases = _split(model)
        opt = make(name, groups(weights, biases), **HP[name])
        _train(model, opt, [(x, y)])
        ids = [id(p) for p in weights + biases]
        order = [id(p) for g in opt.param_groups for p in g["params"]]
        by_id = dict(zip(order, opt.last.perturbation))
        eps[label] = [by_id[i] for i in ids]
    for k in (0, 1):  # weights: ρ
        torch.testing.assert_close(eps["ab"][k], eps["a"][k], rtol=1e-14, atol=0)
    for k in (2, 3):  # biases: 3ρ
        torch.testing.assert_close(eps["ab"][k], eps["b"][k], rtol=1e-14, atol=0)
    assert not torch.equal(eps["a"][2], eps["b"][2])


def _po_groups(weights, biases, **extra_b):
    return [{"params": weights, "lr": 0.1, "weight_decay": 5e-4, "rho": 0.05},
            {"params": biases, "lr": 0.02, "weight_decay": 0.0, "rho": 0.1, "momentum": 0.5, **extra_b}]


@pytest.mark.parametrize("name,oracle_cls,common,extra_b", [
    ("sam", po.SAM, {}, {}),
    ("sam", po.SAM, {"adaptive": True}, {}),
    ("sam", po.SAM, {}, {"adaptive": True}),  # only the biases' group: |θ| weights its share of the global norm
    ("fsam", po.FriendlySAM, {"sigma": 1.0, "lmbda": 0.9}, {"sigma": 0.5, "lmbda": 0.6}),
])
def test_groups_equal_pytorch_optimizer(name, oracle_cls, common, extra_b):
    model = MLP()
    oracle = oracle_cls(_po_groups(*_split(model), **extra_b), torch.optim.SGD, momentum=0.9, **common)
    expected = _train(model, oracle, _batches())
    model = MLP()
    ours = _train(model, make(name, _po_groups(*_split(model), **extra_b), momentum=0.9, **common), _batches())
    for t, (a, b) in enumerate(zip(ours, expected)):  # its norms are float32: the existing oracles' tolerance
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9, err_msg=f"step {t}")
    model = MLP()
    one_group = _train(model, oracle_cls(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, **common),
                       _batches())
    assert np.abs(one_group[-1] - expected[-1]).max() > 1e-3  # the groups' own values changed the run


def test_group_validation():
    w, b = nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="rho"):
        make("sam", [{"params": [w]}, {"params": [b], "rho": -1.0}])
    with pytest.raises(ValueError, match="base"):
        make("sam", [{"params": [w]}, {"params": [b], "base": "adam"}])
    with pytest.raises(ValueError, match="eps"):  # LightSAM-I's scalar accumulators start at the one ε²
        make("lightsam1", [{"params": [w]}, {"params": [b], "eps": 1e-4}])
    opt = make("lightsam2", [{"params": [w]}, {"params": [b], "eps": 1e-4}])  # per-coordinate: per group is fine
    assert opt.param_groups[1]["eps"] == 1e-4


# ---- frozen and unused parameters ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_frozen_and_unused_parameters_are_left_alone(name):
    model = MLP()
    model.hidden.bias.requires_grad_(False)
    frozen = [model.hidden.bias, *model.unused.parameters()]
    start = _flat(frozen)
    path = _train(model, make(name, model.parameters(), **HP[name]), _batches())
    np.testing.assert_array_equal(_flat(frozen), start)

    model = MLP()
    model.hidden.bias.requires_grad_(False)
    without = _train(model, make(name, [model.hidden.weight, *model.out.parameters()], **HP[name]), _batches())
    _assert_same_path(path, without)
    assert np.abs(path[-1] - path[0]).max() > 1e-3  # the trainable ones moved


def test_a_parameter_that_gains_a_gradient_later_is_an_error():
    model = MLP()
    opt = make("sam", model.parameters(), **HP["sam"])
    _train(model, opt, _batches(1))
    x, y = _batches(1)[0]
    loss = nn.functional.cross_entropy(model(x), y) + model.unused(torch.ones(2, dtype=torch.float64)).sum()
    opt.zero_grad()
    loss.backward()
    with pytest.raises(RuntimeError, match="changed between steps"):
        opt.step(lambda: loss)


# ---- LR schedulers --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scheduler", ["step", "lambda"])
def test_lr_schedulers_set_the_next_steps_lr(name, scheduler):
    lr = HP[name]["lr"]
    factor = {"step": lambda t: 0.5 ** (t // 2), "lambda": lambda t: 1.0 / (1 + t)}[scheduler]
    model = MLP()
    opt = make(name, [{"params": _split(model)[0]}, {"params": _split(model)[1], "lr": lr / 2}], **HP[name])
    sched = (torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5) if scheduler == "step"
             else torch.optim.lr_scheduler.LambdaLR(opt, factor))
    scheduled = _train(model, opt, _batches(), before_step=lambda t: sched.step() if t else None)

    model = MLP()
    opt = make(name, [{"params": _split(model)[0]}, {"params": _split(model)[1], "lr": lr / 2}], **HP[name])

    def set_lr(t):
        opt.param_groups[0]["lr"] = lr * factor(t)
        opt.param_groups[1]["lr"] = lr / 2 * factor(t)

    manual = _train(model, opt, _batches(), before_step=set_lr)
    for a, b in zip(scheduled, manual):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=0)
    model = MLP()
    constant = _train(model, make(name, [{"params": _split(model)[0]}, {"params": _split(model)[1], "lr": lr / 2}],
                                  **HP[name]), _batches())
    assert np.abs(constant[-1] - scheduled[-1]).max() > 1e-6


# ---- closures and zero_grad -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_step_without_a_closure(name):
    model = MLP()
    opt = make(name, model.parameters(), **HP[name])
    x, y = _batches(1)[0]
    nn.functional.cross_entropy(model(x), y).backward()
    start = _flat(model.parameters())
    if OPTIMIZERS[name].two_pass:
        with pytest.raises(ValueError, match="closure"):
            opt.step()
        np.testing.assert_array_equal(_flat(model.parameters()), start)  # nothing was perturbed
    else:  # one-pass methods step with the present gradients, as torch.optim's do
        assert opt.step() is None
        assert np.abs(_flat(model.parameters()) - start).max() > 0


@pytest.mark.parametrize("name", NAMES)
def test_zero_grad_set_to_none(name):
    model = MLP()
    opt = make(name, model.parameters(), **HP[name])
    x, y = _batches(1)[0]
    nn.functional.cross_entropy(model(x), y).backward()
    opt.zero_grad(set_to_none=False)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in _used(model))
    assert all(p.grad is None for p in model.unused.parameters())
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())
    # a loop that keeps zeroed gradient tensors steps exactly as one that drops them
    model = MLP()
    kept = _train(model, make(name, model.parameters(), **HP[name]), _batches(), set_to_none=False)
    model = MLP()
    dropped = _train(model, make(name, model.parameters(), **HP[name]), _batches(), set_to_none=True)
    _assert_same_path(kept, dropped)
