"""Benchmark: a whole MNIST regularization study, reglab's batched engine against the hand loop.

    .venv/bin/python benchmarks/bench_study.py [--quick] [--data-dir DIR] [--json OUT.json]

For each net (784-32-10, the quick preset's net, 784-1024-1024-2048-10; with
``--nets table9-cpu`` also that preset's 784-512-512-10 with its own values) and
each seed count (1 and 5 seeds per method) it trains the six methods of
Srivastava et al. 2014, Table 9 two ways in this one process, alternating and
repeated: (a) the hand loop of ``hand_loop.py`` (one ``nn.Sequential`` per
method-seed, one after another) and (b) ``reglab.engine.Trainer`` (every
method-seed in one batched model). Each repeat also times a large square fp32
matrix product, so the GEMM peak is measured under the same load.

What is timed: training steps only (forward, backward, penalties, update,
projection), after a warm-up, never evaluation. Each measurement runs a
fraction of an epoch (``--steps`` minibatches of 100 per method-seed) and is
scaled to a whole epoch of the training split; the fraction is printed.

Reported per configuration (medians over the repeats):
  * seconds per epoch of the whole study, for each path;
  * hand / reglab: the speed-up per method-seed (both paths train the same
    method-seeds, so the ratio of study times is the ratio per method-seed);
    the median of the per-repeat ratios, with their min..max as the noise;
  * achieved GFLOP/s = 6 x weights x examples / seconds, where weights counts
    every weight matrix entry of every method-seed and examples is the epoch's
    training examples (6 = 2 forward + 4 backward flops per weight and example;
    this over-counts a little, since the first layer needs no input gradient),
    and its fraction of the GEMM peak measured in the same run.

With bfloat16 (the default; ``--no-bfloat16`` skips it) each repeat also times
reglab with ``matmul_dtype="bfloat16"``, the hand loop under
``torch.autocast("cpu", dtype=torch.bfloat16)`` (the same precision, written
the way a user asks PyTorch for it) and a square bfloat16 product (its GEMM
peak); a second table compares them. The issue's targets are judged on the
float32 table (same arithmetic both ways); the bfloat16 table says what a
user gets by switching precision, at equal precision and against float32.

Then a fairness check: both paths train the same study for a few epochs and
their test errors must agree within seed noise (Welch 95% interval of the
difference of the means per method, Bonferroni-corrected over the methods);
with bfloat16, reglab's bfloat16 study is held to the float32 hand loop too.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import reglab
from reglab import stats
from reglab.config import INF, DataConfig, StudyConfig
from reglab.data import Dataset, load_dataset
from reglab.errors import ReglabError
from reglab.study import presets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hand_loop import HandStudy  # noqa: E402  (sibling script module)

TINY_NET = (32,)
PAPER_NET = (1024, 1024, 2048)
BATCH_SIZE = 100


# ----------------------------------------------------------------------------
# the study: methods, nets, data

def quick_preset() -> tuple[StudyConfig, str]:
    """reglab's MNIST quick preset (its methods, hyperparameters, init and net), and where it came from."""
    return presets.mnist_quick(), "reglab.study.presets.mnist_quick()"


NETS = ("tiny", "quick", "table9-cpu", "paper")


def add_net_argument(parser, default: str = "quick") -> None:
    """``--net``, one of ``NETS``, as the helper benchmarks take it (see ``net_study``)."""
    parser.add_argument("--net", choices=NETS, default=default,
                        help="table9-cpu: that preset's 784-512-512-10 with its own values; the others the quick "
                             "preset's")


def net_study(net: str) -> tuple[StudyConfig, tuple[int, ...]]:
    """The preset whose methods a benchmark net (one of ``NETS``) is timed with, and the net's hidden
    widths: the quick preset's methods, except on the table9-cpu net, which gets that preset's own
    (its dropout rates decide the masks' cost)."""
    if net == "table9-cpu":
        table9 = presets.mnist_table9_cpu()
        return table9, table9.hidden
    base = quick_preset()[0]
    return base, {"tiny": TINY_NET, "quick": base.hidden, "paper": PAPER_NET}[net]


