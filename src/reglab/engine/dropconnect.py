"""DropConnect in the batched step: this step's weight masks, read by the layers' products.

Wan et al. 2013 ("Regularization of Neural Networks using DropConnect") drop each
WEIGHT with probability p instead of each unit. reglab uses the common practical
form, inverted as its dropout is: with ``p' = regularizers.drop_probability(p)``
(p rounded to a multiple of 2^-16),

    W_eff = W * M / (1 - p'),   M_ij ~ Bernoulli(1 - p') independently per weight,

on every layer's weights (biases are never masked), ONE mask per minibatch and
variant, shared by the minibatch's examples (the paper draws one per example,
which costs a (b, in, out) tensor per layer). E[W_eff] = W exactly. Both products
of a layer read W_eff: the forward ``z = h W_eff + b`` and the input gradient
``dh = dz W_eff^T``; the weight gradient is masked alike,
``dL/dW = M / (1 - p') * (h^T dz)`` (``mlp.WeightPart``). Penalties and
constraints act on W itself. At evaluation the plain weights W are used (the
mean-field approximation: the masks' expectation; the paper's moment-matching
sampling at inference is not done).

The stream contract, per step and per variant: ONE ``random_`` draw of
``sum_l random_words(in_l * out_l)`` int64 words from the variant's train-time
noise generator (``dropout.dropout_generator``; after the words of the method's
Bernoulli or Gaussian dropout of the same step, if it has one: noise regularizers
draw in registration order), laid out layer by layer [layer 0][layer 1]...;
layer l's mask is the first ``in_l * out_l`` 16-bit lanes of its words, row-major
over W_l (in, out) as the engine stores it (for an ``nn.Linear`` weight (out, in):
its transpose), a weight kept where its lane is >= ``regularizers.drop_threshold(p)``.
The mask does not depend on the minibatch size. :func:`dropconnect_factors` draws one
variant's factors exactly so, for the torch.nn reference. The generator is
checkpointed with the trainer, so a resumed run draws the same masks.
"""

from __future__ import annotations

import torch

from reglab.engine import regularizers as R
from reglab.engine.mlp import WeightPart
from reglab.engine.regularizer import BindContext, Hooks


def layer_shapes(sizes: list[int]) -> list[tuple[int, int]]:
    """[(in_l, out_l)] of every layer, for layer widths ``sizes`` [D, H_1, ..., C]."""
    return list(zip(sizes[:-1], sizes[1:]))


def word_layout(shapes: list[tuple[int, int]]) -> list[slice]:
    """Each layer's words in one step's draw (the stream contract above): [slice(offset, offset + words)]."""
    layout, offset = [], 0
    for i, o in shapes:
        layout.append(slice(offset, offset + R.random_words(i * o)))
        offset = layout[-1].stop
    return layout


def dropconnect_factors(generator: torch.Generator, sizes: list[int], p: float,
                        dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """One variant's factors ``M / (1 - p')`` of one step, [(in_l, out_l)], drawn as the batched engine draws them."""
    shapes = layer_shapes(sizes)
    layout = word_layout(shapes)
    bits = torch.empty(1, layout[-1].stop, dtype=torch.int64, device=generator.device)
    R.fill_random_bits_(bits, [generator])
    return [R.keep_mask_from_bits(bits[:, words], i * o, p)[0].view(i, o).to(dtype) * R.keep_scale(p)
            for (i, o), words in zip(shapes, layout)]


class DropConnect(Hooks):
    """The DropConnect of the live variants that use it, as contiguous runs of equal rates, with their
    noise generators (``context.generators``); ``context.sizes`` are the layer widths [D, H1, ..., C]."""

    def __init__(self, context: BindContext):
        self.runs = context.runs(lambda m: m.dropconnect if m.uses_dropconnect else None)
        self.generators, self.scratch = context.generators, context.scratch
        self.shapes = layer_shapes(context.sizes)
        self.layout = word_layout(self.shapes)             # each layer's words in a variant's draw
        self.words = self.layout[-1].stop
        self.bits: list[torch.Tensor] = []                 # this step's raw words, one (Vr, words) per run

    def draw(self, b: int) -> None:
        """This step's raw words for every run: one draw per variant, whatever the minibatch size ``b``."""
        self.bits = []
        for r, (sl, _) in enumerate(self.runs):
            bits = self.scratch.buffer(("dropconnect-bits", r), (sl.stop - sl.start, self.words), torch.int64)
            R.fill_random_bits_(bits, self.generators[sl])
            self.bits.append(bits)

    def weight_parts(self, layer: int, W: torch.Tensor) -> list[WeightPart]:
        """Layer ``layer``'s masked weights ``W * F`` and factors ``F = M / (1 - p')`` (Vr, in, out) for each
        run, from the stacked parameters ``W`` (n_live, in, out); kept buffers, no allocation per step."""
        i, o = self.shapes[layer]
        parts = []
        for r, (sl, p) in enumerate(self.runs):
            n = sl.stop - sl.start
            factor = self.scratch.buffer(("dropconnect-factor", r, layer), (n, i, o))
            R.keep_mask_into_(self.bits[r][:, self.layout[layer]], i * o, p, factor)
            factor.mul_(self.scratch.constant(R.keep_scale(p)))   # a tensor: a Python float would round via float32
            w = torch.mul(W[sl], factor, out=self.scratch.buffer(("dropconnect-weights", r, layer), (n, i, o)))
            parts.append(WeightPart(sl, w, factor))
        return parts
