"""Benchmark: what the guard around a plugin's hooks costs (``plugin_guard.GuardedHooks``), against the same
regularizer unguarded, in one run.

    .venv/bin/python benchmarks/bench_plugin_guard.py [--data-dir DIR] [--steps 50] [--repeats 5] [--json OUT.json]

A plugin's bound hooks are wrapped so that an exception names the plugin, the
regularizer and the hook, and a hook that turns a variant non-finite is named as
the reason it diverged (docs/regularizers.md); the built-ins are not wrapped.
The wrapper is one more Python call per hook per step, for every hook
(``plugin_guard.HOOK_NAMES``), most of them the base class's no-ops; a hook the
plugin defines also costs two finiteness reductions of the tensor it writes.
Two measurements:

1. the study: the quick preset's net, ``l2`` and ``l2+group_lasso`` (the docs'
   worked example plugin, docs/examples/plugin/) x 3 seeds, one Trainer with
   the plugin as loaded (guarded) and one with the same ``Regularizer``
   object registered as a built-in is (unguarded); seconds of the training
   steps of one engine epoch of ``--steps`` minibatches (after a warm-up
   epoch), alternating, medians, the per-repeat ratio guarded / unguarded;
2. one hook call: a guarded and an unguarded no-op hook (the wrapper alone,
   without the finiteness check), microseconds per call (``timeit``, best of
   5), times the hooks a step calls.

The machine is shared: read the ratios, each measured within one repeat;
check ``uptime`` first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import timeit
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "docs" / "examples" / "plugin"))
from bench_study import load_mnist, quick_preset, study_config  # noqa: E402

from reglab.data.dataset import Dataset  # noqa: E402
from reglab.engine import Trainer  # noqa: E402
from reglab.engine.plugin_guard import HOOK_NAMES, GuardedHooks  # noqa: E402
from reglab.engine.registry import for_study, study_from_dict  # noqa: E402
from reglab.engine.regularizer import Hooks  # noqa: E402

PLUGIN = "reglab_group_lasso"


def plugin_study(n_seeds: int):
    """The quick preset's l2 and the same with the group-lasso plugin, ``n_seeds`` seeds each."""
    preset, _ = quick_preset()
    l2 = next(m for m in preset.methods if m.name == "l2")
    base = study_config(preset, preset.hidden, n_seeds, n_epochs=10_000)
    d = {"name": "bench-plugin-guard", "plugins": [PLUGIN], "hidden": list(base.hidden), "init": base.init,
         "optimizer": base.optimizer, "n_epochs": base.n_epochs, "batch_size": base.batch_size,
         "seeds": list(base.seeds), "log_every": base.log_every, "checkpoint_every": base.checkpoint_every,
         "device": "cpu", "data": {"name": "mnist"},
         "methods": [{"name": "l2", "lr": l2.lr, "momentum": l2.momentum, "l2": l2.l2},
                     {"name": "l2+group_lasso", "lr": l2.lr, "momentum": l2.momentum, "l2": l2.l2,
                      "group_lasso": 1e-4}]}
    return study_from_dict(d, where="bench_plugin_guard")


def timing_split(dataset: Dataset, n_steps: int, batch: int) -> Dataset:
    """The first ``n_steps`` minibatches of training data; one minibatch of validation and test."""
    n = n_steps * batch
    return Dataset(dataset.name, dataset.x_train[:n], dataset.y_train[:n], dataset.x_val[:batch],
                   dataset.y_val[:batch], dataset.x_test[:batch], dataset.y_test[:batch], dataset.n_classes,
                   dataset.info)


def study_ratio(data_dir: str | None, n_steps: int, repeats: int, log) -> dict:
    cfg = plugin_study(3)
    dataset, source = load_mnist(data_dir, cfg.data)
    timing = timing_split(dataset, n_steps, cfg.batch_size)
    guarded = for_study(cfg).regularizers
    plugin = __import__(PLUGIN)
    assert guarded["group_lasso"] is not plugin.GROUP_LASSO            # the registry's guarded copy
    unguarded = {**guarded, "group_lasso": plugin.GROUP_LASSO}
    trainers = {"guarded": Trainer(cfg, timing, regularizers=guarded),
                "unguarded": Trainer(cfg, timing, regularizers=unguarded)}
    for t in trainers.values():       # warm-up epoch
        t.train_epoch()
    seconds = {k: [] for k in trainers}
    for _ in range(repeats):
        for k, t in trainers.items():
            seconds[k].append(float(t.train_epoch().metrics["epoch_time_s"][0]))
    ratios = [g / u for g, u in zip(seconds["guarded"], seconds["unguarded"])]
    row = {"net": "784-" + "-".join(map(str, cfg.hidden)) + "-10", "n_variants": cfg.n_variants,
           "steps": n_steps, "data": source,
           "ms_per_step": {k: 1e3 * statistics.median(v) / n_steps for k, v in seconds.items()},
           "guarded/unguarded": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}}
    log(f"{row['net']}, {cfg.n_variants} variants (l2, l2+group_lasso x 3 seeds), {n_steps} steps x {repeats}: "
        + ", ".join(f"{k} {v:.3f} ms/step" for k, v in row["ms_per_step"].items()))
    r = row["guarded/unguarded"]
    log(f"    guarded / unguarded  {r['median']:.4f}x ({r['min']:.4f}..{r['max']:.4f})")
    return row


def call_cost(log) -> dict:
    raw = Hooks()
    guarded = GuardedHooks(raw, PLUGIN, "group_lasso")
    n = 200_000
    us = {name: 1e6 * min(timeit.repeat(lambda h=h: h.draw(100), number=n, repeat=5)) / n
          for name, h in (("unguarded", raw), ("guarded", guarded))}
    extra = us["guarded"] - us["unguarded"]
    row = {"us_per_call": us, "extra_us_per_call": extra, "hooks": len(HOOK_NAMES),
           "extra_us_per_step_upper": extra * (len(HOOK_NAMES) + 2)}
    log(f"one no-op hook call: unguarded {us['unguarded']:.3f} us, guarded {us['guarded']:.3f} us "
        f"(+{extra:.3f} us); with two hidden layers a step makes at most {len(HOOK_NAMES) + 2} hook calls of a "
        f"regularizer: <= {row['extra_us_per_step_upper']:.1f} us per step")
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="folder holding mnist/ (default: random data, timing only)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = print
    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    result = {"study": study_ratio(args.data_dir, args.steps, args.repeats, log), "call": call_cost(log)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
