"""Regularizers for stacked weights: penalties, soft orthogonality, max-norm, dropout masks, Gaussian noise.

Every function works on a slice of variants: weights are ``(V, in, out)``
(column ``j`` of ``w[v]`` is unit ``j``'s incoming weight vector), activations
``(V, B, H)``. Penalties act on weights only, never biases. The loss a step
minimises is ``mean cross-entropy over the minibatch + penalty``, so a penalty
is in nats per example like the data term and is NOT divided by the batch size.

Conventions (the field disagrees, so each docstring says which it uses):

* L2: ``lambda/2 * sum w^2`` (gradient ``lambda * w``). PyTorch
  ``SGD(weight_decay=lambda)`` and deepnet use this; Keras
  ``regularizers.l2(k)`` adds ``k * sum w^2``, so Keras ``k = lambda / 2``.
* L1: ``lambda * sum |w|`` (gradient ``lambda * sign(w)``, 0 at w = 0),
  the same as Keras ``regularizers.l1(lambda)``; PyTorch has no built-in,
  one adds ``lambda * w.abs().sum()`` to the loss.
"""

from __future__ import annotations

import math
import torch

from reglab.config import MethodConfig

# ----------------------------------------------------------------------------
# L2 and L1 penalties


def l2_penalty(w: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """``lam/2 * sum w^2`` per variant: w (V, ...) -> (V,).

    PyTorch equivalent: ``SGD(weight_decay=lam)`` (gradient ``lam * w``);
    Keras equivalent: ``regularizers.l2(lam / 2)``.
    """
    sq = torch.linalg.vector_norm(w.flatten(1), dim=1) ** 2
    return 0.5 * lam * sq


Layers = torch.Tensor | list[torch.Tensor]   # one weight tensor, or every layer's (one multi-tensor call)


def add_l2_grad_(grad: Layers, w: Layers, lam: float) -> Layers:
    """grad += d/dw (lam/2 * sum w^2) = lam * w, in place (one pass), for one tensor or a list of layers."""
    torch._foreach_add_(_as_list(grad), _as_list(w), alpha=lam)
    return grad


def l1_penalty(w: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """``lam * sum |w|`` per variant: w (V, ...) -> (V,). Keras: ``regularizers.l1(lam)``."""
    return lam * torch.linalg.vector_norm(w.flatten(1), ord=1, dim=1)


def add_l1_grad_(grad: Layers, w: Layers, lam: float) -> Layers:
    """grad += lam * sign(w), in place; sign(0) = 0 (the subgradient autograd uses for |w|);
    for one tensor or a list of layers."""
    torch._foreach_add_(_as_list(grad), torch._foreach_sign(_as_list(w)), alpha=lam)
    return grad


def _as_list(x: Layers) -> list[torch.Tensor]:
    return [x] if isinstance(x, torch.Tensor) else list(x)


def l1_switched_on(l1_start: float, step: int, total_steps: int) -> bool:
    """Late L1 ("L2 + L1 towards the end of training"): L1 acts on update ``step`` (1-based)
    once ``step > l1_start * total_steps``; ``l1_start = 0`` means always, 0.8 the last 20%.
    deepnet's ``apply_l1decay_after`` is the same switch counted in steps. The one definition
    of the switch: the engine and the torch.nn reference both ask it."""
    return step > l1_start * total_steps


def l1_is_on(method: MethodConfig, step: int, total_steps: int) -> bool:
    """Does ``method``'s L1 act on update ``step``? (it has L1, switched on: ``l1_switched_on``)"""
    return method.uses_l1 and l1_switched_on(method.l1_start, step, total_steps)


# ----------------------------------------------------------------------------
# KL sparsity

KL_MEAN_RANGE = (1e-6, 1e6)  # m_hat is clamped into this range before squashing, so q is in (1e-6, 1 - 1e-6)


def squash(mean_activation: torch.Tensor) -> torch.Tensor:
    """``q = m / (1 + m)``: maps a mean ReLU activation ``m >= 0`` into ``[0, 1)``.

    Why: KL(rho || q) compares two Bernoulli rates and is defined only for
    ``q`` in (0, 1), while a ReLU unit's mean activation is anywhere in
    [0, inf). The squashing is monotone, ``q ~= m`` for small ``m`` (so
    ``rho`` keeps its meaning of "target mean activation" for sparse units;
    the penalty's minimum is at ``m = rho / (1 - rho)``, 0.053 for rho = 0.05)
    and it acts on the per-unit batch MEAN, not on every activation: H numbers
    per step instead of B x H, and ``dq/dm = 1 / (1 + m)^2`` is smooth.
    """
    return mean_activation / (1.0 + mean_activation)


def kl_sparsity(batch_mean: torch.Tensor, rho: float, beta: float, ema: float = 0.0,
                running_mean: torch.Tensor | None = None, with_value: bool = True
                ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """KL-sparsity penalty on hidden units, its gradient, and the updated moving average.

    ``batch_mean`` (V, H): ``m_j``, the minibatch mean of unit j's output.
    With ``ema > 0`` and a ``running_mean``, the estimate is Hinton's moving
    average ``m_hat = ema * running_mean + (1 - ema) * m`` (Hinton 2010,
    "A Practical Guide to Training RBMs", sec. 11; deepnet's
    ``sparsity_damping``); otherwise ``m_hat = m``.

    Penalty (per variant, nats per example like the data term)::

        P = beta * sum_j KL(rho || q_j),   q_j = c_j / (1 + c_j),   c_j = clamp(m_hat_j, 1e-6, 1e6)
        KL(rho || q) = rho log(rho / q) + (1 - rho) log((1 - rho) / (1 - q))

    Returned gradient (V, H), exact for ``ema = 0``::

        dP/dm_hat = beta * (q - rho) / (q (1 - q)) * dq/dc = beta * (q - rho) / c    (0 where clamped)

    applied to the current batch mean as if ``m_hat`` were ``m``: with
    ``ema > 0`` that is Hinton's recipe (the penalty's derivative evaluated
    at the smoothed estimate), not the gradient of a fixed objective. The
    gradient with respect to an activation ``a_bj`` is this divided by B.
    The clamp keeps a dead unit (m = 0) finite and leaves it alone.
    Keras and PyTorch have no built-in equivalent. ``with_value=False``
    skips the logarithms (the value is only needed on logged steps).
    """
    m_hat = batch_mean if running_mean is None or ema == 0.0 else torch.lerp(batch_mean, running_mean, ema)
    c = m_hat.clamp(*KL_MEAN_RANGE)
    q = c / (1.0 + c)
    grad = (q - rho).div_(c).mul_(beta).mul_(c == m_hat)
    value = None
    if with_value:
        kl = rho * torch.log(rho / q) + (1.0 - rho) * torch.log((1.0 - rho) / (1.0 - q))
        value = beta * kl.sum(dim=-1)
    return value, grad, m_hat


# ----------------------------------------------------------------------------
# soft orthogonality


def orthogonality_residual(w: torch.Tensor) -> torch.Tensor:
    """``W^T W - I`` (V, out, out) for stacked weights w (V, in, out): the Gram matrix of the units'
    incoming weight vectors (columns) minus the identity."""
    residual = torch.bmm(w.transpose(1, 2), w)
    residual.diagonal(dim1=1, dim2=2).sub_(1.0)
    return residual


def orthogonality_penalty(w: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Soft orthogonality ``lam * ||W^T W - I||_F^2`` per variant: w (V, in, out), lam (V,) -> (V,).

    W is the layer as the engine stores it, column j = unit j's incoming weights, so the penalty
    pushes the units' incoming vectors towards an orthonormal set (the (out, out) Gram side; for a
    torch ``nn.Linear`` weight (out, in) it is ``||weight weight^T - I||_F^2``). A layer with more
    units than inputs (out > in) cannot reach 0: its Gram matrix has rank <= in. Biases are not
    penalized. Bansal et al. 2018 ("SO"), Brock et al. 2017 (orthogonal regularization).
    """
    return lam * orthogonality_residual(w).pow(2).sum(dim=(1, 2))


def orthogonality_grad(w: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``d/dW lam * ||W^T W - I||_F^2 = 4 lam W (W^T W - I)`` (V, in, out), written by hand.

    From ``d tr(R^2) = 2 tr(R dR)`` with ``R = W^T W - I`` symmetric and
    ``dR = dW^T W + W^T dW``: ``2 tr(R (dW^T W + W^T dW)) = 4 tr(R W^T dW)``.
    """
    return torch.bmm(w, orthogonality_residual(w)).mul_(4.0 * lam.view(-1, 1, 1))


# ----------------------------------------------------------------------------
# Gaussian dropout


def gaussian_dropout_std(p: float) -> float:
    """sigma of the multiplicative noise ``r ~ N(1, sigma^2)`` that stands for dropping with
    probability ``p``: ``sigma^2 = p / (1 - p)``, the variance of inverted dropout's factor
    ``mask / (1 - p)`` (Srivastava et al. 2014, sec. 10, with their retention rate ``1 - p``)."""
    return math.sqrt(p / (1.0 - p))


def fill_standard_normal_(rows: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """Row i of ``rows`` (n_rows, n) from ``generators[i]``, standard normal: one ``normal_`` call per
    row, so each variant's noise comes from its own stream whatever the other rows are."""
    for row, gen in zip(rows, generators):
        row.normal_(generator=gen)
    return rows


def gaussian_factors_(z: torch.Tensor, p: float) -> torch.Tensor:
    """Standard normal draws ``z`` -> the noise factors ``r = 1 + sigma z``, in place (sigma of ``p``)."""
    return z.mul_(gaussian_dropout_std(p)).add_(1.0)


# ----------------------------------------------------------------------------
# max-norm


def max_norm_(w: torch.Tensor, radius: float, frozen: torch.Tensor | None = None,
              scratch: torch.Tensor | None = None) -> torch.Tensor:
    """Project each unit's INCOMING weight vector onto the L2 ball of radius ``radius``, in place.

    ``w`` is (V, in, out): the incoming vector of output unit j is ``w[v, :, j]``
    (a column), so norms are taken over dim 1. ``w <- w * min(1, c / ||w_:j||)``:
    vectors inside the ball are multiplied by exactly 1 (bitwise unchanged).
    Variants with ``frozen[v]`` True are left alone. Srivastava et al. 2014
    (sec. 5.1) apply this after every update; PyTorch equivalent for one
    ``nn.Linear`` (weight (out, in)): ``torch.renorm(weight, 2, 0, c)``;
    Keras: ``constraints.MaxNorm(c, axis=0)`` on a Dense kernel (in, out).
    ``scratch``, a tensor with at least ``w.numel()`` elements of ``w``'s dtype,
    holds the squares (otherwise a temporary of ``w``'s size is allocated).
    """
    # sum of squares over dim 1 then sqrt: linalg.vector_norm over a non-last dim is ~10x slower on the CPU.
    # The squares go to a reused buffer: a fresh weight-sized temporary every step (tens of MB for big
    # layers) comes from mmap, and its page faults cost more than the arithmetic.
    if scratch is None:
        squares = torch.square(w)
    else:
        squares = torch.mul(w, w, out=scratch.view(-1)[:w.numel()].view(w.shape))
    norms = squares.sum(dim=1, keepdim=True).sqrt_()                     # (V, 1, out)
    factor = torch.clamp(radius / norms, max=1.0)
    if frozen is not None:
        factor.masked_fill_(frozen[:, None, None], 1.0)
    return w.mul_(factor)


# ----------------------------------------------------------------------------
# dropout masks from raw random bits
#
# torch.bernoulli_ costs ~9 ns per element on this CPU. One int64 drawn over
# the full 64-bit range (random_(-2**63, None), ~2.6 ns) holds four uniform
# 16-bit lanes; comparing each lane with an integer threshold (~0.3 ns per
# element) gives a mask element for ~1 ns, seeded and reproducible.

DROP_RESOLUTION = 2 ** 16


def drop_probability(p: float) -> float:
    """The drop rate masks actually use: ``p`` rounded to a multiple of 2^-16 (0.2 -> 0.1999969)."""
    return min(round(p * DROP_RESOLUTION), DROP_RESOLUTION - 1) / DROP_RESOLUTION


def keep_scale(p: float) -> float:
    """Inverted dropout scale ``1 / (1 - p')`` with ``p' = drop_probability(p)``: E[mask] = 1 exactly."""
    return 1.0 / (1.0 - drop_probability(p))


def drop_threshold(p: float) -> int:
    """A 16-bit lane (uniform on [-32768, 32767]) is DROPPED when below this: probability ``p'``."""
    return -32768 + round(drop_probability(p) * DROP_RESOLUTION)


def random_words(n_elements: int) -> int:
    """int64 words needed for ``n_elements`` mask elements (four per word)."""
    return (n_elements + 3) // 4


def fill_random_bits_(bits: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """Row i of ``bits`` (n_rows, words) int64, uniform over all 64 bits, from ``generators[i]``.

    One call per row: each variant's masks come from its own stream, whatever
    the other rows are. This is the engine's only loop over variants, and it
    only draws random numbers (one ``random_`` call per dropout variant per step).
    """
    for row, gen in zip(bits, generators):
        row.random_(-2 ** 63, None, generator=gen)
    return bits


def keep_mask_from_bits(bits: torch.Tensor, n_elements: int, p: float) -> torch.Tensor:
    """bool (n_rows, n_elements) keep-mask from raw words (n_rows, words): True = kept."""
    lanes = bits.view(torch.int16)                      # (rows, 4 * words)
    return (lanes >= drop_threshold(p))[:, :n_elements]


def keep_mask_into_(bits: torch.Tensor, n_elements: int, p: float, out: torch.Tensor) -> torch.Tensor:
    """The keep-mask of :func:`keep_mask_from_bits` written as 1.0 (kept) / 0.0 (dropped) into float ``out``.

    ``out`` has ``n_rows * n_elements`` elements (any shape with rows first).
    Same mask; ~3x cheaper than a bool mask that a later product must convert to float.
    """
    lanes = bits.view(torch.int16)[:, :n_elements].view(out.shape)
    return torch.ge(lanes, drop_threshold(p), out=out)


def dropout_keep_mask(generator: torch.Generator, shape: tuple[int, ...], p: float) -> torch.Tensor:
    """One variant's bool keep-mask of ``shape``, drawn exactly as the batched engine draws it.

    The engine's stream contract, per variant and per step: first the input mask
    (B, D) if ``dropout_input > 0``, then one (B, H_l) mask per hidden layer in
    order if ``dropout_hidden > 0``, each consuming ``random_words(B * H)`` int64
    words of the variant's own dropout generator.
    """
    n = math.prod(shape)
    device = generator.device
    bits = torch.empty(1, random_words(n), dtype=torch.int64, device=device)
    fill_random_bits_(bits, [generator])
    return keep_mask_from_bits(bits, n, p)[0].reshape(shape)


# ----------------------------------------------------------------------------
# registry: name -> Regularizer (see regularizer.py; calling one asks "does this method use it");
# every entry must pass the engine-vs-reference test in tests/engine/test_trainer.py

def __getattr__(name: str):
    # REGULARIZERS is builtins.BUILTINS, looked up on first use: the built-ins' hooks import this module's math
    if name == "REGULARIZERS":
        from reglab.engine.builtins import BUILTINS
        return BUILTINS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def regularizers_of(method: MethodConfig) -> list[str]:
    """Names of the registered regularizers ``method`` uses, e.g. ['l2', 'dropout']."""
    from reglab.engine.builtins import BUILTINS
    return [name for name, reg in BUILTINS.items() if reg.uses(method)]
