"""BatchedMLP: V multilayer perceptrons of one shape, stacked, with a hand-written backward pass.

Model (every variant): ``sizes = [D, H_1, ..., H_k, C]``; hidden units are
ReLU, the output is linear and the loss is softmax cross-entropy on the C
logits (mean over the minibatch, nats per example). Binary 2-D tasks use the
same path with C = 2 logits (``softmax([z0, z1])_1 = sigmoid(z1 - z0)``, so it
is logistic regression on a logit difference): one code path for every task.

Storage: ``weights[l]`` is (V, in, out) and ``biases[l]`` (V, 1, out), so a
layer is ``z = h @ W + b`` with ``h`` (V, B, in) by one batched matmul for all
variants. Column ``j`` of ``weights[l][v]`` is unit ``j``'s incoming weights.

Initialisation (``StudyConfig.init``; fan_in = in, fan_out = out):

* ``he_normal``:      W ~ N(0, 2 / fan_in),                 b = 0  (He et al. 2015; suits ReLU)
* ``he_uniform``:     W ~ U(-sqrt(6 / fan_in), +...),       b = 0
* ``glorot_uniform``: W ~ U(-sqrt(6 / (fan_in + fan_out)), +...), b = 0  (Keras' default)
* ``torch_default``:  W, b ~ U(-1/sqrt(fan_in), +1/sqrt(fan_in))  (``nn.Linear``'s default)

Each variant draws from its own generator seeded by its seed alone, layer by
layer (W then b), so variant (method, seed) starts from the same weights
whatever the other variants, their number or its position; and all methods
with the same seed start from the same weights (paired comparisons).
Parameters are drawn on the CPU, so CPU and CUDA runs start identically.

The backward pass is written by hand for this fixed family (and tested
against autograd): it accumulates each weight gradient straight into a
caller's buffer with one ``baddbmm_`` (``buf = beta * buf + h^T dz``, e.g.
the momentum buffer) and applies the ReLU derivative with the fused
``threshold_backward`` kernel. Batched autograd is slower than this (it makes
extra copies in the bmm backward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

INIT_STREAM, DROPOUT_STREAM, ORDER_STREAM = 1, 2, 3


def stream_seed(seed: int, stream: int) -> int:
    """A 32-bit generator seed for one purpose (``stream``) of one seed, decorrelated by SeedSequence.

    32 bits because torch's CPU generator (mt19937) only uses 32 bits of its seed.
    """
    return int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, np.uint32)[0])


def init_parameters(sizes: list[int], seed: int, init: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One variant's weights [(in, out)] and biases [(out,)], float32 on the CPU, from ``seed``."""
    gen = torch.Generator().manual_seed(stream_seed(seed, INIT_STREAM))
    weights, biases = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        w = torch.empty(fan_in, fan_out)
        b = torch.zeros(fan_out)
        if init == "he_normal":
            w.normal_(0.0, math.sqrt(2.0 / fan_in), generator=gen)
        elif init == "he_uniform":
            bound = math.sqrt(6.0 / fan_in)
            w.uniform_(-bound, bound, generator=gen)
        elif init == "glorot_uniform":
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            w.uniform_(-bound, bound, generator=gen)
        elif init == "torch_default":
            bound = 1.0 / math.sqrt(fan_in)
            w.uniform_(-bound, bound, generator=gen)
            b.uniform_(-bound, bound, generator=gen)
        else:
            raise ValueError(f"unknown init {init!r}")
        weights.append(w)
        biases.append(b)
    return weights, biases


@dataclass
class InputPart:
    """A contiguous range of variants that read the same kind of first-layer input.

    ``x`` is either the shared minibatch (B, D), read by every variant of the
    range through a stride-0 view (no copies), or a per-variant input
    (Vr, B, D) such as dropped-out pixels. ``scale`` multiplies the layer's
    matmul (``alpha`` of baddbmm): the inverted-dropout factor 1 / (1 - p),
    folded into the GEMM instead of a pass over the input.
    """
    variants: slice
    x: torch.Tensor
    scale: float = 1.0

    def batched(self) -> torch.Tensor:
        if self.x.dim() == 3:
            return self.x
        n = self.variants.stop - self.variants.start
        return self.x.unsqueeze(0).expand(n, *self.x.shape)


HiddenHook = Callable[[int, torch.Tensor], None]