def study_config(base: StudyConfig, hidden: tuple[int, ...], n_seeds: int, n_epochs: int) -> StudyConfig:
    """The benchmark study: the preset's methods and init on ``hidden``, seeds 0..n-1, batch 100."""
    return base.replace(name=f"bench-{'-'.join(map(str, hidden))}-{n_seeds}seeds", hidden=hidden,
                        seeds=tuple(range(n_seeds)), n_epochs=n_epochs, batch_size=BATCH_SIZE,
                        device="cpu", checkpoint_every=10**9, log_every=10**9)


def load_mnist(data_dir: str | None, data: DataConfig) -> tuple[Dataset, str]:
    """MNIST as reglab loads it (50k train / 10k val / 10k test), or random data of that shape."""
    if data_dir is None:
        g = torch.Generator().manual_seed(0)
        make = lambda n: (torch.rand(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g))  # noqa: E731
        (xt, yt), (xv, yv), (xs, ys) = make(50_000), make(10_000), make(10_000)
        return (Dataset("random", xt, yt, xv, yv, xs, ys, 10, {"source": "random"}),
                "random data of MNIST shape (no --data-dir / REGLAB_DATA_DIR): timings only, no fairness check")
    return load_dataset(data, data_dir=data_dir, download=False), f"MNIST from {data_dir} (reglab.data)"


def n_weights(cfg: StudyConfig, n_in: int = 784, n_out: int = 10) -> int:
    """Weight-matrix entries of one method-seed (biases excluded)."""
    sizes = [n_in, *cfg.hidden, n_out]
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


# ----------------------------------------------------------------------------
# the two paths, each behind train(n_steps)

class ReglabPath:
    """reglab's engine on the study; each call of :meth:`train` is one engine epoch of ``n_steps`` steps.

    The Trainer's public unit of work is an epoch, so it gets a training split
    of exactly ``n_steps * batch_size`` examples (the first ones) and reports
    the seconds of that epoch's training steps (``metrics["epoch_time_s"]``,
    timed inside ``train_epoch`` around the step loop only). The end-of-epoch
    work (evaluation, weight statistics) is outside that time, as evaluation
    is outside the hand loop's; its validation and test splits are cut to one
    minibatch so it costs little wall time.
    """

    def __init__(self, cfg: StudyConfig, dataset: Dataset, n_steps: int, chunk_bytes: int | None = None):
        from reglab.engine import Trainer
        n, b = n_steps * cfg.batch_size, cfg.batch_size
        timing = Dataset(dataset.name, dataset.x_train[:n], dataset.y_train[:n], dataset.x_val[:b],
                         dataset.y_val[:b], dataset.x_test[:b], dataset.y_test[:b], dataset.n_classes,
                         dataset.info)
        self.trainer = Trainer(cfg, timing, chunk_bytes=chunk_bytes)   # chunk_bytes None: the engine's budget

    def train(self) -> float:
        """Seconds of the training steps of one engine epoch."""
        record = self.trainer.train_epoch()
        return float(record.metrics["epoch_time_s"][0])


class HandPath:
    """The hand loop on the whole training split; each call trains ``n_steps`` minibatches per method-seed."""

    def __init__(self, cfg: StudyConfig, dataset: Dataset, n_steps: int, autocast: torch.dtype | None = None):
        self.study = HandStudy(cfg, dataset.x_train, dataset.y_train, autocast=autocast)
        self.n_steps = n_steps

    def train(self) -> float:
        """Wall seconds of ``n_steps`` steps of every method-seed, one after another."""
        t0 = time.perf_counter()
        self.study.train(self.n_steps)
        return time.perf_counter() - t0


