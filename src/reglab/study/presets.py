"""Named studies: ``pointcloud`` and ``mnist`` (presets ``quick``, ``seed``, ``table9-cpu``, ``paper``, ``datasize``).

A preset is a plain function returning a :class:`StudyConfig`; ``STUDIES`` maps
study name -> preset name -> function, and the CLI's choices are its keys.
Where every value comes from (the paper, Srivastava's deepnet configs, or a
validation-set search -- never the test set) is written beside it and in
docs/studies.md, with the measurements.

Conventions used below (see reglab.config): ``l2`` is lambda in
``lambda/2 * sum w^2`` (deepnet's and PyTorch's convention), dropout is
*inverted* (kept units scaled by 1/(1-p) during training), steps count
minibatch updates.

The six MNIST methods of Srivastava et al. (2014), Table 9, are named
``METHODS_TABLE9`` in every MNIST preset, in the paper's order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from reglab.config import IMAGE_DATASETS, POINTCLOUDS, DataConfig, MethodConfig, StudyConfig
from reglab.errors import ReglabError
from reglab.study.datasize import DataSizeStudy

METHODS_TABLE9 = ("l2", "l2+l1_late", "l2+kl", "max_norm", "dropout+l2", "dropout+max_norm")
# Srivastava et al. 2014, Table 9: test error % of the 784-1024-1024-2048-10 ReLU net
PAPER_TABLE9 = {"l2": 1.62, "l2+l1_late": 1.60, "l2+kl": 1.55, "max_norm": 1.35,
                "dropout+l2": 1.25, "dropout+max_norm": 1.05}
# the hand-written study reglab replaces (784-32-10, 50 epochs, one run each); dropout rows had no number
SEED_STUDY_REPORTED = {"l2": 5.6, "l2+l1_late": 35.0, "l2+kl": 6.1, "max_norm": 4.6}
DEFAULT_SEEDS = (0, 1, 2)


# ----------------------------------------------------------------------------
# MNIST

def _table9_methods(common: dict, per_method: dict[str, dict]) -> tuple[MethodConfig, ...]:
    """The six Table 9 methods: `common` optimizer settings, then each method's own."""
    return tuple(MethodConfig(name=name, **{**common, **per_method[name]}) for name in METHODS_TABLE9)


def _sgd_table9_methods(q: dict, none: bool = False) -> tuple[MethodConfig, ...]:
    """The six Table 9 methods from one table of validated values (QUICK, SEED, DATASIZE, TABLE9_CPU): SGD,
    momentum 0.9, one exponentially decayed lr schedule, each method its own penalties; the starting lr
    is ``lr`` unless ``lr_by_method`` names the method (a rate validated for it alone); the L2 of the
    combined methods is ``l2_with`` where the table has one (else ``l2``). ``none``: first a method with
    no regularization at all (at ``lr``)."""
    common = dict(lr=q["lr"], momentum=0.9, lr_schedule="exponential", lr_decay=q["lr_decay"],
                  lr_decay_steps=q["lr_decay_steps"])
    lr_by_method = q.get("lr_by_method", {})
    dropout = dict(dropout_input=q["dropout_input"], dropout_hidden=q["dropout_hidden"])
    l2_with = q.get("l2_with", q["l2"])
    per = {
        "l2": dict(l2=q["l2"]),
        "l2+l1_late": dict(l2=l2_with, l1=q["l1"], l1_start=q["l1_start"]),
        "l2+kl": dict(l2=l2_with, kl_beta=q["kl_beta"], kl_rho=q["kl_rho"], kl_ema=q["kl_ema"]),
        "max_norm": dict(max_norm=q["max_norm"]),
        "dropout+l2": dict(l2=l2_with, **dropout),
        "dropout+max_norm": dict(max_norm=q["max_norm_dropout"], **dropout),
    }
    if unknown := set(lr_by_method) - set(per):
        raise ValueError(f"lr_by_method names no Table 9 method: {sorted(unknown)}")
    for name, lr in lr_by_method.items():
        per[name] = {**per[name], "lr": lr}
    return ((MethodConfig(name="none", **common),) if none else ()) + _table9_methods(common, per)


