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

On the CPU a study whose parameters and optimizer state exceed the cache budget
is stepped in chunks (``step_chunks``): one ``LiveBatch`` per chunk of the live
variants, each run through the whole epoch before the next, so that its state
stays in cache from step to step (tests/engine/test_batch.py: the same records,
bit for bit, as one batch).
"""

from __future__ import annotations

import math
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


# Bytes of parameters and optimizer state per chunk when the CPU steps the live variants chunk by chunk, each
# through a whole epoch before the next (``step_chunks``): a chunk's state then stays in cache from step to
# step, where the whole study's does not. Measured on the 2-core Xeon (docs/performance.md, "Stepping the
# variants in chunks"): table9-cpu's 784-512-512-10 at 5.4 MB per variant, 3 seeds (96 MB) as 3 chunks of 6
# (32 MB): 1.16x faster per step than one batch; 8 seeds (257 MB) as 8 chunks of 6: 1.19x, as 7 of 7: 1.1x;
# 9-variant chunks (48 MB) 1.03-1.06x; chunks of 3 lose (0.91x: per-call costs). A study up to 1.5x the budget
# stays one batch: the quick net's 18 variants (39 MB) as 2 chunks of 9 ran 0.97x.
CHUNK_STATE_BYTES = 32 << 20
MIN_CHUNK_VARIANTS = 4         # smaller chunks lose to one batch (per-call costs): no chunking then


def step_chunks(live: np.ndarray, bytes_per_variant: int, device: torch.device,
                budget: int | None = None) -> list[np.ndarray]:
    """The live variants (study order) cut into contiguous chunks that a CPU steps one after another, each
    through a whole epoch: the fewest chunks of near-equal size whose parameters and optimizer state
    (``bytes_per_variant`` each) fit ``budget`` (default ``CHUNK_STATE_BYTES``). One chunk (``[live]``)
    on a GPU, when the whole study fits 1.5x the budget, or when chunks that fit would hold fewer than
    ``MIN_CHUNK_VARIANTS``. Each variant is an independent slice of every batched operation: its numbers
    do not depend on the chunk it is in."""
    budget = CHUNK_STATE_BYTES if budget is None else budget
    n, total = len(live), len(live) * bytes_per_variant
    if device.type != "cpu" or n < 2 or 2 * total <= 3 * budget:
        return [live]
    n_chunks = math.ceil(total / budget)
    if n_chunks > n // MIN_CHUNK_VARIANTS:
        return [live]
    return np.array_split(live, n_chunks)


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
