"""Fast grid evaluators: the loss of a model at many points of a plane, each evaluator a different way to compute it.

``LoopEvaluator`` runs one ``functional_call`` per point; ``VmapEvaluator`` vmaps it over a chunk of points;
``MLPEvaluator`` and ``OneDNNEvaluator`` fuse chains of Linear layers and activations into batched GEMMs. All run
on private parameter tensors: the caller's model is never moved, frozen or put in another mode. Which one runs is
the caller's choice (``build(name, ...)``), a fixed default (``default_evaluator``), or a measurement made by an
explicit ``sam_viz.planner.SurfacePlanner``; nothing here times itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from .models import accuracy as accuracy_of  # `accuracy` is a flag's name here
from .models import split_parameters

if TYPE_CHECKING:
    from .planes import Plane

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and dtype of the model's first parameter (the grid is evaluated in them)."""
    p = next(model.parameters())
    return p.device, p.dtype


def _at_point(model: nn.Module, loss_fn: LossFn, batch: Batch, flat: Tensor, accuracy: bool) -> tuple[Tensor, Tensor | None]:
    """Loss (and accuracy) with the parameters ``flat`` (P,), the model untouched."""
    out = functional_call(model, split_parameters(model, flat), (batch[0],))
    return loss_fn(out, batch[1]), (accuracy_of(out, batch[1]) if accuracy else None)


POINTS_PER_CALL = 64  # trajectory points evaluated by one vmapped forward