def mnist_quick(dataset: str = "mnist") -> StudyConfig:
    """784-256-256-10 ReLU, 3 seeds x 6 methods, 20 epochs: sized for <= 10 minutes on a 2-core CPU.

    SGD with momentum 0.9 at batch 100 (deepnet's ``model.pbtxt``); every method: lr 0.1 halved
    every 3,000 steps (smoothly, 0.1 -> 0.01 over the 10,000 steps), chosen on the validation
    split like the L1 and KL coefficients, the dropout rates and the max-norm radii
    (docs/studies.md has the search). L2 1e-4 (lambda/2 convention); KL target 0.1 and
    moving-average decay 0.9 are deepnet's. One set of values per dataset (``QUICK_BY_DATASET``;
    ``--dataset fashion-mnist`` picks Fashion-MNIST's own, found by the same search on its validation split).
    """
    q = QUICK_BY_DATASET[dataset]
    return StudyConfig(name="mnist-quick", data=DataConfig(name="mnist"), hidden=(256, 256),
                       init="he_normal", optimizer="sgd", n_epochs=q["n_epochs"], batch_size=100,
                       seeds=DEFAULT_SEEDS, methods=_sgd_table9_methods(q), log_every=10,
                       checkpoint_every=1)


# validation search (1 seed, 20 epochs, val split; docs/studies.md): lr {0.05, 0.1, 0.2},
# l2 {1e-4, 1e-3}, l1 {1e-5, 3e-5, 1e-4}, kl_beta {1e-3, 1e-2}, dropout (in/hidden)
# {0.2/0.5, 0.2/0.3, 0.1/0.25}, max-norm radius {2, 2.5, 3}
QUICK = dict(
    n_epochs=20, lr=0.1, lr_decay=0.5, lr_decay_steps=3000,
    l2=1e-4, l1=1e-4, l1_start=0.8,
    kl_beta=1e-3, kl_rho=0.1, kl_ema=0.9,
    max_norm=3.0, max_norm_dropout=2.5,
    dropout_input=0.1, dropout_hidden=0.25,
)
# Fashion-MNIST's own values: the same protocol on its validation split (1 seed, 20 epochs, val error at epoch
# 20; docs/examples/fashion-quick-search/; docs/studies.md): lr {0.01, 0.03, 0.1} -> 0.03 for every method; then
# at lr 0.03 l2 {1e-4, 1e-3} -> 1e-4, late l1 {1e-5, 3e-5, 1e-4} -> 1e-4, kl_beta {1e-3, 1e-2} -> 1e-3,
# max-norm {1, 1.5, 2, 3} -> 1.5, dropout in/hidden {0.1/0.25, 0.05/0.1, 0/0.1} -> 0/0.1 for both dropout methods
# (the net is undertrained on Fashion-MNIST at this budget: the lightest dropout fits best), radius with
# dropout {2, 2.5} -> 2.5.
QUICK_FASHION = {**QUICK, "lr": 0.03, "max_norm": 1.5, "dropout_input": 0.0, "dropout_hidden": 0.1}
QUICK_BY_DATASET = {"mnist": QUICK, "fashion-mnist": QUICK_FASHION}


def mnist_seed() -> StudyConfig:
    """784-32-10 ReLU, 50 epochs: the configuration of the hand-written study reglab replaces.

    The net and the budget are that study's; the optimizer settings and coefficients are
    reglab's, chosen on the validation split at 28x28 and 7x7 (that study's L1 coefficient was
    what made its L2+L1 run reach 35%).
    """
    q = SEED
    return StudyConfig(name="mnist-seed", data=DataConfig(name="mnist"), hidden=(32,), init="he_normal",
                       optimizer="sgd", n_epochs=50, batch_size=100, seeds=DEFAULT_SEEDS,
                       methods=_sgd_table9_methods(q), log_every=10, checkpoint_every=5)


# validation search (1 seed, 50 epochs, val split, at both resolutions the preset runs at; docs/studies.md):
# lr {0.05, 0.1}, l2 {1e-5, 1e-4, 1e-3}, l1 {1e-5, 1e-4}, max-norm lr {0.05, 0.1}, dropout (in/hidden)
# {0.2/0.5, 0.2/0.2, 0.1/0.1}; picked by the mean validation error over 28x28 and 7x7
SEED = dict(
    lr=0.1, lr_decay=0.5, lr_decay_steps=5000,
    l2=1e-4, l1=1e-5, l1_start=0.8,
    kl_beta=1e-3, kl_rho=0.1, kl_ema=0.9,
    max_norm=3.0, max_norm_dropout=3.0,
    dropout_input=0.1, dropout_hidden=0.1,
)


