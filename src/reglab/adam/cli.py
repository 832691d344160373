"""`reglab adam`: Adam's bias correction by simulation and by measurement on MNIST training.

Resolves what the library must not read itself (argv, ``REGLAB_DATA_DIR``,
the download cache), prints the resolved settings, runs the simulation and
the two training runs, prints the largest deviations and the measured
ratios, and writes PNG figures, adam.json and a self-contained adam.html.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import asdict

import torch

from reglab.adam.real_training import RealTrainingConfig, RealTrainingResult, run_real_training
from reglab.adam.report import DEVIATION_HEADER, deviation_rows, write_outputs
from reglab.adam.simulation import SimulationConfig, SimulationResult, run_simulation
from reglab.config import DataConfig
from reglab.data import load_dataset
from reglab.data.cli import add_location_args, resolve_dirs
from reglab.errors import ReglabError

DEFAULT_OUT = "runs/adam"
SMOKE_SUBSET_PER_CLASS = 30  # 300 training examples


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "adam", help="Adam's bias correction: simulation, measurement on MNIST, figures",
        description="Simulate Adam's moment estimates from zero on i.i.d. gradients and compare them with "
                    "1 - beta^t; train an MNIST MLP with reglab's Adam, record v_t, measure the first step "
                    "with and without bias correction, and compare the loss curves. Writes PNG figures, "
                    "adam.json and a self-contained adam.html. The derivation is in docs/adam.md.")
    p.add_argument("--smoke", action="store_true",
                   help=f"tiny run for tests: 20,000 simulated runs of 200 steps, "
                        f"{10 * SMOKE_SUBSET_PER_CLASS} MNIST examples, 30 steps")
    p.add_argument("--out", metavar="DIR", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=0, help="seeds the simulation and the training runs (default: 0)")
    p.add_argument("--steps", type=int, default=None, metavar="T",
                   help="Adam steps per MNIST training run (default: 500; --smoke: 30)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads for the training runs (default: torch's); the simulation uses 1")
    add_location_args(p)
    p.set_defaults(func=cmd_adam)


def configs(smoke: bool, seed: int, steps: int | None) -> tuple[SimulationConfig, DataConfig, RealTrainingConfig]:
    """The simulation, data and training settings of a full or a smoke run."""
    if steps is not None and steps < 1:
        raise ReglabError(f"--steps must be >= 1; got {steps}. Fix: leave it out for the default.")
    if smoke:
        sim = SimulationConfig(n_steps=200, n_runs=20_000, seed=seed)
        data = DataConfig(name="mnist", subset_per_class=SMOKE_SUBSET_PER_CLASS)
        real = RealTrainingConfig(n_steps=steps or 30, batch_size=50, seed=seed)
    else:
        sim = SimulationConfig(seed=seed)
        data = DataConfig(name="mnist")
        real = RealTrainingConfig(n_steps=steps or 500, seed=seed)
    return sim, data, real


def cmd_adam(args: argparse.Namespace) -> int:
    sim_cfg, data_cfg, real_cfg = configs(args.smoke, args.seed, args.steps)
    if args.threads is not None:
        if args.threads < 1:
            raise ReglabError(f"--threads must be >= 1; got {args.threads}. Fix: leave it out for torch's default.")
    from reglab.paths import check_folder_to_write, check_path
    check_folder_to_write(args.out, "--out")   # before the simulation and the training, not after them
    for option, path in (("--data-dir", args.data_dir), ("--cache-dir", args.cache_dir)):
        if path:
            check_path(path, option)
    if args.threads is not None:
        from reglab.study.cli import cap_threads
        torch.set_num_threads(cap_threads(args.threads, "--threads"))
    data_dir, cache_dir = resolve_dirs(args.data_dir, args.cache_dir)
    command = "reglab " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"reglab adam: simulation {asdict(sim_cfg)}")
    print(f"reglab adam: data {asdict(data_cfg)}, data dir {data_dir or '(not set)'}")
    print(f"reglab adam: training {asdict(real_cfg)}, torch threads {torch.get_num_threads()}")

    # the data first, so that a missing dataset is reported before minutes of simulation
    dataset = load_dataset(data_cfg, data_dir=data_dir, cache_dir=cache_dir, download=not args.no_download,
                           allow_checksum_mismatch=args.allow_checksum_mismatch, mirrors=args.mirror)

    t0 = time.perf_counter()
    sim = run_simulation(sim_cfg)
    print(f"\n1. simulation ({time.perf_counter() - t0:.1f} s)")
    print_deviations(sim)

    t0 = time.perf_counter()
    real = run_real_training(dataset, real_cfg)
    print(f"\n2. real training on {dataset.name}, {real.n_train:,} examples ({time.perf_counter() - t0:.1f} s)")
    print_real(real)

    written = write_outputs(args.out, sim, real, command)
    print(f"\nwrote {', '.join(str(p) for p in written.values())}")
    return 0


def print_deviations(sim: SimulationResult) -> None:
    rows = deviation_rows(sim)
    print(f"   {sim.config.n_runs:,} runs x {sim.config.n_steps:,} steps per distribution; largest relative "
          f"deviation of the simulated E[m_t]/E[g], E[v_t]/E[g^2] from 1 - beta^t over t:")
    widths = [max(len(str(x)) for x in col) for col in zip(DEVIATION_HEADER, *rows)]
    for r in [DEVIATION_HEADER, *rows]:
        print("   " + "  ".join(str(x).rjust(w) for x, w in zip(r, widths)))
    worst = max(sim.largest_deviations(), key=lambda r: abs(r["relative_deviation"]))
    print(f"   largest of all: {100 * worst['relative_deviation']:+.3f}% ({worst['distribution']}, "
          f"{worst['moment']}, beta {worst['beta']}, t = {worst['t']}; 95% half-width "
          f"{100 * worst['relative_half_width_95']:.3f}%)")


def print_real(real: RealTrainingResult) -> None:
    s = real.summary()
    print(f"   v_t / G_t, G_t = running mean of g^2, median over {s['n_recorded_weights']} weights:")
    for r in s["v_over_running_mean_g2"]:
        print(f"   t = {r['t']:>5}: uncorrected {r['uncorrected_median']:.6f} (1 - beta2^t = "
              f"{r['closed_form_1_minus_beta2_t']:.6f}), corrected {r['corrected_median']:.4f}")
    fs = s["first_step"]
    print(f"   first step, uncorrected / corrected: median {fs['ratio_uncorrected_over_corrected_median']:.4f} "
          f"over {fs['n_weights_moved']:,} weights with g_1 != 0 (limit (1-beta1)/sqrt(1-beta2) = "
          f"{fs['ratio_limit_(1-beta1)/sqrt(1-beta2)']:.4f}); step / lr: corrected "
          f"{fs['corrected_step_over_lr_median']:.4f}, uncorrected {fs['uncorrected_step_over_lr_median']:.4f}")
    for name, f in s["final"].items():
        print(f"   {name:>11}: train loss (last 10 steps) {f['train_loss_last_10_steps']:.4f}, "
              f"val loss {f['val_loss']:.4f}, val error {100 * f['val_error']:.2f}%")
