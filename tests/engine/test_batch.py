"""The step's batch: chunks of the live variants (``batch.step_chunks``) and a study trained in chunks."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from reglab.engine import Trainer
from reglab.engine.batch import CHUNK_STATE_BYTES, MIN_CHUNK_VARIANTS, step_chunks

from .test_trainer import (_all_methods_study, _overfitting_dataset, _same_records, _stopping_study,
                           _train_saving_every_epoch)

CPU = torch.device("cpu")


def test_chunks_are_contiguous_near_equal_and_fit_the_budget():
    live = np.array([0, 1, 2, 4, 5, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 19, 20, 21])   # 18 live of 22
    chunks = step_chunks(live, bytes_per_variant=10, device=CPU, budget=60)
    assert np.concatenate(chunks).tolist() == live.tolist()               # study order, each variant once
    assert [len(c) for c in chunks] == [6, 6, 6]                          # the fewest that fit 60 bytes
    assert all(len(c) * 10 <= 60 for c in chunks)
    assert [len(c) for c in step_chunks(live, 10, CPU, budget=70)] == [6, 6, 6]    # 18 x 10 / 70 -> 3 chunks
    assert [len(c) for c in step_chunks(live, 10, CPU, budget=100)] == [9, 9]


def test_one_chunk_when_the_study_fits_on_a_gpu_or_when_chunks_would_be_too_small():
    live = np.arange(18)
    assert [c.tolist() for c in step_chunks(live, 10, CPU, budget=180)] == [live.tolist()]
    assert len(step_chunks(live, 10, CPU, budget=120)) == 1                # up to 1.5x the budget: one batch
    assert len(step_chunks(live, 10, CPU, budget=119)) == 2
    assert len(step_chunks(live, 10, torch.device("cuda"), budget=60)) == 1
    # chunks that fit would hold fewer than MIN_CHUNK_VARIANTS (they lose to one batch): one batch
    small = (MIN_CHUNK_VARIANTS - 1) * 10
    assert [c.tolist() for c in step_chunks(live, 10, CPU, budget=small)] == [live.tolist()]
    assert step_chunks(np.array([3]), 10**9, CPU)[0].tolist() == [3]
    # the default budget keeps the quick preset's 18 variants (784-256-256-10, SGD) in one batch
    quick = 2 * 4 * (784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10)
    assert len(step_chunks(np.arange(18), quick, CPU)) == 1
    table9_cpu = 2 * 4 * (784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10)
    assert [len(c) for c in step_chunks(np.arange(18), table9_cpu, CPU)] == [6, 6, 6]
    assert [len(c) for c in step_chunks(np.arange(48), table9_cpu, CPU)] == [6] * 8
    assert 6 * table9_cpu <= CHUNK_STATE_BYTES < 7 * table9_cpu


def _budget_for(cfg, ds, variants_per_chunk: int) -> int:
    """A chunk budget that holds ``variants_per_chunk`` of the study's variants (parameters and optimizer state)."""
    return Trainer(cfg, ds).state_bytes_per_variant * variants_per_chunk


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_study_trained_in_chunks_equals_it_trained_as_one_batch(optimizer, small_dataset):
    """Every regularizer of the test study (dropout, max-norm, KL with its moving average, L1, early
    stopping, ...), chunk by chunk through each epoch: every value of every epoch record and the final
    summary equal to one batch's, bit for bit."""
    cfg = _all_methods_study(optimizer, n_epochs=3)
    budget = _budget_for(cfg, small_dataset, MIN_CHUNK_VARIANTS)
    whole, chunked = Trainer(cfg, small_dataset), Trainer(cfg, small_dataset, chunk_bytes=budget)
    assert len(whole._steps) == 1 and len(chunked._steps) >= 3
    for _ in range(3):
        assert _same_records(whole.train_epoch(), chunked.train_epoch())
    for a, b in zip(whole.model.parameters(), chunked.model.parameters()):
        assert torch.equal(a, b)
    assert whole.final_summary() == chunked.final_summary()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_chunks_follow_compaction_and_a_resumed_chunked_run_continues_bit_identically(optimizer):
    """Early-stopping variants leave their chunks (the live set is cut again), a KL average travels with
    its variant; one batch, chunks, and chunks resumed after a compaction give the same records."""
    import dataclasses
    ds = _overfitting_dataset()
    cfg = _stopping_study(n_epochs=10).replace(optimizer=optimizer)
    if optimizer == "adam":
        cfg = cfg.replace(methods=tuple(dataclasses.replace(m, lr=0.01) for m in cfg.methods))
    budget = _budget_for(cfg, ds, MIN_CHUNK_VARIANTS + 1)                  # 10 variants: 2 chunks of 5
    whole, whole_records, _ = _train_saving_every_epoch(cfg, ds)

    records, states = [], []
    t = Trainer(cfg, ds, chunk_bytes=budget)
    assert len(t._steps) == 2
    while not t.done:
        records.append(t.train_epoch())
        buffer = io.BytesIO()
        torch.save(t.state_dict(), buffer)
        states.append((len(t.live_variants), buffer.getvalue()))
    assert len(records) == len(whole_records)
    for a, b in zip(records, whole_records):
        assert _same_records(a, b)
    assert t.final_summary() == whole.final_summary()
    compacted = [e for e, (n_live, _) in enumerate(states) if n_live < t.n_variants]
    assert compacted, "some early-stopping variants should stop"
    assert t.live_variants.tolist() == np.concatenate([s.batch.live for s in t._steps]).tolist()
    resumed = Trainer(cfg, ds, chunk_bytes=budget)
    resumed.load_state_dict(torch.load(io.BytesIO(states[compacted[0]][1]), weights_only=False))
    for expected in records[compacted[0] + 1:]:
        assert _same_records(resumed.train_epoch(), expected)
    assert resumed.final_summary() == whole.final_summary()
