"""What a study is: frozen dataclasses with every field's meaning, unit and range.

Data flows one way: config -> data -> engine -> results -> report. A
:class:`StudyConfig` is built by a preset or read from TOML, validated once
here, printed at start and stored beside the results.

Conventions (stated once, used everywhere):

* ``l2`` is lambda in ``lambda/2 * sum w^2`` (gradient ``lambda * w``): the
  PyTorch ``weight_decay`` and deepnet convention. Keras' ``l2(k)`` adds
  ``k * sum w^2``, so Keras ``k`` equals reglab ``l2 = 2k``.
* ``l1`` is lambda in ``lambda * sum |w|`` (gradient ``lambda * sign(w)``).
* Penalties and max-norm act on weights only, never biases.
* A coefficient of 0 disables a penalty; ``max_norm`` of 0 or inf disables it.
* Steps count optimizer updates (minibatches), starting at 1.
* ``orthogonality`` is lambda in ``lambda * ||W^T W - I||_F^2`` per layer, W (in, out) as stored
  (column j = unit j's incoming weights), so the (out, out) Gram matrix of the units; weights only.
* Gaussian dropout rates are the drop probability p that the noise stands for:
  ``r ~ N(1, p / (1 - p))`` (Srivastava et al. 2014, sec. 10); ``label_smoothing`` is eps in the
  targets ``(1 - eps) * one-hot + eps / C`` (torch's ``cross_entropy(label_smoothing=eps)``).
* ``decoupled_weight_decay`` is lambda_d in ``w <- w - lr_t * lambda_d * w`` just before each update
  (torch's ``AdamW(weight_decay=lambda_d)``; with SGD, SGDW), not a loss term, weights only; for
  plain SGD without momentum it is the same as ``l2 = lambda_d``.
* ``dropconnect`` is the drop probability p of each weight (Wan et al. 2013), inverted as dropout is:
  during training a layer's products read ``W * M / (1 - p)``, ``M ~ Bernoulli(1 - p)`` per weight,
  one M per minibatch and variant; biases are never masked; evaluation reads W (mean-field).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reglab.errors import ReglabError
from reglab.nonfinite import decode, encode

# ----------------------------------------------------------------------------
# constraints, declared once as data, with one error template

def _fail(key: str, allowed: str, got: Any, fix: str = "") -> ReglabError:
    msg = f"{key!r} must be {allowed}; got {_short(got)}."
    return ReglabError(msg + " Fix: " + (fix or "change that value (docs/studies.md lists every key and its range)."))


def _short(value: Any) -> str:
    """repr of a value as found, cut short: a user's typo can be a megabyte long."""
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + f"... ({len(text)} characters)"


def _num(x: float) -> str:
    return "inf" if x == math.inf else f"{x:g}"