def mnist_paper() -> StudyConfig:
    """784-1024-1024-2048-10 ReLU, 1,000,000 updates at batch 100 (2,000 epochs of 50,000), for a GPU.

    From Srivastava's deepnet example configs (docs/studies.md): methods without dropout use
    ``model.pbtxt`` (lr 0.01 halved every 10,000 steps, momentum 0.9, L2 0.001, max-norm 3 on
    every layer); methods with dropout use ``model_dropout.pbtxt`` (lr 1/(1 + t/10,000),
    momentum 0.99 - 0.49 exp(-t/100,000), dropout 0.2 on inputs and 0.5 on hidden units,
    max-norm 3) converted to inverted dropout: a layer whose inputs are dropped with
    probability p has weights W' = (1-p) W, so deepnet's radius c becomes (1-p) c and its
    learning rate (1-p)^2 lr. reglab has one of each per method and takes the value of the
    three layers fed by p = 0.5 (lr 0.25, radius 1.5); the first layer's would be 0.64 and 2.4.
    """
    no_dropout = dict(lr=0.01, lr_schedule="step", lr_decay=0.5, lr_decay_steps=10_000, momentum=0.9)
    with_dropout = dict(lr=0.25, lr_schedule="inverse_t", lr_decay_steps=10_000, momentum=0.99,
                        momentum_initial=0.5, momentum_ramp="exponential", momentum_ramp_steps=100_000,
                        dropout_input=0.2, dropout_hidden=0.5)
    per = {
        "l2": dict(no_dropout, l2=1e-3),
        "l2+l1_late": dict(no_dropout, l2=1e-3, l1=PAPER_L1, l1_start=0.8),
        "l2+kl": dict(no_dropout, l2=1e-3, kl_beta=1e-3, kl_rho=0.1, kl_ema=0.9),
        "max_norm": dict(no_dropout, max_norm=3.0, max_norm_output=True),
        "dropout+l2": dict(with_dropout, l2=1e-3),
        "dropout+max_norm": dict(with_dropout, max_norm=1.5, max_norm_output=True),
    }
    return StudyConfig(name="mnist-paper", data=DataConfig(name="mnist"), hidden=(1024, 1024, 2048),
                       init="he_normal", optimizer="sgd", n_epochs=2000, batch_size=100, seeds=DEFAULT_SEEDS,
                       methods=_table9_methods({}, per), log_every=100, checkpoint_every=20,
                       eval_batch_size=5000, device="cuda")


def l1_mass_at_init(sizes: tuple[int, ...]) -> float:
    """``E sum |w|`` over every weight (no biases) of a He-normal net with layer widths `sizes`.

    A layer n_in -> n_out holds n_in n_out weights w ~ N(0, 2/n_in), each with E|w| = sqrt(2/n_in)
    sqrt(2/pi), so the layer contributes n_out sqrt(n_in) * 2/sqrt(pi).
    """
    return sum(n_out * math.sqrt(n_in) for n_in, n_out in zip(sizes, sizes[1:])) * 2.0 / math.sqrt(math.pi)


def l1_for_net(l1: float, validated_on: tuple[int, ...], net: tuple[int, ...]) -> float:
    """Carry an L1 coefficient validated on one net to another, keeping the penalty's share of the loss.

    The cross-entropy is O(1) per example whatever the net's size; the penalty ``l1 * sum |w|`` grows
    with the net's total weight mass. The rule keeps ``l1 * E sum |w|`` at initialisation (He normal,
    :func:`l1_mass_at_init`) the same: ``l1' = l1 * mass(validated_on) / mass(net)``, rounded to one
    significant digit (the search grid's resolution).
    """
    scaled = l1 * l1_mass_at_init(validated_on) / l1_mass_at_init(net)
    return float(f"{scaled:.0e}")


# deepnet's examples set no L1 value. Evidence: on an H200, `reglab run mnist --preset paper --epochs 103`
# with the quick preset's validated 1e-4 (784-256-256-10) ended l2+l1_late at 2.31% test error against
# l2's 1.77%; its validation error rose 0.6 pp in the 20 epochs after L1 switched on (issue 13). No GPU
# search was possible, so the rule above carries the validated value to this net: E sum|w| at init is
# 11,424 x 2/sqrt(pi) for 784-256-256-10 and 127,428 x 2/sqrt(pi) for 784-1024-1024-2048-10, so
# 1e-4 x 0.0897 = 9e-6 (the weight-count ratio, 268,800 / 3,969,024, would give 7e-6). Not yet checked
# on the GPU: the report flags l2+l1_late if its validation error still rises after the switch.
PAPER_L1 = l1_for_net(QUICK["l1"], (784, 256, 256, 10), (784, 1024, 1024, 2048, 10))


