"""BatchedMLP: initialisation per seed, hand-written backward against autograd, evaluation sums."""

import math

import pytest
import torch
import torch.nn.functional as F

from reglab.engine.mlp import BatchedMLP, InputPart, WeightPart, init_parameters, misclassified


def test_a_seed_gives_the_same_initial_weights_whatever_the_other_variants_and_position():
    sizes = [6, 5, 4, 3]
    alone = BatchedMLP.initialize(sizes, [7], "he_normal")
    among = BatchedMLP.initialize(sizes, [1, 2, 7, 7, 3], "he_normal")
    for l in range(3):
        assert torch.equal(among.weights[l][2], alone.weights[l][0])
        assert torch.equal(among.weights[l][3], alone.weights[l][0])
        assert torch.equal(among.biases[l][2], alone.biases[l][0])
    assert not torch.equal(among.weights[0][0], among.weights[0][1])


@pytest.mark.parametrize("init,std", [("he_normal", math.sqrt(2 / 400)), ("he_uniform", math.sqrt(2 / 400)),
                                      ("glorot_uniform", math.sqrt(2 / 700)),
                                      ("torch_default", 1 / math.sqrt(3 * 400))])
def test_initialisations_have_their_documented_spread(init, std):
    weights, biases = init_parameters([400, 300], seed=0, init=init)
    w = weights[0]
    assert w.shape == (400, 300)
    assert abs(w.mean().item()) < 5 * std / math.sqrt(w.numel())
    assert w.std().item() == pytest.approx(std, rel=0.02)
    if init == "torch_default":   # nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
        assert w.abs().max() <= 1 / math.sqrt(400)
        assert biases[0].abs().max() <= 1 / math.sqrt(400) and biases[0].abs().sum() > 0
    else:
        assert torch.equal(biases[0], torch.zeros(300))


def _autograd_forward(weights, biases, x_in, scales, masks, kl_rows):
    """The same network with autograd: per-variant inputs, dropout masks, a KL-like linear term."""
    h = x_in
    extra = 0.0
    for l, (w, b) in enumerate(zip(weights, biases)):
        z = torch.bmm(h, w) * (scales.view(-1, 1, 1) if l == 0 else 1.0) + b
        if l == len(weights) - 1:
            return z, extra
        h = torch.relu(z) * masks[l]
        extra = extra + (h.sum(1) * kl_rows[l]).sum()   # d extra / dh = kl_rows (per unit, per variant)
    raise AssertionError


def test_hand_written_backward_equals_autograd_with_input_parts_dropout_and_extra_hidden_gradients():
    torch.manual_seed(0)
    sizes, V, b = [7, 6, 5, 3], 4, 9
    model = BatchedMLP.initialize(sizes, [0, 1, 2, 3], "he_normal")
    for bias in model.biases:
        bias.normal_(0, 0.1)
    x = torch.randn(b, 7)
    x_masked = x * (torch.rand(2, b, 7) > 0.3)        # variants 2, 3: dropped-out inputs
    parts = [InputPart(slice(0, 2), x), InputPart(slice(2, 4), x_masked, scale=1.25)]
    masks = [(torch.rand(V, b, n) > 0.4).float() * 2.0 for n in sizes[1:-1]]
    kl_rows = [torch.randn(V, n) for n in sizes[1:-1]]
    y = torch.randint(0, 3, (b,))

    def forward_hook(l, h):
        h.mul_(masks[l])

    def backward_hook(l, dh):
        dh.add_(kl_rows[l].unsqueeze(1))
        dh.mul_(masks[l])

    logits = model.forward(parts, forward_hook).transpose(1, 2)      # class-major (V, C, b) -> (V, b, C)
    loss_per_variant = torch.stack([F.cross_entropy(logits[v], y) for v in range(V)])
    dlogits = ((torch.softmax(logits, -1) - F.one_hot(y, 3)) / b).transpose(1, 2).contiguous()
    previous = [torch.randn_like(p) for p in model.parameters()]
    buffers = [p.clone() for p in previous]
    model.backward(dlogits, parts, buffers[:3], buffers[3:], beta=0.7, hidden_hook=backward_hook)

    leaves = [p.clone().requires_grad_(True) for p in model.parameters()]
    x_in = torch.cat([x.expand(2, b, 7), x_masked])
    scales = torch.tensor([1.0, 1.0, 1.25, 1.25])
    z, extra = _autograd_forward(leaves[:3], leaves[3:], x_in, scales, masks, kl_rows)
    assert torch.allclose(z, logits, atol=1e-5)
    ref_loss = sum(F.cross_entropy(z[v], y) for v in range(V)) + extra
    assert torch.allclose(loss_per_variant, torch.stack([F.cross_entropy(z[v], y) for v in range(V)]), atol=1e-6)
    grads = torch.autograd.grad(ref_loss, leaves)
    for buf, prev, g in zip(buffers, previous, grads):
        assert torch.allclose(buf, 0.7 * prev + g, rtol=1e-5, atol=1e-6)


