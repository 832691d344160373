"""A plugin regularizer's hooks during a run: a hook that raises, and a hook that turns a variant non-finite.

The built-ins are not wrapped (no cost to them); every plugin regularizer's bound hooks are
(:class:`GuardedHooks`, installed by ``registry``):

* **A hook that raises** stops the run with one line naming the plugin module, the regularizer and
  the hook (:class:`PluginHookError`). The runner marks the run directory interrupted; it resumes from
  its last complete checkpoint once the plugin is corrected (:meth:`PluginHookError.in_run` names the
  ``reglab run --resume`` command).
* **A hook that turns a sound variant non-finite** (NaN/inf in the tensor it writes: a penalty value
  or gradient, a changed loss or its gradient, a hidden output, the weights) freezes that variant as
  diverged, the engine's rule for any non-finite number (``trainer``), and the other variants go on.
  The guard records which hook did it, so the variant's ``diverged_reason`` names the plugin, not the
  learning rate. "Sound" means still training, with that tensor finite before the hook; a variant
  that diverged otherwise is never blamed on a plugin.

The non-finite check costs two reductions of the written tensor's rows of the variants the
regularizer acts on, per call of a hook the plugin's class defines (its inherited no-op hooks are not
checked), and no host-device sync.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from reglab.config import MethodConfig
from reglab.engine.regularizer import BindContext, Hooks, Regularizer
from reglab.errors import ReglabError

HOOK_NAMES = tuple(n for n in vars(Hooks) if not n.startswith("_"))

# hook -> the position of the argument it writes in place (each tensor's first axis is the variant)
WRITTEN_ARGUMENT = {"hidden_forward": 1, "hidden_backward": 1, "loss_value": 2, "loss_grad": 0,
                    "add_activation_value": 0, "add_weight_grads": 0, "add_weight_value": 0,
                    "before_update": 0, "constrain": 0}


class PluginHookError(ReglabError):
    """A plugin regularizer's hook raised: one line naming the plugin module, the regularizer and the hook."""

    def __init__(self, module: str, name: str, hook: str, cause: str, run_dir=None):
        self.module, self.name, self.hook, self.cause = module, name, hook, cause
        fix = "correct the plugin"
        if run_dir is not None:
            fix += f", then continue the run from its last checkpoint: reglab run --resume {run_dir}"
        super().__init__(f"plugin module {module!r}: regularizer {name!r}, hook {hook}() raised {cause}. "
                         f"Fix: {fix}.")

    def in_run(self, run_dir) -> PluginHookError:
        """This error, its fix naming the command that resumes `run_dir` (the runner knows the directory)."""
        return PluginHookError(self.module, self.name, self.hook, self.cause, run_dir)


