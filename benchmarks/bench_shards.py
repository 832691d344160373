"""Would reglab gain from stepping its variants in single-thread shards? One measurement.

    .venv/bin/python benchmarks/bench_shards.py [--net tiny|quick|table9-cpu|paper] [--seeds 5] [--steps 40]
        [--shards 2] [--processes]

Trains the same study two ways (three with ``--processes``), alternating:
  (a) one ``reglab.engine.Trainer`` over every method-seed, torch on ``--threads`` threads
      (what ``bench_study.py`` measures);
  (b) the methods dealt into ``--shards`` sub-studies, one Trainer each, all stepped at the
      same time from their own Python threads with torch on ONE thread (torch releases the
      GIL inside every operator, so the shards run in parallel on separate cores; the Python
      between operators still runs one thread at a time);
  (c) ``--processes``: the same shards, each in its own process (spawned, torch on one thread,
      denormals flushed as in (a) and (b)), all released at once by a barrier: no GIL shared.
(Shards one after another, each through its epoch, are what the engine's chunks do: bench_chunks.py.)
The work is identical; (b) and (c) trade the 2-thread split of every operator (small operators do
not split at all, and every parallel region waits for its slowest thread) for independent
single-thread streams. Reported: seconds per epoch of each (the engine's own timer around its
training steps; for (b) and (c) the slowest shard's), medians of the repeats, and their ratios.
Random data of MNIST shape (the cost of a step does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import threading
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_study import ReglabPath, add_net_argument, load_mnist, net_study, study_config  # noqa: E402


def shard_paths(net: str, n_seeds: int, n_steps: int, n_shards: int) -> tuple[ReglabPath, list[ReglabPath], str, int]:
    """The whole study, its shards (methods dealt round-robin, so that each shard gets a dropout method:
    they cost the most), the net's name and the number of method-seeds."""
    preset, hidden = net_study(net)
    cfg = study_config(preset, hidden, n_seeds, n_epochs=10_000)
    dataset, _ = load_mnist(None, cfg.data)
    shards = [ReglabPath(cfg.replace(methods=cfg.methods[k::n_shards]), dataset, n_steps) for k in range(n_shards)]
    return ReglabPath(cfg, dataset, n_steps), shards, f"784-{'-'.join(map(str, hidden))}-10", cfg.n_variants


def _shard_process(net: str, n_seeds: int, n_steps: int, n_shards: int, k: int, repeats: int,
                   barrier, results) -> None:
    """(c): shard ``k`` in this process, one torch thread; one warm-up epoch (then a barrier, so that no
    warm-up overlaps a timing), then ``repeats`` epochs, each started when every shard and the parent reach
    the barrier; its epoch seconds go to ``results``."""
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    shard = shard_paths(net, n_seeds, n_steps, n_shards)[1][k]
    shard.train()
    barrier.wait()                          # every shard warm: the parent's timings start after this
    for r in range(repeats):
        barrier.wait()
        results.put((r, k, shard.train()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_net_argument(p)
    p.add_argument("--seeds", type=int, default=5, help="seeds per method (default 5)")
    p.add_argument("--steps", type=int, default=40, help="minibatches per measurement (default 40)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads of the unsharded run")
    p.add_argument("--processes", action="store_true",
                   help="also time the shards in one process each (c), besides Python threads (b)")
    args = p.parse_args(argv)
    torch.set_flush_denormal(True)                # as the reglab command does in every torch thread

    whole, shards, net_name, n_variants = shard_paths(args.net, args.seeds, args.steps, args.shards)

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

    processes, barrier, results = [], None, None
    if args.processes:
        ctx = multiprocessing.get_context("spawn")
        barrier, results = ctx.Barrier(args.shards + 1), ctx.Queue()
        processes = [ctx.Process(target=_shard_process, daemon=True,
                                 args=(args.net, args.seeds, args.steps, args.shards, k, args.repeats, barrier,
                                       results))
                     for k in range(args.shards)]
        for proc in processes:
            proc.start()

    def in_processes() -> float:
        """The slowest shard process's training-step seconds; the parent only releases them and waits."""
        barrier.wait()
        return max(results.get()[2] for _ in processes)

    unsharded()
    sharded()
    if processes:
        barrier.wait()
    scale = 500 / args.steps                 # epoch of 50,000 examples, batch 100
    a, b, c = [], [], []
    for _ in range(args.repeats):
        a.append(unsharded() * scale)
        b.append(sharded() * scale)
        line = (f"  one trainer ({args.threads} threads) {a[-1]:.2f} s/epoch   "
                f"{args.shards} single-thread shards {b[-1]:.2f} s/epoch")
        if processes:
            c.append(in_processes() * scale)
            line += f"   {args.shards} single-thread processes {c[-1]:.2f} s/epoch"
        print(line, flush=True)
    for proc in processes:
        proc.join()

    def ratio(x: list[float], y: list[float]) -> str:
        r = [p / q for p, q in zip(x, y)]
        return f"{statistics.median(r):.2f}x ({min(r):.2f}..{max(r):.2f})"

    summary = (f"{net_name}, {n_variants} method-seeds: one trainer {statistics.median(a):.2f} s/epoch, "
               f"{args.shards} shards {statistics.median(b):.2f} s/epoch, ratio {ratio(a, b)}")
    if processes:
        summary += (f"; {args.shards} processes {statistics.median(c):.2f} s/epoch, ratio {ratio(a, c)}")
    print(summary + f"; training steps only (the engine's epoch_time_s of {args.steps}-step epochs), scaled to "
          "500 steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