def test_a_weight_part_without_a_factor_is_read_by_both_products_and_leaves_the_weight_gradient_unscaled():
    # additive weight noise W + N on the last two variants' middle layer: dL/dW = dL/d(W + N), so no factor
    g = torch.Generator().manual_seed(3)
    sizes, V, b = [5, 4, 3, 2], 4, 6
    model = BatchedMLP.initialize(sizes, [0, 1, 2, 3], "he_normal", dtype=torch.float64)
    noise = 0.3 * torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    parts = [InputPart(slice(0, V), torch.randn(b, 5, generator=g, dtype=torch.float64))]
    y = torch.randint(0, 2, (b,), generator=g)
    logits = model.forward(parts, weight_parts={1: [WeightPart(slice(2, 4), model.weights[1][2:4] + noise)]})
    logits = logits.transpose(1, 2)
    dlogits = ((torch.softmax(logits, -1) - F.one_hot(y, 2)) / b).transpose(1, 2).contiguous()
    buffers = [torch.zeros_like(p) for p in model.parameters()]
    model.backward(dlogits, parts, buffers[:3], buffers[3:])

    leaves = [p.clone().requires_grad_(True) for p in model.parameters()]
    shift = torch.cat([torch.zeros(2, 4, 3, dtype=torch.float64), noise])
    h = parts[0].x.expand(V, b, 5)
    for l in range(3):
        h = torch.baddbmm(leaves[3 + l], h, leaves[l] + shift if l == 1 else leaves[l])
        h = torch.relu(h) if l < 2 else h
    assert torch.allclose(h, logits, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(sum(F.cross_entropy(h[v], y) for v in range(V)), leaves)
    for buf, grad in zip(buffers, grads):
        assert torch.allclose(buf, grad, rtol=1e-12, atol=1e-12)


def test_backward_with_beta_zero_ignores_the_old_buffer_content():
    model = BatchedMLP.initialize([3, 4, 2], [0, 1], "he_normal")
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    parts = [InputPart(slice(0, 2), x)]
    logits = model.forward(parts).transpose(1, 2)
    dlogits = ((torch.softmax(logits, -1) - F.one_hot(y, 2)) / 5).transpose(1, 2).contiguous()
    garbage = [torch.full_like(p, float("nan")) for p in model.parameters()]
    model.backward(dlogits.clone(), parts, garbage[:2], garbage[2:], beta=0.0)
    assert all(torch.isfinite(g).all() for g in garbage)


def test_evaluate_sums_equal_a_direct_computation_over_chunks():
    torch.manual_seed(1)
    model = BatchedMLP.initialize([5, 8, 4], [3, 4, 5], "glorot_uniform")
    x, y = torch.randn(23, 5), torch.randint(0, 4, (23,))
    sums = model.evaluate(x, y, chunk=7)
    for v in range(3):
        h = torch.relu(x @ model.weights[0][v] + model.biases[0][v])
        z = h @ model.weights[1][v] + model.biases[1][v]
        assert sums["loss_sum"][v].item() == pytest.approx(F.cross_entropy(z, y, reduction="sum").item(), rel=1e-5)
        assert sums["error_count"][v].item() == int((z.argmax(1) != y).sum())
        assert torch.allclose(sums["hidden_sum"][0][v].float(), h.sum(0), rtol=1e-5)


def test_evaluate_reuses_its_buffers_across_splits_and_chunk_sizes_without_changing_a_sum():
    # one model evaluates a long split, a short one, then the long one again (its kept hidden-output
    # buffers serve every chunk); each result equals that of a model that never evaluated before,
    # and the hidden sums equal a float64 sum of the ReLU outputs (the chunks' float32 sums add to it)
    torch.manual_seed(2)
    model = BatchedMLP.initialize([6, 9, 7, 3], [2, 2, 3], "glorot_uniform")
    long_x, long_y = torch.randn(41, 6), torch.randint(0, 3, (41,))
    short_x, short_y = torch.randn(5, 6), torch.randint(0, 3, (5,))

    def fresh(x, y, chunk):
        return BatchedMLP([w.clone() for w in model.weights], [b.clone() for b in model.biases]).evaluate(x, y, chunk)

    for x, y, chunk in [(long_x, long_y, 16), (short_x, short_y, 16), (long_x, long_y, 16), (long_x, long_y, 50)]:
        got, want = model.evaluate(x, y, chunk), fresh(x, y, chunk)
        assert torch.equal(got["loss_sum"], want["loss_sum"])
        assert torch.equal(got["error_count"], want["error_count"])
        for a, b in zip(got["hidden_sum"], want["hidden_sum"]):
            assert torch.equal(a, b)
        h = x.double()
        for l, acc in enumerate(got["hidden_sum"]):
            h = torch.relu(h @ model.weights[l].double() + model.biases[l].double())
            torch.testing.assert_close(acc, h.sum(1), rtol=1e-6, atol=1e-9)


def test_an_example_is_misclassified_unless_its_true_logit_is_strictly_the_largest():
    # class-major (V=1, C=3, n=5); example columns: right, right, three-way tie, wrong, NaN
    logits = torch.tensor([[[2.0, 0.0, 1.0, 1.0, float("nan")],
                            [1.0, 3.0, 1.0, 0.5, 0.0],
                            [0.0, 0.0, 1.0, 0.0, 0.0]]])
    y = torch.tensor([0, 1, 0, 1, 0])
    assert misclassified(logits, y).tolist() == [[False, False, True, True, True]]
    z = torch.randn(2, 10, 50, dtype=torch.float64)                 # no ties: agrees with argmax
    labels = torch.randint(0, 10, (50,))
    assert torch.equal(misclassified(z, labels), z.argmax(1) != labels)