class BatchedMLP:
    """Stacked MLP parameters plus the buffers of one training step."""

    def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor]):
        self.weights = weights                      # [(V, in, out)]
        self.biases = biases                        # [(V, 1, out)]
        self.sizes = [weights[0].shape[1]] + [w.shape[2] for w in weights]
        self.n_variants = weights[0].shape[0]
        self._buffers: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    @classmethod
    def initialize(cls, sizes: list[int], seeds: list[int], init: str, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> BatchedMLP:
        """One variant per entry of ``seeds`` (repeats allowed: same seed, same weights)."""
        per_seed = {s: init_parameters(sizes, s, init) for s in dict.fromkeys(seeds)}
        weights = [torch.stack([per_seed[s][0][l] for s in seeds]).to(device, dtype) for l in range(len(sizes) - 1)]
        biases = [torch.stack([per_seed[s][1][l] for s in seeds]).unsqueeze(1).to(device, dtype)
                  for l in range(len(sizes) - 1)]
        return cls(weights, biases)

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def parameters(self) -> list[torch.Tensor]:
        return [*self.weights, *self.biases]

    def _step_buffers(self, b: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Preallocated (V, b, n) outputs of every layer, and (V, b, H) gradients of the hidden ones."""
        if b not in self._buffers:
            V, like = self.n_variants, {"device": self.weights[0].device, "dtype": self.weights[0].dtype}
            outs = [torch.empty(V, b, n, **like) for n in self.sizes[1:]]
            grads = [torch.empty(V, b, n, **like) for n in self.sizes[1:-1]]
            self._buffers[b] = (outs, grads)
        return self._buffers[b]

    def forward(self, parts: list[InputPart], hidden_hook: HiddenHook | None = None) -> torch.Tensor:
        """Training forward pass; returns logits (V, b, C), keeps every layer's output for backward.

        ``hidden_hook(l, h)`` runs on each hidden layer's ReLU output (V, b, H_l)
        before the next layer reads it, and may change it in place (dropout).
        """
        b = parts[0].x.shape[-2]
        outs, _ = self._step_buffers(b)
        W, bias = self.weights, self.biases
        first = outs[0]
        for part in parts:
            sl = part.variants
            x = part.batched()
            torch.baddbmm(bias[0][sl].expand(x.shape[0], b, -1), x, W[0][sl], alpha=part.scale, out=first[sl])
        for l in range(1, self.n_layers):
            h = outs[l - 1].relu_()
            if hidden_hook is not None:
                hidden_hook(l - 1, h)
            torch.baddbmm(bias[l].expand(-1, b, -1), h, W[l], out=outs[l])
        return outs[-1]

    def backward(self, dlogits: torch.Tensor, parts: list[InputPart], weight_grads: list[torch.Tensor],
                 bias_grads: list[torch.Tensor], beta: float = 0.0, hidden_hook: HiddenHook | None = None) -> None:
        """Backward pass of the last :meth:`forward`, weights as they were in it.

        ``dlogits`` (V, b, C) is dLoss/dlogits. For every layer,
        ``weight_grads[l] = beta * weight_grads[l] + dLoss/dW_l`` and the same
        for ``bias_grads`` (beta = 0: plain gradients, the old content ignored;
        beta = momentum: a momentum buffer). ``hidden_hook(l, dh)`` runs on the
        gradient with respect to hidden layer l's (post-hook) output before the
        ReLU derivative, and may change it in place (dropout mask, KL term).
        ``dlogits`` is overwritten.
        """
        b = dlogits.shape[1]
        outs, grads = self._step_buffers(b)
        dz = dlogits
        for l in range(self.n_layers - 1, 0, -1):
            h = outs[l - 1]
            weight_grads[l].baddbmm_(h.transpose(1, 2), dz, beta=beta)
            _accumulate_bias_grad(bias_grads[l], dz, beta)
            dh = torch.bmm(dz, self.weights[l].transpose(1, 2), out=grads[l - 1])
            if hidden_hook is not None:
                hidden_hook(l - 1, dh)
            # ReLU derivative: keep dh where the unit's (post-dropout) output is > 0
            torch.ops.aten.threshold_backward.grad_input(dh, h, 0, grad_input=dh)
            dz = dh
        for part in parts:
            sl = part.variants
            weight_grads[0][sl].baddbmm_(part.batched().transpose(1, 2), dz[sl], beta=beta, alpha=part.scale)
        _accumulate_bias_grad(bias_grads[0], dz, beta)

    @torch.no_grad()
    def forward_eval(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (V, n, C) and hidden outputs [(V, n, H_l)] for a shared input x (n, D); no dropout."""
        V = self.n_variants
        h = x.unsqueeze(0).expand(V, *x.shape)
        hidden = []
        for l in range(self.n_layers):
            z = torch.baddbmm(self.biases[l].expand(-1, x.shape[0], -1), h, self.weights[l])
            if l < self.n_layers - 1:
                h = z.relu_()
                hidden.append(h)
            else:
                return z, hidden
        raise AssertionError("unreachable")

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, chunk: int) -> dict[str, torch.Tensor]:
        """Sums over a split, per variant, without dropout; tensors on the model's device.

        ``loss_sum`` (V,) cross-entropy in nats, ``error_count`` (V,) misclassified
        examples, ``hidden_sum`` [(V, H_l)] summed ReLU outputs of each hidden unit.
        """
        V, dev = self.n_variants, self.weights[0].device
        loss_sum = torch.zeros(V, dtype=torch.float64, device=dev)
        error_count = torch.zeros(V, dtype=torch.int64, device=dev)
        hidden_sum = [torch.zeros(V, n, dtype=torch.float64, device=dev) for n in self.sizes[1:-1]]
        for i in range(0, x.shape[0], chunk):
            xb, yb = x[i:i + chunk], y[i:i + chunk]
            logits, hidden = self.forward_eval(xb)
            loss_sum += cross_entropy_per_example(logits, yb).sum(1, dtype=torch.float64)
            error_count += (logits.argmax(-1) != yb).sum(1)
            for acc, h in zip(hidden_sum, hidden):
                acc += h.sum(1, dtype=torch.float64)
        return {"loss_sum": loss_sum, "error_count": error_count, "hidden_sum": hidden_sum}


def cross_entropy_per_example(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(V, n, C) logits, (n,) labels -> (V, n) ``-log softmax(z)_y`` in nats."""
    logp = torch.log_softmax(logits, dim=-1)
    return -logp.gather(2, y.view(1, -1, 1).expand(logits.shape[0], -1, 1)).squeeze(2)


def _accumulate_bias_grad(buf: torch.Tensor, dz: torch.Tensor, beta: float) -> None:
    """buf (V, 1, out) = beta * buf + sum over the batch of dz (V, b, out)."""
    if beta == 0.0:
        torch.sum(dz, dim=1, keepdim=True, out=buf)
        return
    if beta != 1.0:
        buf.mul_(beta)
    buf.add_(dz.sum(dim=1, keepdim=True))
