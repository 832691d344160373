"""Inverted dropout in the batched step: this step's masks, applied on the way in and out.

Per step and per dropping variant, ONE draw of raw words from its own
generator, laid out [input mask][hidden layer 1 mask][hidden layer 2 mask]...
(a mask only if its rate is > 0), each mask ``random_words(b * width)`` words.
Drawing them at once gives the same words as drawing mask by mask
(``regularizers.dropout_keep_mask``): the CPU generator fills sequentially.
CUDA generators give other (still seeded, reproducible) masks than the CPU's.
A hidden mask multiplies the hidden layer's ReLU output on the way forward
and its gradient on the way back, times the keep scale ``1/(1-p)``.
"""

from __future__ import annotations

import torch

from reglab.engine import regularizers as R
from reglab.engine.mlp import DROPOUT_STREAM, InputPart, stream_seed
from reglab.engine.regularizer import BindContext, Hooks


def dropout_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A variant's dropout stream: seeded by its seed alone (see regularizers.dropout_keep_mask)."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, DROPOUT_STREAM))


class Dropout(Hooks):
    """The dropout of the live variants, with their generators (``context.generators``, None for a
    variant that does not drop); ``context.sizes`` are the layer widths [D, H1, ..., C]."""

    def __init__(self, context: BindContext):
        self.runs = context.runs(lambda m: (m.dropout_input, m.dropout_hidden) if m.uses_dropout else None)
        self.generators, self.sizes, self.scratch = context.generators, context.sizes, context.scratch
        self.bits: list[torch.Tensor] = []                  # this step's raw words, one per dropout run
        # this step's (Vr, b, H) keep * scale, and a scale left to apply apart (None: folded in)
        self.hidden_keep: dict[tuple[int, int], tuple[torch.Tensor, float | None]] = {}

    def _mask_widths(self, p_input: float, p_hidden: float) -> list[tuple[str | int, int, float]]:
        """[(which, width, p)] in stream order: "input" then hidden layer indices."""
        widths = [("input", self.sizes[0], p_input)] if p_input > 0 else []
        if p_hidden > 0:
            widths += [(l, h, p_hidden) for l, h in enumerate(self.sizes[1:-1])]
        return widths

    def draw(self, b: int) -> None:
        """This step's raw words for every dropout run (minibatch of ``b`` examples)."""
        self.bits = []
        for r, (sl, (p_in, p_h)) in enumerate(self.runs):
            words = sum(R.random_words(b * w) for _, w, _ in self._mask_widths(p_in, p_h))
            bits = self.scratch.buffer(("bits", r, b), (sl.stop - sl.start, words), torch.int64)
            R.fill_random_bits_(bits, self.generators[sl])
            self.bits.append(bits)

    def _keep_mask(self, r: int, which: str | int, b: int, out: torch.Tensor) -> torch.Tensor:
        """(Vr, b, width) keep-mask of run ``r`` for "input" or hidden layer ``which``, as
        1.0 / 0.0 in ``out`` (model dtype)."""
        sl, (p_in, p_h) = self.runs[r]
        offset = 0
        for name, width, p in self._mask_widths(p_in, p_h):
            words = R.random_words(b * width)
            if name == which:
                bits = self.bits[r][:, offset:offset + words]
                return R.keep_mask_into_(bits, b * width, p, out)
            offset += words
        raise KeyError(which)

    def input_rows(self) -> list[slice]:
        return [sl for sl, (p_in, _) in self.runs if p_in > 0]

    def input_parts(self, x: torch.Tensor) -> list[InputPart]:
        """Masked copies of the minibatch for the variants with input dropout."""
        b = x.shape[0]
        parts = []
        for r, (sl, (p_in, _)) in enumerate(self.runs):
            if p_in > 0:
                out = self.scratch.buffer(("input", r, b), (sl.stop - sl.start, *x.shape))
                kept = self._keep_mask(r, "input", b, out)
                parts.append(InputPart(sl, kept.mul_(x), R.keep_scale(p_in)))
        return parts

    def hidden_forward(self, layer: int, h: torch.Tensor, t: int, logging: bool) -> None:
        """Hidden layer ``layer``'s output ``h`` (n_live, b, H) times its keep mask and scale, in place."""
        b = h.shape[1]
        dtype = self.scratch.dtype
        for r, (sl, (_, p_h)) in enumerate(self.runs):
            if p_h > 0:
                keep = self._keep_mask(r, layer, b, self.scratch.buffer(("keep", r, layer, b), h[sl].shape, h.dtype))
                scale = self.scratch.constant(R.keep_scale(p_h))  # a tensor: a Python float would round via float32
                if h.dtype == dtype or _holds_exactly(h.dtype, R.keep_scale(p_h), dtype):
                    keep.mul_(scale)                       # keep * scale, exact in h's dtype
                    residual = None
                else:   # bfloat16 outputs and a scale it cannot hold (p = 0.3): scale apart, rounding once
                    residual = float(scale)
                h[sl].mul_(keep)
                if residual is not None:
                    h[sl].mul_(residual)
                self.hidden_keep[(r, layer)] = (keep, residual)

    def hidden_backward(self, layer: int, dh: torch.Tensor) -> None:
        """The gradient w.r.t. the dropped-out output ``dh`` times the same mask and scale, in place."""
        for r, (sl, (_, p_h)) in enumerate(self.runs):
            if p_h > 0:
                keep, residual = self.hidden_keep[(r, layer)]
                dh[sl].mul_(keep)
                if residual is not None:
                    dh[sl].mul_(residual)


def _holds_exactly(dtype: torch.dtype, value: float, reference: torch.dtype) -> bool:
    """Does ``dtype`` hold ``value`` as ``reference`` does (1/(1-p) = 2 or 1.25: yes; 1/0.7 in bfloat16: no)?"""
    return float(torch.tensor(value, dtype=dtype)) == float(torch.tensor(value, dtype=reference))