def gemm_gflops(n: int, repeats: int = 3, dtype: torch.dtype = torch.float32) -> float:
    """Best-of-``repeats`` GFLOP/s of one n x n matrix product in ``dtype`` (2 n^3 flops)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=out)
    best = INF
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


class MatmulFloor:
    """Only the matrix products of a training step, same shapes and calls as the engine's.

    Per step and method-seed: the forward product of every layer, the weight
    gradient of every layer accumulated into a buffer (``baddbmm_``, as the
    engine accumulates into its momentum buffers) and the input gradient of
    every layer but the first. Its time is the floor of a batched step at this
    batch size: nothing else is done.
    """

    def __init__(self, sizes: list[int], n_variants: int, batch: int):
        V = n_variants
        self.acts = [torch.randn(V, batch, n) for n in sizes]
        self.weights = [torch.randn(V, a, b) / math.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]
        self.grads = [torch.zeros_like(w) for w in self.weights]
        self.dz = [torch.randn(V, batch, n) for n in sizes[1:]]

    def step(self) -> None:
        for l, w in enumerate(self.weights):
            torch.bmm(self.acts[l], w, out=self.acts[l + 1])
        for l in range(len(self.weights) - 1, -1, -1):
            self.grads[l].baddbmm_(self.acts[l].transpose(1, 2), self.dz[l], beta=0.9)
            if l > 0:
                torch.bmm(self.dz[l], self.weights[l].transpose(1, 2), out=self.acts[l])

    def train(self, n_steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n_steps):
            self.step()
        return time.perf_counter() - t0


# ----------------------------------------------------------------------------
# timing

@dataclass
class Measurement:
    net: str
    n_seeds: int
    n_variants: int
    steps_timed: int
    steps_per_epoch: int
    weights_per_variant: int
    hand_s: list[float]       # seconds per epoch of the whole study, one per repeat
    reglab_s: list[float]
    floor_s: list[float]      # seconds per epoch of the matrix products alone (MatmulFloor)
    gemm: list[float]         # GFLOP/s of the square product, one per repeat
    hand_bf16_s: list[float] = field(default_factory=list)    # the hand loop under torch.autocast(bfloat16)
    reglab_bf16_s: list[float] = field(default_factory=list)  # reglab with matmul_dtype="bfloat16"
    gemm_bf16: list[float] = field(default_factory=list)      # GFLOP/s of the square bfloat16 product

    def summary(self) -> dict:
        ratios = [h / r for h, r in zip(self.hand_s, self.reglab_s)]
        hand, reg, floor, peak = map(statistics.median, (self.hand_s, self.reglab_s, self.floor_s, self.gemm))
        flops = 6 * self.weights_per_variant * self.n_variants * self.steps_per_epoch * BATCH_SIZE
        return {"net": self.net, "n_seeds": self.n_seeds, "n_variants": self.n_variants,
                "steps_timed": self.steps_timed, "steps_per_epoch": self.steps_per_epoch,
                "hand_s_per_epoch": hand, "reglab_s_per_epoch": reg,
                "hand_s_per_method_seed": hand / self.n_variants,
                "reglab_s_per_method_seed": reg / self.n_variants,
                "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                "hand_gflops": flops / hand / 1e9, "reglab_gflops": flops / reg / 1e9,
                "gemm_peak_gflops": peak, "reglab_fraction_of_peak": flops / reg / 1e9 / peak,
                "hand_fraction_of_peak": flops / hand / 1e9 / peak,
                "matmul_floor_s_per_epoch": floor, "matmul_floor_fraction_of_peak": flops / floor / 1e9 / peak,
                "reglab_over_floor": reg / floor,
                "raw": {"hand_s": self.hand_s, "reglab_s": self.reglab_s, "matmul_floor_s": self.floor_s,
                        "gemm_gflops": self.gemm},
                "bfloat16": self._bf16_summary(flops) if self.reglab_bf16_s else None}

    def _bf16_summary(self, flops: float) -> dict:
        reg, hand_ac, peak = map(statistics.median, (self.reglab_bf16_s, self.hand_bf16_s, self.gemm_bf16))
        vs_fp32 = [h / r for h, r in zip(self.hand_s, self.reglab_bf16_s)]
        vs_autocast = [h / r for h, r in zip(self.hand_bf16_s, self.reglab_bf16_s)]
        return {"reglab_s_per_epoch": reg, "hand_autocast_s_per_epoch": hand_ac,
                "ratio_vs_hand_fp32_median": statistics.median(vs_fp32), "ratio_vs_hand_fp32_min": min(vs_fp32),
                "ratio_vs_hand_fp32_max": max(vs_fp32),
                "ratio_vs_hand_autocast_median": statistics.median(vs_autocast),
                "ratio_vs_hand_autocast_min": min(vs_autocast), "ratio_vs_hand_autocast_max": max(vs_autocast),
                "reglab_fp32_over_bf16": statistics.median(self.reglab_s) / reg,
                "reglab_gflops": flops / reg / 1e9, "gemm_peak_gflops": peak,
                "reglab_fraction_of_peak": flops / reg / 1e9 / peak,
                "raw": {"hand_autocast_s": self.hand_bf16_s, "reglab_s": self.reglab_bf16_s,
                        "gemm_gflops": self.gemm_bf16}}


def measure(cfg: StudyConfig, dataset: Dataset, steps: int, repeats: int, gemm_n: int, log,
            bfloat16: bool = True) -> Measurement:
    """Alternate GEMM / hand / reglab / matmul floor ``repeats`` times after one warm-up call of each
    (with ``bfloat16``, also the bfloat16 GEMM / autocast hand loop / bfloat16 reglab).

    Each path trains ``steps`` minibatches per method-seed per call; the
    seconds are scaled to a whole epoch of the training split. ``cfg.n_epochs``
    is large (10,000), so late L1 stays off in both paths, as in the first 80% of a study.
    """
    steps_per_epoch = math.ceil(len(dataset.x_train) / cfg.batch_size)
    sizes = [dataset.n_features, *cfg.hidden, dataset.n_classes]
    hand, batched = HandPath(cfg, dataset, steps), ReglabPath(cfg, dataset, steps)
    floor = MatmulFloor(sizes, cfg.n_variants, cfg.batch_size)
    hand.train()
    batched.train()
    floor.train(1)
    if bfloat16:
        hand_bf16 = HandPath(cfg, dataset, steps, autocast=torch.bfloat16)
        batched_bf16 = ReglabPath(cfg.replace(matmul_dtype="bfloat16"), dataset, steps)
        hand_bf16.train()
        batched_bf16.train()
    scale = steps_per_epoch / steps
    m = Measurement("-".join(map(str, sizes)), len(cfg.seeds), cfg.n_variants, steps, steps_per_epoch,
                    n_weights(cfg), [], [], [], [])
    for r in range(repeats):
        m.gemm.append(gemm_gflops(gemm_n))
        m.hand_s.append(hand.train() * scale)
        m.reglab_s.append(batched.train() * scale)
        m.floor_s.append(floor.train(steps) * scale)
        line = (f"    repeat {r + 1}/{repeats}: hand {m.hand_s[-1]:.2f} s/epoch, reglab {m.reglab_s[-1]:.2f} s/epoch, "
                f"matmuls alone {m.floor_s[-1]:.2f} s/epoch, GEMM {m.gemm[-1]:.0f} GFLOP/s")
        if bfloat16:
            m.gemm_bf16.append(gemm_gflops(gemm_n, dtype=torch.bfloat16))
            m.hand_bf16_s.append(hand_bf16.train() * scale)
            m.reglab_bf16_s.append(batched_bf16.train() * scale)
            line += (f"; bfloat16: hand (autocast) {m.hand_bf16_s[-1]:.2f}, reglab {m.reglab_bf16_s[-1]:.2f} "
                     f"s/epoch, GEMM {m.gemm_bf16[-1]:.0f} GFLOP/s")
        log(line)
    return m


# ----------------------------------------------------------------------------
# fairness: the same study both ways, test errors within seed noise

def welch_interval(a: list[float], b: list[float], confidence: float) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its Welch t-interval at ``confidence``."""
    na, nb = len(a), len(b)
    va, vb = stats.std(a) ** 2 / na, stats.std(b) ** 2 / nb
    diff = stats.mean(a) - stats.mean(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = stats.t_quantile(0.5 + confidence / 2, df) * se
    return diff, diff - half, diff + half


def fairness_check(cfg: StudyConfig, dataset: Dataset, log, hand_err: list[float] | None = None) -> dict:
    """Train ``cfg`` both ways for cfg.n_epochs epochs; compare test errors per method.

    ``hand_err``: the hand loop's test errors from an earlier call (it is then not trained again)."""
    from reglab.engine import Trainer
    if hand_err is None:
        hand = HandStudy(cfg, dataset.x_train, dataset.y_train)
        for _ in range(cfg.n_epochs):
            hand.train()
        hand_err = hand.test_errors(dataset.x_test, dataset.y_test)
    trainer = Trainer(cfg, dataset)
    while not trainer.done:
        record = trainer.train_epoch()
    reglab_err = [float(e) for e in record.metrics["test_error"]]
    n_methods, n_seeds = len(cfg.methods), len(cfg.seeds)
    confidence = 1 - 0.05 / n_methods  # Bonferroni over the methods: 95% for the family
    rows, agree_all = [], True
    for i, method in enumerate(cfg.methods):
        h = hand_err[i * n_seeds:(i + 1) * n_seeds]
        g = reglab_err[i * n_seeds:(i + 1) * n_seeds]
        diff, lo, hi = welch_interval(h, g, confidence)
        agree = lo <= 0.0 <= hi
        agree_all &= agree
        rows.append({"method": method.name, "hand_test_error": h, "reglab_test_error": g,
                     "hand_mean": stats.mean(h), "reglab_mean": stats.mean(g), "hand_std": stats.std(h),
                     "reglab_std": stats.std(g), "difference": diff, "interval": [lo, hi], "agree": agree})
        log(f"  {method.name:18s} hand {100 * stats.mean(h):6.2f} +- {100 * stats.std(h):4.2f} %   "
            f"reglab {100 * stats.mean(g):6.2f} +- {100 * stats.std(g):4.2f} %   "
            f"diff {100 * diff:+5.2f} [{100 * lo:+5.2f}, {100 * hi:+5.2f}]  {'agree' if agree else 'DIFFER'}")
    return {"net": "-".join(map(str, [784, *cfg.hidden, 10])), "n_seeds": n_seeds, "n_epochs": cfg.n_epochs,
            "matmul_dtype": cfg.matmul_dtype, "n_train": len(dataset.x_train), "confidence_per_method": confidence,
            "methods": rows, "hand_test_error": hand_err, "agree": agree_all}


def subset(dataset: Dataset, n_train: int) -> Dataset:
    """The first ``n_train`` training examples; validation and test splits unchanged."""
    return Dataset(dataset.name, dataset.x_train[:n_train], dataset.y_train[:n_train], dataset.x_val,
                   dataset.y_val, dataset.x_test, dataset.y_test, dataset.n_classes, dataset.info)


# ----------------------------------------------------------------------------
# the command

def environment() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "reglab": reglab.__version__}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats, small fairness check (< 2 min)")
    p.add_argument("--tiny", action="store_true", help="a few steps of the small net only: keeps the script "
                   "working in the test suite; its numbers mean nothing")
    p.add_argument("--data-dir", default=os.environ.get("REGLAB_DATA_DIR"),
                   help="folder holding mnist/ (default: $REGLAB_DATA_DIR; none: random data, timing only)")
    p.add_argument("--repeats", type=int, help="alternating repeats per configuration (default 5; quick 3)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds per method (default: 1 5; tiny: 1 2)")
    p.add_argument("--nets", nargs="+", choices=NETS,
                   default=None,
                   help="tiny: 784-32-10; quick: the quick preset's net; table9-cpu: that preset's 784-512-512-10 "
                        "with its own methods' values (dropout 0.1/0.3, radii 1.5/2); paper: 784-1024-1024-2048-10 "
                        "(default: tiny quick paper; with --tiny: tiny)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all)")
    p.add_argument("--fairness-epochs", type=int, help="epochs of the fairness check (default 3; quick 2)")
    p.add_argument("--no-fairness", action="store_true", help="skip the fairness check")
    p.add_argument("--no-bfloat16", action="store_true",
                   help="time float32 only (skip reglab's bfloat16 products and the autocast hand loop)")
    p.add_argument("--json", help="also write every number to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    log = lambda s: print(s, flush=True)  # noqa: E731

    # budget: timed minibatches per method-seed, by net and mode (full, quick, tiny)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    steps = {"full": {"tiny": 100, "quick": 40, "table9-cpu": 20, "paper": 8},
             "quick": {"tiny": 30, "quick": 10, "table9-cpu": 5, "paper": 2},
             "tiny": {"tiny": 3, "quick": 2, "table9-cpu": 1, "paper": 1}}[mode]
    repeats = args.repeats or {"full": 5, "quick": 3, "tiny": 1}[mode]
    gemm_n = {"full": 4096, "quick": 2048, "tiny": 512}[mode]
    nets = args.nets or (["tiny"] if args.tiny else ["tiny", "quick", "paper"])
    seed_counts = args.seeds or ([1, 2] if args.tiny else [1, 5])

    base, methods_from = quick_preset()
    base_of = {net: net_study(net)[0] for net in NETS}       # the methods each net is timed with
    hidden_of = {net: net_study(net)[1] for net in NETS}
    dataset, data_note = load_mnist(args.data_dir, base.data)
    if args.tiny:
        dataset = subset(dataset, 2_000)

    env = environment()
    log(f"reglab {env['reglab']} benchmark ({mode}): {env['cpu']}, {env['cpus']} CPUs, torch {env['torch']}, "
        f"{env['threads']} threads")
    log(f"data: {data_note}; {len(dataset.x_train)} training examples per epoch")
    log(f"methods ({methods_from}): " + ", ".join(m.name for m in base.methods)
        + ("; on 784-512-512-10 with reglab.study.presets.mnist_table9_cpu()'s values" if "table9-cpu" in nets
           else ""))
    timed = ", ".join(f"{'-'.join(map(str, [784, *hidden_of[n], 10]))}: {steps[n]}" for n in nets)
    log(f"timed: minibatches of {BATCH_SIZE} per method-seed per repeat ({timed}), scaled to one epoch of "
        f"{len(dataset.x_train)} examples; {repeats} alternating repeats, medians\n")

    results = []
    for net in nets:
        for n_seeds in seed_counts:
            cfg = study_config(base_of[net], hidden_of[net], n_seeds, n_epochs=10_000)
            label = "-".join(map(str, [784, *cfg.hidden, 10]))
            log(f"  {label}, {len(cfg.methods)} methods x {n_seeds} seeds = {cfg.n_variants} method-seeds")
            m = measure(cfg, dataset, steps[net], repeats, gemm_n, log, bfloat16=not args.no_bfloat16)
            results.append(m.summary())

    log("\nfloat32 both ways (the issue's targets):\n" + table(results))
    if not args.no_bfloat16:
        log("\nbfloat16 products (reglab --matmul-dtype bfloat16; hand loop under torch.autocast):\n"
            + table_bf16(results))

    fairness = None
    if args.data_dir is None:
        log("\nfairness check skipped: random data (pass --data-dir or set REGLAB_DATA_DIR).")
    elif args.no_fairness:
        log("\nfairness check skipped (--no-fairness).")
    else:
        epochs = args.fairness_epochs or {"full": 3, "quick": 2, "tiny": 1}[mode]
        n_seeds = {"full": 5, "quick": 3, "tiny": 2}[mode]
        fair_data = dataset if mode == "full" else subset(dataset, {"quick": 10_000, "tiny": 2_000}[mode])
        cfg = study_config(base, TINY_NET, n_seeds, n_epochs=epochs)
        log(f"\nfairness: 784-32-10, {n_seeds} seeds, {epochs} epochs on {len(fair_data.x_train)} examples; "
            f"test error mean +- std over seeds; difference hand - reglab with its Welch interval "
            f"(95% for all methods together, Bonferroni)")
        fairness = fairness_check(cfg, fair_data, log)
        log(f"  verdict: {'agree within seed noise' if fairness['agree'] else 'DISAGREE'}")
        if not args.no_bfloat16:
            log("  reglab with bfloat16 products against the same float32 hand loop:")
            fair_bf16 = fairness_check(cfg.replace(matmul_dtype="bfloat16"), fair_data, log,
                                       hand_err=fairness["hand_test_error"])
            log(f"  verdict: {'agree within seed noise' if fair_bf16['agree'] else 'DISAGREE'}")
            fairness = {**fairness, "bfloat16": fair_bf16, "agree": fairness["agree"] and fair_bf16["agree"]}

    wall = time.perf_counter() - t_start
    log(f"\ntotal {wall:.0f} s")
    if args.json:
        from reglab.results import atomic_write_json
        atomic_write_json(args.json, {"mode": mode, "environment": env, "data": data_note,
                                      "methods_from": methods_from, "configurations": results,
                                      "fairness": fairness, "wall_s": wall})
    # tiny mode checks that the script runs; its few steps decide nothing
    return 0 if fairness is None or fairness["agree"] or mode == "tiny" else 1


