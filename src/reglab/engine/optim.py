"""Batched optimizers: SGD (momentum, Nesterov) and Adam, written in reglab.

Parameters are tensors whose leading dimension indexes the variant, e.g.
weights (V, in, out) and biases (V, 1, out). Every hyperparameter is either a
Python float (the same for all variants) or a (V,) tensor (one value per
variant, broadcast over the other dimensions). With floats the arithmetic is
operation for operation PyTorch's (``torch.optim.SGD`` / ``torch.optim.Adam``,
single-tensor path); with (V,) tensors derived coefficients are computed in
float64 and rounded once to the parameters' dtype, as PyTorch rounds its
Python-float scalars.

Both classes can be used on their own::

    opt = Adam([w, b], lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
    opt.step([dw, db])
    opt.m, opt.v, opt.t     # first moments, second moments, number of steps taken
"""

from __future__ import annotations

import torch

Hyper = float | torch.Tensor


def _hyper(value, name: str) -> Hyper:
    """A float stays a float; anything tensor-like becomes a float64 (V,) tensor."""
    if isinstance(value, torch.Tensor):
        if value.dim() != 1:
            raise ValueError(f"{name} must be a float or a (V,) tensor; got shape {tuple(value.shape)}")
        return value.detach().to(torch.float64)
    return float(value)


def _flag(value, name: str) -> bool | torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.dim() != 1:
            raise ValueError(f"{name} must be a bool or a (V,) bool tensor; got shape {tuple(value.shape)}")
        return value.detach().to(torch.bool)
    return bool(value)


def _like(x: Hyper, p: torch.Tensor) -> Hyper:
    """Shape a per-variant value to broadcast against ``p`` (V, ...), in ``p``'s dtype and device."""
    if isinstance(x, torch.Tensor):
        return x.to(device=p.device, dtype=p.dtype).view((-1,) + (1,) * (p.dim() - 1))
    return x


def _alike(params: list[torch.Tensor]) -> bool:
    """Same dtype, device and rank: one (V, 1, ...) coefficient tensor broadcasts against all of them."""
    return len({(p.dtype, p.device, p.dim()) for p in params}) == 1


