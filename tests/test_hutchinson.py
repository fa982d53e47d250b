"""Hutch++ and Hutchinson against the exact trace of a dense float64 Hessian, and Hutch++ against curvlinops'."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sam_viz.dense import dense_matrix
from sam_viz.hutchinson import hutchinson_trace, hutchpp_trace, trace
from sam_viz.hvp import make_hvp

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
              pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def case():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    g = torch.Generator().manual_seed(1)
    batch = torch.randn(64, 2, generator=g, dtype=torch.float64), torch.randint(0, 3, (64,), generator=g)
    op = make_hvp(model, F.cross_entropy, batch)
    return model, batch, op, float(torch.trace(dense_matrix(op)))


@pytest.mark.parametrize("estimator", [hutchpp_trace, hutchinson_trace])
def test_within_its_standard_error_of_the_exact_trace(case, estimator):
    _, _, op, exact = case
    z = []
    for seed in range(12):
        r = estimator(op, 30, seed=seed)
        assert r.matvecs == 30 and r.stderr > 0
        z.append((r.estimate - exact) / r.stderr)
    # the errors in units of the reported standard error look like a standard normal
    assert max(abs(v) for v in z) < 4 and abs(np.mean(z)) < 1.5 and 0.3 < np.std(z) < 2.0


def test_trace_dispatches_by_name(case):
    _, _, op, _ = case
    assert trace(op, 30, seed=1) == hutchpp_trace(op, 30, seed=1)
    assert trace(op, 30, seed=1, method="hutchinson") == hutchinson_trace(op, 30, seed=1)
    with pytest.raises(ValueError, match="Invalid method"):
        trace(op, 30, method="xtrace")


def test_hutchpp_agrees_with_curvlinops(case):
    import curvlinops  # installed by scripts/test.sh (benchmarks/requirements.txt)
    model, batch, op, exact = case
    theirs_op = curvlinops.HessianLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), [batch],
                                                 check_deterministic=False)
    torch.manual_seed(0)  # curvlinops draws its probes from the global RNG
    theirs = [float(curvlinops.hutchpp_trace(theirs_op, num_matvecs=30)) for _ in range(8)]
    ours = [hutchpp_trace(op, 30, seed=s) for s in range(8)]
    stderr = np.mean([r.stderr for r in ours])
    # the same estimator: both means within a few of our standard errors of the exact trace, and of each other
    assert abs(np.mean(theirs) - exact) < 4 * stderr and abs(np.mean([r.estimate for r in ours]) - exact) < 4 * stderr