def evaluate_points(model: nn.Module, loss_fn: LossFn, batch: Batch, points: np.ndarray,
                    accuracy: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Loss (and accuracy) at each flat parameter vector of ``points`` (T, P).

    ``vmap`` of ``functional_call`` over chunks of ``POINTS_PER_CALL`` points: a trajectory's few hundred points
    would otherwise cost a Python-bound forward each (0.3 s of a default page's 0.4 s surface). A model that
    ``vmap`` cannot take (data-dependent control flow, in-place buffer updates) gets one forward per point; the
    numbers agree to float rounding either way.
    """
    device, dtype = model_device_dtype(model)
    pts = torch.as_tensor(np.atleast_2d(points), device=device, dtype=dtype)
    with torch.no_grad():
        try:
            values = _vmapped_points(model, loss_fn, batch, pts, accuracy)
        except Exception:  # noqa: BLE001 - any vmap limitation: the per-point path gives the same numbers
            values = [_at_point(model, loss_fn, batch, row, accuracy) for row in pts]
            values = (torch.stack([v[0] for v in values]) if values else pts.new_zeros(0),
                      torch.stack([v[1] for v in values]) if accuracy and values else None)
    loss = values[0].detach().cpu().numpy().astype(np.float64)
    return loss, (values[1].detach().cpu().numpy().astype(np.float64) if accuracy else None)


def _vmapped_points(model: nn.Module, loss_fn: LossFn, batch: Batch, pts: Tensor,
                    accuracy: bool) -> tuple[Tensor, Tensor | None]:
    def one(params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        out = functional_call(model, params, (batch[0],))
        return loss_fn(out, batch[1]), (accuracy_of(out, batch[1]) if accuracy else out.new_zeros(()))

    batched = torch.func.vmap(one)
    losses, accs = [], []
    for start in range(0, len(pts), POINTS_PER_CALL):
        loss, acc = batched(split_parameters(model, pts[start:start + POINTS_PER_CALL]))
        losses.append(loss)
        accs.append(acc)
    if not losses:
        return pts.new_zeros(0), (pts.new_zeros(0) if accuracy else None)
    return torch.cat(losses), (torch.cat(accs) if accuracy else None)


class Evaluator:
    """Loss (and accuracy) at K points of a plane per call; each subclass is one way to compute them.

    ``evaluator(alpha, beta)`` takes (K,) coordinates and returns (K,) losses and (K,) accuracies (or None);
    ``chunk()`` is the K it is built for. Every evaluator gives the same numbers to float tolerance
    (``tests/test_landscape.py`` holds each to a naive per-point loop), so which one runs is only a matter of speed.
    """

    name = "base"

    def __init__(self, model: nn.Module, loss_fn: LossFn, batch: Batch, plane: Plane, accuracy: bool) -> None:
        self.model, self.loss_fn, self.accuracy = model, loss_fn, accuracy
        self.x, self.y = batch
        device, dtype = model_device_dtype(model)
        self.device, self.dtype = device, dtype
        self.origin, self.d1, self.d2 = (torch.tensor(v, device=device, dtype=dtype) for v in (plane.origin, plane.d1, plane.d2))

    def __call__(self, alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def chunk(self) -> int:
        """Points per call."""
        return 1


class LoopEvaluator(Evaluator):
    """One ``functional_call`` per point: best where one point's activations already fill the caches."""

    name = "loop"

    @torch.no_grad()
    def __call__(self, alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor | None]:
        values = [_at_point(self.model, self.loss_fn, (self.x, self.y),
                            torch.add(self.origin, self.d1, alpha=a).add_(self.d2, alpha=b), self.accuracy)
                  for a, b in zip(alpha.tolist(), beta.tolist())]
        return torch.stack([v[0] for v in values]), (torch.stack([v[1] for v in values]) if self.accuracy else None)


class VmapEvaluator(Evaluator):
    """``vmap`` of ``functional_call`` over a chunk of points: amortises per-call overhead on small data/GPUs."""

    name = "vmap"

    def __init__(self, *args, chunk: int = 16) -> None:
        super().__init__(*args)
        self._chunk = chunk

        def one(params: dict[str, Tensor]) -> Tensor | tuple[Tensor, Tensor]:
            out = functional_call(self.model, params, (self.x,))
            loss = self.loss_fn(out, self.y)
            return (loss, accuracy_of(out, self.y)) if self.accuracy else loss

        self._batched = torch.func.vmap(one)

    def chunk(self) -> int:
        return self._chunk

    @torch.no_grad()
    def __call__(self, alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor | None]:
        flat = self.origin + alpha[:, None] * self.d1 + beta[:, None] * self.d2
        out = self._batched(split_parameters(self.model, flat))
        return out if self.accuracy else (out, None)


_ELEMENTWISE = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.GELU: "gelu", nn.Sigmoid: "sigmoid", nn.Softplus: "softplus", nn.ELU: "elu"}


def linear_chain(model: nn.Module) -> list[nn.Module] | None:
    """The layers of a model that is a plain chain of Linear and elementwise activations, else None."""
    seq = model if isinstance(model, nn.Sequential) else None
    children = list(model.children())
    if seq is None and len(children) == 1 and isinstance(children[0], nn.Sequential):
        seq = children[0]
        if not hasattr(model, "layers"):
            return None
    if seq is None:
        return None
    layers = list(seq)
    ok = layers and isinstance(layers[0], nn.Linear) and isinstance(layers[-1], nn.Linear)
    ok = ok and all(isinstance(m, nn.Linear) or type(m) in _ELEMENTWISE for m in layers)
    if ok and all(m.bias is not None for m in layers if isinstance(m, nn.Linear)):
        # The model's names must be the chain's, so flat offsets line up with the layers.
        return layers
    return None


def _activation(kind: str, h: Tensor) -> Tensor:
    """In-place activation. tanh uses tanh(x) = 2σ(2x) − 1: torch's sigmoid kernel is several times faster than
    its tanh on CPUs, and the identity is exact up to ~1e-7 absolute in float32."""
    if kind == "tanh":
        return h.mul_(2).sigmoid_().mul_(2).sub_(1)
    if kind == "relu":
        return h.relu_()
    if kind == "sigmoid":
        return h.sigmoid_()
    return {"gelu": nn.functional.gelu, "sigmoid": torch.sigmoid, "softplus": nn.functional.softplus,
            "elu": nn.functional.elu}[kind](h)


# A buffer pool, not a result cache: it holds no numbers between surfaces, only memory (``release_buffers``).
_SCRATCH = threading.local()
SCRATCH_KEEP_BYTES = 64 << 20  # larger activation buffers are not kept between surfaces


def _scratch(size: int, device: torch.device, dtype: torch.dtype) -> list[Tensor]:
    """Two activation buffers of ``size`` elements, kept per thread across surfaces: fresh pages are zeroed by the
    kernel on first touch, which made a surface's first chunks (its coarse picture) twice as slow per point."""
    kept = getattr(_SCRATCH, "buffers", None)
    if kept is not None and kept[0].numel() >= size and kept[0].device == device and kept[0].dtype == dtype:
        return [b[:size] for b in kept]
    buffers = [torch.empty(size, device=device, dtype=dtype) for _ in range(2)]
    if 2 * size * buffers[0].element_size() <= SCRATCH_KEEP_BYTES:
        _SCRATCH.buffers = buffers
    return buffers


class MLPEvaluator(Evaluator):
    """Fused evaluator for Linear/activation chains (our MLP and logistic models).

    For a chunk of K points each layer's weights are W + a·D1 + b·D2; one GEMM with inner dimension 3 builds all
    K weight sets ([a, b, 1] @ [D1; D2; W]). The first layer is either a batched GEMM on the inputs with a ones
    column carrying the bias (when there are at most 3 input features), or a combination of three precomputed
    (N, H) products X(W + aD1 + bD2)ᵀ, whichever reads less memory. Activations live in two buffers reused
    across chunks: a fresh multi-megabyte tensor per layer costs a page fault per 4 KiB on every call.
    """

    name = "mlp"

    def __init__(self, *args, chunk: int = 8) -> None:
        super().__init__(*args)
        self._chunk = chunk
        self.layers = linear_chain(self.model)
        self.ce = self.loss_fn is nn.functional.cross_entropy
        names = [n for n, _ in self.model.named_parameters()]
        views = split_parameters(self.model, torch.stack([self.d1, self.d2, self.origin]))  # {name: (3, *shape)}
        # per Linear: (out, in, (3, in·out + out) rows [D1; D2; W] with W stored as [Wᵀ; b], activation after it)
        self.stack = []
        linear_idx = 0
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, nn.Linear):
                continue
            w_name, b_name = names[2 * linear_idx], names[2 * linear_idx + 1]
            rows = torch.cat([views[w_name].transpose(1, 2).reshape(3, -1), views[b_name]], dim=1)
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            self.stack.append((layer.out_features, layer.in_features, rows, _ELEMENTWISE.get(type(nxt))))
            linear_idx += 1
        # Two classes under cross-entropy: only the logit difference d = z₁ − z₀ matters (loss = softplus(±d)),
        # so the last layer collapses to one output: half its GEMM, no log-softmax over (K·N, 2).
        out_l, in_l, rows_l, act_l = self.stack[-1]
        self.binary = self.ce and out_l == 2
        if self.binary:
            w_t = rows_l[:, : in_l * 2].reshape(3, in_l, 2)
            bias = rows_l[:, in_l * 2:]
            diff = torch.cat([w_t[:, :, 1] - w_t[:, :, 0], bias[:, 1:] - bias[:, :1]], dim=1)
            self.stack[-1] = (1, in_l, diff, act_l)
            self.sign = 1.0 - 2.0 * self.y.to(self.dtype)  # loss_i = softplus(sign_i · d_i)
        self._fold_tanh()
        out0, in0, rows0, _ = self.stack[0]
        if in0 <= 3:
            self.x_ones = torch.cat([self.x, torch.ones_like(self.x[:, :1])], dim=1)  # (N, in0 + 1)
            self.first = None
        else:  # X Wᵀ + b for the three rows of the first layer: (3, N·out0)
            w0 = rows0[:, : out0 * in0].reshape(3, in0, out0)
            self.first = (torch.matmul(self.x, w0) + rows0[:, None, out0 * in0:]).reshape(3, -1)
        self.y_rep = None if self.binary else self.y.repeat(self._chunk)  # labels of a chunk's (K·N, C) logits
        self.buffers = _scratch(self._chunk * self.x.shape[0] * max(out for out, *_ in self.stack), self.device, self.dtype)

    def _fold_tanh(self) -> None:
        """tanh(z) = 2σ(2z) − 1 with the affine parts folded into the weights: the layer before a tanh is scaled
        by 2 and the layer after it reads σ instead, W(2σ − 1) + b = (2W)σ + (b − W·1). Each tanh then costs one
        in-place sigmoid pass over the activations instead of four (the activations of 8 points × 2,000 samples
        do not fit in the caches, so every pass is a trip to memory). Exact up to float rounding."""
        for i in range(len(self.stack) - 1):
            out_f, in_f, rows, act = self.stack[i]
            if act != "tanh":
                continue
            self.stack[i] = (out_f, in_f, 2 * rows, "sigmoid")
            out_n, in_n, rows_n, act_n = self.stack[i + 1]
            w = rows_n[:, : in_n * out_n].reshape(3, in_n, out_n)
            bias = rows_n[:, in_n * out_n:] - w.sum(1)
            self.stack[i + 1] = (out_n, in_n, torch.cat([2 * w.reshape(3, -1), bias], dim=1), act_n)

    def chunk(self) -> int:
        return self._chunk

    @staticmethod
    def _weights(coeff: Tensor, layer: tuple) -> tuple[Tensor, Tensor]:
        """Per-point (K, in, out) weights and (K, 1, out) biases of one layer."""
        out_f, in_f, rows, _ = layer
        params = coeff @ rows  # (K, in·out + out)
        return params[:, : out_f * in_f].unflatten(1, (in_f, out_f)), params[:, None, out_f * in_f:]

    def _first_layer(self, coeff: Tensor) -> Tensor:
        """The first layer's activations for the chunk, (K, N, out0), in the first buffer."""
        k, n = coeff.shape[0], self.x.shape[0]
        out0, in0, rows0, act = self.stack[0]
        h = self.buffers[0][: k * n * out0].view(k, n, out0)
        if self.first is None:
            torch.bmm(self.x_ones.expand(k, -1, -1), (coeff @ rows0).view(k, in0 + 1, out0), out=h)
        else:
            torch.mm(coeff, self.first, out=h.view(k, -1))
        return _activation(act, h) if act else h

    def _later_layers(self, h: Tensor, coeff: Tensor) -> Tensor:
        """The remaining layers, batched over the chunk: (K, N, outputs)."""
        (cur, spare), last = self.buffers, len(self.stack) - 1
        for i, layer in enumerate(self.stack[1:], 1):
            w, b = self._weights(coeff, layer)
            if self.binary and i == last:  # one output: a multiply-and-sum runs 3× faster than bmm's matrix-vector
                h = torch.mul(h, w.transpose(1, 2), out=spare[: h.numel()].view_as(h)).sum(-1, keepdim=True).add_(b)
            else:
                h = torch.baddbmm(b, h, w, out=spare[: h.shape[0] * h.shape[1] * layer[0]].view(*h.shape[:2], layer[0]))
                cur, spare = spare, cur
            if layer[3]:
                h = _activation(layer[3], h)
        return h

    @torch.no_grad()
    def __call__(self, alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor | None]:
        k, n = alpha.shape[0], self.x.shape[0]
        coeff = torch.stack([alpha, beta, torch.ones_like(alpha)], dim=1)  # (K, 3)
        h = self._later_layers(self._first_layer(coeff), coeff)
        if self.binary:
            d = h[..., 0]
            loss = nn.functional.softplus(self.sign * d).mean(1)
            # argmax picks the first of equal logits, so class 1 wins only when d > 0
            acc = ((d > 0) == (self.y == 1)).to(d.dtype).mean(1) if self.accuracy else None
            return loss, acc
        if self.ce:
            loss = nn.functional.cross_entropy(h.reshape(k * n, -1), self.y_rep[: k * n], reduction="none").reshape(k, n).mean(1)
        else:
            loss = torch.stack([self.loss_fn(h[i], self.y) for i in range(k)])
        acc = (h.argmax(-1) == self.y).to(h.dtype).mean(1) if self.accuracy else None
        return loss, acc


