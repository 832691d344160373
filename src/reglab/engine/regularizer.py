"""The regularizer API: what a regularizer declares, and the hooks the training step calls.

A regularizer is a small object (``Regularizer``): a name, its formula, its
hyperparameters declared as data (``Hyperparameter``: type, range, default,
log scale; for validation and for the tuner), ``uses(method)`` (does a method
use it) and ``bind(context) -> Hooks``, which returns the hooks that act on
the live variants using it, as contiguous runs of the step's batch. The six
Table 9 regularizers (``builtins``) are written exactly this way; the step
(``step.TrainingStep``) knows no regularizer by name.

Hooks (``Hooks``; every one optional, the defaults do nothing), in the order the step calls them;
among regularizers, in registration order with train-time noise (``noise=True``) first, so an
activation penalty sees the output as the next layer reads it:

* ``draw(b)``: this step's randomness (train-time noise, e.g. dropout masks);
* ``input_parts(x)`` / ``input_rows()``: noisy copies of the minibatch for the rows it claims;
* ``weight_parts(layer, W) -> list[WeightPart]``: noise on a layer's weights (DropConnect): for the rows it
  claims, the weights ``W_eff = W * F`` (Vr, in, out) that this step's products of the layer read
  instead of the stacked parameters ``W`` (n_live, in, out) (forward and input gradient), and ``F``,
  by which the layer's weight gradient is multiplied (``mlp.WeightPart``); called for every layer after
  ``draw``; a layer no hook claims runs its plain products (no copy);
* ``hidden_forward(layer, h, t, logging)``: noise on, or statistics of, a hidden layer's output
  (n_live, b, H), in place;
* ``hidden_backward(layer, dh)``: that hook's gradient (called in reverse registration order);
* ``loss_value(logp, y_idx, loss)``: a change to the loss (label smoothing): from the log-softmax
  ``logp`` (n_live, C, b) and the labels ``y_idx`` (n_live, 1, b), change the minibatch loss ``loss``
  (n_live,) of its rows in place; the step records, and checks for divergence, the changed loss;
* ``loss_grad(dlogits, y_idx)``: that change's gradient, added in place to the per-example
  ``dlogits`` (n_live, C, b) = softmax - one-hot (before the step divides by b and zeroes frozen variants);
* ``add_activation_value(pen)``: an activation penalty's value (n_live,), recorded on logged steps;
* ``add_weight_grads(grads, W, t)`` / ``add_weight_value(pen, W, t)``: a weight penalty on the
  stacked weights ``W[l]`` (n_live, in, out); ``WeightPenalty`` builds both from a value function
  ``value(W, hp) -> (V,)`` with its gradient from autograd unless a gradient is supplied;
* ``before_update(W, lr)``: a change of the weights just before the optimizer's update, given the
  step's learning rates ``lr`` (n_live,) float64, 0 for frozen variants (decoupled weight decay);
* ``constrain(W, training)``: a constraint after the update (variants not ``training`` left alone);
* ``state_rows()`` / ``load_state_rows(rows)``: declared per-variant state, ``(variant, key) -> tensor``,
  which the engine parks for variants outside the batch and checkpoints.

Per-variant hyperparameters reach a ``WeightPenalty`` as ``(Vr,)`` tensors, so
variants with different values stay one batched model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from reglab.config import MethodConfig
from reglab.engine.batch import Scratch, contiguous_runs
from reglab.engine.mlp import InputPart, WeightPart

StateRows = dict[tuple[int, Any], torch.Tensor]   # (variant, key) -> that variant's tensor


@dataclass(frozen=True)
class Hyperparameter:
    """One declared hyperparameter: the method key ``name`` (a MethodConfig field for a built-in, a
    key of its own for a plugin), its ``kind`` ("float", "int", "bool"), the valid range [low, high],
    the ``default`` (off), and whether to search it on a log scale.

    For ``reglab tune``: ``search`` is the range sampled ([low, high] when None and both are finite
    (> 0 for log); otherwise a decade either side of the method's value, inside [low, high]), ``grid``
    the grid sampler's values (None: 3 points spread over the search range); ``tuned=False`` keeps it
    fixed. A value of 0 is "off" and never tuned (a method at 0 does not use it)."""
    name: str
    kind: str = "float"
    low: float = 0.0
    high: float = math.inf
    default: Any = 0.0
    log: bool = False
    doc: str = ""
    search: tuple[float, float] | None = None
    grid: tuple[float, ...] | None = None
    tuned: bool = True


@dataclass(frozen=True)
class BindContext:
    """What a regularizer's hooks may read: the live variants (study indices ``live``, their
    ``methods``), layer ``sizes`` [D, H1, ..., C], all steps ``total_steps``, dtype, device, the
    step's ``scratch`` buffers, each live variant's train-time noise ``generators`` (None for a variant
    that no noise regularizer acts on; one stream per variant, shared by its noise regularizers in
    registration order, checkpointed with the trainer) and the step's ``training`` flags (n_live,) bool,
    false for a frozen variant, updated in place by the step (None outside a step: the probe)."""
    methods: list[MethodConfig]
    live: np.ndarray
    sizes: list[int]
    total_steps: int
    dtype: torch.dtype
    device: torch.device
    scratch: Scratch
    generators: list[torch.Generator | None] = field(default_factory=list)
    training: torch.Tensor | None = None

    def runs(self, settings: Callable[[MethodConfig], Any]) -> list[tuple[slice, Any]]:
        """Contiguous runs of live variants with equal ``settings(method)`` (None: not using it)."""
        return contiguous_runs([settings(m) for m in self.methods])


class Hooks:
    """The step's calls into one bound regularizer; each default does nothing."""

    def draw(self, b: int) -> None: ...
    def input_rows(self) -> list[slice]: return []
    def input_parts(self, x: torch.Tensor) -> list[InputPart]: return []
    def weight_parts(self, layer: int, W: torch.Tensor) -> list[WeightPart]: return []
    def hidden_forward(self, layer: int, h: torch.Tensor, t: int, logging: bool) -> None: ...
    def hidden_backward(self, layer: int, dh: torch.Tensor) -> None: ...
    def loss_value(self, logp: torch.Tensor, y_idx: torch.Tensor, loss: torch.Tensor) -> None: ...
    def loss_grad(self, dlogits: torch.Tensor, y_idx: torch.Tensor) -> None: ...
    def add_activation_value(self, pen: torch.Tensor) -> None: ...
    def add_weight_grads(self, grads: list[torch.Tensor], W: list[torch.Tensor], t: int) -> None: ...
    def add_weight_value(self, pen: torch.Tensor, W: list[torch.Tensor], t: int) -> None: ...
    def before_update(self, W: list[torch.Tensor], lr: torch.Tensor) -> None: ...
    def constrain(self, W: list[torch.Tensor], training: torch.Tensor) -> None: ...
    def state_rows(self) -> StateRows: return {}
    def load_state_rows(self, rows: StateRows) -> None: ...