def _mask_like(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return x.to(p.device).view((-1,) + (1,) * (p.dim() - 1))


class SGD:
    """Stochastic gradient descent with momentum, PyTorch's formulation (dampening 0)::

        b_t = mu * b_{t-1} + g_t                  (b_0 = 0, so b_1 = g_1)
        w_t = w_{t-1} - lr * b_t                  heavy-ball momentum
        w_t = w_{t-1} - lr * (g_t + mu * b_t)     Nesterov (``nesterov=True``)

    ``g_t`` includes any penalty gradient (L2: ``lambda * w``). With
    ``momentum = 0`` this is plain SGD. ``lr`` and ``momentum`` may be changed
    between steps (schedules); ``nesterov`` may be a (V,) bool tensor.

    The engine's fast path forms ``b_t`` itself, accumulating each weight
    gradient straight into the buffer (``baddbmm_(..., beta=mu)``), and then
    calls :meth:`step_from_buffers`.
    """

    def __init__(self, params: list[torch.Tensor], lr: Hyper, momentum: Hyper = 0.0,
                 nesterov: bool | torch.Tensor = False):
        self.params = list(params)
        self.lr = lr
        self.momentum = momentum
        self.nesterov = _flag(nesterov, "nesterov")
        self.buffers = [torch.zeros_like(p) for p in self.params]
        self._alike = _alike(self.params)

    @property
    def lr(self) -> Hyper:
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = _hyper(value, "lr")
        self._neg_lr_shaped: dict[tuple, torch.Tensor] = {}

    @property
    def momentum(self) -> Hyper:
        return self._momentum

    @momentum.setter
    def momentum(self, value) -> None:
        self._momentum = _hyper(value, "momentum")

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        """One update from gradients ``grads`` (same shapes as the parameters)."""
        for p, g, buf in zip(self.params, grads, self.buffers):
            mu = _like(self.momentum, p)
            buf.mul_(mu).add_(g)
            if self.nesterov is False:
                update = buf
            else:
                nesterov_update = g.add(buf, alpha=mu) if isinstance(mu, float) else torch.addcmul(g, buf, mu)
                if self.nesterov is True:
                    update = nesterov_update
                else:
                    update = torch.where(_mask_like(self.nesterov, p), nesterov_update, buf)
            self._apply(p, update)

    @torch.no_grad()
    def step_from_buffers(self) -> None:
        """``w -= lr * b`` for buffers the caller has already set to ``mu * b + g`` (no Nesterov).

        One multi-tensor call for all parameters (the per-tensor arithmetic of :meth:`_apply`,
        without a Python round trip per tensor: on small nets the step is that overhead)."""
        lr = self.lr
        if isinstance(lr, torch.Tensor) and self._alike:
            torch._foreach_addcmul_(self.params, [self._neg_lr(self.params[0])] * len(self.params), self.buffers)
        elif isinstance(lr, torch.Tensor):
            for p, buf in zip(self.params, self.buffers):
                self._apply(p, buf)
        else:
            torch._foreach_add_(self.params, self.buffers, alpha=-lr)

    def _apply(self, p: torch.Tensor, update: torch.Tensor) -> None:
        lr = self.lr
        if isinstance(lr, torch.Tensor):
            p.addcmul_(self._neg_lr(p), update)
        else:
            p.add_(update, alpha=-lr)

    def _neg_lr(self, p: torch.Tensor) -> torch.Tensor:
        """``-lr`` shaped (V, 1, ...) like ``p``, in its dtype: made once per lr, shared by same-shaped params."""
        key = (p.dtype, p.device, p.dim())
        if key not in self._neg_lr_shaped:
            self._neg_lr_shaped[key] = _like(-self.lr, p)
        return self._neg_lr_shaped[key]

    def state_dict(self) -> dict:
        return {"buffers": [b.detach().cpu().clone() for b in self.buffers]}

    def load_state_dict(self, state: dict) -> None:
        for b, saved in zip(self.buffers, state["buffers"]):
            b.copy_(saved)


class Adam:
    """Adam (Kingma & Ba 2015) with bias correction, batched over variants::

        m_t = beta1 * m_{t-1} + (1 - beta1) * g_t               (m_0 = 0)
        v_t = beta2 * v_{t-1} + (1 - beta2) * g_t^2             (v_0 = 0)
        m_hat = m_t / (1 - beta1^t),   v_hat = v_t / (1 - beta2^t)
        w_t = w_{t-1} - lr * m_hat / (sqrt(v_hat) + eps)        eps outside the root (PyTorch, Keras)
        w_t = w_{t-1} - lr * m_hat / sqrt(v_hat + eps)          ``eps_inside_sqrt=True``

    The bias correction undoes the zero start: if ``g`` has a stationary mean,
    ``E[m_t] = (1 - beta1^t) E[g]``, so dividing by ``1 - beta1^t`` makes
    ``m_hat`` unbiased (same for ``v``). ``bias_correction=False`` uses
    ``m_t`` and ``v_t`` as they are. ``t`` counts steps taken (1 at the first).

    Computed as PyTorch does: ``step_size = lr / (1 - beta1^t)``,
    ``denom = sqrt(v_t) / sqrt(1 - beta2^t) + eps``, ``w -= step_size * m_t / denom``
    (inside the root: ``denom = sqrt(v_t / (1 - beta2^t) + eps)``).

    ``lr``, ``beta1``, ``beta2``, ``eps`` are floats or (V,) tensors;
    ``eps_inside_sqrt`` and ``bias_correction`` bools or (V,) bool tensors.
    ``lr`` may be changed between steps. Public state: ``m``, ``v`` (lists like
    the parameters) and ``t`` (int).
    """

    def __init__(self, params: list[torch.Tensor], lr: Hyper = 1e-3, beta1: Hyper = 0.9, beta2: Hyper = 0.999,
                 eps: Hyper = 1e-8, eps_inside_sqrt: bool | torch.Tensor = False,
                 bias_correction: bool | torch.Tensor = True):
        self.params = list(params)
        self.lr = lr
        self.beta1 = _hyper(beta1, "beta1")
        self.beta2 = _hyper(beta2, "beta2")
        self.eps = _hyper(eps, "eps")
        self.eps_inside_sqrt = _flag(eps_inside_sqrt, "eps_inside_sqrt")
        self.bias_correction = _flag(bias_correction, "bias_correction")
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0
        self._alike = _alike(self.params)

    @property
    def lr(self) -> Hyper:
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = _hyper(value, "lr")

    def _corrections(self) -> tuple[Hyper, Hyper]:
        """(1 - beta1^t, 1 - beta2^t), or 1 where bias correction is off; float64."""
        t = self.t
        bc1, bc2 = 1 - self.beta1 ** t, 1 - self.beta2 ** t
        flag = self.bias_correction
        if flag is False:
            return 1.0, 1.0
        if isinstance(flag, torch.Tensor):
            one = torch.ones((), dtype=torch.float64)
            bc1 = torch.where(flag, torch.as_tensor(bc1, dtype=torch.float64), one)
            bc2 = torch.where(flag, torch.as_tensor(bc2, dtype=torch.float64), one)
        return bc1, bc2

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        """One update from gradients ``grads`` (same shapes as the parameters)."""
        self.t += 1
        bc1, bc2 = self._corrections()
        step_size = self.lr / bc1
        bc2_sqrt = bc2 ** 0.5
        if self._uniform():
            self._step_all(grads, step_size, bc2_sqrt)
            return
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.lerp_(g, _like(1 - self.beta1, p))
            one_minus_beta2 = 1 - self.beta2
            if isinstance(one_minus_beta2, torch.Tensor):
                v.mul_(_like(self.beta2, p)).addcmul_(g * _like(one_minus_beta2, p), g)
            else:
                v.mul_(self.beta2).addcmul_(g, g, value=one_minus_beta2)
            denom = self._denominator(v, p, bc2, bc2_sqrt)
            if isinstance(step_size, torch.Tensor):
                p.add_((m * _like(-step_size, p)).div_(denom))
            else:
                p.addcdiv_(m, denom, value=-step_size)

    def _uniform(self) -> bool:
        """Are all settings but ``lr`` the same for every variant, and the parameters alike (dtype, rank)?"""
        return (all(isinstance(x, float) for x in (self.beta1, self.beta2, self.eps))
                and self.eps_inside_sqrt is False and isinstance(self.bias_correction, bool) and self._alike)

    def _step_all(self, grads: list[torch.Tensor], step_size: Hyper, bc2_sqrt: float) -> None:
        """The per-parameter arithmetic of :meth:`step` (eps outside the root), one multi-tensor call
        per operation for all parameters: the same operations in the same order, so the same bits."""
        params, m, v = self.params, self.m, self.v
        torch._foreach_lerp_(m, grads, 1 - self.beta1)
        torch._foreach_mul_(v, self.beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - self.beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, bc2_sqrt)
        torch._foreach_add_(denom, self.eps)
        if isinstance(step_size, torch.Tensor):
            update = torch._foreach_mul(m, [_like(-step_size, params[0])] * len(params))
            torch._foreach_div_(update, denom)
            torch._foreach_add_(params, update)
        else:
            torch._foreach_addcdiv_(params, m, denom, value=-step_size)

    def _denominator(self, v: torch.Tensor, p: torch.Tensor, bc2: Hyper, bc2_sqrt: Hyper) -> torch.Tensor:
        eps = _like(self.eps, p)
        flag = self.eps_inside_sqrt
        outside = (v.sqrt() / _like(bc2_sqrt, p)).add_(eps) if flag is not True else None
        inside = (v / _like(bc2, p)).add_(eps).sqrt_() if flag is not False else None
        if outside is None or inside is None:
            return inside if outside is None else outside
        return torch.where(_mask_like(flag, p), inside, outside)

    def state_dict(self) -> dict:
        return {"m": [x.detach().cpu().clone() for x in self.m],
                "v": [x.detach().cpu().clone() for x in self.v], "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        for x, saved in zip(self.m, state["m"]):
            x.copy_(saved)
        for x, saved in zip(self.v, state["v"]):
            x.copy_(saved)
        self.t = int(state["t"])


def optimizer_state(optimizer: SGD | Adam) -> list[torch.Tensor]:
    """The optimizer's per-variant state tensors (V, ...): momentum buffers, or Adam's m and v."""
    return list(optimizer.buffers) if isinstance(optimizer, SGD) else [*optimizer.m, *optimizer.v]


def optimizer_for(kind: str, params: list[torch.Tensor], methods: list, device: torch.device) -> SGD | Adam:
    """The study's optimizer (``kind``: "sgd" or "adam") over ``params`` with each variant's settings
    from its method (``methods[v]``, a MethodConfig); learning rate 0 until a step sets it."""
    lr = torch.zeros(len(methods), dtype=torch.float64, device=device)
    if kind == "sgd":
        return SGD(params, lr=lr, momentum=0.0, nesterov=_bool_per_variant([m.nesterov for m in methods], device))
    return Adam(params, lr=lr,
                beta1=per_variant([m.beta1 for m in methods], device),
                beta2=per_variant([m.beta2 for m in methods], device),
                eps=per_variant([m.eps for m in methods], device),
                eps_inside_sqrt=_bool_per_variant([m.eps_inside_sqrt for m in methods], device),
                bias_correction=_bool_per_variant([m.bias_correction for m in methods], device))


def per_variant(values: list[float], device: torch.device) -> float | torch.Tensor:
    """A float when every variant agrees, else a (V,) float64 tensor."""
    if len(set(values)) == 1:
        return float(values[0])
    return torch.tensor(values, dtype=torch.float64, device=device)


def _bool_per_variant(values: list[bool], device: torch.device) -> bool | torch.Tensor:
    if len(set(values)) == 1:
        return bool(values[0])
    return torch.tensor(values, dtype=torch.bool, device=device)
