"""Benchmark: what batching buys on this CPU, each choice against its alternative in one run.

    .venv/bin/python benchmarks/bench_batching.py [--data-dir DIR] [--repeats 5] [--json OUT.json]

1. One batch against each method alone: the quick preset's net, 6 methods x
   3 and x 5 seeds, all variants in one Trainer against each method's seeds
   in a Trainer of its own, one method after the other (the reference of the
   study's ``batching_speedup``). The second is also what stepping the batch
   in cache-sized groups through the epoch would cost (3 variants' weights and
   momentum are 6 MB, 18 variants' 38 MB): measured and not taken
   (docs/performance.md). Seconds per variant-step of training (``--steps``
   minibatches of 100, after a warm-up epoch), alternating, medians,
   per-repeat ratios min..max.
2. Compaction (stopped variants leave the batch): the point-cloud preset (its
   early-stopping method stops after ~90-120 of 500 epochs) trained whole,
   with compaction and with it switched off, and each method alone; training
   seconds of the whole study and the batching speed-up (sum of the methods
   alone / the study) both ways.

Only training steps are timed (the engine's ``epoch_time_s``), never
evaluation. The machine is shared: read the ratios, each measured within one
repeat, not the absolute times; check ``uptime`` first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_study import ReglabPath, load_mnist, quick_preset, study_config  # noqa: E402

from reglab.data import load_dataset  # noqa: E402
from reglab.engine import Trainer  # noqa: E402
from reglab.study import presets  # noqa: E402

def batch_vs_alone(data_dir: str | None, seeds: int, steps: int, repeats: int, log) -> dict:
    preset, _ = quick_preset()
    cfg = study_config(preset, preset.hidden, seeds, n_epochs=10_000)
    dataset, _ = load_mnist(data_dir, cfg.data)
    paths = {"one_batch": [ReglabPath(cfg, dataset, steps)],
             "alone": [ReglabPath(cfg.replace(methods=(m,)), dataset, steps) for m in cfg.methods]}
    for ps in paths.values():          # warm-up epoch
        for p in ps:
            p.train()
    per_variant_step = {name: [] for name in paths}
    for _ in range(repeats):
        for name, ps in paths.items():
            per_variant_step[name].append(sum(p.train() for p in ps) / (steps * cfg.n_variants))
    med = {k: statistics.median(v) for k, v in per_variant_step.items()}
    ratios = {f"{a}/{b}": [x / y for x, y in zip(per_variant_step[a], per_variant_step[b])]
              for a, b in (("alone", "one_batch"),)}
    row = {"net": "784-" + "-".join(map(str, preset.hidden)) + "-10", "n_variants": cfg.n_variants,
           "ms_per_variant_step": {k: 1e3 * v for k, v in med.items()},
           "ratios": {k: {"median": statistics.median(v), "min": min(v), "max": max(v)} for k, v in ratios.items()}}
    log(f"{row['net']}, {cfg.n_variants} variants: ms per variant-step "
        + ", ".join(f"{k} {v:.3f}" for k, v in row["ms_per_variant_step"].items()))
    for k, r in row["ratios"].items():
        log(f"    {k:20s} {r['median']:.3f}x ({r['min']:.3f}..{r['max']:.3f})")
    return row


def _train_seconds(cfg, dataset, compact: bool = True) -> tuple[float, list]:
    trainer = Trainer(cfg, dataset)
    if not compact:   # the engine without compaction: stopped variants stay in the batch, frozen
        trainer._compact = lambda: None
    seconds = 0.0
    while not trainer.done:
        seconds += float(trainer.train_epoch().metrics["epoch_time_s"][0])
    return seconds, [r["stop_epoch"] for r in trainer.final_summary()["variants"]]


def compaction(repeats: int, epochs: int | None, log) -> dict:
    cfg = presets.pointcloud()
    if epochs:
        cfg = cfg.replace(n_epochs=epochs)
    dataset = load_dataset(cfg.data)
    runs = {"compacted": [], "not_compacted": [], "alone": []}
    stops = None
    for _ in range(repeats):
        s, stops = _train_seconds(cfg, dataset)
        runs["compacted"].append(s)
        runs["not_compacted"].append(_train_seconds(cfg, dataset, compact=False)[0])
        runs["alone"].append(sum(_train_seconds(cfg.replace(methods=(m,)), dataset)[0] for m in cfg.methods))
    med = {k: statistics.median(v) for k, v in runs.items()}
    row = {"study": f"pointcloud ({cfg.n_variants} variants, {cfg.n_epochs} epochs)", "stop_epochs": stops,
           "train_s": med,
           "speedup_of_compaction": statistics.median(b / a for a, b in zip(runs["compacted"], runs["not_compacted"])),
           "batching_speedup_compacted": statistics.median(c / a for a, c in zip(runs["compacted"], runs["alone"])),
           "batching_speedup_not_compacted": statistics.median(
               c / b for b, c in zip(runs["not_compacted"], runs["alone"]))}
    log(f"{row['study']}, early stops at epochs {sorted(e for e in stops if e)}: training s "
        + ", ".join(f"{k} {v:.2f}" for k, v in med.items()))
    log(f"    compaction: {row['speedup_of_compaction']:.2f}x; batching speed-up (methods alone / study) "
        f"{row['batching_speedup_compacted']:.2f} with compaction, {row['batching_speedup_not_compacted']:.2f} without")
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("REGLAB_DATA_DIR"),
                   help="folder holding mnist/ (default: $REGLAB_DATA_DIR; none: random data of MNIST's shape)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=50, help="minibatches per timed epoch of part 1 (default 50)")
    p.add_argument("--seeds", type=int, nargs="+", default=[3, 5], help="seeds per method in part 1")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--pointcloud-epochs", type=int, help="shorten part 2 (default: the preset's 500)")
    p.add_argument("--json", help="also write every number to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f}", flush=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    result = {"threads": args.threads, "load_average": os.getloadavg(),
              "batch_vs_alone": [batch_vs_alone(args.data_dir, s, args.steps, args.repeats, log) for s in args.seeds],
              "compaction": compaction(args.repeats, args.pointcloud_epochs, log)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
