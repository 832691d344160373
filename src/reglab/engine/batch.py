"""The step's batch: the live variants a training step computes, as contiguous runs.

Variants follow ``cfg.variants()`` (method-major: a method's seeds are
contiguous), so a regularizer touches only the contiguous runs of the live
variants that use it (``contiguous_runs``). Once some variants stopped or
diverged, ``LiveBatch`` holds copies of the live variants' parameters,
optimizer state and training flags (compaction): a stopped variant then costs
nothing, and ``write_back`` returns the copies to the study's tensors after an
epoch's steps. With every variant live it holds the study's own objects.
Each variant is an independent slice of every batched operation, so this
changes no variant's numbers beyond float rounding of a different batch size.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from reglab.config import MethodConfig
from reglab.engine.mlp import BatchedMLP
from reglab.engine.optim import SGD, Adam, optimizer_state


def contiguous_runs(values: list) -> list[tuple[slice, Any]]:
    """Maximal ranges of equal consecutive values, skipping ``None``: [(slice, value)]."""
    runs, start = [], 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            if values[start] is not None:
                runs.append((slice(start, i), values[start]))
            start = i
    return runs


def span(runs: list[tuple[slice, Any]]) -> slice:
    """The smallest slice covering every run (empty when there are none)."""
    if not runs:
        return slice(0, 0)
    return slice(runs[0][0].start, runs[-1][0].stop)


class LiveBatch:
    """The live variants ``live`` (study order) of the study's ``model``, ``optimizer`` and ``training``.

    ``net``, ``optimizer``, ``training`` (n_live,) are what the steps use: the study's own objects when
    every variant is live, else copies of the live rows (``make_optimizer(params, methods)`` builds the
    copy's optimizer, its state copied in).
    """

    def __init__(self, model: BatchedMLP, optimizer: SGD | Adam, training: torch.Tensor, live: np.ndarray,
                 methods: list[MethodConfig], step: int,
                 make_optimizer: Callable[[list[torch.Tensor], list[MethodConfig]], SGD | Adam]):
        self.model, self.study_optimizer, self.study_training = model, optimizer, training
        self.live = live
        self.n_variants = len(training)
        self.n_live = len(live)
        self.compacted = self.n_live < self.n_variants
        if not self.compacted:
            self.net, self.optimizer, self.training = model, optimizer, training
            return
        self.index = torch.as_tensor(live, device=training.device)
        params = [p.index_select(0, self.index) for p in model.parameters()]
        L = model.n_layers
        self.net = BatchedMLP(params[:L], params[L:], model.compute_dtype)
        self.optimizer = make_optimizer(self.net.parameters(), [methods[v] for v in live])
        for dst, src in zip(optimizer_state(self.optimizer), optimizer_state(optimizer)):
            dst.copy_(src.index_select(0, self.index))
        if isinstance(optimizer, Adam):
            self.optimizer.t = step                       # steps taken so far: one per global step
        self.training = training.index_select(0, self.index)

    def write_back(self) -> None:
        """Return the live variants' parameters, optimizer state and training flags to the study's."""
        if not self.compacted:
            return
        with torch.no_grad():
            for dst, src in zip(self.model.parameters(), self.net.parameters()):
                dst.index_copy_(0, self.index, src)
            for dst, src in zip(optimizer_state(self.study_optimizer), optimizer_state(self.optimizer)):
                dst.index_copy_(0, self.index, src)
        if isinstance(self.study_optimizer, Adam):
            self.study_optimizer.t = self.optimizer.t
        self.study_training.index_copy_(0, self.index, self.training)

    def full(self, x: torch.Tensor) -> np.ndarray:
        """float64 numpy (..., V) from a live tensor (..., n_live); variants not in the batch get NaN."""
        x = x.detach().double().cpu().numpy()
        if not self.compacted:
            return x
        out = np.full(x.shape[:-1] + (self.n_variants,), np.nan)
        out[..., self.live] = x
        return out


class Scratch:
    """Buffers and constants a step reuses (keyed), so no step allocates a fresh temporary."""

    def __init__(self, dtype: torch.dtype, device: torch.device, n_live: int):
        self.dtype, self.device, self.n_live = dtype, device, n_live
        self._store: dict[tuple, torch.Tensor] = {}

    def constant(self, value: float) -> torch.Tensor:
        key = ("constant", value)
        if key not in self._store:
            self._store[key] = torch.tensor(value, dtype=self.dtype, device=self.device)
        return self._store[key]

    def minus_ones(self, b: int) -> torch.Tensor:
        """(n_live, 1, b) of -1: the one-hot subtraction of the softmax gradient."""
        key = ("minus-ones", b)
        if key not in self._store:
            self._store[key] = torch.full((self.n_live, 1, b), -1.0, dtype=self.dtype, device=self.device)
        return self._store[key]

    def buffer(self, key: tuple, shape: tuple, dtype: torch.dtype | None = None) -> torch.Tensor:
        dtype = dtype or self.dtype
        buf = self._store.get(key)
        if buf is None or buf.shape != torch.Size(shape):
            buf = self._store[key] = torch.empty(shape, dtype=dtype, device=self.device)
        return buf
