"""`reglab tune`: choose each method's hyperparameters on the validation split.

Resolves what the library must not read itself: argv, ``REGLAB_DATA_DIR``
(the folder holding mnist/ and fashion-mnist/) and ``XDG_CACHE_HOME``.
"""

from __future__ import annotations

import argparse
import os
import shlex
from datetime import datetime
from pathlib import Path

from reglab.config import MATMUL_DTYPES, StudyConfig
from reglab.errors import ReglabError
from reglab.study import presets, table
from reglab.tune.executors import DEFAULT_MAX_RETRIES, EXECUTORS
from reglab.tune.search import PRUNERS, SAMPLERS, SHARD_KEYS, redact_url

SMOKE_TRIALS = 2          # trials per method in --smoke mode when --trials is not given

EPILOG = """examples:
  reglab tune mnist --preset quick --trials 20
  reglab tune mnist --smoke                              tiny data, 2 epochs, 2 trials per method
  reglab tune mnist --methods l2,max_norm --trials 30 --timeout 3600 --out runs/tune-l2
  reglab tune mnist --trials 20 --out runs/tune-l2       (again: resumes the same Optuna studies)
  reglab tune mnist --trials 50 --storage postgresql://user:pw@db/optuna   (many workers, one study)
  reglab tune mnist --trials 20 --executor ray --address auto              (an existing Ray cluster)
  reglab tune table --data my.csv --target label --trials 20   your own table (reglab run table --help)
then: reglab run --config RUN/tuned.toml
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tune", help="choose each method's hyperparameters on the validation split (Optuna)",
        description="Search each method's own hyperparameters (learning rate, L2, L1 and its start, KL beta and "
                    "rho, max-norm radius, dropout rates) on the validation split, never the test split. "
                    "Trials of all methods train together as one batched model per batch. Writes tuned.toml "
                    "(a study config for `reglab run --config`), trials.csv/json with validation curves, "
                    "sensitivity plots and the Optuna storage.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", nargs="?", choices=list(presets.STUDIES) + ["table"], default=presets.DEFAULT_STUDY,
                   help=f"the study whose methods are tuned (default: {presets.DEFAULT_STUDY})")
    p.add_argument("--preset", help="preset of the study (its methods and settings are the starting point): " +
                   "; ".join(f"{s}: {', '.join(ps)}" for s, ps in presets.STUDIES.items()) + "; table: default")
    p.add_argument("--config", metavar="TOML", help="tune the methods of a user-defined study instead of a preset "
                   "(docs/studies.md); its plugin regularizers' declared hyperparameters are searched too")
    from reglab.study.cli import add_plugin_option
    add_plugin_option(p)
    p.add_argument("--methods", metavar="M1,M2", help="tune only these methods of the preset (default: all)")
    p.add_argument("--trials", type=int, metavar="N",
                   help=f"trials per method in this session (default with --smoke: {SMOKE_TRIALS})")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="start no new batch after this many seconds")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna sampler (default: tpe)")
    p.add_argument("--pruner", choices=PRUNERS, default="median",
                   help="stop hopeless trials on per-epoch validation error (default: median)")
    p.add_argument("--batch-trials", type=int, default=4, metavar="K",
                   help="trials per method trained together in one batch (default: 4)")
    p.add_argument("--seeds-per-trial", type=int, default=1, metavar="K",
                   help="seeds each trial is trained with; its value is their mean (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default: 0)")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna RDB storage (default: sqlite:///OUT/optuna.db; postgresql://... for many workers)")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: in this process (default); ray: Ray tasks on a cluster")
    p.add_argument("--address", metavar="ADDR",
                   help="Ray cluster address (auto, HOST:PORT, ray://HOST:PORT); default: start a local instance")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads per batched model (default: torch's for local, 1 per Ray task)")
    p.add_argument("--max-retries", type=int, default=DEFAULT_MAX_RETRIES, metavar="N",
                   help=f"Ray: re-runs of a task whose worker died (default: {DEFAULT_MAX_RETRIES})")
    p.add_argument("--shard-by", metavar="KEYS",
                   help=f"split each batch into batched models by {', '.join(SHARD_KEYS)} (comma-separated; "
                        "default: none for local, method,seed for ray)")
    p.add_argument("--epochs-per-task", type=int, metavar="N",
                   help="Ray: epochs per task between pruning decisions (default: 1 with a pruner, else all)")
    p.add_argument("--epochs", type=int, metavar="N", help="override the preset's number of epochs")
    p.add_argument("--dataset", help="another dataset of the same kind (fashion-mnist; moons, circles, ...)")
    p.add_argument("--resolution", type=int, choices=(28, 7), help="image side: 28, or 7 (4x4 average pooling)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="where to train (default: the preset's)")
    p.add_argument("--matmul-dtype", choices=MATMUL_DTYPES,
                   help="operands of the training products (default: the preset's, float32; see `reglab run --help`)")
    p.add_argument("--smoke", action="store_true",
                   help=f"tiny mode: a few hundred examples, at most 2 epochs, {SMOKE_TRIALS} trials per method")
    p.add_argument("--out", metavar="DIR", help="tune directory (default runs/tune-<study>-<time>)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder holding mnist/ and fashion-mnist/ (default: $REGLAB_DATA_DIR)")
    p.add_argument("--allow-checksum-mismatch", action="store_true",
                   help="use dataset files whose checksums differ from the published ones")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    table.add_table_options(p)
    p.set_defaults(func=tune_command)


def tune_command(args: argparse.Namespace, environ: dict | None = None) -> int:
    from reglab.config import to_toml
    from reglab.data import load_dataset
    from reglab.data.sources import default_cache_dir
    from reglab.tune.executors import make_executor
    from reglab.tune.search import tune

    environ = os.environ if environ is None else environ
    data_dir = args.data_dir or environ.get("REGLAB_DATA_DIR") or None
    read = None   # a table study's table, read once (reglab.study.cli.table_config)
    if args.config:
        from reglab.engine.registry import load_toml
        if args.study == "table" or args.preset:
            raise ReglabError("--config defines the whole study; drop the STUDY name 'table' and --preset.")
        from reglab.paths import check_path
        check_path(args.config, "--config")
        cfg = presets.apply_overrides(load_toml(args.config, extra_plugins=args.plugin or ()), dataset=args.dataset,
                                      resolution=args.resolution, epochs=args.epochs, smoke=args.smoke,
                                      device=args.device, matmul_dtype=args.matmul_dtype)
    elif args.study == "table":
        from reglab.study.cli import table_config
        args.config = None
        cfg, read = table_config(args)
    elif table.given_table_options(args):
        raise ReglabError(f"{', '.join(table.given_table_options(args))} describe a table study. "
                          "Fix: reglab tune table --data FILE --target COLUMN.")
    else:
        cfg = presets.get(args.study, args.preset, dataset=args.dataset, resolution=args.resolution,
                          epochs=args.epochs, smoke=args.smoke, device=args.device, matmul_dtype=args.matmul_dtype)
    if not isinstance(cfg, StudyConfig):   # the datasize preset: a sweep of studies, one per training-set size
        raise ReglabError(f"reglab tune searches one study; preset {args.preset!r} is a data-size sweep. "
                          "Fix: tune a single-study preset (e.g. --preset quick) or a --config TOML at one size.")
    from reglab.engine.registry import for_study, with_plugins
    cfg = select_methods(with_plugins(cfg, args.plugin or ()), args.methods)
    for_study(cfg, probe=True)   # a bad plugin is one line now, before anything is printed or written
    if cfg.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise ReglabError("this study trains on 'cuda' but no CUDA device is available. "
                              "Fix: add --device cpu or run on a GPU machine.")
    n_trials = args.trials
    if n_trials is None and args.timeout is None:
        if not args.smoke:
            raise ReglabError("no budget given. Fix: pass --trials N (per method) and/or --timeout SECONDS.")
        n_trials = SMOKE_TRIALS
    if args.address and args.executor != "ray":
        raise ReglabError("--address applies to --executor ray only. Fix: add --executor ray.")
    shard_by = parse_shard_by(args.shard_by, args.executor)
    out = Path(args.out) if args.out else default_out(cfg.name)
    check_before_printing(args, cfg, n_trials, out, data_dir)
    say = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    say("# base study (its methods are the starting point)\n" + to_toml(cfg))

    from reglab.study.cli import table_read_for
    dataset = load_dataset(cfg.data, data_dir=data_dir, cache_dir=default_cache_dir(environ),
                           allow_checksum_mismatch=args.allow_checksum_mismatch, table=table_read_for(cfg, read))
    executor = make_executor(args.executor, address=args.address, threads=args.threads,
                             max_retries=args.max_retries, plugins=cfg.plugins)
    existed = out.exists()
    try:
        tune(cfg, dataset, out_dir=out, n_trials=n_trials, timeout_s=args.timeout, sampler=args.sampler,
             pruner=args.pruner, storage=args.storage, executor=executor,
             seeds_per_trial=args.seeds_per_trial, batch_trials=args.batch_trials, sampler_seed=args.seed,
             shard_by=shard_by, epochs_per_task=args.epochs_per_task, command=command_line(args), say=say)
    except BaseException:
        # a tune that failed before writing anything (e.g. a bad --storage) leaves no empty folder behind
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    return 0


def check_before_printing(args: argparse.Namespace, cfg: StudyConfig, n_trials: int | None, out: Path,
                          data_dir: str | None) -> None:
    """Every argument, the paths, the storage and the memory, before the base config is printed."""
    from reglab.memory import check_memory
    from reglab.paths import check_folder_to_write, check_path
    from reglab.study.cli import cap_threads
    from reglab.tune.search import check_tune_arguments, open_storage

    check_tune_arguments(n_trials=n_trials, timeout_s=args.timeout, seeds_per_trial=args.seeds_per_trial,
                         batch_trials=args.batch_trials, epochs_per_task=args.epochs_per_task,
                         sampler=args.sampler, pruner=args.pruner)
    if args.max_retries < 0:
        raise ReglabError(f"--max-retries must be a whole number >= 0; got {args.max_retries}. Fix: give 0 or more.")
    if args.threads is not None:
        if args.threads < 1:
            raise ReglabError(f"--threads must be a whole number >= 1; got {args.threads}. Fix: give 1 or more.")
        args.threads = cap_threads(args.threads, "--threads")
    check_folder_to_write(out, "--out")
    if data_dir:
        check_path(data_dir, "--data-dir" if args.data_dir else "REGLAB_DATA_DIR")
    if args.storage:
        open_storage(args.storage)   # an unreachable database is one line now, not after the config
    # one round trains batch_trials x seeds_per_trial variants of every method as one model
    check_memory(cfg, variants_per_method=args.batch_trials * args.seeds_per_trial)


def select_methods(cfg, methods: str | None):
    """`cfg` with only the comma-separated `methods` (in the preset's order)."""
    if not methods:
        return cfg
    wanted = [m.strip() for m in methods.split(",") if m.strip()]
    known = [m.name for m in cfg.methods]
    unknown = [m for m in wanted if m not in known]
    if unknown or not wanted:
        raise ReglabError(f"--methods must name methods of {cfg.name!r} ({', '.join(known)}); "
                          f"got {', '.join(unknown) or repr(methods)}.")
    return cfg.replace(methods=tuple(m for m in cfg.methods if m.name in wanted))


def parse_shard_by(text: str | None, executor: str) -> tuple[str, ...]:
    if text is None:
        return ("method", "seed") if executor == "ray" else ()
    keys = tuple(k.strip() for k in text.split(",") if k.strip() and k.strip() != "none")
    bad = [k for k in keys if k not in SHARD_KEYS]
    if bad:
        raise ReglabError(f"--shard-by must list some of {', '.join(SHARD_KEYS)} (or none); got {', '.join(bad)}.")
    return keys


def default_out(study_name: str, root: str | Path = "runs") -> Path:
    """``runs/tune-<study>-<YYYYmmdd-HHMMSS>``, with ``-2``, ``-3`` ... if that folder exists."""
    base = Path(root) / f"tune-{study_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    candidate, k = base, 2
    while candidate.exists():
        candidate, k = Path(f"{base}-{k}"), k + 1
    return candidate


def command_line(args: argparse.Namespace) -> str:
    """The `reglab tune ...` command that reproduces `args` (stored in tune.json)."""
    parts = ["reglab", "tune"] + ([] if args.config else [args.study])
    for opt in ("config", "preset", "methods", "trials", "timeout", "sampler", "pruner", "batch_trials", "seeds_per_trial",
                "seed", "storage", "executor", "address", "threads", "max_retries", "shard_by", "epochs_per_task",
                "epochs", "dataset", "resolution", "device", "matmul_dtype", "out", "data_dir"):
        val = getattr(args, opt)
        if val is not None:
            if opt == "storage":
                val = redact_url(val)
            parts += ["--" + opt.replace("_", "-"), str(val)]
    for opt in table.TABLE_OPTIONS:
        val = getattr(args, opt, None)
        if val is not None:
            parts += ["--" + opt.replace("_", "-"), str(val)]
    for module in args.plugin or ():
        parts += ["--plugin", module]
    for flag in ("smoke", "allow_checksum_mismatch", "quiet"):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    return shlex.join(parts)
