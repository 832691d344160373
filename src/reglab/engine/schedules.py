"""Learning-rate and momentum schedules: plain functions of the step number.

Steps count optimizer updates starting at 1. Every schedule is written in
``s = step - 1``, the number of updates already done, so step 1 always uses
the initial value. ``T`` is ``lr_decay_steps`` (or ``momentum_ramp_steps``).

Learning rate, ``lr0 = MethodConfig.lr``, ``d = lr_decay``:

* ``constant``:     ``lr0``
* ``exponential``:  ``lr0 * d ** (s / T)``         (smooth; ``d`` per ``T`` steps)
* ``step``:         ``lr0 * d ** floor(s / T)``    (deepnet's L2 baseline: d = 0.5, T = 10,000)
* ``inverse_t``:    ``lr0 / (1 + s / T)``          (deepnet's dropout net: lr0 = 1, T = 10,000; ``d`` unused)

Momentum (SGD), ``mu = momentum``, ``mu0 = momentum_initial``; no ramp when
``mu0 < 0`` or ``T = 0``:

* ``linear``:       ``mu0 + (mu - mu0) * min(s / T, 1)``
* ``exponential``:  ``mu - (mu - mu0) * exp(-s / T)``   (deepnet: 0.99 - 0.49 exp(-s / 1e5))

Being pure functions of the step, schedules need no state to resume.
"""

from __future__ import annotations

import math

from reglab.config import MethodConfig


def learning_rate(method: MethodConfig, step: int) -> float:
    """The learning rate of update number ``step`` (1-based) under ``method.lr_schedule``."""
    s = step - 1
    T = method.lr_decay_steps
    kind = method.lr_schedule
    if kind == "constant":
        return method.lr
    if kind == "exponential":
        return method.lr * method.lr_decay ** (s / T)
    if kind == "step":
        return method.lr * method.lr_decay ** (s // T)
    if kind == "inverse_t":
        return method.lr / (1.0 + s / T)
    raise ValueError(f"unknown learning-rate schedule {kind!r}")


def momentum(method: MethodConfig, step: int) -> float:
    """The SGD momentum of update number ``step`` (1-based), ramped from ``momentum_initial``."""
    mu, mu0, T = method.momentum, method.momentum_initial, method.momentum_ramp_steps
    if mu0 < 0 or T == 0:
        return mu
    s = step - 1
    if method.momentum_ramp == "linear":
        return mu0 + (mu - mu0) * min(s / T, 1.0)
    if method.momentum_ramp == "exponential":
        return mu - (mu - mu0) * math.exp(-s / T)
    raise ValueError(f"unknown momentum ramp {method.momentum_ramp!r}")