def mnist_table9_cpu() -> StudyConfig:
    """784-512-512-10 ReLU, 3 seeds x 6 methods, 50 epochs (25,000 updates): Table 9's tiers on a 2-core CPU.

    The quick preset's net has too little room to overfit for dropout to pay in 20 epochs; this one
    doubles the width and runs 50 epochs, float32 products. Every value was picked on the validation
    split (docs/examples/cpu-table9-search/, docs/studies.md "Table 9's finding on a CPU"): SGD,
    momentum 0.9, batch 100, lr halved smoothly every 7,500 steps, from 0.1 (l2+l1_late and both
    dropout methods), 0.2 (l2, l2+kl) or 0.3 (max_norm), each method's lowest validation error in
    round 4 (0.1, 0.2, 0.3 tried; 0.5 diverges; with dropout 0.2 is worse than 0.1); L2 1e-4
    (lambda/2 convention) alone and beside late L1, KL and dropout; max-norm radius 1.5 without
    dropout (1.48 % validation error against 1.72 % for radius 2); dropout 0.1 on the inputs and
    0.3 on hidden units (the lightest rates searched, the best on validation with L2 and tied best
    with max-norm) with radius 2 (1.40 % against 1.42 % for 1.5). Late L1 1e-6 from 80 % of training
    on (round 3: 1e-5 and 3e-6 raise validation error after the switch, 1e-6 ties L2; the quick
    preset's 1e-4 carried here by :func:`l1_for_net`, 4e-5, was worse still); KL 1e-3, target 0.1,
    moving-average decay 0.9 as in the quick preset. Round 3 also tried max-norm radii below 1.5
    (1.25: 1.51 %, 1.0: 1.56 %): 1.5 stays.
    """
    q = TABLE9_CPU
    return StudyConfig(name="mnist-table9-cpu", data=DataConfig(name="mnist"), hidden=q["hidden"],
                       init="he_normal", optimizer="sgd", n_epochs=q["n_epochs"], batch_size=100,
                       seeds=DEFAULT_SEEDS, methods=_sgd_table9_methods(q), log_every=50,
                       checkpoint_every=5, eval_batch_size=2000)


# validation search (1 seed, val split; docs/examples/cpu-table9-search/): round 1 (5 epochs) lr {0.1, 0.2,
# 0.3, 0.6} with dropout -> 0.1 (higher kills ReLU units); round 2 (50 epochs) max-norm {1.5, 2}, dropout
# (in/hidden) {0.1/0.3, 0.2/0.3, 0.2/0.4, 0.2/0.5} with L2 1e-4 and with max-norm {1.5, 2}; round 3 (50
# epochs) late L1 {1e-5, 3e-6, 1e-6} beside L2 1e-4 (val 1.61 / 1.59 / 1.58 %, L2 alone 1.58 %) and
# max-norm {1.0, 1.25} (1.56 / 1.51 %, round 2's 1.5: 1.48 %); round 4 (50 epochs) each method's lr: l2
# {0.2, 0.3} 1.56 / 1.58 % (0.1: 1.58), l2+kl 0.2 1.42 % (0.1: 1.60), l2+l1_late 0.2 1.58 % (0.1: 1.58,
# kept), max-norm 1.5 {0.2, 0.3, 0.5} 1.57 / 1.45 / diverged (0.1: 1.48), radius 2 {0.3, 0.5}, radius 3 at
# 0.5, both dropout methods 0.2: 1.52 / 1.51 % (0.1: 1.35 / 1.40); round 5 (50 epochs, 3 seeds, mean) the paper's
# regime for the dropout methods (lr 0.25 / (1 + t/T), momentum 0.5 -> 0.99; T as the paper preset or both T
# divided by 4), radius {2, 1.5}, rates {0.1/0.3, 0.2/0.5}: 1.44-1.63 % against the preset's dropout+max_norm 1.40 (kept)
TABLE9_CPU = dict(
    hidden=(512, 512), n_epochs=50, lr=0.1, lr_decay=0.5, lr_decay_steps=7500,
    lr_by_method={"l2": 0.2, "l2+kl": 0.2, "max_norm": 0.3},
    l2=1e-4, l1=1e-6, l1_start=0.8,
    kl_beta=1e-3, kl_rho=0.1, kl_ema=0.9,
    max_norm=1.5, max_norm_dropout=2.0,
    dropout_input=0.1, dropout_hidden=0.3,
)


@dataclasses.dataclass(frozen=True)
class FollowUp:
    """What to run after a preset whose answer is not the end of the story."""
    text: str                          # one sentence: the command to run next, and why
    below_seeds: int | None = None     # say it only to a study with fewer seeds than this (None: always)


