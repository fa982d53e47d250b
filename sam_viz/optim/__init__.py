"""Optimizers: SGD, Adam and the SAM family, each a registry entry with a step program over a gradient oracle.

>>> from sam_viz.optim import make, OPTIMIZERS
>>> opt = make("lightsam1", model.parameters(), lr=0.1, rho=0.1)   # doctest: +SKIP

Layout: ``functional`` holds the pure pieces (perturbations, base updates) over stacked tensors ``(R, *shape)``;
``programs`` assembles them into step programs; ``oracle`` defines what a program may ask for (loss and gradient
at any stacked point on the step's batch, a sub-batch, the previous or a held-out batch, per-sample losses);
``registry`` holds one ``Variant`` per method; ``adapter`` runs any program as a ``torch.optim.Optimizer``.

Adding an optimizer touches its rule, its registry entry and its tests, nothing else (the engine, the sweep, the
adapter, the command line and the app's widgets and Learn page read the entry). For example, a SAM that takes its
ascent gradient on the first half of the batch only:

1. the rule, in ``programs.py`` (or ``functional.py`` for a perturbation of the ascent–descent shape)::

       def half_batch_sam_step(params, state, hp, oracle, names):
           s = oracle.grad(batch=torch.arange(hp["half"])).grads        # a sub-batch of the step's batch
           eps, info = sam_perturb(params, s, state, hp)
           probe = oracle.grad([p + e for p, e in zip(params, eps)])     # full batch at θ + e
           lr = sgd_update(params, probe.grads, state, hp)["effective_lr"]
           return {**info, "perturbed_grad_norm": global_norm(probe.grads), "effective_lr": lr,
                   "perturbed_loss": probe.loss, "perturbation": eps}

2. the entry, in ``registry.py``'s ``OPTIMIZERS``::

       "hsam": Variant(name="hsam", label="Half-batch SAM", ..., hparams=_sam_base(0.05, half=HParamSpec(...)),
                       program=Program(sgd_init, half_batch_sam_step, two_pass=True),
                       latex=r"...", where="Perturbations: ...", gd_limit=_plain_gd),

3. its tests in ``tests/test_optim.py`` (an oracle or a literal re-implementation); the parametrised tests over
   ``OPTIMIZERS`` (adapter, stacked runs equal single runs, parabola) pick the new entry up by themselves.
"""

from .adapter import SAMOptimizer, StepReport, make
from .functional import Rule, global_norm, one_pass_info
from .oracle import BatchClosure, ClosureOracle, Oracle, Probe
from .programs import REPORT_FIELDS, Program, ascent_descent, descent
from .registry import OPTIMIZERS, HParamSpec, OptimizerInfo, Variant, make_rule, validate

__all__ = ["OPTIMIZERS", "REPORT_FIELDS", "BatchClosure", "ClosureOracle", "HParamSpec", "OptimizerInfo", "Oracle", "Probe",
           "Program", "Rule", "SAMOptimizer", "StepReport", "Variant", "ascent_descent", "descent", "global_norm",
           "make", "make_rule", "one_pass_info", "validate"]
