"""`reglab report RUN_DIR`: build the report of a run from its files (never retrains)."""

from __future__ import annotations

import argparse
import sys

from reglab.errors import ReglabError
from reglab.report.build import write_report
from reglab.results import REPORT_FILES, RunLock, RunWriter, file_sha256, load_run, manifest_intact, run_files

EXIT_INCOMPLETE = 3  # the report was built, but from a run that is still running or was interrupted


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="build report.html, figures and summary.md from a run directory",
        description="Build the report of a run from the files in its directory: report.html (self-contained), "
                    "figures/*.png and *.svg, summary.md. Never retrains. Exit status 0 for a complete run, "
                    f"{EXIT_INCOMPLETE} when the run is incomplete (a partial report is still written), "
                    "2 when the directory is not a readable run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the directory `reglab run` wrote")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to RUN_DIR/tensorboard/ (replacing earlier ones), "
                        "one run per method/seed; needs: pip install 'reglab[tensorboard]'")
    p.add_argument("--parquet", action="store_true",
                   help="also write the epochs, iterations and summary tables (those of reglab.load_run) to "
                        "RUN_DIR/parquet/*.parquet; needs: pip install 'reglab[parquet]'")
    p.set_defaults(func=_report)


def _report(args) -> int:
    from reglab.paths import check_path
    from reglab.report.datasize import build_datasize_report, is_datasize_dir
    check_path(args.run_dir, "RUN_DIR")
    if is_datasize_dir(args.run_dir):   # a data-size study: one report over its sizes' run directories
        if args.tensorboard or args.parquet:
            raise ReglabError(f"{args.run_dir} is a data-size study, one run directory per training-set size; "
                              "--tensorboard and --parquet work on one run directory. Fix: give one size's "
                              "folder inside it.")
        print(build_datasize_report(args.run_dir))
        return 0
    if args.tensorboard:
        from reglab.report.tensorboard import require_tensorboard
        require_tensorboard()
    if args.parquet:
        from reglab.frames import require_pyarrow
        require_pyarrow()
    run = load_run(args.run_dir)
    path = write_report(run)
    written = REPORT_FILES
    if args.tensorboard:
        from reglab.report.tensorboard import TENSORBOARD_DIR, write_tensorboard
        print(f"reglab: TensorBoard: tensorboard --logdir {write_tensorboard(run)}", file=sys.stderr)
        written += (TENSORBOARD_DIR + "/",)
    if args.parquet:
        from reglab.frames import PARQUET_DIR, RunFrames
        for table in RunFrames(run).to_parquet():
            print(f"reglab: wrote {table}", file=sys.stderr)
        written += (PARQUET_DIR + "/",)
    if not run.complete:
        status = run.manifest.get("status", "?")
        print(f"reglab: run {run.dir} is incomplete (status {status}, {run.manifest.get('epochs_done', '?')} of "
              f"{run.manifest.get('n_epochs', '?')} epochs); wrote a partial report to {path}. "
              "Fix: rebuild it when the run has finished (or resume it with `reglab run --resume`).",
              file=sys.stderr)
        return EXIT_INCOMPLETE
    # the rebuilt files' digests, so `reglab verify` still holds (never over a damaged manifest)
    if "sha256" in run.manifest and manifest_intact(run.manifest) and not _recorded(run, written):
        try:
            with RunLock(run.dir):
                RunWriter(run.dir).update_manifest(report=path.name, record=written)
        except ReglabError:
            pass  # another reglab process holds the run; it records the files itself
    print(path)
    return 0


def _recorded(run, prefixes: tuple[str, ...]) -> bool:
    """Whether the manifest already holds the files written (``prefixes``) as they are now (a rebuild that
    changed nothing)."""
    recorded = {k: v for k, v in run.manifest["sha256"].items() if k.startswith(prefixes)}
    on_disk = [n for n in run_files(run.dir) if n.startswith(prefixes)]
    return set(recorded) == set(on_disk) and all(file_sha256(run.dir / n) == recorded[n] for n in on_disk)