def _check(key: str, value: Any, rule: tuple) -> None:
    kind = rule[0]
    if kind == "float":
        lo, hi, lo_open, hi_open = rule[1:5]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise _fail(key, "a number", value)
        if (value < lo or (lo_open and value == lo)) or (value > hi or (hi_open and value == hi)):
            lb = "(" if lo_open else "["
            hb = ")" if hi_open else "]"
            raise _fail(key, f"a number in {lb}{_num(lo)}, {_num(hi)}{hb}", value, rule[5] if len(rule) > 5 else "")
    elif kind == "int":
        lo, hi = rule[1:3]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise _fail(key, f"a whole number in [{lo}, {hi}]", value)
    elif kind == "choice":
        if value not in rule[1]:
            raise _fail(key, "one of " + ", ".join(map(repr, rule[1])), value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise _fail(key, "true or false", value)
    elif kind == "str":
        if not isinstance(value, str) or not value:
            raise _fail(key, "a non-empty string", value)
    elif kind == "text":   # a string that may be empty (empty = not given)
        if not isinstance(value, str):
            raise _fail(key, "a string", value)


INF = math.inf
SCHEDULES = ("constant", "exponential", "inverse_t", "step")
OPTIMIZERS = ("sgd", "adam")
MATMUL_DTYPES = ("float32", "tf32", "bfloat16")
INITS = ("he_normal", "he_uniform", "glorot_uniform", "torch_default")
MONITORS = ("val_loss", "val_error")
MOMENTUM_RAMPS = ("linear", "exponential")
DATASETS = ("mnist", "fashion-mnist", "moons", "circles", "spirals", "xor", "table")
IMAGE_DATASETS = ("mnist", "fashion-mnist")
POINTCLOUDS = ("moons", "circles", "spirals", "xor")
TABLE_MISSING = ("error", "drop", "impute")


# ----------------------------------------------------------------------------
# one method: a composition of regularizers plus its own optimizer settings

@dataclass(frozen=True)
class MethodConfig:
    name: str                       # label used in every file and figure, e.g. "dropout+max_norm"
    # --- penalties on weights (never biases) ---
    l2: float = 0.0                 # lambda in lambda/2 * sum w^2 (PyTorch weight_decay); >= 0
    l1: float = 0.0                 # lambda in lambda * sum |w|; >= 0
    l1_start: float = 0.0           # fraction of total steps after which L1 is on; 0 = always, 0.8 = last 20%
    kl_beta: float = 0.0            # beta in beta * sum_j KL(rho || rho_hat_j) over hidden units; >= 0
    kl_rho: float = 0.05            # target mean activation rho, in (0, 1)
    kl_ema: float = 0.0             # moving-average decay for rho_hat (0 = batch mean; Hinton: 0.9-0.99), [0, 1)
    max_norm: float = INF           # radius c of each hidden unit's incoming weight vector; 0 or inf disables
    max_norm_output: bool = False   # also project the output units' incoming weights (deepnet: all layers)
    dropout_input: float = 0.0      # probability of dropping an input unit (inverted dropout), [0, 1)
    dropout_hidden: float = 0.0     # probability of dropping a hidden unit (inverted dropout), [0, 1)
    gaussian_dropout_input: float = 0.0   # Gaussian dropout of the inputs: h <- h * r, r ~ N(1, p/(1-p)), with p
                                          # the drop rate it stands for (Srivastava et al. 2014, sec. 10), [0, 1)
    gaussian_dropout_hidden: float = 0.0  # the same on every hidden unit, [0, 1)
    orthogonality: float = 0.0      # lambda in lambda * sum_l ||W_l^T W_l - I||_F^2, W_l (in, out): the Gram
                                    # matrix of the units' incoming weight vectors (out x out); >= 0
    label_smoothing: float = 0.0    # eps: training targets (1 - eps) * one-hot + eps / C, [0, 1)
    decoupled_weight_decay: float = 0.0   # lambda_d: before each update w <- w - lr_t * lambda_d * w, weights only
                                          # (AdamW with adam, SGDW with sgd; Loshchilov & Hutter 2019); >= 0
    dropconnect: float = 0.0        # DropConnect (Wan et al. 2013): probability of dropping each weight of every
                                    # layer (biases never), inverted: W * M / (1 - p), one mask M per minibatch, [0, 1)
    # --- early stopping ---
    early_stopping: bool = False    # stop this variant when `monitor` has not improved for `patience` epochs
    patience: int = 10              # epochs without improvement before stopping, >= 1
    min_delta: float = 0.0          # an improvement must exceed this (in the monitor's units), >= 0
    monitor: str = "val_loss"       # "val_loss" (nats/example) or "val_error" (fraction)
    # --- optimizer (per-variant; the optimizer kind is study-wide) ---
    lr: float = 0.05                # initial learning rate, > 0
    lr_schedule: str = "constant"   # constant | exponential | inverse_t | step (see reglab.engine.schedules)
    lr_decay: float = 1.0           # exponential/step: factor per lr_decay_steps; inverse_t: ignored
    lr_decay_steps: int = 10_000    # steps per decay period (exponential, step) or time constant (inverse_t)
    momentum: float = 0.9           # final SGD momentum, [0, 1)
    momentum_initial: float = -1.0  # SGD momentum at step 1 for a ramp; < 0 means no ramp (= momentum)
    momentum_ramp_steps: int = 0    # steps to go from momentum_initial to momentum (linear), >= 0
    momentum_ramp: str = "linear"   # ramp shape: "linear" (reaches momentum after momentum_ramp_steps) or
                                    # "exponential": momentum - (momentum - momentum_initial) * exp(-s / steps),
                                    # s = updates done (deepnet: 0.99 - 0.49 exp(-s / 1e5))
    nesterov: bool = False          # Nesterov momentum (SGD)
    beta1: float = 0.9              # Adam first-moment decay, [0, 1)
    beta2: float = 0.999            # Adam second-moment decay, [0, 1)
    eps: float = 1e-8               # Adam epsilon, > 0
    eps_inside_sqrt: bool = False   # Adam: sqrt(v_hat + eps) instead of sqrt(v_hat) + eps (PyTorch: outside)
    bias_correction: bool = True    # Adam: divide m, v by (1 - beta^t)
    # --- hyperparameters that plugin regularizers declare (reglab.engine.registry) ---
    plugin_values: tuple[tuple[str, Any], ...] = ()   # sorted (key, value) pairs, every declared key; read as
                                                      # attributes (method.KEY), written flat in TOML/JSON

    def __post_init__(self) -> None:
        for key, rule in METHOD_CONSTRAINTS.items():
            _check(f"{self.name}.{key}" if key != "name" else "name", getattr(self, key), rule)
        if not isinstance(self.plugin_values, tuple) or any(
                not (isinstance(kv, tuple) and len(kv) == 2 and isinstance(kv[0], str)) for kv in self.plugin_values):
            raise _fail(f"{self.name}.plugin_values", "a tuple of (key, value) pairs", self.plugin_values)
        if self.uses_dropout and self.uses_gaussian_dropout:
            raise ReglabError(f"method {self.name!r} sets both Bernoulli dropout (dropout_input/dropout_hidden) and "
                              "Gaussian dropout (gaussian_dropout_input/gaussian_dropout_hidden). Fix: keep one "
                              "kind of dropout per method (set the other's rates to 0).")

    def __getattr__(self, key: str) -> Any:
        # only called when normal lookup fails: a plugin regularizer's value (``uses(m)`` reads ``m.KEY``)
        if key.startswith("__"):
            raise AttributeError(key)
        for k, v in object.__getattribute__(self, "plugin_values"):
            if k == key:
                return v
        raise AttributeError(f"method {object.__getattribute__(self, 'name')!r} has no setting {key!r} "
                             "(neither a MethodConfig field nor a value a loaded plugin declares)")

    def with_values(self, **values: Any) -> MethodConfig:
        """This method with some fields and/or plugin values changed (validated again)."""
        fields = {k: v for k, v in values.items() if k in METHOD_FIELDS}
        extra = {k: v for k, v in values.items() if k not in METHOD_FIELDS}
        known = dict(self.plugin_values)
        for k in extra:
            if k not in known:
                raise ReglabError(f"method {self.name!r} has no setting {k!r}. Fix: use one of "
                                  f"{', '.join(list(METHOD_FIELDS) + sorted(known))}.")
        known.update(extra)
        return dataclasses.replace(self, **fields, plugin_values=tuple(sorted(known.items())))

    def to_dict(self) -> dict:
        """The method as TOML/JSON writes it: every field, then each plugin value as a key of its own.
        The settings of the built-ins added after Table 9's (``WRITTEN_WHEN_SET``) are written only when
        they differ from their default (off): a study without them is written exactly as before they
        existed (config.json, variants.json, digests, the tuner's study fingerprints, the report's table)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "plugin_values"
             and not (f.name in WRITTEN_WHEN_SET and getattr(self, f.name) == f.default)}
        d.update(self.plugin_values)
        return d

    # "does this method use X": the one definition (engine, tuner and presets ask these)
    @property
    def uses_l2(self) -> bool:
        return self.l2 > 0

    @property
    def uses_l1(self) -> bool:
        return self.l1 > 0

    @property
    def uses_late_l1(self) -> bool:
        return self.l1 > 0 and self.l1_start > 0

    @property
    def uses_kl_sparsity(self) -> bool:
        return self.kl_beta > 0

    @property
    def uses_max_norm(self) -> bool:
        return 0.0 < self.max_norm < INF

    @property
    def uses_dropout(self) -> bool:
        return self.dropout_input > 0 or self.dropout_hidden > 0

    @property
    def uses_gaussian_dropout(self) -> bool:
        return self.gaussian_dropout_input > 0 or self.gaussian_dropout_hidden > 0

    @property
    def uses_orthogonality(self) -> bool:
        return self.orthogonality > 0

    @property
    def uses_label_smoothing(self) -> bool:
        return self.label_smoothing > 0

    @property
    def uses_decoupled_weight_decay(self) -> bool:
        return self.decoupled_weight_decay > 0

    @property
    def uses_dropconnect(self) -> bool:
        return self.dropconnect > 0


METHOD_CONSTRAINTS: dict[str, tuple] = {
    "name": ("str",),
    "l2": ("float", 0.0, INF, False, True, "use 0 to disable."),
    "l1": ("float", 0.0, INF, False, True, "use 0 to disable."),
    "l1_start": ("float", 0.0, 1.0, False, True),
    "kl_beta": ("float", 0.0, INF, False, True, "use 0 to disable."),
    "kl_rho": ("float", 0.0, 1.0, True, True),
    "kl_ema": ("float", 0.0, 1.0, False, True),
    "max_norm": ("float", 0.0, INF, False, False, "use inf (or 0) to disable."),
    "max_norm_output": ("bool",),
    "dropout_input": ("float", 0.0, 1.0, False, True),
    "dropout_hidden": ("float", 0.0, 1.0, False, True),
    "gaussian_dropout_input": ("float", 0.0, 1.0, False, True, "use 0 to disable (0.5 gives noise variance 1)."),
    "gaussian_dropout_hidden": ("float", 0.0, 1.0, False, True, "use 0 to disable (0.5 gives noise variance 1)."),
    "orthogonality": ("float", 0.0, INF, False, True, "use 0 to disable."),
    "label_smoothing": ("float", 0.0, 1.0, False, True, "use 0 to disable (0.1 is the usual value)."),
    "decoupled_weight_decay": ("float", 0.0, INF, False, True, "use 0 to disable."),
    "dropconnect": ("float", 0.0, 1.0, False, True, "use 0 to disable (Wan et al. 2013 use 0.5)."),
    "early_stopping": ("bool",),
    "patience": ("int", 1, 1_000_000),
    "min_delta": ("float", 0.0, INF, False, True),
    "monitor": ("choice", MONITORS),
    "lr": ("float", 0.0, INF, True, True),
    "lr_schedule": ("choice", SCHEDULES),
    "lr_decay": ("float", 0.0, INF, True, True),
    "lr_decay_steps": ("int", 1, 10**12),
    "momentum": ("float", 0.0, 1.0, False, True),
    "momentum_initial": ("float", -1.0, 1.0, False, True),
    "momentum_ramp_steps": ("int", 0, 10**12),
    "momentum_ramp": ("choice", MOMENTUM_RAMPS),
    "nesterov": ("bool",),
    "beta1": ("float", 0.0, 1.0, False, True),
    "beta2": ("float", 0.0, 1.0, False, True),
    "eps": ("float", 0.0, INF, True, True),
    "eps_inside_sqrt": ("bool",),
    "bias_correction": ("bool",),
}


# ----------------------------------------------------------------------------
# data

@dataclass(frozen=True)
class DataConfig:
    name: str = "mnist"             # mnist | fashion-mnist | moons | circles | spirals | xor | table
    resolution: int = 28            # image side in pixels: 28, or 7 (4x4 average pooling); images only
    train_on_all: bool = False      # train on all 60,000 (validation split then still the last 10,000)
    standardize: bool = False       # subtract the training mean pixel, divide by its std
    subset_per_class: int = 0       # class-balanced subset of n per class for every split; 0 = all
    train_per_class: int = 0        # training split only: its first n examples of each class; 0 = all
                                    # (the data-size study; validation and test stay whole)
    train_repeat: int = 1           # the training split tiled this many times into one epoch, >= 1: each
                                    # example is seen train_repeat times per epoch, in one random order,
                                    # so a small subset gets as many updates per epoch as a large one
    n_points: int = 600             # point clouds: total points over train/val/test
    noise: float = 0.2              # point clouds: Gaussian noise std (in units of the shape's scale)
    flip: float = 0.05              # point clouds: label-flip rate in [0, 0.5)
    data_seed: int = 0              # seeds the point cloud, a table's split and the minibatch order
    # --- tables (name = "table"; reglab.data.table) ---
    source: str = ""                # a CSV / Parquet / .npz file, or "sklearn:NAME"; "" = arrays given in Python
    target: str = ""                # the label column (CSV, Parquet); "" for .npz, sklearn sets and arrays
    split_column: str = ""          # a column whose values train / val / test name each row's split;
                                    # "" = a stratified split from data_seed
    val_fraction: float = 0.15      # of each class, to validation (stratified split), in (0, 1)
    test_fraction: float = 0.15     # of each class, to test (stratified split), in (0, 1)
    missing: str = "error"          # rows with missing values: error (refuse) | drop | impute (training
                                    # split's mean for numbers; a "missing" category for strings)
    max_categories: int = 50        # one-hot: most distinct values a string column may have, >= 2

    def __post_init__(self) -> None:
        for key, rule in DATA_CONSTRAINTS.items():
            _check(f"data.{key}", getattr(self, key), rule)
        if self.name == "table" and self.val_fraction + self.test_fraction >= 1:
            raise _fail("data.val_fraction + data.test_fraction", "< 1",
                        self.val_fraction + self.test_fraction, "leave some rows for training, e.g. 0.15 each.")

    @property
    def is_image(self) -> bool:
        return self.name in IMAGE_DATASETS


DATA_CONSTRAINTS: dict[str, tuple] = {
    "name": ("choice", DATASETS),
    "resolution": ("choice", (28, 7)),
    "train_on_all": ("bool",),
    "standardize": ("bool",),
    "subset_per_class": ("int", 0, 10**7),
    "train_per_class": ("int", 0, 10**7),
    "train_repeat": ("int", 1, 10**6),
    "n_points": ("int", 12, 10**8),
    "noise": ("float", 0.0, INF, False, True),
    "flip": ("float", 0.0, 0.5, False, True),
    "data_seed": ("int", 0, 2**63 - 1),
    "source": ("text",),
    "target": ("text",),
    "split_column": ("text",),
    "val_fraction": ("float", 0.0, 1.0, True, True),
    "test_fraction": ("float", 0.0, 1.0, True, True),
    "missing": ("choice", TABLE_MISSING),
    "max_categories": ("int", 2, 10**6),
}


# ----------------------------------------------------------------------------
# the study

@dataclass(frozen=True)
class StudyConfig:
    name: str                                   # study label, e.g. "mnist-quick"
    data: DataConfig = field(default_factory=DataConfig)
    hidden: tuple[int, ...] = (256, 256)        # hidden layer widths; input and output come from the data
    init: str = "he_normal"                     # weight initialisation (biases start at 0), see reglab.engine.mlp
    optimizer: str = "sgd"                      # sgd | adam, study-wide; its settings are per method
    n_epochs: int = 10                          # passes over the training split, >= 1
    batch_size: int = 100                       # examples per step, >= 1
    seeds: tuple[int, ...] = (0,)               # one variant per (method, seed); seed sets init and dropout
    methods: tuple[MethodConfig, ...] = ()      # at least one
    log_every: int = 1                          # record per-iteration losses every this many steps
    checkpoint_every: int = 1                   # write a resumable checkpoint every this many epochs
    eval_batch_size: int = 2000                 # examples per evaluation chunk (memory and speed only)
    device: str = "cpu"                         # "cpu" or "cuda"
    matmul_dtype: str = "float32"               # float32 | tf32 (CUDA only) | bfloat16: the training products' operands
    tensorboard: bool = False                   # also write TensorBoard event files to RUN_DIR/tensorboard/
    plugins: tuple[str, ...] = ()               # modules whose REGULARIZERS the study loads, besides the
                                                # `reglab.regularizers` entry points (reglab.engine.registry)

    def __post_init__(self) -> None:
        for key, rule in STUDY_CONSTRAINTS.items():
            _check(key, getattr(self, key), rule)
        if not self.methods:
            raise ReglabError("'methods' must list at least one method; got none. Fix: add a [[methods]] table.")
        names = [m.name for m in self.methods]
        if len(set(names)) != len(names):
            raise ReglabError(f"'methods' names must be unique; got {names}. Fix: rename the duplicates.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ReglabError(f"'seeds' must be distinct whole numbers; got {_short(list(self.seeds))}. "
                              "Fix: list each seed once, e.g. seeds = [0, 1, 2].")
        for w in self.hidden:
            _check("hidden[]", w, ("int", 1, 1_000_000))
        for module in self.plugins:
            if not isinstance(module, str) or not all(part.isidentifier() for part in module.split(".")):
                raise _fail("plugins[]", "a Python module name (dotted identifiers)", module,
                            'list modules by import name, e.g. plugins = ["my_regularizers"].')
        if self.matmul_dtype == "tf32" and self.device != "cuda":
            raise ReglabError(f"matmul_dtype 'tf32' (TensorFloat-32 products) exists only on CUDA GPUs; got device "
                              f"'{self.device}'. Fix: train on a GPU (--device cuda, or device = \"cuda\" in a config), "
                              "or use float32 or bfloat16 products.")

    @property
    def n_variants(self) -> int:
        return len(self.methods) * len(self.seeds)

    def variants(self) -> list[tuple[int, MethodConfig, int]]:
        """(variant index, method, seed), method-major: all seeds of a method are contiguous."""
        return [(i * len(self.seeds) + j, m, s)
                for i, m in enumerate(self.methods) for j, s in enumerate(self.seeds)]

    def to_dict(self) -> dict:
        return _json_safe(_plain_dict(self))

    @classmethod
    def from_dict(cls, d: dict, *, where: str = "config", declared: Declared | None = None) -> StudyConfig:
        return study_from_dict(d, where=where, declared=declared)

    def replace(self, **changes) -> StudyConfig:
        return dataclasses.replace(self, **changes)


STUDY_CONSTRAINTS: dict[str, tuple] = {
    "name": ("str",),
    "init": ("choice", INITS),
    "optimizer": ("choice", OPTIMIZERS),
    "n_epochs": ("int", 1, 10**7),
    "batch_size": ("int", 1, 10**7),
    "log_every": ("int", 1, 10**9),
    "checkpoint_every": ("int", 1, 10**9),
    "eval_batch_size": ("int", 1, 10**8),
    "device": ("choice", ("cpu", "cuda")),
    "matmul_dtype": ("choice", MATMUL_DTYPES),
    "tensorboard": ("bool",),
}


def _plain_dict(cfg: StudyConfig) -> dict:
    """``dataclasses.asdict`` with each method flat (its plugin values as keys, MethodConfig.to_dict)."""
    d = dataclasses.asdict(cfg)
    d["methods"] = [m.to_dict() for m in cfg.methods]
    if not cfg.plugins:
        del d["plugins"]   # a study without plugins is written as before they existed (same digests)
    return d


def _json_safe(obj):
    """inf is not JSON: store it as the string "inf" (reglab.nonfinite; read back by from_dict)."""
    return encode(obj)


# method settings written only when set (MethodConfig.to_dict): those of the built-ins after Table 9's
WRITTEN_WHEN_SET = frozenset(("gaussian_dropout_input", "gaussian_dropout_hidden", "orthogonality", "label_smoothing",
                              "decoupled_weight_decay", "dropconnect"))
FLOAT_FIELDS = frozenset(k for k, rule in METHOD_CONSTRAINTS.items() if rule[0] == "float")
METHOD_FIELDS = tuple(k for k in METHOD_CONSTRAINTS)   # every MethodConfig field a TOML method may set

# Hyperparameters that loaded plugin regularizers declare, as the method keys they add:
# key -> (rule in METHOD_CONSTRAINTS' form, default). reglab.engine.registry builds it from the
# declarations; config knows no regularizer.
Declared = dict[str, tuple[tuple, Any]]


def _number(key: str, v, declared: Declared | None = None):
    """A float field's "inf"/"-inf" as the float; every other value (names included) as it is."""
    is_float = key in FLOAT_FIELDS or (declared is not None and key in declared and declared[key][0][0] == "float")
    if is_float and isinstance(v, str) and v in ("inf", "-inf"):
        return decode(v)
    if is_float and key not in FLOAT_FIELDS and isinstance(v, int) and not isinstance(v, bool):
        return float(v)   # a plugin value keeps one type, so equal settings compare (and batch) equal
    return v


def _known_keys(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _reject_unknown(d: dict, cls, where: str, declared: Declared | None = None) -> None:
    known = [k for k in _known_keys(cls) if k != "plugin_values"] + sorted(declared or ())
    for k in d:
        if k not in known:
            raise ReglabError(f"unknown key {where}.{_short(k) if len(str(k)) > 80 else k}; allowed: "
                              f"{', '.join(known)}. Fix: remove it or correct its spelling.")


def method_from_dict(d: dict, *, where: str = "methods[]", defaults: dict | None = None,
                     declared: Declared | None = None) -> MethodConfig:
    """A method from its TOML/JSON table. `declared`: the plugin values loaded regularizers declare
    (key -> (rule, default)); each is checked against its declared rule and stored, with the default
    where the table does not give it, in ``plugin_values``."""
    if not isinstance(d, dict):
        raise ReglabError(f"{where} must be a table of method settings; got {_short(d)}. "
                          "Fix: write each method as a [[methods]] table.")
    merged = dict(defaults or {})
    merged.update(d)
    _reject_unknown(merged, MethodConfig, where, declared)
    if "name" not in merged:
        raise ReglabError(f"{where} needs a 'name'. Fix: add name = \"l2\" (any label).")
    # TOML ints are fine where floats are expected
    merged = {k: _number(k, v, declared) for k, v in merged.items()}
    fields = {k: v for k, v in merged.items() if k in METHOD_FIELDS}
    values = {}
    for key, (rule, default) in (declared or {}).items():
        value = merged.get(key, default)
        _check(f"{merged['name']}.{key}", value, rule)
        values[key] = value
    return MethodConfig(**fields, plugin_values=tuple(sorted(values.items())))


def study_from_dict(d: dict, *, where: str = "config", declared: Declared | None = None) -> StudyConfig:
    """A study from its TOML/JSON form; `declared`: the plugin values its methods may set (see
    :func:`method_from_dict`; reglab.engine.registry.study_from_dict loads the study's plugins first)."""
    if not isinstance(d, dict):
        raise ReglabError(f"{where} must be a table of study settings; got {type(d).__name__}. "
                          "Fix: give a study written by reglab (config.json) or as TOML (docs/studies.md).")
    d = dict(d)
    defaults = d.pop("method_defaults", None)
    _reject_unknown(d, StudyConfig, where)
    if "name" not in d:
        raise ReglabError(f"{where} needs a 'name'. Fix: add name = \"my-study\" at the top.")
    data = d.pop("data", {})
    if not isinstance(data, dict):
        raise ReglabError(f"{where}.data must be a table; got {_short(data)}. "
                          "Fix: write the data settings as a [data] table.")
    _reject_unknown(data, DataConfig, f"{where}.data")
    methods = d.pop("methods", [])
    if not isinstance(methods, list):
        raise ReglabError(f"{where}.methods must be an array of tables ([[methods]]); got {_short(methods)}. "
                          "Fix: write each method as a [[methods]] table.")
    if defaults is not None:
        if not isinstance(defaults, dict):
            raise ReglabError(f"{where}.method_defaults must be a table of method settings; got {_short(defaults)}. "
                              "Fix: write it as a [method_defaults] table, e.g. lr = 0.05.")
        _reject_unknown(defaults, MethodConfig, f"{where}.method_defaults", declared)
        if "name" in defaults:
            raise ReglabError(f"{where}.method_defaults cannot set 'name' (each method has its own). "
                              "Fix: give the name in each [[methods]] table.")
    out = dict(d)
    out["data"] = DataConfig(**data)
    out["methods"] = tuple(method_from_dict(m, where=f"{where}.methods[{i}]", defaults=defaults, declared=declared)
                           for i, m in enumerate(methods))
    for key in ("hidden", "seeds", "plugins"):
        if key in out:
            if not isinstance(out[key], (list, tuple)):
                raise ReglabError(f"{where}.{key} must be a list of whole numbers; got {_short(out[key])}. "
                                  f"Fix: write it as a list, e.g. {key} = {_EXAMPLE_LISTS[key]}.")
            out[key] = tuple(out[key])
    return StudyConfig(**out)


_EXAMPLE_LISTS = {"hidden": "[256, 256]", "seeds": "[0, 1, 2]", "plugins": '["my_regularizers"]'}


def load_toml(path: str | Path, *, declared: Declared | None = None) -> StudyConfig:
    """Read a study from TOML: top-level study keys, a [data] table, [[methods]] tables."""
    try:
        return study_from_dict(read_toml(path), where=Path(path).name, declared=declared)
    except ReglabError as e:
        raise ReglabError(f"config file {Path(path)}: {e}") from None


def read_toml(path: str | Path) -> dict:
    """A study TOML file as a dict, unchecked (one ReglabError for a file that is not readable TOML)."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReglabError(f"config file {p} does not exist. Fix: give the path of a study TOML file.") from None
    except IsADirectoryError:
        raise ReglabError(f"config file {p} is a folder. Fix: give the path of a study TOML file.") from None
    except OSError as e:
        raise ReglabError(f"config file {p} cannot be read ({e.strerror or e}). Fix: check its permissions.") from None
    except UnicodeDecodeError:
        raise ReglabError(f"config file {p} is not UTF-8 text. Fix: give a study TOML file.") from None
    except tomllib.TOMLDecodeError as e:
        raise ReglabError(f"config file {p} is not valid TOML ({e}). Fix: correct the syntax.") from None
    return raw


def to_toml(cfg: StudyConfig) -> str:
    """Write a study as TOML that :func:`load_toml` reads back to an equal config."""
    d = _plain_dict(cfg)   # floats as floats: a name "inf" stays a (quoted) string
    lines: list[str] = []

    def fmt(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)   # a TOML basic string: JSON's escapes are TOML's
        if isinstance(v, float):
            return ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return str(v)

    for k, v in d.items():
        if k not in ("data", "methods"):
            lines.append(f"{k} = {fmt(v)}")
    lines.append("\n[data]")
    lines += [f"{k} = {fmt(v)}" for k, v in d["data"].items()]
    for m in d["methods"]:
        lines.append("\n[[methods]]")
        lines += [f"{k} = {fmt(v)}" for k, v in m.items()]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------
# one-value overrides: `reglab run ... --set methods.dropout+l2.dropout_hidden=0.3`

def apply_settings(cfg: StudyConfig, settings: list[str] | tuple[str, ...], *, option: str = "--set",
                   declared: Declared | None = None) -> StudyConfig:
    """`cfg` with each ``PATH=VALUE`` of `settings` applied in order, validated as a TOML study is.

    PATH is a dotted path into the study as written in TOML: a study key (``n_epochs``), ``data.KEY``,
    or ``methods.NAME.KEY`` with the method addressed by its name (``*`` for every method). VALUE is a
    TOML value (``0.3``, ``true``, ``[512, 512]``, ``inf``, ``"moons"``); anything that is not TOML is
    taken as a number if Python reads it as one, else as a string, so ``data.name=moons`` needs no quotes.
    Every bad setting is reported, one line each, in a single ReglabError; nothing is applied then.
    `declared`: the plugin values the study's methods may set (key -> (rule, default)).
    """
    d = cfg.to_dict()
    errors = []
    for setting in settings:
        try:
            changed = _set_path(d, setting, declared)
            study_from_dict(changed, where=option, declared=declared)  # the TOML path's validation, every rule
        except ReglabError as e:
            errors.append(f"{option} {setting}: {e}")
            continue
        d = changed
    if errors:
        raise ReglabError(*errors)
    return study_from_dict(d, where=option, declared=declared)


def _set_path(d: dict, setting: str, declared: Declared | None = None) -> dict:
    """A copy of the study dict `d` with one ``PATH=VALUE`` setting applied (paths checked, values not)."""
    path, eq, text = setting.partition("=")
    path = path.strip()
    if not eq or not path:
        raise ReglabError("expected PATH=VALUE. Fix: e.g. --set n_epochs=30 or --set methods.l2.l2=1e-3.")
    value = _parse_value(text.strip())
    keys = path.split(".")
    out = dict(d)
    if keys[0] == "methods":
        if len(keys) < 3:
            raise ReglabError("a method setting is methods.NAME.KEY. Fix: e.g. methods.dropout+l2.dropout_hidden=0.3.")
        name, key = ".".join(keys[1:-1]), keys[-1]
        names = [m["name"] for m in d["methods"]]
        if name != "*" and name not in names:
            raise ReglabError(f"this study has no method named {name!r}; its methods: {', '.join(names)}. "
                              "Fix: use one of those names, or * for every method.")
        _known_leaf(key, MethodConfig, f"methods.{name}.", declared)
        out["methods"] = [dict(m, **{key: value}) if name in ("*", m["name"]) else m for m in d["methods"]]
    elif keys[0] == "data":
        if len(keys) != 2:
            raise ReglabError("a data setting is data.KEY. Fix: e.g. data.resolution=7.")
        _known_leaf(keys[1], DataConfig, "data.")
        out["data"] = dict(d["data"], **{keys[1]: value})
    else:
        if len(keys) != 1:
            raise ReglabError(f"unknown key {path}. Fix: a path is KEY, data.KEY or methods.NAME.KEY.")
        _known_leaf(keys[0], StudyConfig, "")
        out[keys[0]] = value
    return out


def _known_leaf(key: str, cls, prefix: str, declared: Declared | None = None) -> None:
    known = [k for k in _known_keys(cls) if k not in ("data", "methods", "plugin_values")] + sorted(declared or ())
    if key not in known:
        raise ReglabError(f"unknown key {prefix}{key}. Fix: use one of {', '.join(known)}.")


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return float(text)  # forms TOML does not accept, e.g. ".3" or "1."
    except ValueError:
        return text