def onednn_linear(model: nn.Module | None = None) -> Callable | None:
    """oneDNN's fused linear + activation, where this torch build has it (CPU builds with MKL-DNN) and, given a
    model, where it can run that model (float32 on the CPU)."""
    if model is not None and model_device_dtype(model) != (torch.device("cpu"), torch.float32):
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


# activation → (oneDNN's fused post-op, its algorithm argument); the others are applied after the linear
_ONEDNN_FUSED = {"relu": ("relu", ""), "tanh": ("tanh", ""), "sigmoid": ("sigmoid", ""), "gelu": ("gelu", "none")}


class OneDNNEvaluator(MLPEvaluator):
    """The fused MLP evaluator with the layers after the first run point by point through oneDNN's linear with
    the activation fused in. On CPUs where MKL takes its AVX2 path (AMD), oneDNN's AVX-512 float32 GEMM is ~1.6×
    faster for these shapes at the same accuracy, and the fused activation saves a pass over the activations.
    """

    name = "onednn"

    def __init__(self, model: nn.Module, *args, chunk: int = 8) -> None:
        self.linear = onednn_linear(model)  # checked before the parent allocates anything
        if self.linear is None:
            raise NotImplementedError("oneDNN's linear runs float32 models on the CPU, in torch builds with MKL-DNN")
        super().__init__(model, *args, chunk=chunk)

    def _later_layers(self, h: Tensor, coeff: Tensor) -> Tensor:
        layers = []
        for i, layer in enumerate(self.stack[1:], 1):
            w, b = self._weights(coeff, layer)
            layers.append((w.transpose(1, 2).unbind(0), b[:, 0].unbind(0), layer[3], self.binary and i == len(self.stack) - 1))
        outputs = []
        for i, hi in enumerate(h.unbind(0)):
            for w, b, act, dot in layers:
                if dot:  # one output: a matrix-vector product
                    hi = torch.mv(hi, w[i][0]).add_(b[i])[:, None]
                    continue
                attr, algorithm = _ONEDNN_FUSED.get(act, ("none", ""))
                hi = self.linear(hi, w[i], b[i], attr, [], algorithm)
                if act and act not in _ONEDNN_FUSED:
                    hi = _activation(act, hi)
            outputs.append(hi)
        return torch.stack(outputs)


