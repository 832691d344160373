"""reglab's batched SGD and Adam against torch.optim, on real training problems."""

import math

import pytest
import torch

from reglab.engine.optim import SGD, Adam

from .conftest import mnist_tensors


def _moons(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved half-circles with noise, the usual 2-D benchmark (written out here)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g) * math.pi
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.stack([torch.where(y == 0, torch.cos(t), 1 - torch.cos(t)),
                     torch.where(y == 0, torch.sin(t), 0.5 - torch.sin(t))], 1)
    return x + 0.15 * torch.randn(n, 2, generator=g), y


def _init(sizes: list[int], seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        params += [torch.randn(a, b, generator=g) * math.sqrt(2 / a), torch.zeros(b)]
    return params


def _loss(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    h = x
    for i in range(0, len(params), 2):
        h = h @ params[i] + params[i + 1]
        if i < len(params) - 2:
            h = torch.relu(h)
    return torch.nn.functional.cross_entropy(h, y)


def _grads(params: list[torch.Tensor], x, y, l2: float = 0.0) -> list[torch.Tensor]:
    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    loss = _loss(leaves, x, y)
    grads = torch.autograd.grad(loss, leaves)
    return [g + l2 * p if p.dim() == 2 else g for g, p in zip(grads, params)]


def _max_rel_err(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((u - v).abs().max() / v.abs().max()) for u, v in zip(a, b))


def _train_pair(make_ours, make_torch, x, y, n_steps: int, batch: int, sizes, l2: float = 0.0, seed: int = 0):
    """Train the same model with reglab's optimizer and torch's, same gradients function, same batches."""
    ours = _init(sizes, seed)
    theirs = [p.clone().requires_grad_(True) for p in ours]
    opt_ours, opt_theirs = make_ours(ours), make_torch(theirs)
    g = torch.Generator().manual_seed(seed + 1)
    for step in range(n_steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        opt_ours.step(_grads(ours, x[idx], y[idx], l2))
        opt_theirs.zero_grad()
        _loss(theirs, x[idx], y[idx]).backward()
        opt_theirs.step()
    return ours, [p.detach() for p in theirs]



def _step_stacked_and_separate(ours, stacked, torch_opts, theirs, x, y, *, n_steps, batch):
    """Step reglab's optimizer on the stacked variants and one torch optimizer per variant on the same batches."""
    n_variants = len(theirs)
    g = torch.Generator().manual_seed(0)
    for _ in range(n_steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        per_variant = [_grads([p[v] for p in stacked], x[idx], y[idx]) for v in range(n_variants)]
        ours.step([torch.stack([per_variant[v][i] for v in range(n_variants)]) for i in range(len(stacked))])
        for v in range(n_variants):
            torch_opts[v].zero_grad()
            _loss(theirs[v], x[idx], y[idx]).backward()
            torch_opts[v].step()

def test_adam_equals_torch_adam_over_1000_steps_on_two_moons():
    x, y = _moons(2000)
    ours, theirs = _train_pair(lambda p: Adam(p, lr=3e-3, beta1=0.9, beta2=0.999, eps=1e-8),
                               lambda p: torch.optim.Adam(p, lr=3e-3, betas=(0.9, 0.999), eps=1e-8),
                               x, y, n_steps=1000, batch=32, sizes=[2, 32, 32, 2])
    assert _max_rel_err(ours, theirs) <= 1e-5
    assert float(_loss(ours, x, y)) < 0.2   # it really trained


@pytest.mark.slow
def test_adam_equals_torch_adam_over_1000_steps_on_mnist(data_dir):
    x, y, _, _ = mnist_tensors(data_dir, n_train=20_000)
    ours, theirs = _train_pair(lambda p: Adam(p, lr=1e-3),
                               lambda p: torch.optim.Adam(p, lr=1e-3),
                               x, y, n_steps=1000, batch=100, sizes=[784, 32, 10])
    assert _max_rel_err(ours, theirs) <= 1e-5
    assert float(_loss(ours, x, y)) < 0.4


def test_adam_with_per_variant_hyperparameters_equals_one_torch_adam_per_variant():
    x, y = _moons(1000, seed=3)
    settings = [(1e-3, 0.9, 0.999, 1e-8), (5e-3, 0.8, 0.99, 1e-6), (2e-3, 0.5, 0.9, 1e-4)]
    sizes = [2, 16, 2]
    variants = [_init(sizes, seed=10 + v) for v in range(3)]
    stacked = [torch.stack([variants[v][i] for v in range(3)]) for i in range(len(variants[0]))]
    col = lambda j: torch.tensor([s[j] for s in settings])  # noqa: E731
    ours = Adam(stacked, lr=col(0), beta1=col(1), beta2=col(2), eps=col(3))
    theirs = [[p.clone().requires_grad_(True) for p in variants[v]] for v in range(3)]
    torch_opts = [torch.optim.Adam(theirs[v], lr=s[0], betas=(s[1], s[2]), eps=s[3]) for v, s in enumerate(settings)]
    _step_stacked_and_separate(ours, stacked, torch_opts, theirs, x, y, n_steps=300, batch=32)
    for v in range(3):
        assert _max_rel_err([p[v] for p in stacked], [p.detach() for p in theirs[v]]) <= 1e-5
    assert ours.t == 300 and len(ours.m) == len(ours.v) == len(stacked)


def test_adam_first_step_matches_the_formula_with_eps_inside_the_root_and_without_bias_correction():
    g = torch.tensor([[0.5, -2.0, 1e-3]], dtype=torch.float64)
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-4

    def one_step(**kw):
        w = torch.zeros_like(g)
        Adam([w], lr=lr, beta1=b1, beta2=b2, eps=eps, **kw).step([g])
        return w

    # bias-corrected first step: m_hat = g, v_hat = g^2
    assert torch.allclose(one_step(), -lr * g / (g.abs() + eps), rtol=1e-12)
    assert torch.allclose(one_step(eps_inside_sqrt=True), -lr * g / torch.sqrt(g ** 2 + eps), rtol=1e-12)
    m, v = (1 - b1) * g, (1 - b2) * g ** 2
    assert torch.allclose(one_step(bias_correction=False), -lr * m / (v.sqrt() + eps), rtol=1e-12)
    mixed = torch.zeros(2, 3, dtype=torch.float64)
    Adam([mixed], lr=lr, beta1=b1, beta2=b2, eps=eps, eps_inside_sqrt=torch.tensor([False, True]),
         bias_correction=torch.tensor([True, False])).step([torch.cat([g, g])])
    inside_uncorrected = -lr * m / torch.sqrt(v + eps)
    assert torch.allclose(mixed[0], (-lr * g / (g.abs() + eps))[0], rtol=1e-12)
    assert torch.allclose(mixed[1], inside_uncorrected[0], rtol=1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_equals_torch_sgd_with_momentum_and_weight_decay_over_1000_steps(nesterov):
    x, y = _moons(2000, seed=1)
    ours, theirs = _train_pair(lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=nesterov),
                               lambda p: torch.optim.SGD([{"params": p[0::2], "weight_decay": 1e-3},
                                                          {"params": p[1::2], "weight_decay": 0.0}],
                                                         lr=0.05, momentum=0.9, nesterov=nesterov),
                               x, y, n_steps=1000, batch=32, sizes=[2, 32, 32, 2], l2=1e-3)
    assert _max_rel_err(ours, theirs) <= 1e-5


def test_sgd_per_variant_momentum_and_nesterov_equal_separate_torch_runs():
    x, y = _moons(500, seed=2)
    settings = [(0.05, 0.9, False), (0.02, 0.5, True), (0.1, 0.0, False)]
    sizes = [2, 8, 2]
    variants = [_init(sizes, seed=20 + v) for v in range(3)]
    stacked = [torch.stack([variants[v][i] for v in range(3)]) for i in range(len(variants[0]))]
    ours = SGD(stacked, lr=torch.tensor([s[0] for s in settings]), momentum=torch.tensor([s[1] for s in settings]),
               nesterov=torch.tensor([s[2] for s in settings]))
    theirs = [[p.clone().requires_grad_(True) for p in variants[v]] for v in range(3)]
    torch_opts = [torch.optim.SGD(theirs[v], lr=s[0], momentum=s[1], nesterov=s[2]) for v, s in enumerate(settings)]
    _step_stacked_and_separate(ours, stacked, torch_opts, theirs, x, y, n_steps=200, batch=16)
    for v in range(3):
        assert _max_rel_err([p[v] for p in stacked], [p.detach() for p in theirs[v]]) <= 1e-5


def test_sgd_step_from_buffers_equals_step_when_the_caller_forms_the_momentum_buffer():
    g = torch.Generator().manual_seed(0)
    w1 = torch.randn(2, 3, 4, generator=g)
    w2 = w1.clone()
    a, b = SGD([w1], lr=0.1, momentum=0.9), SGD([w2], lr=0.1, momentum=0.9)
    for _ in range(5):
        grad = torch.randn(2, 3, 4, generator=g)
        a.step([grad])
        b.buffers[0].mul_(0.9).add_(grad)
        b.step_from_buffers()
    assert torch.equal(w1, w2)


def _params(seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 7, 5, generator=gen), torch.randn(4, 5, 3, generator=gen),
            torch.randn(4, 1, 5, generator=gen), torch.randn(4, 1, 3, generator=gen)]


@pytest.mark.parametrize("lr", [torch.tensor([1e-3, 2e-3, 0.0, 5e-4], dtype=torch.float64), 1e-3])
@pytest.mark.parametrize("bias_correction", [True, False])
def test_adams_multi_tensor_path_gives_the_bits_of_its_per_tensor_path(bias_correction, lr):
    fast, slow = _params(0), _params(0)
    a = Adam(fast, lr=lr, bias_correction=bias_correction)
    # a (V,) flag that is False everywhere takes the per-tensor path with the same arithmetic
    b = Adam(slow, lr=lr, bias_correction=bias_correction, eps_inside_sqrt=torch.zeros(4, dtype=torch.bool))
    assert a._uniform() and not b._uniform()
    gen = torch.Generator().manual_seed(1)
    for _ in range(50):
        grads = [torch.randn(p.shape, generator=gen) for p in fast]
        a.step(grads)
        b.step(grads)
    for x, y in zip(fast + a.m + a.v, slow + b.m + b.v):
        assert torch.equal(x, y)


@pytest.mark.parametrize("lr", [torch.tensor([0.1, 0.05, 0.0, 0.2], dtype=torch.float64), 0.1])
def test_sgds_multi_tensor_update_from_buffers_gives_the_bits_of_one_update_per_tensor(lr):
    fast, slow = _params(2), _params(2)
    sgd = SGD(fast, lr=lr, momentum=0.9)
    for buf, p in zip(sgd.buffers, fast):
        buf.copy_(torch.randn_like(p))
    sgd.step_from_buffers()
    for p, buf in zip(slow, sgd.buffers):
        sgd._apply(p, buf)
    for x, y in zip(fast, slow):
        assert torch.equal(x, y)
