"""The Hessian operator against curvlinops 3 (a peer library, pinned in benchmarks/requirements.txt) and autograd."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sam_viz.hvp import STRATEGIES, make_hvp

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
              pytest.mark.usefixtures("one_thread")]


def _case():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(48, 2, generator=g, dtype=torch.float64)
    return model, (x, torch.randint(0, 3, (48,), generator=g))


@pytest.mark.parametrize("mode", ["cached", "stateless"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_hvp_agrees_with_curvlinops(mode, strategy):
    import curvlinops  # installed by scripts/test.sh (benchmarks/requirements.txt)
    assert importlib.metadata.version("curvlinops-for-pytorch").startswith("3."), "pinned to curvlinops 3.x"
    model, batch = _case()
    params = list(model.parameters())
    theirs = curvlinops.HessianLinearOperator(model, nn.CrossEntropyLoss(), params, [batch], check_deterministic=False)
    ours = make_hvp(model, F.cross_entropy, batch, mode=mode, strategy=strategy)
    V = torch.randn(ours.dim, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(ours @ V, theirs @ V, atol=1e-10, rtol=0)
    torch.testing.assert_close(ours @ V[:, 0], theirs @ V[:, 0], atol=1e-10, rtol=0)