EVALUATORS: dict[str, type[Evaluator]] = {cls.name: cls for cls in (LoopEvaluator, VmapEvaluator, MLPEvaluator,
                                                                     OneDNNEvaluator)}
ROWS_PER_CHUNK = 16_384  # K·N ≈ 16k rows keeps a chunk's activations near the caches' size (measured on 2-core CPUs)


def chunk_size(n: int, rows: int = ROWS_PER_CHUNK) -> int:
    """Points per call for ``n`` samples: ``rows // n``, between 1 and 256."""
    return max(1, min(256, rows // max(n, 1)))


def candidates(model: nn.Module, n: int) -> list[tuple[str, int]]:
    """The evaluators that can run ``model`` on ``n`` samples, as (name, chunk): what a planner times.

    Args:
        model: the network.
        n: samples in the batch.

    Returns:
        (name, chunk) pairs: the loop; the fused MLP at two chunk sizes and oneDNN (Linear chains; oneDNN only for
        float32 on the CPU); vmap.
    """
    out = [("loop", 1)]
    if linear_chain(model) is not None:
        out += [("mlp", c) for c in sorted({chunk_size(n), chunk_size(n, ROWS_PER_CHUNK // 4)})]
        if onednn_linear(model) is not None:
            out.append(("onednn", chunk_size(n)))
    out.append(("vmap", chunk_size(n)))
    return out


def default_evaluator(model: nn.Module) -> str:
    """The evaluator used without a measurement, fixed per kind of model and device.

    Linear chains (our MLPs and logistic models) take "mlp" on every device: on an Intel Xeon (1 thread, loaded
    machine; ``benchmarks/RESULTS.md``) it was the fastest candidate at N = 256 and within 10% of oneDNN at
    N = 2,000, and on a GPU its few large batched GEMMs suit the device (not yet measured there). Other models
    take "loop" on the CPU (one point's activations already fill the caches) and "vmap" elsewhere (a GPU needs
    large kernels). Where oneDNN's GEMM is much the faster (AMD EPYC, where MKL runs AVX2 code), "onednn" wins
    by measurement: use a ``SurfacePlanner``.

    Args:
        model: the network; its parameters give the device.

    Returns:
        An evaluator name, a key of ``EVALUATORS``.
    """
    if linear_chain(model) is not None:
        return "mlp"
    return "loop" if model_device_dtype(model)[0].type == "cpu" else "vmap"


def build(name: str, model: nn.Module, loss_fn: LossFn, batch: Batch, plane: Plane, accuracy: bool,
          chunk: int | None = None) -> Evaluator:
    """The evaluator called ``name`` for this model, data and plane.

    Args:
        name: a key of ``EVALUATORS``: "loop", "vmap", "mlp" or "onednn".
        model: the network; only its structure is used.
        loss_fn: ``loss_fn(outputs, y)``, a mean over the batch.
        batch: ``(x, y)`` on the model's device.
        plane: the plane whose points are evaluated.
        accuracy: also compute accuracy.
        chunk: points per call; None: the largest of ``candidates`` for that name.

    Returns:
        The evaluator.

    Raises:
        ValueError: an unknown name, or one that cannot run this model (e.g. oneDNN for float64).
    """
    offered = candidates(model, batch[0].shape[0])
    chunks = [c for n, c in offered if n == name]
    if not chunks:
        raise ValueError(f"Invalid evaluator: {name!r}; valid for this model: auto, "
                         f"{', '.join(sorted({n for n, _ in offered}))}")
    cls = EVALUATORS[name]
    kwargs = {} if cls is LoopEvaluator else {"chunk": int(chunk) if chunk is not None else max(chunks)}
    try:
        return cls(model, loss_fn, batch, plane, accuracy, **kwargs)
    except NotImplementedError as err:
        raise ValueError(f"Evaluator {name!r} cannot run here: {err}") from None


def release_buffers() -> None:
    """Drop this thread's kept activation buffers (see ``scratch``); the next fused surface allocates afresh."""
    _SCRATCH.__dict__.clear()