# Where a preset's answer is not the end of the story: the command to run next, printed after the study's
# summary table, recorded in its summary.json ("next_step") and shown from there in its report.html and
# summary.md (the report reads no preset). Keyed by (study name, dataset name); the first FollowUp that
# applies to the study's seed count is said.
# TABLE9_CPU_WALL_MIN: table9-cpu's measured wall time in minutes, command to report.html, on the idle 2-core
# Xeon (docs/studies.md, "Table 9's finding on a CPU"): 15 min 1 s with the engine's chunks from a fresh clone
# (venv already made; about 1.5 min more with it) on 2026-12-07; 38 min 8 s with the venv step, before the
# chunks, on 2026-12-03, when the same box ran 2.2x slower. The range is the box's day, not the work.
TABLE9_CPU_WALL_MIN = "15-40"
# table9-cpu with more seeds (docs/studies.md, "With 8 seeds" and "With 15 seeds"), each run end to end on the
# idle 2-core Xeon: Holm over the 15 pairs at the last epoch, and over the first n seeds
# (docs/examples/holm_per_epoch.py --by-seeds). 8 seeds: the fewest with which both dropout methods were
# significantly below each L2-family method (and at every larger count); 39 min 54 s from a fresh clone with the
# engine's chunks (48 min 28 s before them). 15: max-norm below l2 and l2+l1_late (91 min before the chunks).
# Both ran on 2026-12-07, at the speed of the 15-minute 3-seed run above; on a slow day expect up to 2.2x.
TABLE9_CPU_SEEDS_DROPOUT_TIER = 8
TABLE9_CPU_SEEDS_DROPOUT_TIER_MIN = "40"
TABLE9_CPU_SEEDS_MEASURED = 15
TABLE9_CPU_SEEDS_MEASURED_MIN = "90"
TABLE9_CPU_MORE_SEEDS_TEXT = (
    f"With {TABLE9_CPU_SEEDS_DROPOUT_TIER} seeds (reglab run mnist --preset table9-cpu --seeds "
    f"{TABLE9_CPU_SEEDS_DROPOUT_TIER}; about {TABLE9_CPU_SEEDS_DROPOUT_TIER_MIN} min on 2 CPU cores) both dropout "
    "methods were significantly below each of l2, l2+l1_late and l2+kl after Holm's correction over the 15 pairs "
    f"(with fewer seeds some of those six gaps were not); with {TABLE9_CPU_SEEDS_MEASURED} (about "
    f"{TABLE9_CPU_SEEDS_MEASURED_MIN} min) max-norm was also below l2 and l2+l1_late: docs/studies.md.")
TABLE9_CPU_SEEDS_TEXT = (
    f"With {TABLE9_CPU_SEEDS_MEASURED} seeds (reglab run mnist --preset table9-cpu --seeds "
    f"{TABLE9_CPU_SEEDS_MEASURED}; about {TABLE9_CPU_SEEDS_MEASURED_MIN} min on 2 CPU cores) max-norm was also "
    "significantly below l2 and l2+l1_late after Holm's correction (p 0.03; not below l2+kl), besides both "
    "dropout methods below the whole L2 family: docs/studies.md.")
FOLLOW_UP: dict[tuple[str, str], tuple[FollowUp, ...]] = {
    ("mnist-quick", "mnist"): (FollowUp(
        "The quick net (784-256-256-10, 20 epochs) has too little room to overfit for Table 9's methods to "
        "separate. For the paper's ranking: reglab run mnist --preset table9-cpu (784-512-512-10, 50 epochs, "
        f"3 seeds; about {TABLE9_CPU_WALL_MIN} min on 2 CPU cores), where the six mean test errors fall in "
        "Table 9's order (dropout + max-norm 1.35 %, dropout + L2 1.36 %, max-norm 1.40 %, the L2 family "
        "1.44-1.52 %; with 3 seeds no gap is significant after Holm's correction; with "
        f"{TABLE9_CPU_SEEDS_DROPOUT_TIER} seeds, about {TABLE9_CPU_SEEDS_DROPOUT_TIER_MIN} min, both dropout "
        "methods are significantly below the L2 family: docs/studies.md)."),),
    ("mnist-table9-cpu", "mnist"): (
        FollowUp(TABLE9_CPU_MORE_SEEDS_TEXT, below_seeds=TABLE9_CPU_SEEDS_DROPOUT_TIER),
        FollowUp(TABLE9_CPU_SEEDS_TEXT, below_seeds=TABLE9_CPU_SEEDS_MEASURED)),
}


def follow_up(study_name: str, dataset: str, n_seeds: int) -> str | None:
    """The next command to run after the study `study_name` on `dataset` with `n_seeds` seeds, in one
    sentence: the first of its follow-ups whose seed bound `n_seeds` is under (None: none)."""
    for f in FOLLOW_UP.get((study_name, dataset), ()):
        if f.below_seeds is None or n_seeds < f.below_seeds:
            return f.text
    return None


