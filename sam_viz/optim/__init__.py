"""Optimizers: SGD, Adam and the SAM family, each a functional rule plus a ``torch.optim.Optimizer`` adapter.

>>> from sam_viz.optim import make, OPTIMIZERS
>>> opt = make("lightsam1", model.parameters(), lr=0.1, rho=0.1)   # doctest: +SKIP
"""

from .adapter import SAMOptimizer, StepReport, make
from .functional import Rule, global_norm, make_rule, one_pass_info
from .registry import OPTIMIZERS, HParamSpec, OptimizerInfo, validate

__all__ = ["OPTIMIZERS", "HParamSpec", "OptimizerInfo", "Rule", "SAMOptimizer", "StepReport", "global_norm",
           "make", "make_rule", "one_pass_info", "validate"]
