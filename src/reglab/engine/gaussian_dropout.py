"""Gaussian dropout in the batched step: multiplicative noise ``h <- h * r``, ``r ~ N(1, p / (1 - p))``.

Srivastava et al. 2014, section 10: instead of a Bernoulli mask scaled by
``1/(1-p)`` (mean 1, variance ``p/(1-p)``), multiply each input or hidden unit
by Gaussian noise of the same mean and variance. Off at evaluation (the
evaluation pass has no hooks), as inverted dropout is.

The stream contract, per step and per variant: ONE ``normal_`` draw of
``b * (D [if gaussian_dropout_input > 0] + sum_l H_l [if gaussian_dropout_hidden > 0])``
standard normals from the variant's train-time noise generator (the dropout
stream, ``dropout.dropout_generator``: a method uses Bernoulli or Gaussian
dropout, never both), laid out [input (b, D)][hidden layer 1 (b, H_1)]...,
then ``r = 1 + sigma z`` per part (``regularizers.gaussian_factors_``).
:func:`gaussian_dropout_factors` draws one variant's factors exactly so, for
the torch.nn reference. The generator is checkpointed with the trainer, so a
resumed run draws the same noise.

Backward: the gradient w.r.t. the noisy output times the same ``r``. The
engine takes the ReLU derivative from the stored (noisy) output (``> 0``);
``r`` can be negative (for p = 0.5, sigma = 1: 16% of the factors), which would
hide a live unit, so the backward hook restores the output's sign (``|h r|``
is > 0 exactly where the ReLU was on) once nothing else reads it: the next
layer's weight gradient has already used ``h r``.
"""

from __future__ import annotations

import torch

from reglab.engine import regularizers as R
from reglab.engine.mlp import InputPart
from reglab.engine.regularizer import BindContext, Hooks


def gaussian_settings(method) -> tuple[float, float] | None:
    """(input rate, hidden rate) of a method's Gaussian dropout, None if it has none."""
    if not method.uses_gaussian_dropout:
        return None
    return (method.gaussian_dropout_input, method.gaussian_dropout_hidden)


def noise_layout(sizes: list[int], p_input: float, p_hidden: float) -> list[tuple[str | int, int, float]]:
    """[(which, width, p)] in stream order: "input" (if p_input > 0), then each hidden layer's index
    (if p_hidden > 0); ``sizes`` are the layer widths [D, H_1, ..., C]."""
    layout = [("input", sizes[0], p_input)] if p_input > 0 else []
    if p_hidden > 0:
        layout += [(l, h, p_hidden) for l, h in enumerate(sizes[1:-1])]
    return layout


def gaussian_dropout_factors(generator: torch.Generator, b: int, sizes: list[int], p_input: float,
                             p_hidden: float, dtype: torch.dtype = torch.float32) -> dict[str | int, torch.Tensor]:
    """One variant's factors of one step, {which: (b, width)}, drawn as the batched engine draws them."""
    layout = noise_layout(sizes, p_input, p_hidden)
    z = torch.empty(1, b * sum(w for _, w, _ in layout), dtype=dtype, device=generator.device)
    R.fill_standard_normal_(z, [generator])
    out, offset = {}, 0
    for which, width, p in layout:
        out[which] = R.gaussian_factors_(z[0, offset:offset + b * width], p).view(b, width)
        offset += b * width
    return out


class GaussianDropout(Hooks):
    """The Gaussian dropout of the live variants that use it, as contiguous runs of equal rates, with
    their noise generators (``context.generators``)."""

    def __init__(self, context: BindContext):
        self.runs = context.runs(gaussian_settings)
        self.generators, self.sizes, self.scratch = context.generators, context.sizes, context.scratch
        self.factors: list[dict[str | int, torch.Tensor]] = []   # this step's (Vr, b, width) per run
        self.outputs: dict[int, torch.Tensor] = {}               # hidden layer -> its (noisy) output buffer

    def draw(self, b: int) -> None:
        """This step's factors for every run: one draw per variant, then ``r = 1 + sigma z`` per part."""
        self.factors = []
        for r, (sl, (p_in, p_h)) in enumerate(self.runs):
            layout = noise_layout(self.sizes, p_in, p_h)
            z = self.scratch.buffer(("gaussian", r, b), (sl.stop - sl.start, b * sum(w for _, w, _ in layout)))
            R.fill_standard_normal_(z, self.generators[sl])
            parts, offset = {}, 0
            for which, width, p in layout:
                parts[which] = R.gaussian_factors_(z[:, offset:offset + b * width], p).view(-1, b, width)
                offset += b * width
            self.factors.append(parts)

    def input_rows(self) -> list[slice]:
        return [sl for sl, (p_in, _) in self.runs if p_in > 0]

    def input_parts(self, x: torch.Tensor) -> list[InputPart]:
        """Noisy copies ``x * r`` (Vr, b, D) of the minibatch for the runs with input noise."""
        parts = []
        for r, (sl, (p_in, _)) in enumerate(self.runs):
            if p_in > 0:
                factor = self.factors[r]["input"]
                out = self.scratch.buffer(("gaussian-input", r, x.shape[0]), factor.shape)
                parts.append(InputPart(sl, torch.mul(factor, x, out=out)))
        return parts

    def hidden_forward(self, layer: int, h: torch.Tensor, t: int, logging: bool) -> None:
        """Hidden layer ``layer``'s output ``h`` (n_live, b, H) times its factors, in place."""
        for r, (sl, (_, p_h)) in enumerate(self.runs):
            if p_h > 0:
                h[sl].mul_(self.factors[r][layer])
                self.outputs[layer] = h

    def hidden_backward(self, layer: int, dh: torch.Tensor) -> None:
        """``dh`` (w.r.t. the noisy output) times the same factors, and the output's sign restored for
        the ReLU derivative that the engine takes next (see the module docstring)."""
        for r, (sl, (_, p_h)) in enumerate(self.runs):
            if p_h > 0:
                dh[sl].mul_(self.factors[r][layer])
                self.outputs[layer][sl].abs_()
