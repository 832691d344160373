"""Would reglab gain from stepping its variants in single-thread shards? One measurement.

    .venv/bin/python benchmarks/bench_shards.py [--net tiny|quick|paper] [--seeds 5] [--steps 40]

Trains the same study two ways, alternating, in one process:
  (a) one ``reglab.engine.Trainer`` over every method-seed, torch on ``--threads`` threads
      (what ``bench_study.py`` measures);
  (b) the methods dealt into ``--shards`` sub-studies, one Trainer each, all stepped at the
      same time from their own Python threads with torch on ONE thread (torch releases the
      GIL inside every operator, so the shards run in parallel on separate cores).
The work is identical; (b) trades the 2-thread split of every operator (small operators do
not split at all, and every parallel region waits for its slowest thread) for independent
single-thread streams. Reported: seconds per epoch of each (the engine's own timer around its
training steps; for (b) the slowest shard's), medians of the repeats, and their ratio. Random data of MNIST shape (the cost of a step does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_study import PAPER_NET, TINY_NET, ReglabPath, load_mnist, quick_preset, study_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", choices=["tiny", "quick", "paper"], default="quick")
    p.add_argument("--seeds", type=int, default=5, help="seeds per method (default 5)")
    p.add_argument("--steps", type=int, default=40, help="minibatches per measurement (default 40)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads of the unsharded run")
    args = p.parse_args(argv)

    preset, _ = quick_preset()
    hidden = {"tiny": TINY_NET, "quick": preset.hidden, "paper": PAPER_NET}[args.net]
    cfg = study_config(preset, hidden, args.seeds, n_epochs=10_000)
    dataset, _ = load_mnist(None, cfg.data)
    # methods dealt round-robin, so that each shard gets a dropout method (they cost the most)
    shard_cfgs = [cfg.replace(methods=cfg.methods[k::args.shards]) for k in range(args.shards)]
    whole = ReglabPath(cfg, dataset, args.steps)
    shards = [ReglabPath(c, dataset, args.steps) for c in shard_cfgs]

    def unsharded() -> float:
        torch.set_num_threads(args.threads)
        return whole.train()

    def sharded() -> float:
        """The slowest shard's training-step seconds (the shards start together)."""
        torch.set_num_threads(1)
        seconds = [0.0] * len(shards)

        def work(k: int) -> None:
            seconds[k] = shards[k].train()

        threads = [threading.Thread(target=work, args=(k,)) for k in range(len(shards))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return max(seconds)

    unsharded()
    sharded()
    scale = 500 / args.steps                 # epoch of 50,000 examples, batch 100
    a, b = [], []
    for _ in range(args.repeats):
        a.append(unsharded() * scale)
        b.append(sharded() * scale)
        print(f"  one trainer ({args.threads} threads) {a[-1]:.2f} s/epoch   "
              f"{args.shards} single-thread shards {b[-1]:.2f} s/epoch", flush=True)
    ratios = [x / y for x, y in zip(a, b)]
    print(f"784-{'-'.join(map(str, hidden))}-10, {cfg.n_variants} method-seeds: one trainer "
          f"{statistics.median(a):.2f} s/epoch, {args.shards} shards {statistics.median(b):.2f} s/epoch, "
          f"ratio {statistics.median(ratios):.2f}x ({min(ratios):.2f}..{max(ratios):.2f}); training steps "
          f"only (the engine's epoch_time_s of {args.steps}-step epochs), scaled to 500 steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
