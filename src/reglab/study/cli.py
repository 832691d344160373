"""`reglab run`: run a named study (or a TOML one), or resume an interrupted one.

Resolves what the library must not read itself: argv, ``REGLAB_DATA_DIR``
(the folder holding mnist/ and fashion-mnist/) and ``XDG_CACHE_HOME`` (the
download cache, ``$XDG_CACHE_HOME/reglab`` or ``~/.cache/reglab``).
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
import signal
import sys

from reglab.config import MATMUL_DTYPES
from reglab.errors import ReglabError
from reglab.study import presets, table

EPILOG = """examples:
  reglab run                                  the default study: mnist, preset quick, 3 seeds
  reglab run mnist --preset table9-cpu        Table 9's ranking on 2 CPU cores (784-512-512-10, 50 epochs,
                                              about 15-40 min; its 3 seeds give the six means in Table 9's
                                              order, no gap significant; with 8 or 15 seeds the two dropout
                                              methods tie; docs/studies.md)
  reglab run mnist --preset table9-cpu --seeds 8
                                              the same, about 40 min: both dropout methods significantly
                                              below the L2 family after Holm (15 seeds, about 90 min:
                                              max-norm below l2 and l2+l1_late too; both times measured
                                              on a day the 3-seed run took 15 min)
  reglab run mnist --preset seed --resolution 7
  reglab run pointcloud --seeds 5
  reglab run mnist --preset datasize          when does a regularizer pay off: 500 ... 50,000 training examples
  reglab run --config study.toml --out runs/mine
  reglab run mnist --set methods.dropout+l2.dropout_hidden=0.3 --set n_epochs=30
  reglab run pointcloud --smoke --tensorboard   then: tensorboard --logdir RUN_DIR/tensorboard
  reglab run --resume runs/mnist-quick-20250101-120000
  reglab run table --data my.csv --target label      your own table (CSV, Parquet, .npz); values: reglab tune table
  reglab run table --data sklearn:digits --preset datasize
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="run a study (default: mnist, preset quick)",
        description="Train every method x seed of a study as one batched model; write a run directory "
                    "(config, environment, dataset checksums, metrics, checkpoints, summary) and a report.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", nargs="?", choices=list(presets.STUDIES) + ["table"], default=None,
                   help=f"the study to run (default: {presets.DEFAULT_STUDY})")
    p.add_argument("--preset", help="preset of the study: " + "; ".join(
        f"{s}: {', '.join(ps)} (default {presets.DEFAULT_PRESET[s]})" for s, ps in presets.STUDIES.items())
        + "; table: " + ", ".join(table.PRESETS) + " (default default)")
    p.add_argument("--seeds", type=int, metavar="N", help="train every method with seeds 0..N-1")
    p.add_argument("--dataset", help="mnist | fashion-mnist for the mnist study (--preset quick and datasize "
                                     "use fashion-mnist's own validated values; the others MNIST's, with one "
                                     "line saying so); moons | circles | spirals | xor for pointcloud")
    p.add_argument("--resolution", type=int, choices=(28, 7), help="image side: 28, or 7 (4x4 average pooling)")
    p.add_argument("--config", metavar="TOML", help="a user-defined study (see docs/studies.md)")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/<study>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its latest checkpoint")
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder holding mnist/ and fashion-mnist/ (default: $REGLAB_DATA_DIR)")
    p.add_argument("--epochs", type=int, metavar="N", help="override the number of epochs")
    p.add_argument("--set", action="append", metavar="PATH=VALUE",
                   help="change one value of the study, after every other option (repeatable): a study key "
                        "(n_epochs=30), data.KEY (data.resolution=7) or methods.NAME.KEY with the method by its "
                        "name, * for all (methods.dropout+l2.dropout_hidden=0.3); VALUE is TOML (0.3, true, "
                        "[512, 512], inf); checked like a TOML study, recorded in config.toml")
    add_plugin_option(p)
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to RUN_DIR/tensorboard/, one run per method/seed "
                        "(needs: pip install 'reglab[tensorboard]')")
    p.add_argument("--smoke", action="store_true", help="tiny mode: a few hundred examples, at most 2 epochs")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors (for CI)")
    p.add_argument("--no-report", action="store_true",
                   help="skip report.html (build it later with `reglab report RUN_DIR`)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="where to train (default: the study's)")
    p.add_argument("--matmul-dtype", choices=MATMUL_DTYPES,
                   help="operands of the training products (default: the study's, float32). tf32 (CUDA only): "
                        "float32 operands rounded to TensorFloat-32 on the GPU's tensor cores. bfloat16: "
                        "weights, optimizer state and losses stay float32, the products read bfloat16 copies "
                        "(like torch.autocast). Measure before switching: 1.8-2.2x faster on a Zen 5 CPU with "
                        "AVX512-BF16, no faster (0.8-1.0x) on a Xeon with AMX, many times slower on CPUs "
                        "without bfloat16 instructions (docs/performance.md)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch (default: --resume: the run's own; else env REGLAB_THREADS "
                        "when set; else the physical cores in this process's affinity that are free now, "
                        "measured over 0.2 s, at least 1). "
                        "Oversubscribed cores slow torch down many times: a count above the usable CPUs is capped "
                        "to them (one line says so)")
    p.add_argument("--allow-checksum-mismatch", action="store_true",
                   help="use dataset files whose checksums differ from the published ones (recorded as such)")
    table.add_table_options(p)
    p.set_defaults(func=run_command)


def add_plugin_option(p) -> None:
    """--plugin MODULE (repeatable), for `reglab run` and `reglab tune` (reglab.engine.registry)."""
    p.add_argument("--plugin", action="append", metavar="MODULE",
                   help="load the regularizers of this Python module (its REGULARIZERS list; repeatable), besides "
                        "the installed `reglab.regularizers` entry points; recorded in the study's plugins "
                        "(docs/regularizers.md)")


def resolve_plugins(cfg, args: argparse.Namespace):
    """`cfg` with the --plugin modules added, checked (each bad plugin one line); --set applied after
    (to a data-size study's base study), so it may change plugin values."""
    from reglab.config import StudyConfig, apply_settings
    from reglab.engine.registry import for_study, with_plugins

    def settled(study: StudyConfig) -> StudyConfig:
        return apply_settings(study, args.set, declared=for_study(study).declared)

    cfg = with_plugins(cfg, args.plugin or ())
    if not args.set:
        return cfg
    if not isinstance(cfg, StudyConfig):   # a data-size study: the settings are its base study's
        return cfg.replace(base=settled(cfg.base))
    return settled(cfg)


def run_command(args: argparse.Namespace, environ: dict | None = None) -> int:
    import torch

    from reglab.data.sources import default_cache_dir
    from reglab.study.runner import run_study

    environ = os.environ if environ is None else environ
    data_dir = args.data_dir or environ.get("REGLAB_DATA_DIR") or None
    cache_dir = default_cache_dir(environ)

    read = None   # a table study's table, read once (table_config)
    if args.resume:
        given = [opt for opt, val in (("STUDY", args.study), ("--preset", args.preset), ("--seeds", args.seeds),
                                      ("--dataset", args.dataset), ("--resolution", args.resolution),
                                      ("--config", args.config), ("--out", args.out), ("--epochs", args.epochs),
                                      ("--smoke", args.smoke or None), ("--device", args.device),
                                      ("--matmul-dtype", args.matmul_dtype), ("--set", args.set),
                                      ("--tensorboard", args.tensorboard or None), ("--plugin", args.plugin))
                 if val is not None] + table.given_table_options(args)
        if given:
            raise ReglabError(f"--resume continues the study stored in the run directory; got also {', '.join(given)}. "
                              f"Fix: reglab run --resume {args.resume}")
        check_path_arguments(args, data_dir)
        cfg = None
    elif args.study == "table":
        check_path_arguments(args, data_dir)
        cfg, read = table_config(args)
    elif table.given_table_options(args):
        raise ReglabError(f"{', '.join(table.given_table_options(args))} describe a table study. "
                          "Fix: reglab run table --data FILE --target COLUMN (a --config study has a [data] table).")
    elif args.config:
        if args.study or args.preset:
            raise ReglabError("--config defines the whole study; drop the STUDY name and --preset.")
        check_path_arguments(args, data_dir)
        from reglab.engine.registry import load_toml
        cfg = presets.apply_overrides(load_toml(args.config, extra_plugins=args.plugin or ()), seeds=args.seeds,
                                      dataset=args.dataset,
                                      resolution=args.resolution, epochs=args.epochs, smoke=args.smoke,
                                      device=args.device, matmul_dtype=args.matmul_dtype)
    else:
        check_path_arguments(args, data_dir)
        cfg = presets.get(args.study or presets.DEFAULT_STUDY, args.preset, seeds=args.seeds, dataset=args.dataset,
                          resolution=args.resolution, epochs=args.epochs, smoke=args.smoke, device=args.device,
                          matmul_dtype=args.matmul_dtype)
        note = presets.values_note(args.study or presets.DEFAULT_STUDY, args.preset, args.dataset)
        if note and not args.quiet:
            print(note, file=sys.stderr)
    if cfg is not None:
        cfg = resolve_plugins(cfg, args)
    read = table_read_for(cfg, read)
    if cfg is not None and args.tensorboard:
        cfg = cfg.replace(tensorboard=True)
    torch.set_num_threads(resolve_threads(args.threads, args.resume))
    settings = getattr(cfg, "base", cfg)   # a data-size study's device and dtype are its base study's
    if settings is not None and settings.device == "cuda":
        if not torch.cuda.is_available():
            raise ReglabError("this study trains on 'cuda' but no CUDA device is available. "
                              "Fix: add --device cpu (slow for the paper preset) or run on a GPU machine.")

    if settings is not None and settings.matmul_dtype == "bfloat16" and settings.device == "cpu" \
            and not _native_bfloat16_cpu():
        print("reglab: warning: this CPU has no bfloat16 matrix instructions (AVX512-BF16 or AMX); "
              "its bfloat16 products are emulated (40-50x slower than float32 on an AVX2 EPYC, docs/studies.md). "
              "Fix: drop --matmul-dtype bfloat16.", file=sys.stderr)

    # a polite kill (SIGTERM) ends like Ctrl-C: the manifest says "interrupted", the lock is released
    signal.signal(signal.SIGTERM, _raise_interrupt)
    from reglab.study.datasize import DATASIZE_FILE, DataSizeStudy, run_datasize
    if isinstance(cfg, DataSizeStudy) or (args.resume and (Path(args.resume) / DATASIZE_FILE).exists()):
        run_datasize(cfg, out_dir=args.resume or args.out, data_dir=data_dir, cache_dir=cache_dir,
                     resume=bool(args.resume), quiet=args.quiet, progress=not args.quiet,
                     allow_checksum_mismatch=args.allow_checksum_mismatch, command=command_line(args),
                     report=not args.no_report, data=read)
        return 0
    run_study(cfg, out_dir=args.resume or args.out, data_dir=data_dir, cache_dir=cache_dir,
              resume=bool(args.resume), quiet=args.quiet, progress=not args.quiet,
              allow_checksum_mismatch=args.allow_checksum_mismatch,
              command=command_line(args), report=not args.no_report, data=read)
    return 0


def check_path_arguments(args: argparse.Namespace, data_dir: str | None) -> None:
    """Every path argument representable, of the right kind and (where written to) writable, before
    any config is printed or file touched (reglab.paths)."""
    from reglab.paths import check_folder_to_write, check_path
    if args.config:
        check_path(args.config, "--config")   # what is there: load_toml's own lines
    if args.resume:
        check_path(args.resume, "--resume")   # what is there: the runner's "cannot resume" lines
    elif args.out:
        check_folder_to_write(args.out, "--out")
    if data_dir:
        check_path(data_dir, "--data-dir" if args.data_dir else "REGLAB_DATA_DIR")


def table_config(args: argparse.Namespace):
    """`reglab run/tune table`: the study, sized from the table (reglab.study.table), and the table as
    read here (a :class:`~reglab.data.table.TableRead`): the command trains on that read, so the
    file is read and hashed once and the study is sized from the bytes it trains on."""
    from reglab.data.table import read_table, table_dataset

    if args.config:
        raise ReglabError("--config defines the whole study; drop the STUDY name 'table'. "
                          "Fix: reglab run --config FILE.toml.")
    if args.dataset or args.resolution:
        raise ReglabError("--dataset and --resolution are for mnist and pointcloud. Fix: reglab run table --data FILE.")
    data_cfg = table.table_data_config(args)
    read = read_table(data_cfg)
    dataset = table_dataset(read.features, read.labels, data_cfg, read.provenance)
    cfg = table.table_study(data_cfg, dataset, args.preset or "default", seeds=getattr(args, "seeds", None),
                            epochs=args.epochs, smoke=args.smoke, device=args.device,
                            matmul_dtype=args.matmul_dtype)
    return cfg, read


def table_read_for(cfg, read):
    """`read` when the final study (after --set) still names its source and label column, else None
    (the study reads its own data.source)."""
    if read is None or cfg is None:
        return None
    return read if read.matches(getattr(cfg, "base", cfg).data) else None


def resolve_threads(requested: int | None, resume_dir: str | None) -> int:
    """Torch's CPU threads: as requested; else the resumed run's own (its last bits may depend on
    it); else env ``REGLAB_THREADS`` when set (a fixed default for a shared machine or a test
    runner's workers); else the cores free now (reglab.threads: affinity, physical cores, cgroup
    quota, minus the CPU time other work takes). A torch run whose threads share cores with other
    busy processes slows down many times (docs/studies.md, "Threads").
    """
    if requested is not None:
        if requested < 1:
            raise ReglabError(f"--threads must be a whole number >= 1; got {requested}. Fix: give 1 or more, "
                              "or leave it out (the free cores).")
        return cap_threads(requested, "--threads")
    if resume_dir is not None:
        env = Path(resume_dir) / "environment.json"
        if env.exists():
            from reglab.results import read_json
            stored = read_json(env).get("torch_threads")
            if isinstance(stored, int) and stored >= 1:
                return cap_threads(stored, "the run's stored thread count")
    from_env = os.environ.get("REGLAB_THREADS", "").strip()
    if from_env:
        if not (from_env.isascii() and from_env.isdigit()) or int(from_env) < 1:
            raise ReglabError(f"REGLAB_THREADS must be a whole number >= 1; got {from_env!r}. Fix: set it to 1 or "
                              "more, or unset it (the free cores).")
        return cap_threads(int(from_env), "REGLAB_THREADS")
    from reglab.threads import default_threads
    return default_threads()


def cap_threads(requested: int, what: str) -> int:
    """`requested`, or the usable CPUs when it asks for more, with one line saying so (stderr).

    Capped rather than refused: more threads than CPUs never trains faster (on the project's 2-core
    machine, 999 threads did not finish a 15-second smoke run in 120 s), while a command moved from
    a larger machine, or a resume of a run begun on one, should still run.
    """
    from reglab.threads import usable_cpus
    usable = usable_cpus()
    if requested > usable:
        print(f"reglab: {what} {requested} is more than the {usable} usable CPU(s) of this process; "
              f"using {usable} (more threads than CPUs slow torch down many times).", file=sys.stderr)
        return usable
    return requested


def _native_bfloat16_cpu() -> bool:
    """False only where we know better: an x86 CPU without AVX512-BF16 and AMX (other CPUs: not checked)."""
    import platform

    import torch
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return True
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def command_line(args: argparse.Namespace) -> str:
    """The `reglab run ...` command that reproduces `args` (stored in the manifest)."""
    parts = ["reglab", "run"] + ([args.study] if args.study else [])
    for opt in ("preset", "seeds", "dataset", "resolution", "config", "out", "resume", "data_dir", "epochs",
                "device", "matmul_dtype", "threads"):
        val = getattr(args, opt)
        if val is not None:
            parts += ["--" + opt.replace("_", "-"), str(val)]
    for opt in table.TABLE_OPTIONS:
        val = getattr(args, opt, None)
        if val is not None:
            parts += ["--" + opt.replace("_", "-"), str(val)]
    for module in getattr(args, "plugin", None) or ():
        parts += ["--plugin", module]
    for setting in args.set or ():
        parts += ["--set", setting]
    for flag in ("smoke", "quiet", "no_report", "allow_checksum_mismatch", "tensorboard"):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    return shlex.join(parts)