@dataclass(frozen=True)
class Regularizer:
    """A regularizer: ``name``, ``formula`` (for the report), declared ``hyperparameters``,
    ``uses(method) -> bool``, and ``bind(context) -> Hooks`` (None: it acts outside the step,
    as early stopping does in the epoch loop). Calling it asks ``uses``."""
    name: str
    formula: str
    hyperparameters: tuple[Hyperparameter, ...]
    uses: Callable[[MethodConfig], bool]
    bind: Callable[[BindContext], Hooks] | None = None
    noise: bool = False     # train-time noise: its forward hooks run before the others' (which see its output)

    def __call__(self, method: MethodConfig) -> bool:
        return self.uses(method)


class WeightPenalty(Hooks):
    """A penalty ``value(W, hp) -> (Vr,)`` on each layer's stacked weights W (Vr, in, out), summed over
    layers, for the runs of variants with equal ``settings``; ``hp`` maps each hyperparameter name to
    its (Vr,) tensor. The gradient is ``grad(W, hp) -> (Vr, in, out)`` when given, else autograd's.
    ``active(t, settings)`` switches it per step (default: always)."""

    def __init__(self, context: BindContext, settings: Callable[[MethodConfig], Any],
                 names: tuple[str, ...], value: Callable[[torch.Tensor, dict], torch.Tensor],
                 grad: Callable[[torch.Tensor, dict], torch.Tensor] | None = None,
                 active: Callable[[int, Any], bool] = lambda t, s: True):
        self.runs = context.runs(settings)
        self.value, self.grad, self.active = value, grad, active
        self.hp = [{k: torch.tensor([getattr(context.methods[v], k) for v in range(sl.start, sl.stop)],
                                    dtype=context.dtype, device=context.device) for k in names}
                   for sl, _ in self.runs]

    def _layer_grad(self, w: torch.Tensor, hp: dict) -> torch.Tensor:
        if self.grad is not None:
            return self.grad(w, hp)
        with torch.enable_grad():
            leaf = w.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.value(leaf, hp).sum(), leaf)
        return g

    def add_weight_grads(self, grads, W, t):
        for (sl, s), hp in zip(self.runs, self.hp):
            if self.active(t, s):
                for g, w in zip(grads, W):
                    g[sl].add_(self._layer_grad(w[sl], hp))

    def add_weight_value(self, pen, W, t):
        for (sl, s), hp in zip(self.runs, self.hp):
            if self.active(t, s):
                pen[sl] += sum(self.value(w[sl], hp) for w in W)