def mnist_datasize(dataset: str = "mnist") -> DataSizeStudy:
    """When does a regularizer pay off: ``none`` and the six Table 9 methods, 3 seeds, on class-balanced
    training subsets of 500, 1,000, 2,000, 5,000, 10,000 and 50,000 (the whole split) examples.

    784-128-128-10 ReLU (half the quick net's width, so the six sizes x 21 variants fit the 10-minute
    CPU budget), SGD momentum 0.9 at batch 100, the quick preset's lr 0.1 halved (smoothly) every
    3,000 steps; every size trains ``n_steps`` = 3,000 updates (6 epochs of 50,000; 600 passes over
    500 examples) and is evaluated every 300 updates (a subset is tiled to 30,000 examples per
    epoch). Each method's values: the validation search at 1,000 and 10,000 examples below, one set
    per dataset (``DATASIZE_BY_DATASET``; ``--dataset fashion-mnist`` picks Fashion-MNIST's own).
    """
    q = DATASIZE_BY_DATASET[dataset]
    base = StudyConfig(name="mnist-datasize", data=DataConfig(name="mnist"), hidden=q["hidden"], init="he_normal",
                       optimizer="sgd", n_epochs=1, batch_size=100, seeds=DEFAULT_SEEDS,
                       methods=_sgd_table9_methods(q, none=True),
                       log_every=10, checkpoint_every=2)
    return DataSizeStudy(name="mnist-datasize", base=base, train_per_class=DATASIZE_PER_CLASS,
                         n_steps=q["n_steps"], epoch_examples=q["epoch_examples"])


DATASIZE_PER_CLASS = (50, 100, 200, 500, 1000, 0)   # x 10 classes; 0 = the whole training split (50,000)
# Net and budget: measured to fit 10 minutes on 2 CPU cores (docs/studies.md). Each method's values:
# validation search, 1 seed, 3,000 updates, at 1,000 and 10,000 training examples, picked by the mean
# validation error over the two sizes (docs/examples/datasize-search/*.toml; docs/studies.md has the
# table): l2 {1e-4, 1e-3, 5e-3} -> 1e-3; late l1 {1e-5, 1e-4, 3e-4} -> 1e-5; kl_beta {1e-3, 1e-2} -> 1e-3;
# max-norm radius {1.5, 2, 3} -> 1.5 (2 within 0.01 pp); dropout in/hidden {0.1/0.25, 0.2/0.5} -> 0.1/0.25
# for both dropout methods; the L2 of the combined methods (l2_with) and the dropout+max_norm radius were
# held at the quick preset's 1e-4 and 2.5.
DATASIZE = dict(
    hidden=(128, 128), n_steps=3000, epoch_examples=30_000,
    lr=0.1, lr_decay=0.5, lr_decay_steps=3000,
    l2=1e-3, l2_with=1e-4, l1=1e-5, l1_start=0.8,
    kl_beta=1e-3, kl_rho=0.1, kl_ema=0.9,
    max_norm=1.5, max_norm_dropout=2.5,
    dropout_input=0.1, dropout_hidden=0.25,
)
# Fashion-MNIST's own values: the same search on its validation split (docs/examples/fashion-datasize-search/;
# docs/studies.md): lr {0.01, 0.03, 0.1} -> 0.03 for every method (at 0.1 L2 and max-norm do not fit 1,000
# examples); then at lr 0.03 l2 {1e-4, 1e-3, 5e-3} -> 1e-4; every other value's search picked MNIST's.
DATASIZE_FASHION = {**DATASIZE, "lr": 0.03, "l2": 1e-4}
DATASIZE_BY_DATASET = {"mnist": DATASIZE, "fashion-mnist": DATASIZE_FASHION}


# ----------------------------------------------------------------------------
# point cloud

def pointcloud() -> StudyConfig:
    """Two moons, 200 noisy training points (10% of labels flipped), a 2-128-128-2 ReLU net.

    The unregularized net memorizes part of the flipped labels within the budget, so its
    validation error rises after its minimum (overfitting shows). Methods: no penalty, L1, L2,
    and no penalty with early stopping (patience on validation loss, best weights restored).
    Adam (Kingma & Ba's betas and eps) at lr 3e-3, minibatches of 20, 500 epochs; the L1 and L2
    coefficients and the patience were chosen on the validation split (docs/studies.md).
    """
    common = dict(lr=POINTCLOUD["lr"])
    methods = (
        MethodConfig(name="no_penalty", **common),
        MethodConfig(name="l1", l1=POINTCLOUD["l1"], **common),
        MethodConfig(name="l2", l2=POINTCLOUD["l2"], **common),
        MethodConfig(name="early_stopping", early_stopping=True, patience=POINTCLOUD["patience"],
                     monitor="val_loss", **common),
    )
    data = DataConfig(name="moons", n_points=POINTCLOUD["n_points"], noise=POINTCLOUD["noise"],
                      flip=POINTCLOUD["flip"], data_seed=0)
    return StudyConfig(name="pointcloud", data=data, hidden=(128, 128), init="he_normal", optimizer="adam",
                       n_epochs=POINTCLOUD["n_epochs"], batch_size=POINTCLOUD["batch_size"],
                       seeds=(0, 1, 2, 3, 4), methods=methods, log_every=5, checkpoint_every=50)


