"""`reglab verify RUN_DIR`: check every file of a run directory against the sha256 digests in its manifest."""

from __future__ import annotations

import argparse

from reglab.results import verify_run

EXIT_MISMATCH = 1  # the directory was read, and some file is missing, changed or extra


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "verify", help="check every file of a run directory against its manifest (sha256)",
        description="Compare every file of RUN_DIR with the sha256 digest manifest.json recorded when the run "
                    "wrote it; list the files that are missing, changed or extra (hidden files, such as the lock, "
                    f"are not checked). Exit status 0 when all match, {EXIT_MISMATCH} when some do not, 2 when "
                    "RUN_DIR is not a readable run directory or its manifest records no digests.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the directory `reglab run` wrote")
    p.set_defaults(func=verify_command)


def verify_command(args: argparse.Namespace) -> int:
    from reglab.paths import check_path
    check_path(args.run_dir, "RUN_DIR")
    v = verify_run(args.run_dir)
    for kind, names in (("missing", v.missing), ("changed", v.changed), ("extra", v.extra)):
        for name in names:
            print(f"{kind}: {v.dir / name}")
    if v.ok:
        print(f"reglab: {v.dir}: all {len(v.checked)} files match manifest.json")
        return 0
    if v.status != "complete":
        print(f"reglab: note: the run is {v.status}; files it wrote after its last manifest update (the next "
              "epoch's metrics, a newer checkpoint) show as changed or extra until it is resumed.")
    print(f"reglab: {v.dir}: {len(v.missing)} missing, {len(v.changed)} changed, {len(v.extra)} extra of "
          f"{len(v.checked)} files in manifest.json. Fix: restore the files from a copy, or re-run the study.")
    return EXIT_MISMATCH