def one_line(e: BaseException) -> str:
    """``Type: first line of the message``."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def hook_error(module: str, name: str, hook: str, e: BaseException) -> PluginHookError:
    return PluginHookError(module, name, hook, one_line(e))


def finite_rows(x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """(n,) bool: each variant's part of `x` (a tensor whose first axis is the variant, or a list of
    such) is finite. A sum is finite iff every summand is (and a sum that overflows counts as
    non-finite, as the trainer's divergence check counts it)."""
    ok = None
    for t in (x if isinstance(x, (list, tuple)) else [x]):
        rows = torch.isfinite(t if t.dim() == 1 else t.sum(dim=tuple(range(1, t.dim()))))
        ok = rows if ok is None else ok & rows
    return ok


def _rows(x: torch.Tensor | list[torch.Tensor], sl: slice) -> torch.Tensor | list[torch.Tensor]:
    """The rows `sl` (variants) of `x`, a tensor whose first axis is the variant or a list of such."""
    return [t[sl] for t in x] if isinstance(x, (list, tuple)) else x[sl]


class GuardedHooks(Hooks):
    """A plugin's bound hooks (``inner``). A hook that raises becomes a :class:`PluginHookError`;
    a hook that turns a sound variant's tensor non-finite freezes that variant (``training``, the
    step's flags, updated in place) and records the hook in ``first_nonfinite``.

    ``first_nonfinite`` (n_live,) int8 on the device: 0, or 1 + the index in HOOK_NAMES of the first
    hook that turned the variant non-finite. ``training`` is None in the probe (which checks itself).
    ``rows``: the runs of live variants the regularizer acts on, the only rows checked (None: all).
    """

    def __init__(self, inner: Hooks, module: str, name: str, training: torch.Tensor | None = None,
                 rows: list[slice] | None = None):
        self.inner, self.module, self.name = inner, module, name
        self.training = training
        self.rows = [slice(0, len(training))] if rows is None and training is not None else rows
        self.first_nonfinite = None if training is None else torch.zeros_like(training, dtype=torch.int8)
        for hook in HOOK_NAMES:
            fn = getattr(inner, hook)
            defined = getattr(fn, "__func__", fn) is not getattr(Hooks, hook)   # not Hooks' no-op
            checked = training is not None and defined and hook in WRITTEN_ARGUMENT
            setattr(self, hook, self._checked(hook, fn) if checked else self._guarded(hook, fn))

    def _guarded(self, hook: str, fn: Callable) -> Callable:
        def call(*args):
            try:
                return fn(*args)
            except PluginHookError:
                raise
            except Exception as e:  # noqa: BLE001 - a plugin may raise anything
                raise hook_error(self.module, self.name, hook, e) from e
        return call

    def _checked(self, hook: str, fn: Callable) -> Callable:
        guarded, at, code = self._guarded(hook, fn), WRITTEN_ARGUMENT[hook], HOOK_NAMES.index(hook) + 1
        training, first, rows = self.training, self.first_nonfinite, self.rows

        def call(*args):
            before = [finite_rows(_rows(args[at], sl)) for sl in rows]
            out = guarded(*args)
            for sl, ok in zip(rows, before):
                turned = ok & ~finite_rows(_rows(args[at], sl)) & training[sl]
                first[sl].masked_fill_(turned & (first[sl] == 0), code)
                training[sl].logical_and_(~turned)
            return out
        return call

    def nonfinite_reasons(self) -> dict[int, str]:
        """Row (index into the live variants) -> why it diverged, for the rows this plugin turned
        non-finite (one device-to-host copy; the trainer asks once per epoch, when a variant diverged)."""
        if self.first_nonfinite is None:
            return {}
        codes = self.first_nonfinite.cpu().tolist()
        return {i: f"plugin module {self.module!r}: regularizer {self.name!r}, hook {HOOK_NAMES[c - 1]}() "
                   "gave a non-finite value (NaN/inf)" for i, c in enumerate(codes) if c}


def guarded(module: str, r: Regularizer) -> Regularizer:
    """`r` with its ``uses`` and ``bind`` guarded, and the hooks that ``bind`` returns wrapped in
    :class:`GuardedHooks` (bound to the step's training flags, ``context.training``)."""
    uses, bind = r.uses, r.bind

    def guarded_uses(m: MethodConfig) -> bool:
        try:
            return bool(uses(m))
        except Exception as e:  # noqa: BLE001
            raise hook_error(module, r.name, "uses", e) from e

    def guarded_bind(context: BindContext) -> Hooks:
        try:
            hooks = bind(context)
        except Exception as e:  # noqa: BLE001
            raise hook_error(module, r.name, "bind", e) from e
        if not isinstance(hooks, Hooks):
            raise ReglabError(f"plugin module {module!r}: regularizer {r.name!r}, bind() returned a "
                              f"{type(hooks).__name__}, not Hooks. Fix: return a reglab.engine.regularizer.Hooks "
                              "(e.g. WeightPenalty(...)).")
        rows = [sl for sl, _ in context.runs(lambda m: True if guarded_uses(m) else None)]
        return GuardedHooks(hooks, module, r.name, context.training, rows)

    return dataclasses.replace(r, uses=guarded_uses, bind=None if bind is None else guarded_bind)