# data and budget set so the unregularized net overfits; l1, l2, patience: validation search
# over l1 {3e-5, 1e-4, 3e-4}, l2 {3e-4, 1e-3, 3e-3}, patience {20, 50} (docs/studies.md)
POINTCLOUD = dict(n_points=400, noise=0.25, flip=0.1, lr=3e-3, batch_size=20, n_epochs=500,
                  l1=3e-4, l2=1e-3, patience=50)


def pointcloud_datasize() -> DataSizeStudy:
    """The point-cloud study against its number of training points: 50, 100, 200, 500 and 2,000.

    The default study's net, methods and values (chosen on validation at 200 training points), 5 seeds;
    one pool of 4,000 noisy moons (2,000 train, 1,000 validation, 1,000 test, 10% of labels flipped),
    training subsets the first k of each class of the training split. Every size trains the default
    study's 5,000 Adam updates at batch 20 and is evaluated every 100 (a subset is tiled to 2,000
    points per epoch); early stopping's patience is 5 such epochs = 500 updates, the default study's
    50 epochs of 10 updates.
    """
    base = pointcloud()
    methods = tuple(dataclasses.replace(m, patience=5) if m.early_stopping else m for m in base.methods)
    data = dataclasses.replace(base.data, n_points=4000)
    base = base.replace(name="pointcloud-datasize", data=data, methods=methods, n_epochs=1, checkpoint_every=10)
    return DataSizeStudy(name="pointcloud-datasize", base=base, train_per_class=(25, 50, 100, 250, 0),
                         n_steps=5000, epoch_examples=2000, reference="no_penalty")


# ----------------------------------------------------------------------------
# registry and overrides

STUDIES: dict[str, dict[str, Callable[[], StudyConfig | DataSizeStudy]]] = {
    "mnist": {"quick": mnist_quick, "seed": mnist_seed, "table9-cpu": mnist_table9_cpu, "paper": mnist_paper,
              "datasize": mnist_datasize},
    "pointcloud": {"default": pointcloud, "datasize": pointcloud_datasize},
}
# the image presets whose values were validated on each dataset they accept (the others carry MNIST's):
# {preset: {dataset: values}}; ``get`` builds these with the dataset's own values
VALUES_BY_DATASET = {"quick": QUICK_BY_DATASET, "datasize": DATASIZE_BY_DATASET}


def values_note(study: str, preset: str | None, dataset: str | None) -> str | None:
    """One line when an image preset runs on a dataset its values were not validated on (None otherwise)."""
    preset = preset or DEFAULT_PRESET.get(study)
    if study != "mnist" or dataset in (None, "mnist") or dataset in VALUES_BY_DATASET.get(preset, {}):
        return None
    own = ", ".join(f"--preset {p}" for p, by in VALUES_BY_DATASET.items() if dataset in by)
    return (f"reglab: note: --preset {preset}'s values were validated on MNIST, not on {dataset}; its results "
            f"there are not tuned ones. {own} ha{'ve' if ',' in own else 's'} values of {dataset}'s own "
            "(docs/studies.md), and `reglab tune` searches any study's on its validation split.")


DEFAULT_STUDY = "mnist"
DEFAULT_PRESET = {"mnist": "quick", "pointcloud": "default"}
MAX_SEEDS = 10_000   # --seeds N: at most this many (each seed is a variant of every method; beyond it, memory)
STUDY_DATASETS = {"mnist": IMAGE_DATASETS, "pointcloud": POINTCLOUDS}

SMOKE_PER_CLASS = 30     # images: 30 per class in each split = 300 examples each
SMOKE_POINTS = 240       # point clouds: 120 train, 60 val, 60 test
SMOKE_EPOCHS = 2


def get(study: str = DEFAULT_STUDY, preset: str | None = None, *, seeds: int | None = None,
        dataset: str | None = None, resolution: int | None = None, epochs: int | None = None,
        smoke: bool = False, device: str | None = None, matmul_dtype: str | None = None) -> StudyConfig:
    """The named study's preset with command-line overrides applied.

    Args:
        seeds: train every method with seeds 0..seeds-1.
        dataset: another dataset of the same kind (fashion-mnist for mnist; a point cloud for pointcloud).
        resolution: 28 or 7 (images only).
        epochs: number of epochs (step-based schedules keep their time constants).
        smoke: tiny mode: a few hundred examples, at most 2 epochs (for the test suite).
        device: "cpu" or "cuda".
        matmul_dtype: "float32" or "bfloat16" (the training products' operands; see reglab.engine.mlp).
    """
    if study not in STUDIES:
        raise ReglabError(f"unknown study {study!r}; allowed: {', '.join(STUDIES)}. Fix: reglab run mnist.")
    preset = preset or DEFAULT_PRESET[study]
    if preset not in STUDIES[study]:
        raise ReglabError(f"unknown preset {preset!r} for study {study!r}; allowed: {', '.join(STUDIES[study])}. "
                          f"Fix: --preset {DEFAULT_PRESET[study]}.")
    if study == "mnist" and dataset in VALUES_BY_DATASET.get(preset, {}):
        cfg = STUDIES[study][preset](dataset)  # the dataset's own validated values
    else:
        cfg = STUDIES[study][preset]()
    if isinstance(cfg, DataSizeStudy):
        return datasize_overrides(cfg, study=study, seeds=seeds, dataset=dataset, resolution=resolution,
                                  epochs=epochs, smoke=smoke, device=device, matmul_dtype=matmul_dtype)
    return apply_overrides(cfg, study=study, seeds=seeds, dataset=dataset, resolution=resolution,
                           epochs=epochs, smoke=smoke, device=device, matmul_dtype=matmul_dtype)


