"""BatchedMLP: V multilayer perceptrons of one shape, stacked, with a hand-written backward pass.

Model (every variant): ``sizes = [D, H_1, ..., H_k, C]``; hidden units are
ReLU, the output is linear and the loss is softmax cross-entropy on the C
logits (mean over the minibatch, nats per example). Binary 2-D tasks use the
same path with C = 2 logits (``softmax([z0, z1])_1 = sigmoid(z1 - z0)``, so it
is logistic regression on a logit difference): one code path for every task.

Storage: ``weights[l]`` is (V, in, out) and ``biases[l]`` (V, 1, out), so a
layer is ``z = h @ W + b`` with ``h`` (V, B, in) by one batched matmul for all
variants. Column ``j`` of ``weights[l][v]`` is unit ``j``'s incoming weights.
Hidden outputs are (V, B, H); logits are class-major (V, C, B) (see ``_logits``).

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
``threshold_backward`` kernel. Where the variants' momenta differ (methods with
their own momentum or ramp), ``beta`` is given as runs of variants with equal
momentum and each run gets its own ``baddbmm_`` with that float: a variant's
arithmetic is then the same whatever its neighbours' momenta (scaling the
buffer by a per-variant tensor first and adding the product would round
differently, so a variant would train differently beside other momenta than
alone). Batched autograd is slower than this (it makes
extra copies in the bmm backward).

Train-time noise on weights (DropConnect): a :class:`WeightPart` gives, for a contiguous range of
variants, the weights ``W_eff = W * F`` that one layer's products read this step instead of W (the
forward product and the gradient w.r.t. the layer's input, ``dh = dz W_eff^T``), and the factor F by
which that layer's weight gradient is multiplied (``dL/dW = F * (h^T dz)``) before it is accumulated.
A layer without weight parts runs exactly the products it runs without the hook (no copy).

Mixed precision (``compute_dtype=torch.bfloat16``, ``StudyConfig.matmul_dtype``):
the parameters, gradient and optimizer buffers stay in the model dtype
(float32); each step the products read bfloat16 copies of the weights and
biases (refreshed from the float32 ones at the start of :meth:`forward`),
hidden outputs and their gradients are bfloat16, and the products
accumulate in float32 inside the GEMM (what ``torch.autocast`` does for
``nn.Linear``). The caller takes the loss on float32 logits; bias gradients are
summed in float32; each weight gradient is one bfloat16 product per chunk of
variants added into the float32 buffer while the chunk is still in cache.
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
    dense: torch.Tensor | None = None      # (Vr, B, D) materialised copy, if made (see BatchedMLP.forward)
    dense_t: torch.Tensor | None = None    # (Vr, D, B) materialised transpose, if made

    def batched(self) -> torch.Tensor:
        """(Vr, B, D): the input of every variant of the range."""
        if self.dense is not None:
            return self.dense
        if self.x.dim() == 3:
            return self.x
        n = self.variants.stop - self.variants.start
        return self.x.unsqueeze(0).expand(n, *self.x.shape)

    def batched_t(self) -> torch.Tensor:
        """(Vr, D, B): the transposed input, as the weight gradient reads it."""
        return self.dense_t if self.dense_t is not None else self.batched().transpose(1, 2)


@dataclass
class WeightPart:
    """A contiguous range of variants whose products of one layer read other weights this step.

    ``w`` (Vr, in, out), in the parameters' dtype: the weights the layer's forward product and its
    input gradient read instead of the parameters, ``W_eff = W * grad_factor`` elementwise;
    ``grad_factor`` (Vr, in, out): ``dW_eff/dW``, by which the weight gradient is multiplied
    (``dL/dW = grad_factor * dL/dW_eff``); None means 1 (``W_eff = W + noise``).
    """
    variants: slice
    w: torch.Tensor
    grad_factor: torch.Tensor | None = None
    compute: torch.Tensor | None = None    # ``w`` in the products' dtype, if that differs (see BatchedMLP.forward)


WeightParts = dict[int, list[WeightPart]]   # layer -> its weight parts this step (no key: the parameters)
Segment = tuple[slice, torch.Tensor, "WeightPart | None"]   # rows, the weights their products read, their part
# the factor of a gradient buffer's old content: one float for every variant, or runs of variants that
# share one ([(variant rows, beta)], covering every variant)
Beta = float | list[tuple[slice, float]]


def _relative(rows: slice, within: slice) -> slice:
    """``rows`` counted from ``within.start``."""
    return slice(rows.start - within.start, rows.stop - within.start)


def _beta_within(beta: Beta, rows: slice) -> Beta:
    """``beta`` for the variants ``rows``: a float as it is, runs cut to ``rows`` and counted from its start."""
    if not isinstance(beta, list):
        return beta
    cut = [(slice(max(sl.start, rows.start), min(sl.stop, rows.stop)), b) for sl, b in beta]
    return [(_relative(sl, rows), b) for sl, b in cut if sl.start < sl.stop]


HiddenHook = Callable[[int, torch.Tensor], None]


class BatchedMLP:
    """Stacked MLP parameters plus the buffers of one training step."""

    # bytes of one chunk of low-precision weight gradients (see _accumulate_weight_grad): small
    # enough to stay in cache until it is added into the float32 buffer
    GRAD_CHUNK_BYTES = 4 << 20

    def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor],
                 compute_dtype: torch.dtype | None = None):
        self.weights = weights                      # [(V, in, out)]
        self.biases = biases                        # [(V, 1, out)]
        self.sizes = [weights[0].shape[1]] + [w.shape[2] for w in weights]
        self.n_variants = weights[0].shape[0]
        self.compute_dtype = compute_dtype or weights[0].dtype
        self._buffers: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        self._scratch: dict[tuple, tuple[torch.Tensor | None, torch.Tensor | None]] = {}   # kept buffers
        self._weight_parts: WeightParts = {}        # the last forward's (see WeightPart)
        self._eval_cache: tuple[tuple, int, list[torch.Tensor]] | None = None   # evaluate's hidden-output buffers
        if self.mixed:   # the products' copies of the parameters, refreshed every step
            self._compute_weights = [w.to(self.compute_dtype) for w in weights]
            self._compute_biases = [b.to(self.compute_dtype) for b in biases]
        else:
            self._compute_weights, self._compute_biases = weights, biases

    @property
    def mixed(self) -> bool:
        """Do the products run in a lower precision than the parameters?"""
        return self.compute_dtype != self.weights[0].dtype

    @classmethod
    def initialize(cls, sizes: list[int], seeds: list[int], init: str, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32, compute_dtype: torch.dtype | None = None) -> BatchedMLP:
        """One variant per entry of ``seeds`` (repeats allowed: same seed, same weights).

        ``dtype``: the parameters'; ``compute_dtype``: the training products' (default ``dtype``)."""
        per_seed = {s: init_parameters(sizes, s, init) for s in dict.fromkeys(seeds)}
        weights = [torch.stack([per_seed[s][0][l] for s in seeds]).to(device, dtype) for l in range(len(sizes) - 1)]
        biases = [torch.stack([per_seed[s][1][l] for s in seeds]).unsqueeze(1).to(device, dtype)
                  for l in range(len(sizes) - 1)]
        return cls(weights, biases, compute_dtype)

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def parameters(self) -> list[torch.Tensor]:
        return [*self.weights, *self.biases]

    def _step_buffers(self, b: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Preallocated outputs of every layer, hidden (V, b, H) and logits (V, C, b), and hidden gradients."""
        if b not in self._buffers:
            V, like = self.n_variants, {"device": self.weights[0].device, "dtype": self.compute_dtype}
            outs = [torch.empty(V, b, n, **like) for n in self.sizes[1:-1]]
            outs.append(torch.empty(V, self.sizes[-1], b, **like))
            grads = [torch.empty(V, b, n, **like) for n in self.sizes[1:-1]]
            self._buffers[b] = (outs, grads)
        return self._buffers[b]

    def _logits(self, h: torch.Tensor, out: torch.Tensor | None = None, W: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """Class-major logits (V, C, n) = (h W + b)^T from the last hidden output h (V, n, H).

        Why (V, C, n): a softmax over 10 classes along the contiguous last
        dimension runs ~20x slower on the CPU than along dim 1, where it is
        vectorised over the examples.
        """
        W = self.weights[-1] if W is None else W
        bias = self.biases[-1] if bias is None else bias
        return torch.baddbmm(bias.transpose(1, 2).expand(-1, -1, h.shape[1]), W.transpose(1, 2),
                             h.transpose(1, 2), out=out)

    def forward(self, parts: list[InputPart], hidden_hook: HiddenHook | None = None,
                weight_parts: WeightParts | None = None) -> torch.Tensor:
        """Training forward pass; returns logits (V, C, b), keeps every layer's output for backward.

        ``parts`` hold inputs in the parameters' dtype. ``hidden_hook(l, h)`` runs on
        each hidden layer's ReLU output (V, b, H_l) before the next layer reads
        it, and may change it in place (dropout). ``weight_parts``: the weights some
        variants' products of a layer read instead of the parameters (DropConnect); the
        same must be given to :meth:`backward`. Logits are in ``compute_dtype``.
        """
        b = parts[0].x.shape[-2]
        outs, _ = self._step_buffers(b)
        self._weight_parts = weight_parts or {}
        if self.mixed:
            for lp, p in zip(self._compute_weights + self._compute_biases, self.weights + self.biases):
                lp.copy_(p)
            self._materialize_inputs(parts)
            self._materialize_weights()
        bias = self._compute_biases
        if self.n_layers == 1:   # no hidden layer: a linear model on the (possibly dropped-out) input
            for part in parts:
                x_t = part.batched_t()
                for rows, w, _ in self._segments(0, part.variants):
                    torch.baddbmm(bias[0][rows].transpose(1, 2).expand(-1, -1, b), w.transpose(1, 2),
                                  x_t[_relative(rows, part.variants)], alpha=part.scale, out=outs[0][rows])
            return outs[0]
        first = outs[0]
        for part in parts:
            x = part.batched()
            for rows, w, _ in self._segments(0, part.variants):
                torch.baddbmm(bias[0][rows].expand(rows.stop - rows.start, b, -1), x[_relative(rows, part.variants)],
                              w, alpha=part.scale, out=first[rows])
        every = slice(0, self.n_variants)
        for l in range(1, self.n_layers):
            h = outs[l - 1].relu_()
            if hidden_hook is not None:
                hidden_hook(l - 1, h)
            for rows, w, _ in self._segments(l, every):
                if l == self.n_layers - 1:
                    self._logits(h[rows], out=outs[l][rows], W=w, bias=bias[l][rows])
                else:
                    torch.baddbmm(bias[l][rows].expand(-1, b, -1), h[rows], w, out=outs[l][rows])
        return outs[-1]

    def _segments(self, layer: int, rows: slice) -> list[Segment]:
        """``rows`` cut into runs that read the same weights in ``layer``'s products: (rows, those
        weights (Vr, in, out) in ``compute_dtype``, the WeightPart or None for the parameters).
        Without weight parts on the layer: ``rows`` whole, reading the parameters."""
        W = self._compute_weights[layer]
        claimed = self._weight_parts.get(layer)
        if not claimed:
            return [(rows, W[rows], None)]
        out, start = [], rows.start
        for part in sorted(claimed, key=lambda p: p.variants.start):
            lo, hi = max(part.variants.start, start), min(part.variants.stop, rows.stop)
            if lo >= hi:
                continue
            if start < lo:
                out.append((slice(start, lo), W[start:lo], None))
            w = part.compute if part.compute is not None else part.w
            out.append((slice(lo, hi), w[_relative(slice(lo, hi), part.variants)], part))
            start = hi
        if start < rows.stop:
            out.append((slice(start, rows.stop), W[start:rows.stop], None))
        return out

    def _materialize_weights(self) -> None:
        """``compute_dtype`` copies of this step's weight parts (the products read them as they read
        the parameters' copies); kept buffers, one per layer and range."""
        for layer, claimed in self._weight_parts.items():
            for part in claimed:
                key = ("weights", layer, part.variants.start, part.variants.stop)
                if key not in self._scratch:
                    self._scratch[key] = (torch.empty(part.w.shape, dtype=self.compute_dtype, device=part.w.device),
                                          None)
                part.compute = self._scratch[key][0]
                part.compute.copy_(part.w)

    def _materialize_inputs(self, parts: list[InputPart]) -> None:
        """Dense (Vr, B, D) and (Vr, D, B) ``compute_dtype`` copies of each part's input, once per step.

        The bfloat16 batched GEMM cannot read a stride-0 (shared) or transposed
        batch in place: it would copy it inside each product that reads it
        (the forward product and the weight gradient, chunk by chunk), through
        a slow strided path. Two plain copies here cost a tenth of that.
        """
        for k, part in enumerate(parts):
            n = part.variants.stop - part.variants.start
            shape = (n, *part.x.shape[-2:])
            key = ("input", k, shape)
            if key not in self._scratch:
                like = {"dtype": self.compute_dtype, "device": part.x.device}
                self._scratch[key] = (torch.empty(shape, **like), torch.empty(n, shape[2], shape[1], **like))
            dense, dense_t = self._scratch[key]
            if part.x.dim() == 3:
                dense.copy_(part.x)
                dense_t.copy_(dense.transpose(1, 2))
            else:
                x = part.x.to(self.compute_dtype)
                dense.copy_(x.expand(shape))
                dense_t.copy_(x.t().contiguous().expand(n, *x.shape[::-1]))
            part.dense, part.dense_t = dense, dense_t

    def backward(self, dlogits: torch.Tensor, parts: list[InputPart], weight_grads: list[torch.Tensor],
                 bias_grads: list[torch.Tensor], beta: Beta = 0.0, hidden_hook: HiddenHook | None = None) -> None:
        """Backward pass of the last :meth:`forward`, weights as they were in it (its weight parts too).

        ``dlogits`` (V, C, b) is dLoss/dlogits (any float dtype). For every layer,
        ``weight_grads[l] = beta * weight_grads[l] + dLoss/dW_l`` and the same
        for ``bias_grads`` (beta = 0: plain gradients, the old content ignored;
        beta = momentum: a momentum buffer; runs [(variants, momentum)] where
        they differ). ``hidden_hook(l, dh)`` runs on the
        gradient with respect to hidden layer l's (post-hook) output before the
        ReLU derivative, and may change it in place (dropout mask, KL term).
        Rows of a layer with a weight part read its ``W_eff`` for ``dh = dz W_eff^T``, and
        their weight gradient is ``grad_factor * (h^T dz)`` (see :class:`WeightPart`).
        """
        b = dlogits.shape[2]
        outs, grads = self._step_buffers(b)
        L = self.n_layers
        acc_dtype = bias_grads[0].dtype
        every = slice(0, self.n_variants)
        _accumulate_bias_grad(bias_grads[-1], dlogits.sum(dim=2, dtype=acc_dtype).unsqueeze(1), beta)
        dz_t = dlogits.to(self.compute_dtype)                 # (V, C, b)
        if L == 1:
            for part in parts:
                x_t = part.batched_t()
                for rows, _, wp in self._segments(0, part.variants):
                    self._accumulate_weight_grad(weight_grads[0][rows], x_t[_relative(rows, part.variants)],
                                                 dz_t[rows].transpose(1, 2), _beta_within(beta, rows), part.scale,
                                                 _factor(wp, rows))
            return
        for rows, w, wp in self._segments(L - 1, every):
            self._accumulate_weight_grad(weight_grads[-1][rows], outs[-2][rows].transpose(1, 2),
                                         dz_t[rows].transpose(1, 2), _beta_within(beta, rows), factor=_factor(wp, rows))
            torch.bmm(dz_t[rows].transpose(1, 2), w.transpose(1, 2), out=grads[-1][rows])
        dz = grads[-1]
        for l in range(L - 2, -1, -1):
            h = outs[l]
            if hidden_hook is not None:
                hidden_hook(l, dz)
            # ReLU derivative: keep the gradient where the unit's (post-dropout) output is > 0
            torch.ops.aten.threshold_backward.grad_input(dz, h, 0, grad_input=dz)
            _accumulate_bias_grad(bias_grads[l], dz.sum(dim=1, keepdim=True, dtype=acc_dtype), beta)
            if l == 0:
                for part in parts:
                    x_t = part.batched_t()
                    for rows, _, wp in self._segments(0, part.variants):
                        self._accumulate_weight_grad(weight_grads[0][rows], x_t[_relative(rows, part.variants)],
                                                     dz[rows], _beta_within(beta, rows), part.scale,
                                                     _factor(wp, rows))
            else:
                for rows, w, wp in self._segments(l, every):
                    self._accumulate_weight_grad(weight_grads[l][rows], outs[l - 1][rows].transpose(1, 2), dz[rows],
                                                 _beta_within(beta, rows), factor=_factor(wp, rows))
                    torch.bmm(dz[rows], w.transpose(1, 2), out=grads[l - 1][rows])
                dz = grads[l - 1]

    def _accumulate_weight_grad(self, buf: torch.Tensor, a: torch.Tensor, b: torch.Tensor, beta: Beta,
                                alpha: float = 1.0, factor: torch.Tensor | None = None) -> None:
        """buf (Vr, in, out) = beta * buf + alpha * a @ b, with a (Vr, in, B) and b (Vr, B, out);
        with a ``factor`` (Vr, in, out): ``beta * buf + factor * (alpha * a @ b)`` (a weight part's).
        ``beta`` as runs (counted from buf's first variant): one such accumulation per run.

        Same precision: one ``baddbmm_`` straight into ``buf``. Mixed: the
        product in ``compute_dtype`` (float32 accumulation inside the GEMM),
        chunk by chunk of variants, each chunk added into the float32 buffer
        while it is still in cache (a float32 output or a whole-study
        bfloat16 temporary would cost more passes over memory).
        """
        if isinstance(beta, list):
            for rows, beta_rows in beta:
                self._accumulate_weight_grad(buf[rows], a[rows], b[rows], beta_rows, alpha,
                                             None if factor is None else factor[rows])
            return
        if factor is not None:
            self._accumulate_factored_weight_grad(buf, a, b, beta, alpha, factor)
            return
        if not self.mixed:
            buf.baddbmm_(a, b, beta=beta, alpha=alpha)
            return
        n, per_variant = buf.shape[0], buf[0].numel() * a.element_size()
        step = max(1, min(n, self.GRAD_CHUNK_BYTES // per_variant))
        key = (step, *buf.shape[1:])
        if key not in self._scratch:
            self._scratch[key] = (torch.empty(key, dtype=self.compute_dtype, device=buf.device),
                                  torch.empty(key, dtype=buf.dtype, device=buf.device))
        low, wide = self._scratch[key]
        for i in range(0, n, step):
            j = min(n, i + step)
            g, g_wide = low[:j - i], wide[:j - i]
            if alpha == 1.0:
                torch.bmm(a[i:j], b[i:j], out=g)
            else:
                torch.baddbmm(g, a[i:j], b[i:j], beta=0.0, alpha=alpha, out=g)
            if beta == 0.0:
                buf[i:j].copy_(g)
            else:
                # widened into a kept buffer first: a mixed-dtype add would widen into a fresh
                # temporary, and fresh chunk-sized allocations page-fault every step
                g_wide.copy_(g)
                torch.add(g_wide, buf[i:j], alpha=beta, out=buf[i:j])

    def _accumulate_factored_weight_grad(self, buf: torch.Tensor, a: torch.Tensor, b: torch.Tensor, beta: float,
                                         alpha: float, factor: torch.Tensor) -> None:
        """buf = beta * buf + factor * (alpha * a @ b): the product alone first (in kept buffers, in
        ``compute_dtype`` then widened when mixed), since a momentum buffer's old content must not be
        multiplied by the factor."""
        key = ("factored-grad", *buf.shape)
        if key not in self._scratch:
            low = torch.empty(buf.shape, dtype=self.compute_dtype, device=buf.device) if self.mixed else None
            self._scratch[key] = (low, torch.empty(buf.shape, dtype=buf.dtype, device=buf.device))
        low, g = self._scratch[key]
        if self.mixed:
            torch.bmm(a, b, out=low)
            g.copy_(low)
        else:
            torch.bmm(a, b, out=g)
        if alpha != 1.0:
            g.mul_(alpha)
        g.mul_(factor)
        if beta == 0.0:
            buf.copy_(g)
        else:
            torch.add(g, buf, alpha=beta, out=buf)

    @torch.no_grad()
    def forward_eval(self, x: torch.Tensor, out: list[torch.Tensor] | None = None
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (V, C, n) and hidden outputs [(V, n, H_l)] for a shared input x (n, D); no train-time noise
        (no dropout; DropConnect's mean-field: the weights W themselves, the masks' expectation).
        ``out``: a (V, n, H_l) tensor per hidden layer to write its output into (the same products)."""
        V = self.n_variants
        h = x.unsqueeze(0).expand(V, *x.shape)
        hidden = []
        for l in range(self.n_layers - 1):
            h = torch.baddbmm(self.biases[l].expand(-1, x.shape[0], -1), h, self.weights[l],
                              out=None if out is None else out[l]).relu_()
            hidden.append(h)
        return self._logits(h), hidden

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, chunk: int) -> dict[str, torch.Tensor]:
        """Sums over a split, per variant, without dropout; tensors on the model's device.

        ``loss_sum`` (V,) cross-entropy in nats, ``error_count`` (V,) misclassified
        examples, ``hidden_sum`` [(V, H_l)] summed ReLU outputs of each hidden unit
        (each chunk summed in the model's dtype, the chunks' sums in float64).

        The hidden outputs of every chunk go into the same buffers (``_eval_buffers``): a fresh
        (V, chunk, H) tensor per chunk costs its page faults on the CPU every time.
        """
        V, dev = self.n_variants, self.weights[0].device
        loss_sum = torch.zeros(V, dtype=torch.float64, device=dev)
        error_count = torch.zeros(V, dtype=torch.int64, device=dev)
        hidden_sum = [torch.zeros(V, n, dtype=torch.float64, device=dev) for n in self.sizes[1:-1]]
        buffers = self._eval_buffers(min(chunk, int(x.shape[0])))
        for i in range(0, x.shape[0], chunk):
            xb, yb = x[i:i + chunk], y[i:i + chunk]
            n = int(xb.shape[0])
            out = [buf[:V * n * h].view(V, n, h) for buf, h in zip(buffers, self.sizes[1:-1])]
            logits, hidden = self.forward_eval(xb, out)
            loss_sum += cross_entropy_per_example(logits, yb).sum(1, dtype=torch.float64)
            error_count += misclassified(logits, yb).sum(1)
            for acc, h in zip(hidden_sum, hidden):
                acc += h.sum(1)
        return {"loss_sum": loss_sum, "error_count": error_count, "hidden_sum": hidden_sum}

    def _eval_buffers(self, n: int) -> list[torch.Tensor]:
        """Flat buffers for ``evaluate``, one per hidden layer, holding at least (V, n, H_l); kept (and
        reused for any n up to their size) while the dtype, device and variant count stay."""
        W = self.weights[0]
        key = (W.dtype, W.device, self.n_variants)
        if self._eval_cache is None or self._eval_cache[0] != key or self._eval_cache[1] < n:
            buffers = [torch.empty(self.n_variants * n * h, dtype=W.dtype, device=W.device) for h in self.sizes[1:-1]]
            self._eval_cache = (key, n, buffers)
        return self._eval_cache[2]


def misclassified(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(V, C, n) logits, (n,) labels -> bool (V, n): the true class's logit is not strictly the largest.

    Counts ``z_j >= z_y`` over classes j (z_y itself included): correct iff the
    count is exactly 1. Ties and NaN count as errors, so a dead network with
    equal logits is never "right". (An ``argmax`` over dim 1 of this layout
    costs ~70x more on the CPU.)
    """
    true_logit = logits.gather(1, y.view(1, 1, -1).expand(logits.shape[0], 1, -1))
    return (logits >= true_logit).sum(1) != 1


def cross_entropy_per_example(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(V, C, n) logits, (n,) labels -> (V, n) ``-log softmax(z)_y`` in nats."""
    logp = torch.log_softmax(logits, dim=1)
    return -logp.gather(1, y.view(1, 1, -1).expand(logits.shape[0], 1, -1)).squeeze(1)


def _factor(part: WeightPart | None, rows: slice) -> torch.Tensor | None:
    """The weight part's gradient factor for ``rows`` (None: no part, or a factor of 1)."""
    if part is None or part.grad_factor is None:
        return None
    return part.grad_factor[_relative(rows, part.variants)]


def _accumulate_bias_grad(buf: torch.Tensor, grad: torch.Tensor, beta: Beta) -> None:
    """buf (V, 1, out) = beta * buf + grad (V, 1, out); beta = 0 ignores the old content (runs: per run)."""
    if isinstance(beta, list):
        for rows, beta_rows in beta:
            _accumulate_bias_grad(buf[rows], grad[rows], beta_rows)
        return
    if beta == 0.0:
        buf.copy_(grad)
        return
    if beta != 1.0:
        buf.mul_(beta)
    buf.add_(grad)
