"""Per-layer Hessian spectra against the exact dense Hessian's diagonal blocks (float64, a tiny CNN with BatchNorm)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from sam_viz.layer_spectrum import layer_groups, layer_spectra


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.bn(self.conv(x))).flatten(1))


@pytest.fixture()
def case():
    torch.manual_seed(0)
    model = TinyCNN().double()
    model.bn.running_mean.uniform_(-0.2, 0.2)  # non-trivial running statistics, so eval mode matters
    model.bn.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(12, 1, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (12,))
    return model, F.cross_entropy, (x, y)


def _exact_hessian(model: nn.Module, loss_fn, batch) -> tuple[torch.Tensor, list[tuple[str, int, int]]]:
    """The whole Hessian from ``torch.autograd.functional.hessian`` (an oracle independent of ``make_hvp``) and each
    parameter's (name, start, stop) in the flat vector."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        parts = dict(zip(names, (t.reshape(s) for t, s in zip(torch.split(flat, sizes), shapes))))
        return loss_fn(functional_call(model, parts, (batch[0],)), batch[1])

    H = torch.autograd.functional.hessian(loss_of, theta)
    offsets = np.cumsum([0] + sizes)
    return H, [(n, int(a), int(b)) for n, a, b in zip(names, offsets[:-1], offsets[1:])]


def test_layer_groups_follow_modules(case):
    model, _, _ = case
    assert layer_groups(model) == {"conv": ["conv.weight", "conv.bias"], "bn": ["bn.weight", "bn.bias"],
                                   "fc": ["fc.weight", "fc.bias"]}


def test_each_block_matches_the_exact_dense_block(case):
    model, loss_fn, batch = case
    H, spans = _exact_hessian(model, loss_fn, batch)
    result = layer_spectra(model, loss_fn, batch, k=3, density=True, iters=64, n_vectors=2)
    assert result.layers == ("conv", "bn", "fc")
    for layer, params, size, eigen, density in zip(result.layers, result.parameters, result.sizes, result.eigen,
                                                   result.density):
        idx = np.concatenate([np.arange(a, b) for n, a, b in spans if n in params])
        block = H[np.ix_(idx, idx)]
        exact = torch.linalg.eigvalsh(0.5 * (block + block.T)).flip(0).numpy()
        assert size == idx.size
        np.testing.assert_allclose(eigen.eigenvalues, exact[:min(3, size)], rtol=1e-6, atol=1e-9, err_msg=layer)
        # SLQ with as many steps as the block's size: every node that carries weight is an exact eigenvalue
        nodes = density.nodes[density.weights > 1e-8]
        assert np.abs(nodes[:, None] - exact[None]).min(axis=1).max() < 1e-6 * max(1.0, abs(exact).max())


def test_blocks_are_not_the_whole_spectrum(case):
    # The whole Hessian's λ_max bounds every block's (interlacing), and couples layers: a strict gap here.
    model, loss_fn, batch = case
    H, _ = _exact_hessian(model, loss_fn, batch)
    whole = float(torch.linalg.eigvalsh(H)[-1])
    result = layer_spectra(model, loss_fn, batch, k=1)
    assert np.all(result.lambda_max <= whole + 1e-9)
    assert result.lambda_max.max() < whole - 1e-6


def test_custom_groups_and_bad_groups(case):
    model, loss_fn, batch = case
    H, spans = _exact_hessian(model, loss_fn, batch)
    weights = {"weights": ["conv.weight", "fc.weight"]}
    result = layer_spectra(model, loss_fn, batch, k=2, groups=weights)
    idx = np.concatenate([np.arange(a, b) for n, a, b in spans if n in weights["weights"]])
    exact = torch.linalg.eigvalsh(H[np.ix_(idx, idx)]).flip(0).numpy()
    np.testing.assert_allclose(result.eigen[0].eigenvalues, exact[:2], rtol=1e-6)
    with pytest.raises(ValueError, match="no parameter 'conv.w'"):
        layer_spectra(model, loss_fn, batch, groups={"a": ["conv.w"]})
    with pytest.raises(ValueError, match="in both"):
        layer_spectra(model, loss_fn, batch, groups={"a": ["fc.bias"], "b": ["fc.bias"]})
    with pytest.raises(ValueError, match="no parameters"):
        layer_spectra(model, loss_fn, batch, groups={"a": []})
    with pytest.raises(ValueError, match="Invalid k"):
        layer_spectra(model, loss_fn, batch, k=0)
    with pytest.raises(ValueError, match="param_filter"):
        layer_spectra(model, loss_fn, batch, param_filter="fc")
