"""DropConnect (Wan et al. 2013): its masks and their stream, the masked products and gradient against
autograd, the batched engine against plain torch.nn with the same masks, evaluation on the plain weights,
and kill/resume."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reglab.config import DataConfig, MethodConfig, StudyConfig
from reglab.engine import Trainer
from reglab.engine import regularizers as R
from reglab.engine.dropconnect import dropconnect_factors
from reglab.engine.dropout import dropout_generator
from reglab.engine.mlp import BatchedMLP, InputPart, WeightPart
from reglab.engine.reference import ReferenceRun
from reglab.errors import ReglabError

from .test_trainer import (_assert_resume_continues_bit_identically, _dataset_as, _rel_err,
                          _train_saving_every_epoch)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_each_weight_is_kept_with_probability_1_minus_p_and_scaled_so_its_mean_is_one(p):
    factors = dropconnect_factors(torch.Generator().manual_seed(0), [300, 200, 10], p, torch.float64)
    assert [tuple(f.shape) for f in factors] == [(300, 200), (200, 10)]
    f = torch.cat([x.flatten() for x in factors])
    scale = 1 / (1 - R.drop_probability(p))
    assert set(f.unique().tolist()) == {0.0, scale}
    kept, n = float((f > 0).double().mean()), f.numel()
    assert abs(kept - (1 - p)) < 4 * math.sqrt(p * (1 - p) / n)
    assert abs(float(f.mean()) - 1.0) < 4 * scale * math.sqrt(p * (1 - p) / n)


def test_the_stream_is_one_draw_of_raw_words_per_step_laid_out_layer_by_layer():
    sizes, p = [5, 3, 2], 0.3                      # 15 and 6 weights: 4 and 2 words of four 16-bit lanes
    gen = torch.Generator().manual_seed(7)
    steps = [dropconnect_factors(gen, sizes, p, torch.float64) for _ in range(2)]
    words = torch.empty(2 * (4 + 2), dtype=torch.int64).random_(-2 ** 63, None,
                                                                 generator=torch.Generator().manual_seed(7))
    threshold = -32768 + round(R.drop_probability(p) * 2 ** 16)    # a lane below it drops its weight
    scale = 1 / (1 - R.drop_probability(p))
    for step, (first, second) in enumerate(steps):
        lanes = words[6 * step:6 * (step + 1)].view(torch.int16)
        assert torch.equal(first, (lanes[:15] >= threshold).double().view(5, 3) * scale)
        assert torch.equal(second, (lanes[16:22] >= threshold).double().view(3, 2) * scale)


def _autograd_logits(weights, biases, x, factors):
    """(V, b, C) logits of h_{l+1} = relu(h_l (W_l * F_l) + b_l), by plain tensor ops (autograd)."""
    h = x
    for l, (w, c) in enumerate(zip(weights, biases)):
        h = torch.baddbmm(c, h, w * factors[l])
        if l < len(weights) - 1:
            h = torch.relu(h)
    return h


@pytest.mark.parametrize("beta", [0.0, 0.7])
def test_the_masked_products_and_the_masked_weight_gradient_equal_autograd_on_w_times_the_mask(beta):
    # rows 1-2 masked on every layer, across the boundary of two input parts (rows 0-1 shared, 2-3 dropped out)
    g = torch.Generator().manual_seed(0)
    sizes, V, b = [7, 6, 5, 3], 4, 9
    model = BatchedMLP.initialize(sizes, [0, 1, 2, 3], "he_normal", dtype=torch.float64)
    for bias in model.biases:
        bias.normal_(0, 0.1, generator=g)
    x = torch.randn(b, 7, generator=g, dtype=torch.float64)
    x_dropped = x * (torch.rand(2, b, 7, generator=g) > 0.3)
    parts = [InputPart(slice(0, 2), x), InputPart(slice(2, 4), x_dropped)]
    masked = slice(1, 3)
    factors = [torch.ones_like(w) for w in model.weights]
    weight_parts = {}
    for l, w in enumerate(model.weights):
        factors[l][masked] = (torch.rand(2, *w.shape[1:], generator=g) > 0.4).double() / 0.6
        weight_parts[l] = [WeightPart(masked, w[masked] * factors[l][masked], factors[l][masked])]
    y = torch.randint(0, 3, (b,), generator=g)

    logits = model.forward(parts, weight_parts=weight_parts).transpose(1, 2)       # (V, b, C)
    dlogits = ((torch.softmax(logits, -1) - F.one_hot(y, 3)) / b).transpose(1, 2).contiguous()
    previous = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in model.parameters()]
    buffers = [p.clone() for p in previous]
    model.backward(dlogits, parts, buffers[:3], buffers[3:], beta=beta)

    leaves = [p.clone().requires_grad_(True) for p in model.parameters()]
    z = _autograd_logits(leaves[:3], leaves[3:], torch.cat([x.expand(2, b, 7), x_dropped]), factors)
    assert torch.allclose(z, logits, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(sum(F.cross_entropy(z[v], y) for v in range(V)), leaves)
    for buf, prev, grad in zip(buffers, previous, grads):
        assert torch.allclose(buf, beta * prev + grad, rtol=1e-12, atol=1e-12)
    for l in range(3):   # a dropped weight gets no gradient: only the old buffer remains
        dropped = factors[l] == 0
        assert dropped.any() and torch.equal(buffers[l][dropped], beta * previous[l][dropped])


def test_bfloat16_products_read_the_masked_weights_as_float32_products_do():
    g = torch.Generator().manual_seed(1)
    sizes, V, b = [12, 16, 8, 3], 4, 10
    weights = [torch.randn(V, i, o, generator=g) / i ** 0.5 for i, o in zip(sizes, sizes[1:])]
    biases = [0.1 * torch.randn(V, 1, o, generator=g) for o in sizes[1:]]
    factors = [(torch.rand(2, i, o, generator=g) > 0.5).float() * 2.0 for i, o in zip(sizes, sizes[1:])]
    x = torch.rand(b, sizes[0], generator=g)
    dlogits = torch.randn(V, sizes[-1], b, generator=g)
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = BatchedMLP([w.clone() for w in weights], [c.clone() for c in biases], compute_dtype=dtype)
        parts = {l: [WeightPart(slice(2, 4), model.weights[l][2:4] * f, f)] for l, f in enumerate(factors)}
        inputs = [InputPart(slice(0, V), x)]
        logits = model.forward(inputs, weight_parts=parts).float()
        grads = [torch.zeros_like(p) for p in model.parameters()]
        model.backward(dlogits, inputs, grads[:3], grads[3:], beta=0.9)
        results[dtype] = [logits] + grads
    for single, mixed in zip(results[torch.float32], results[torch.bfloat16]):
        assert mixed.dtype == torch.float32
        assert float((mixed - single).norm() / single.norm()) < 2e-2   # bfloat16 keeps ~3 significant digits
    for l, f in enumerate(factors):   # the masked rows' dropped weights get no gradient in either
        assert torch.all(results[torch.bfloat16][1 + l][2:4][f == 0] == 0)


# several rates in one batch, one of them with dropout too (its masks drawn first from the same stream),
# beside a method without DropConnect
SEEDS = (3, 4)
N_EPOCHS = 5
METHODS = (MethodConfig("other", l2=1e-3), MethodConfig("dc-0.2", dropconnect=0.2),
           MethodConfig("dc-0.5+l2", dropconnect=0.5, l2=1e-3),
           MethodConfig("dc-0.3+dropout", dropconnect=0.3, dropout_input=0.1, dropout_hidden=0.4))


def _rates_study(methods=METHODS) -> StudyConfig:
    return StudyConfig(name="dc", data=DataConfig(name="moons", data_seed=5), hidden=(16, 8), n_epochs=N_EPOCHS,
                       batch_size=24, seeds=SEEDS, methods=methods, optimizer="sgd")


def _reference(cfg: StudyConfig, method: MethodConfig, seed: int, ds) -> ReferenceRun:
    ref = ReferenceRun(cfg, method, seed, ds.x_train, ds.y_train, 3, dtype=torch.float64)
    for _ in range(N_EPOCHS):
        ref.train_epoch()
    return ref


def test_variants_of_several_rates_train_like_plain_torch_with_the_same_masks_beside_an_untouched_method(
        small_dataset):
    cfg, ds = _rates_study(), _dataset_as(small_dataset, torch.float64)
    trainer = Trainer(cfg, ds, dtype=torch.float64)
    records = [trainer.train_epoch() for _ in range(N_EPOCHS)]
    for k, method, seed in cfg.variants():
        # torch.nn.Linear with weight * factor, F.cross_entropy, torch.optim.SGD(momentum=0.9), autograd
        ref = _reference(cfg, method, seed, ds)
        for l, lin in enumerate(ref.linears):
            assert _rel_err(trainer.model.weights[l][k], lin.weight.detach().T) <= 1e-10, (method.name, seed, l)
            assert _rel_err(trainer.model.biases[l][k, 0], lin.bias.detach()) <= 1e-10, (method.name, seed, l)
        data = np.concatenate([r.loss_data[:, k] for r in records])
        penalty = np.concatenate([r.loss_penalty[:, k] for r in records])
        assert np.allclose(data, ref.losses, rtol=1e-10, atol=1e-11), (method.name, seed)
        assert np.allclose(penalty, ref.penalties, rtol=1e-10, atol=1e-11), (method.name, seed)
        if method.uses_dropconnect:   # the masks act: without them the weights end elsewhere
            unmasked = _reference(cfg, dataclasses.replace(method, dropconnect=0.0), seed, ds)
            assert _rel_err(trainer.model.weights[0][k], unmasked.linears[0].weight.detach().T) > 1e-2
    # the method without DropConnect trains bit for bit as it does without DropConnect beside it
    alone = Trainer(cfg.replace(methods=METHODS[:1]), ds, dtype=torch.float64)
    for expected in records:
        got = alone.train_epoch()
        assert np.array_equal(got.loss_data, expected.loss_data[:, :2])
    for p, q in zip(trainer.model.parameters(), alone.model.parameters()):
        assert torch.equal(p[:2], q)


def test_a_dropconnect_variant_trains_bit_identically_alone_and_inside_a_larger_study(small_dataset):
    big = _rates_study()
    alone = big.replace(methods=(big.methods[2],))
    a, b = Trainer(big, small_dataset), Trainer(alone, small_dataset)
    for _ in range(2):
        ra, rb = a.train_epoch(), b.train_epoch()
        assert np.array_equal(ra.loss_data[:, 4:6], rb.loss_data)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p[4:6], q)


def test_the_same_seed_gives_the_same_masks_and_another_seed_other_masks():
    one = dropconnect_factors(dropout_generator(0), [2, 16, 8, 3], 0.5)
    again = dropconnect_factors(dropout_generator(0), [2, 16, 8, 3], 0.5)
    two = dropconnect_factors(dropout_generator(1), [2, 16, 8, 3], 0.5)
    assert all(torch.equal(a, b) for a, b in zip(one, again))
    assert not torch.equal(one[0], two[0])


def _resume_study(optimizer: str, n_epochs: int = 5) -> StudyConfig:
    lr = 0.01 if optimizer == "adam" else 0.05
    methods = (MethodConfig("plain", lr=lr), MethodConfig("dc", dropconnect=0.4, lr=lr),
               MethodConfig("dc+dropout", dropconnect=0.2, dropout_hidden=0.5, lr=lr),
               MethodConfig("dc-es", dropconnect=0.3, early_stopping=True, patience=1, lr=lr))
    return StudyConfig(name="dc", data=DataConfig(name="moons", data_seed=2), hidden=(16, 8), n_epochs=n_epochs,
                       batch_size=24, seeds=(0, 1), methods=methods, optimizer=optimizer)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resuming_a_dropconnect_run_continues_bit_identically(optimizer, small_dataset):
    cfg = _resume_study(optimizer)
    straight, records, states = _train_saving_every_epoch(cfg, small_dataset)
    for epoch in (0, 2):
        _assert_resume_continues_bit_identically(cfg, small_dataset, straight, records, states[epoch][1], epoch)


def test_a_rate_outside_0_to_1_is_one_line_with_a_fix():
    for bad in (1.0, -0.1):
        with pytest.raises(ReglabError) as e:
            MethodConfig("dc", dropconnect=bad)
        assert len(e.value.lines) == 1
        assert f"'dc.dropconnect' must be a number in [0, 1); got {bad}. Fix: use 0 to disable" in str(e.value)
    assert not MethodConfig("plain").uses_dropconnect and MethodConfig("dc", dropconnect=0.5).uses_dropconnect
