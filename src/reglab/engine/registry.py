"""The one registry of regularizers: the built-ins, then the plugins, checked before training.

Where plugins come from (in this order; a module named twice is loaded once):

1. the entry point group ``reglab.regularizers`` of every installed distribution
   (``importlib.metadata``); an entry point names a module (or ``module:attribute``);
2. ``plugins = ["module", ...]`` in a study TOML (``StudyConfig.plugins``);
3. ``--plugin MODULE`` on ``reglab run`` / ``reglab tune`` (added to ``StudyConfig.plugins``,
   so ``config.json`` and ``config.toml`` name it for a resume).

The convention: a plugin module exposes ``REGULARIZERS``, a list of
:class:`~reglab.engine.regularizer.Regularizer` (an entry point may also name one
Regularizer or such a list directly). A plugin regularizer's hyperparameters are
method keys of their own (``Hyperparameter.name``, not a MethodConfig field): a
TOML method sets them like any field, ``--set methods.NAME.KEY=VALUE`` changes
them, and ``method.KEY`` reads them (``uses`` and ``WeightPenalty`` do).

Checked before any training (each failure one ``ReglabError`` line, exit 2):
a module that cannot be imported, no ``REGULARIZERS``, a name that clashes with
a built-in or another plugin (regularizer or hyperparameter), a bad declared
range (unknown kind, low > high, a default outside [low, high], a search range
outside it or not > 0 on a log scale), and a probe: every plugin regularizer a
method uses is bound to a tiny batch of small random weights and each hook
called once; a weight penalty's ``value`` must return shape (V,), and every
value, changed loss, gradient and constrained weight must be finite. During a run
(``plugin_guard``), a plugin's hook that raises stops the run with one line naming the
plugin and the hook, the run directory resumable from its last checkpoint; a hook that
turns a variant non-finite freezes that variant as diverged, the plugin named as the reason.

What a run used is recorded in ``regularizers.json`` (:meth:`Registry.record`):
each plugin's module, how it was found, its version and its file's sha256, and
each used regularizer's formula and declarations (the report reads this file,
never the plugin).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from reglab.config import METHOD_FIELDS, Declared, MethodConfig, StudyConfig
from reglab.config import study_from_dict as _study_from_dict
from reglab.engine.batch import Scratch
from reglab.engine.builtins import BUILTINS
from reglab.engine.plugin_guard import GuardedHooks, guarded, hook_error, one_line
from reglab.engine.regularizer import BindContext, Hyperparameter, Regularizer, WeightPenalty
from reglab.errors import ReglabError

ENTRY_POINT_GROUP = "reglab.regularizers"
RECORD_FILE = "regularizers.json"
KINDS = ("float", "int", "bool")


@dataclass(frozen=True)
class PluginSource:
    """Where one plugin module came from, and which file it was."""
    module: str
    via: str                          # "entry point NAME (DIST)", "config" or "--plugin"
    version: str | None               # the distribution's version (entry point) or the module's __version__
    file: str | None                  # the module's file
    sha256: str | None                # of that file
    regularizers: tuple[str, ...]

    def describe(self) -> dict:
        return dataclasses.asdict(self) | {"regularizers": list(self.regularizers)}


@dataclass
class Registry:
    """name -> Regularizer (built-ins first, in their order, then the plugins'), and the plugins' sources."""
    regularizers: dict[str, Regularizer]
    plugins: list[PluginSource] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)     # regularizer name -> "reglab" or its module

    @property
    def declared(self) -> Declared:
        return declarations(self.regularizers)

    def record(self, cfg: StudyConfig) -> dict:
        """regularizers.json: the plugins loaded, and every regularizer some method uses."""
        used = []
        for name, reg in self.regularizers.items():
            by = [m.name for m in cfg.methods if reg.uses(m)]
            if by:
                used.append({"name": name, "formula": reg.formula, "source": self.origin.get(name, "reglab"),
                             "used_by": by, "hyperparameters": [_describe_hp(h) for h in reg.hyperparameters]})
        return {"plugins": [p.describe() for p in self.plugins], "regularizers": used}


def _describe_hp(h: Hyperparameter) -> dict:
    from reglab.nonfinite import encode
    return encode({"name": h.name, "kind": h.kind, "low": h.low, "high": h.high, "default": h.default,
                   "log": h.log, "doc": h.doc})


def declarations(regularizers: dict[str, Regularizer]) -> Declared:
    """The method keys the regularizers add (hyperparameters that are not MethodConfig fields):
    key -> (validation rule, default), for reglab.config."""
    out: Declared = {}
    for reg in regularizers.values():
        for h in reg.hyperparameters:
            if h.name not in METHOD_FIELDS and h.name not in out:
                out[h.name] = (_rule(h), h.default)
    return out


def _rule(h: Hyperparameter) -> tuple:
    if h.kind == "float":
        return ("float", h.low, h.high, False, False, f"give a value in [{h.low:g}, {h.high:g}] ({h.doc or h.name}).")
    if h.kind == "int":
        return ("int", h.low, h.high)
    return ("bool",)


# ----------------------------------------------------------------------------
# loading

def load_registry(modules: Iterable[str] = (), *, entry_points: bool = True, via: str = "config") -> Registry:
    """BUILTINS, then the ``reglab.regularizers`` entry points (unless ``entry_points=False``), then
    `modules`, each checked (clashes, declarations). One ReglabError for the first bad plugin."""
    reg = Registry(dict(BUILTINS), origin={n: "reglab" for n in BUILTINS})
    loaded: set[str] = set()
    if entry_points:
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            module = ep.value.split(":")[0].strip()
            if module in loaded:
                continue
            dist = getattr(ep, "dist", None)
            where = f"entry point {ep.name!r} ({dist.name if dist else 'unknown distribution'})"
            try:
                obj = ep.load()
            except Exception as e:  # noqa: BLE001 - a plugin's import may raise anything
                raise ReglabError(f"plugin {ep.value!r} ({where} in group {ENTRY_POINT_GROUP}) cannot be imported "
                                  f"({one_line(e)}). Fix: install what it needs, correct it, or uninstall "
                                  f"{dist.name if dist else 'its package'}.") from None
            _add(reg, module, obj, via=f"entry point {ep.name} ({dist.name if dist else '?'})",
                 version=dist.version if dist else None)
            loaded.add(module)
    for module in modules:
        if module in loaded:
            continue
        try:
            obj = importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - a plugin's import may raise anything
            raise ReglabError(f"plugin module {module!r} cannot be imported ({one_line(e)}). Fix: install it or "
                              "put its folder on PYTHONPATH, or remove it from plugins / --plugin.") from None
        _add(reg, module, obj, via=via, version=getattr(obj, "__version__", None))
        loaded.add(module)
    return reg


def for_study(cfg: StudyConfig, *, probe: bool = False) -> Registry:
    """The registry a study trains with (entry points + ``cfg.plugins``), its methods' plugin values
    checked against the declarations; ``probe=True`` also runs :func:`probe` (before training)."""
    reg = load_registry(cfg.plugins)
    declared = reg.declared
    for m in cfg.methods:
        for k, _ in m.plugin_values:
            if k not in declared:
                raise ReglabError(f"method {m.name!r} sets {k!r}, which no loaded regularizer declares. Fix: load the "
                                  "plugin that declares it (plugins = [...] or --plugin), or remove the key.")
    if probe:
        check_probe(reg, cfg)
    return reg


def study_from_dict(d: dict, *, where: str = "config", extra_plugins: Iterable[str] = ()) -> StudyConfig:
    """A study from its TOML/JSON dict, its plugins (``d["plugins"]`` + `extra_plugins`) loaded first
    so that its methods may set their values; the plugins given are kept in ``StudyConfig.plugins``."""
    if isinstance(d, dict):
        listed = d.get("plugins", [])
        if isinstance(listed, list) and all(isinstance(x, str) for x in listed):
            merged = list(dict.fromkeys([*listed, *extra_plugins]))
            if merged:
                d = dict(d, plugins=merged)
            reg = load_registry(merged)
            return _study_from_dict(d, where=where, declared=reg.declared)
    return _study_from_dict(d, where=where)


def _add(reg: Registry, module: str, obj: Any, *, via: str, version: str | None) -> None:
    items = getattr(obj, "REGULARIZERS", None) if _is_module(obj) else obj
    if items is None:
        raise ReglabError(f"plugin module {module!r} has no REGULARIZERS. Fix: define REGULARIZERS = "
                          "[Regularizer(...), ...] at its top level (docs/regularizers.md).")
    if isinstance(items, Regularizer):
        items = [items]
    if not isinstance(items, (list, tuple)) or not items:
        raise ReglabError(f"plugin module {module!r}: REGULARIZERS must be a non-empty list of Regularizer; got "
                          f"{type(items).__name__}. Fix: REGULARIZERS = [Regularizer(...), ...].")
    plugin_keys = {h.name: n for n, r in reg.regularizers.items() if reg.origin.get(n) != "reglab"
                   for h in r.hyperparameters}
    names = []
    for r in items:
        if not isinstance(r, Regularizer):
            raise ReglabError(f"plugin module {module!r}: REGULARIZERS holds a {type(r).__name__}, not a Regularizer. "
                              "Fix: list reglab.engine.regularizer.Regularizer objects only.")
        _check_regularizer(module, r)
        if r.name in reg.regularizers:
            other = reg.origin[r.name]
            what = "a built-in regularizer" if other == "reglab" else f"already registered by plugin {other!r}"
            raise ReglabError(f"plugin module {module!r}: regularizer name {r.name!r} is {what}. "
                              "Fix: rename the plugin's regularizer.")
        for h in r.hyperparameters:
            if h.name in METHOD_FIELDS:
                raise ReglabError(f"plugin module {module!r}: regularizer {r.name!r} declares hyperparameter {h.name!r}, "
                                  "which is a built-in method setting. Fix: give it a name of its own, e.g. "
                                  f"{r.name}_{h.name}.")
            if h.name in plugin_keys and plugin_keys[h.name] not in (r.name,) and \
                    reg.origin.get(plugin_keys[h.name]) != module:
                raise ReglabError(f"plugin module {module!r}: hyperparameter {h.name!r} of {r.name!r} is already "
                                  f"declared by {plugin_keys[h.name]!r} of plugin {reg.origin[plugin_keys[h.name]]!r}. "
                                  "Fix: rename one of them.")
            plugin_keys[h.name] = r.name
        reg.regularizers[r.name] = guarded(module, r)
        reg.origin[r.name] = module
        names.append(r.name)
    file = getattr(obj, "__file__", None) if _is_module(obj) else getattr(importlib.import_module(module), "__file__", None)
    digest = hashlib.sha256(Path(file).read_bytes()).hexdigest() if file and Path(file).is_file() else None
    reg.plugins.append(PluginSource(module, via, None if version is None else str(version), file, digest, tuple(names)))


def _is_module(obj) -> bool:
    return type(obj).__name__ == "module"


def _check_regularizer(module: str, r: Regularizer) -> None:
    where = f"plugin module {module!r}: regularizer {r.name!r}"
    if not isinstance(r.name, str) or not r.name or any(c.isspace() for c in r.name):
        raise ReglabError(f"plugin module {module!r}: a regularizer name must be a non-empty word; got {r.name!r}. "
                          "Fix: name it, e.g. Regularizer(\"group_lasso\", ...).")
    if not isinstance(r.formula, str) or not r.formula.strip():
        raise ReglabError(f"{where} has no formula. Fix: give its formula as text (the report shows it).")
    if not callable(r.uses) or (r.bind is not None and not callable(r.bind)):
        raise ReglabError(f"{where}: uses and bind must be callables. Fix: uses=lambda m: m.KEY > 0, bind=...")
    if not isinstance(r.hyperparameters, tuple) or not all(isinstance(h, Hyperparameter) for h in r.hyperparameters):
        raise ReglabError(f"{where}: hyperparameters must be a tuple of Hyperparameter. Fix: "
                          "hyperparameters=(Hyperparameter(\"KEY\", low=0.0, high=1.0),).")
    for h in r.hyperparameters:
        check_hyperparameter(h, where)


def check_hyperparameter(h: Hyperparameter, where: str) -> None:
    """A declaration that validation and the tuner can use: known kind, low <= high, default inside."""
    bad = f"{where} declares hyperparameter {h.name!r}"
    if not isinstance(h.name, str) or not h.name.isidentifier():
        raise ReglabError(f"{bad}: its name must be an identifier. Fix: e.g. Hyperparameter(\"ortho_beta\", ...).")
    if h.kind not in KINDS:
        raise ReglabError(f"{bad} of unknown kind {h.kind!r}. Fix: use one of {', '.join(KINDS)}.")
    if h.kind == "bool":
        if not isinstance(h.default, bool):
            raise ReglabError(f"{bad}: a bool's default must be true or false; got {h.default!r}. Fix: default=False.")
        return
    numbers = [h.low, h.high, h.default] + list(h.search or ())
    if any(isinstance(x, bool) or not isinstance(x, (int, float)) or math.isnan(x) for x in numbers):
        raise ReglabError(f"{bad}: low, high, default and search must be numbers; got low={h.low!r}, "
                          f"high={h.high!r}, default={h.default!r}, search={h.search!r}. Fix: give numbers.")
    if h.low > h.high:
        raise ReglabError(f"{bad} with low {h.low:g} > high {h.high:g}. Fix: swap them.")
    if not h.low <= h.default <= h.high:
        raise ReglabError(f"{bad} with default {h.default:g} outside [{h.low:g}, {h.high:g}]. "
                          "Fix: a default inside the range (the value that means off, usually 0).")
    if h.kind == "int" and not float(h.default).is_integer():
        raise ReglabError(f"{bad}: an int's default must be a whole number; got {h.default!r}. Fix: e.g. default=0.")
    if h.search is not None:
        if len(h.search) != 2 or not h.low <= h.search[0] < h.search[1] <= h.high or \
                not all(math.isfinite(x) for x in h.search):
            raise ReglabError(f"{bad} with search range {h.search!r}, not a finite (low, high) with low < high inside "
                              f"[{h.low:g}, {h.high:g}]. Fix: e.g. search=(1e-4, 1e-1).")
        if h.log and h.search[0] <= 0:
            raise ReglabError(f"{bad} with search range {h.search!r} on a log scale, which needs low > 0. "
                              "Fix: start it above 0, e.g. (1e-5, 1e-1).")


# ----------------------------------------------------------------------------
# the probe: each used plugin regularizer on a tiny batch, before training

PROBE_BATCH = 3       # examples in the probe's minibatch
PROBE_WIDTH = 4       # units of the probe's layers


def check_probe(reg: Registry, cfg: StudyConfig) -> None:
    """Bind every plugin regularizer a method uses to a tiny batch (one variant per such method, small
    random weights, float64) and call each hook once, at the first and the last step; one
    ReglabError when a hook raises, a weight penalty's value is not shape (V,), or a value,
    gradient or constrained weight is not finite."""
    for name, r in reg.regularizers.items():
        module = reg.origin.get(name, "reglab")
        if module == "reglab" or r.bind is None:
            continue
        methods = [m for m in cfg.methods if r.uses(m)]
        if methods:
            _probe_one(module, r, methods, len(cfg.hidden))


def _probe_one(module: str, r: Regularizer, methods: list[MethodConfig], n_hidden: int) -> None:
    V, b, dtype, device = len(methods), PROBE_BATCH, torch.float64, torch.device("cpu")
    sizes = [PROBE_WIDTH + 1] + [PROBE_WIDTH] * n_hidden + [PROBE_WIDTH - 1]
    gen = torch.Generator().manual_seed(0)
    W = [0.3 * torch.randn(V, a, c, generator=gen, dtype=dtype) for a, c in zip(sizes[:-1], sizes[1:])]
    total = 10
    context = BindContext(methods, np.arange(V), sizes, total, dtype, device, Scratch(dtype, device, V),
                          [torch.Generator().manual_seed(v) for v in range(V)])
    where = f"plugin module {module!r}: regularizer {r.name!r}"
    hooks = r.bind(context)
    inner = hooks.inner if isinstance(hooks, GuardedHooks) else hooks
    if isinstance(inner, WeightPenalty):
        for (sl, _), hp in zip(inner.runs, inner.hp):
            for w in W:
                try:
                    value = inner.value(w[sl], hp)
                except Exception as e:  # noqa: BLE001
                    raise hook_error(module, r.name, "value", e) from e
                n = sl.stop - sl.start
                if not isinstance(value, torch.Tensor) or tuple(value.shape) != (n,):
                    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                    raise ReglabError(f"{where}: value(W, hp) returned {shape} for weights {tuple(w[sl].shape)}; a "
                                      f"weight penalty gives one value per variant, shape ({n},). Fix: reduce over "
                                      "the weight axes, e.g. .sum(dim=(1, 2)).")
    x = torch.rand(b, sizes[0], generator=gen, dtype=dtype)
    hooks.draw(b)
    hooks.input_rows()
    hooks.input_parts(x)
    for layer, w in enumerate(W):
        for part in hooks.weight_parts(layer, w):
            _finite(where, "weight_parts", part.w)
    pen = torch.zeros(V, dtype=dtype)
    grads = [torch.zeros_like(w) for w in W]
    for t in (1, total):
        for layer, width in enumerate(sizes[1:-1]):
            h = torch.rand(V, b, width, generator=gen, dtype=dtype)
            hooks.hidden_forward(layer, h, t, True)
            hooks.hidden_backward(layer, torch.rand(V, b, width, generator=gen, dtype=dtype))
            _finite(where, "hidden_forward", h)
        logp = torch.log_softmax(torch.randn(V, sizes[-1], b, generator=gen, dtype=dtype), dim=1)
        y_idx = torch.randint(0, sizes[-1], (1, 1, b), generator=gen).expand(V, 1, b)
        loss = logp.gather(1, y_idx).mean((1, 2)).neg()
        hooks.loss_value(logp, y_idx, loss)
        _finite(where, "its loss", loss)
        dlogits = logp.exp()
        dlogits.scatter_add_(1, y_idx, torch.full((V, 1, b), -1.0, dtype=dtype))
        hooks.loss_grad(dlogits, y_idx)
        _finite(where, "its loss gradient", dlogits)
        hooks.add_activation_value(pen)
        hooks.add_weight_value(pen, W, t)
        hooks.add_weight_grads(grads, W, t)
        _finite(where, "its penalty value", pen)
        for g in grads:
            _finite(where, "its penalty gradient", g)
    hooks.before_update(W, torch.full((V,), 0.1, dtype=torch.float64))
    hooks.constrain(W, torch.ones(V, dtype=torch.bool))
    for w in W:
        _finite(where, "constrain", w)
    hooks.load_state_rows(hooks.state_rows())


def _finite(where: str, what: str, t: torch.Tensor) -> None:
    if not bool(torch.isfinite(t).all()):
        bad = "nan" if bool(torch.isnan(t).any()) else "inf"
        raise ReglabError(f"{where}: {what} is not finite ({bad}) on a probe of small random weights "
                          "(|w| ~ 0.3, before training). Fix: keep the value finite, e.g. guard divisions and logs "
                          "with an epsilon.")


# ----------------------------------------------------------------------------
# a resume: the plugins the run was trained with must be there

def check_recorded_plugins(record: dict, stored_config: dict, run_dir) -> list[str]:
    """Load the plugins regularizers.json records (and config.json lists); a missing one is one
    ReglabError naming it. Returns a warning line per plugin whose file changed since (its sha256)."""
    recorded = [p for p in (record.get("plugins") or []) if isinstance(p, dict) and isinstance(p.get("module"), str)]
    listed = stored_config.get("plugins") if isinstance(stored_config.get("plugins"), list) else []
    modules = list(dict.fromkeys([m for m in listed if isinstance(m, str)] + [p["module"] for p in recorded]))
    try:
        reg = load_registry(modules)
    except ReglabError as e:
        names = ", ".join(f"{p['module']} {p.get('version') or ''}".strip() for p in recorded) or ", ".join(modules)
        raise ReglabError(f"cannot resume {run_dir}: it was trained with plugin(s) {names} "
                          f"({RECORD_FILE}), and {e.lines[0]}") from None
    now = {p.module: p for p in reg.plugins}
    warnings = []
    for p in recorded:
        cur = now.get(p["module"])
        if cur is not None and p.get("sha256") and cur.sha256 != p["sha256"]:
            warnings.append(f"reglab: warning: plugin module {p['module']!r} changed since this run began "
                            f"(sha256 {p['sha256'][:12]} then, {str(cur.sha256)[:12]} now); the epochs after the "
                            "checkpoint train with the new file.")
    return warnings


def load_toml(path, *, extra_plugins: Iterable[str] = ()) -> StudyConfig:
    """A study TOML with its plugins (``plugins = [...]`` + `extra_plugins`) loaded before its methods
    are read (reglab.config.load_toml for a study that names plugin values)."""
    from reglab.config import read_toml
    try:
        return study_from_dict(read_toml(path), where=Path(path).name, extra_plugins=extra_plugins)
    except ReglabError as e:
        if e.lines[0].startswith("config file "):
            raise
        raise ReglabError(f"config file {Path(path)}: {e}") from None


def plugin_paths(modules: Iterable[str]) -> list[str]:
    """The files to ship for `modules` to a process that cannot import them otherwise (a Ray worker):
    for each, its top-level package's folder, or the file of a one-file module."""
    paths = []
    for module in modules:
        top = importlib.import_module(module.split(".")[0])
        where = list(getattr(top, "__path__", None) or [top.__file__])
        paths += [str(Path(w).resolve()) for w in where if str(Path(w).resolve()) not in paths]
    return paths


def with_plugins(cfg, modules: Iterable[str]):
    """`cfg` (a StudyConfig, or a study with a ``base`` one) with `modules` added to its plugins."""
    modules = tuple(modules)
    if not modules:
        return cfg
    if hasattr(cfg, "base") and not isinstance(cfg, StudyConfig):
        return cfg.replace(base=with_plugins(cfg.base, modules))
    return cfg.replace(plugins=tuple(dict.fromkeys(cfg.plugins + modules)))
