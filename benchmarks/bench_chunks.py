"""Does stepping the variants in cache-sized chunks pay? The engine's chunks against one batch, one run.

    .venv/bin/python benchmarks/bench_chunks.py [--net tiny|quick|table9-cpu|paper] [--seeds 3] [--steps 100]
        [--repeats 4] [--budget-mib N] [--hidden H,H,...] [--min-variants N]

Trains the same study two ways in one process, alternating: (a) every live variant in one batch, each
step computing all of them (the engine before chunks); (b) the engine's default, its live variants cut
into chunks (``reglab.engine.batch.step_chunks``; ``--budget-mib`` overrides the budget, ``--min-variants``
the fewest variants a chunk may hold) and each chunk run through the whole epoch's steps before the next.
Same minibatches, same arithmetic, same records. ``--hidden`` times other hidden widths with ``--net``'s
methods (wider nets: docs/performance.md).
Reported: milliseconds per step of each (the engine's own timer around an epoch's training steps),
medians of the repeats, and their ratio. Random data of MNIST shape (the cost of a step does not depend
on the pixels); torch on ``--threads`` threads, denormals flushed as the reglab command does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_study import ReglabPath, add_net_argument, load_mnist, net_study, study_config  # noqa: E402

from reglab.engine import batch  # noqa: E402

ONE_BATCH = 1 << 62                         # a budget no study exceeds: every live variant in one chunk


def hidden_widths(text: str) -> tuple[int, ...]:
    """``--hidden``: "1024,1024" -> (1024, 1024); anything else is argparse's one-line error."""
    try:
        widths = tuple(int(h) for h in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"must be positive integers separated by commas, e.g. 1024,1024; got {text!r}")
    return widths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_net_argument(p, "table9-cpu")
    p.add_argument("--seeds", type=int, default=3, help="seeds per method (default 3)")
    p.add_argument("--steps", type=int, default=100, help="minibatches per measurement (default 100)")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--budget-mib", type=float, help="the chunks' budget in MiB, > 0 (default the engine's)")
    p.add_argument("--hidden", type=hidden_widths,
                   help="comma-separated hidden widths instead of --net's (its methods kept)")
    p.add_argument("--min-variants", type=int,
                   help=f"the fewest variants a chunk may hold, >= 1 (default the engine's {batch.MIN_CHUNK_VARIANTS})")
    args = p.parse_args(argv)
    if args.budget_mib is not None and args.budget_mib <= 0:
        p.error(f"--budget-mib must be > 0; got {args.budget_mib}")
    if args.min_variants is not None and args.min_variants < 1:
        p.error(f"--min-variants must be >= 1; got {args.min_variants}")
    if args.min_variants is not None:
        batch.MIN_CHUNK_VARIANTS = args.min_variants
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    preset, hidden = net_study(args.net)
    hidden = args.hidden or hidden
    cfg = study_config(preset, hidden, args.seeds, n_epochs=10_000)
    dataset, _ = load_mnist(None, cfg.data)
    budget_bytes = None if args.budget_mib is None else int(args.budget_mib * 2**20)
    one = ReglabPath(cfg, dataset, args.steps, chunk_bytes=ONE_BATCH)
    chunked = ReglabPath(cfg, dataset, args.steps, chunk_bytes=budget_bytes)
    sizes = [len(step.batch.live) for step in chunked.trainer._steps]
    one.train()
    chunked.train()
    a, b = [], []
    for _ in range(args.repeats):
        a.append(1e3 * one.train() / args.steps)
        b.append(1e3 * chunked.train() / args.steps)
        print(f"  one batch {a[-1]:.1f} ms/step   chunks {b[-1]:.1f} ms/step", flush=True)
    ratios = [x / y for x, y in zip(a, b)]
    print(f"784-{'-'.join(map(str, hidden))}-10, {cfg.n_variants} method-seeds, {args.threads} threads: one batch "
          f"{statistics.median(a):.1f} ms/step, {len(sizes)} chunks of {sizes} variants "
          f"{statistics.median(b):.1f} ms/step, ratio {statistics.median(ratios):.2f}x "
          f"({min(ratios):.2f}..{max(ratios):.2f}); training steps only, {args.steps}-step epochs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