def datasize_overrides(ds: DataSizeStudy, *, study: str | None = None, epochs: int | None = None,
                       smoke: bool = False, **overrides) -> DataSizeStudy:
    """A data-size study with the command-line overrides applied to its base study.

    ``--epochs`` does not apply (every size trains the study's ``n_steps`` updates). Smoke: the
    images' 30-per-class splits, sizes of 5, 10 and 30 per class (point clouds: 10, 20 and 60 of the
    120 training points), 12 updates.
    """
    if epochs is not None:
        raise ReglabError("--epochs does not apply to a data-size study: every size trains the same number of "
                          f"updates ({ds.n_steps}). Fix: drop --epochs.")
    base = apply_overrides(ds.base, study=study, **overrides)
    name = base.name
    if smoke:
        base = smoke_version(base)
        name = base.name
        if base.data.is_image:
            return ds.replace(name=name, base=base, train_per_class=(5, 10, 0), n_steps=12, epoch_examples=200)
        return ds.replace(name=name, base=base, train_per_class=(10, 20, 0), n_steps=12, epoch_examples=40)
    return ds.replace(name=name, base=base)


def apply_overrides(cfg: StudyConfig, *, study: str | None = None, seeds: int | None = None,
                    dataset: str | None = None, resolution: int | None = None, epochs: int | None = None,
                    smoke: bool = False, device: str | None = None, matmul_dtype: str | None = None) -> StudyConfig:
    """`cfg` with the command-line overrides; each bad value is one ReglabError naming the option."""
    data = cfg.data
    name = cfg.name
    if dataset is not None:
        allowed = STUDY_DATASETS.get(study, IMAGE_DATASETS if data.is_image else POINTCLOUDS)
        if dataset not in allowed:
            raise ReglabError(f"--dataset must be one of {', '.join(allowed)} for this study; got {dataset!r}. "
                              f"Fix: --dataset {allowed[0]}.")
        if dataset != data.name:
            name = name.replace(data.name, dataset) if data.name in name else f"{dataset}-{name}"
        data = dataclasses.replace(data, name=dataset)
    if resolution is not None:
        if not data.is_image:
            raise ReglabError(f"--resolution applies to image datasets only; this study uses {data.name!r}. "
                              "Fix: drop --resolution.")
        data = dataclasses.replace(data, resolution=resolution)
        if resolution != 28:
            name = f"{name}-{resolution}px"
    changes: dict = {"data": data, "name": name}
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
            raise ReglabError(f"--seeds must be a whole number from 1 to {MAX_SEEDS:,}; got {seeds!r}. "
                              "Fix: give a count in that range (each seed is one more variant of every method).")
        changes["seeds"] = tuple(range(seeds))
    if epochs is not None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ReglabError(f"--epochs must be a whole number >= 1; got {epochs!r}. Fix: give 1 or more.")
        changes["n_epochs"] = epochs
    if device is not None:
        changes["device"] = device
    if matmul_dtype is not None:
        changes["matmul_dtype"] = matmul_dtype
    cfg = cfg.replace(**changes)
    return smoke_version(cfg) if smoke else cfg


def smoke_version(cfg: StudyConfig) -> StudyConfig:
    """Tiny mode: a few hundred examples, at most 2 epochs, a checkpoint every epoch."""
    if cfg.data.is_image:
        data = dataclasses.replace(cfg.data, subset_per_class=SMOKE_PER_CLASS)
    else:
        data = dataclasses.replace(cfg.data, n_points=SMOKE_POINTS)
    return cfg.replace(name=f"{cfg.name}-smoke", data=data, n_epochs=min(cfg.n_epochs, SMOKE_EPOCHS),
                       log_every=1, checkpoint_every=1,
                       batch_size=min(cfg.batch_size, 50))