def table_bf16(results: list[dict]) -> str:
    """Markdown table of the bfloat16 summaries (medians over the repeats)."""
    head = ("| net | seeds | method-seeds | hand fp32 s/epoch | hand autocast s/epoch | reglab bf16 s/epoch "
            "| hand fp32 / reglab bf16 (min..max) | hand autocast / reglab bf16 (min..max) | reglab fp32 / bf16 "
            "| reglab GFLOP/s (% of bf16 peak) | bf16 GEMM peak GFLOP/s |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for r in results:
        b = r["bfloat16"]
        rows.append(f"| {r['net']} | {r['n_seeds']} | {r['n_variants']} | {r['hand_s_per_epoch']:.2f} "
                    f"| {b['hand_autocast_s_per_epoch']:.2f} | {b['reglab_s_per_epoch']:.2f} "
                    f"| {b['ratio_vs_hand_fp32_median']:.2f}x ({b['ratio_vs_hand_fp32_min']:.2f}.."
                    f"{b['ratio_vs_hand_fp32_max']:.2f}) "
                    f"| {b['ratio_vs_hand_autocast_median']:.2f}x ({b['ratio_vs_hand_autocast_min']:.2f}.."
                    f"{b['ratio_vs_hand_autocast_max']:.2f}) | {b['reglab_fp32_over_bf16']:.2f}x "
                    f"| {b['reglab_gflops']:.0f} ({100 * b['reglab_fraction_of_peak']:.0f}%) "
                    f"| {b['gemm_peak_gflops']:.0f} |")
    return "\n".join([head, *rows])


def table(results: list[dict]) -> str:
    """Markdown table of the summaries (medians over the repeats)."""
    head = ("| net | seeds | method-seeds | hand s/epoch | reglab s/epoch | hand/reglab (min..max) "
            "| reglab GFLOP/s (% of peak) | hand GFLOP/s (% of peak) | matmuls alone s/epoch | reglab/matmuls "
            "| GEMM peak GFLOP/s |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    rows = [f"| {r['net']} | {r['n_seeds']} | {r['n_variants']} | {r['hand_s_per_epoch']:.2f} "
            f"| {r['reglab_s_per_epoch']:.2f} | {r['ratio_median']:.2f}x ({r['ratio_min']:.2f}..{r['ratio_max']:.2f}) "
            f"| {r['reglab_gflops']:.0f} ({100 * r['reglab_fraction_of_peak']:.0f}%) "
            f"| {r['hand_gflops']:.0f} ({100 * r['hand_fraction_of_peak']:.0f}%) "
            f"| {r['matmul_floor_s_per_epoch']:.2f} | {r['reglab_over_floor']:.2f} "
            f"| {r['gemm_peak_gflops']:.0f} |" for r in results]
    return "\n".join([head, *rows])


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ReglabError as e:
        print(f"reglab: {e}", file=sys.stderr)
        sys.exit(2)
