"""Where one reglab training step spends its time: torch.profiler over a few engine steps.

    .venv/bin/python benchmarks/profile_engine.py [--net tiny|quick|table9-cpu|paper] [--seeds 5] [--steps 20]

Prints (1) the step time and the time of the same step's matrix products run
alone (same shapes, same calls: the floor at batch 100), (2) the profiler's
operators sorted by self CPU time, grouped into matrix products, dropout
random numbers, and everything else (elementwise passes, reductions, Python).
Random data of MNIST shape: the cost of a step does not depend on the pixels.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_study import MatmulFloor, ReglabPath, add_net_argument, load_mnist, net_study, study_config  # noqa: E402

GEMM_OPS = {"aten::bmm", "aten::baddbmm", "aten::baddbmm_", "aten::mm", "aten::addmm", "aten::matmul"}
RANDOM_OPS = {"aten::random_", "aten::bernoulli_", "aten::uniform_"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_net_argument(p)
    p.add_argument("--seeds", type=int, default=5, help="seeds per method (default 5)")
    p.add_argument("--steps", type=int, default=20, help="profiled steps (default 20)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--rows", type=int, default=25, help="operators to list (default 25)")
    p.add_argument("--matmul-dtype", choices=["float32", "bfloat16"], default="float32",
                   help="the engine's StudyConfig.matmul_dtype (default float32)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    preset, hidden = net_study(args.net)
    cfg = study_config(preset, hidden, args.seeds, n_epochs=10_000).replace(matmul_dtype=args.matmul_dtype)
    dataset, _ = load_mnist(None, cfg.data)
    engine = ReglabPath(cfg, dataset, args.steps)
    engine.train()                                           # warm-up epoch
    step_s = engine.train() / args.steps
    sizes = [784, *hidden, 10]
    floor = MatmulFloor(sizes, cfg.n_variants, cfg.batch_size)
    floor.train(1)
    floor_s = floor.train(args.steps) / args.steps
    print(f"784-{'-'.join(map(str, hidden))}-10, {cfg.n_variants} method-seeds, {args.threads} threads: "
          f"step {1e3 * step_s:.2f} ms, its matrix products alone {1e3 * floor_s:.2f} ms "
          f"({100 * floor_s / step_s:.0f}%)")

    # the engine's private step loop (chunk by chunk, as an epoch runs it), so that end-of-epoch work
    # (evaluation, weight statistics) stays out of the profile; diagnostic use only
    trainer, b = engine.trainer, cfg.batch_size
    order = torch.randperm(trainer.n_train)
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.no_grad():
        trainer._run_steps(trainer.step + 1, [order[i * b:(i + 1) * b] for i in range(args.steps)])
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    groups: dict[str, float] = defaultdict(float)
    for e in events:
        kind = "matrix products" if e.key in GEMM_OPS else "dropout random numbers" if e.key in RANDOM_OPS else "rest"
        groups[kind] += e.self_cpu_time_total
    print(f"self CPU time by kind over {args.steps} training steps: "
          + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(groups.items(), key=lambda kv: -kv[1])))
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
