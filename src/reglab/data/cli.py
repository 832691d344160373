"""`reglab data info NAME` and `reglab data fetch NAME`.

This is where the environment is read: ``--data-dir`` falls back to
``REGLAB_DATA_DIR``, ``--cache-dir`` to ``$XDG_CACHE_HOME/reglab`` (default
``~/.cache/reglab``); the library gets explicit paths. Other commands that
load data call :func:`resolve_dirs` the same way.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

from reglab.config import DATASETS, IMAGE_DATASETS, DataConfig
from reglab.data.images import load_dataset
from reglab.data.sources import default_cache_dir, fetch_or_fail, get_source
from reglab.errors import ReglabError


def resolve_dirs(data_dir: str | None, cache_dir: str | None,
                 environ: Mapping[str, str] | None = None) -> tuple[Path | None, Path]:
    """(data dir, cache dir) from the flags, else REGLAB_DATA_DIR and XDG_CACHE_HOME / ~/.cache."""
    env = os.environ if environ is None else environ
    data = data_dir or env.get("REGLAB_DATA_DIR") or None
    cache = Path(cache_dir) if cache_dir else default_cache_dir(env)
    return (Path(data).expanduser() if data else None), cache.expanduser()


def add_location_args(parser: argparse.ArgumentParser) -> None:
    """--data-dir, --cache-dir, --allow-checksum-mismatch, --mirror, --no-download: for every data-loading command."""
    parser.add_argument("--data-dir", metavar="D",
                        help="folder holding mnist/ and fashion-mnist/ (default: $REGLAB_DATA_DIR)")
    parser.add_argument("--cache-dir", metavar="C",
                        help="download cache (default: $XDG_CACHE_HOME/reglab or ~/.cache/reglab)")
    parser.add_argument("--allow-checksum-mismatch", action="store_true",
                        help="use image files whose checksums differ from the published ones (recorded as "
                             "'override')")
    parser.add_argument("--mirror", action="append", metavar="URL",
                        help="base URL to download from instead of the public mirrors (repeatable)")
    parser.add_argument("--no-download", action="store_true", help="never download; fail if not found")


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="inspect and download datasets",
                                 description="Inspect and download the datasets reglab trains on.")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda args: _usage(data))

    info = sub.add_parser("info", help="counts per split and class, checksum status, where it was found",
                          description="Load a dataset and print its splits, class counts, checksum status "
                                      "and where it was found.")
    info.add_argument("name", metavar="NAME", help=f"one of: {', '.join(DATASETS)}")
    info.add_argument("--resolution", type=int, default=28, help="28, or 7 for 4x4-pooled images")
    add_location_args(info)
    info.set_defaults(func=cmd_info)

    fetch = sub.add_parser("fetch", help="download an image dataset into the cache",
                           description="Download MNIST or Fashion-MNIST into the user cache, verifying "
                                       "checksums; files already verified there are kept.")
    fetch.add_argument("name", metavar="NAME", help=f"one of: {', '.join(IMAGE_DATASETS)}")
    fetch.add_argument("--cache-dir", metavar="C",
                       help="download cache (default: $XDG_CACHE_HOME/reglab or ~/.cache/reglab)")
    fetch.add_argument("--mirror", action="append", metavar="URL",
                       help="base URL to download from instead of the public mirrors (repeatable)")
    fetch.set_defaults(func=cmd_fetch)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _check_name(name: str, allowed: tuple[str, ...]) -> None:
    if name not in allowed:
        raise ReglabError(f"unknown dataset {name!r}; known: {', '.join(allowed)}. Fix: use one of those names.")


def cmd_info(args: argparse.Namespace) -> int:
    _check_name(args.name, DATASETS)
    data_dir, cache_dir = resolve_dirs(args.data_dir, args.cache_dir)
    cfg = DataConfig(name=args.name, resolution=args.resolution)
    ds = load_dataset(cfg, data_dir=data_dir, cache_dir=cache_dir, download=not args.no_download,
                      allow_checksum_mismatch=args.allow_checksum_mismatch, mirrors=args.mirror)
    print(format_info(ds.info))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    _check_name(args.name, DATASETS)
    if args.name not in IMAGE_DATASETS:
        raise ReglabError(f"{args.name} is generated, not downloaded. Fix: `reglab data info {args.name}` "
                          f"shows it; fetch takes one of {', '.join(IMAGE_DATASETS)}.")
    _, cache_dir = resolve_dirs(None, args.cache_dir)
    source = get_source(args.name)
    urls = fetch_or_fail(source, cache_dir, mirrors=args.mirror)
    folder = cache_dir / source.name
    for f in source.files:
        how = f"downloaded from {urls[f.name]}" if f.name in urls else "already in the cache"
        print(f"{f.name}.gz: checksum ok, {how}")
    print(f"{source.name} is in {folder}")
    return 0


def format_info(info: dict) -> str:
    """Human-readable summary of ``Dataset.info``: where, checksums, split sizes and class counts."""
    lines = [f"dataset: {info['name']} ({info['kind']}, {info['n_classes']} classes, "
             f"{info['n_features']} features)"]
    if info["kind"] == "image":
        src = info["source"]
        lines.append(f"found in: {src['folder']} ({src['where']})")
        for note in src["looked_before"]:
            lines.append(f"  looked first: {note}")
        for name, url in src["downloaded_from"].items():
            lines.append(f"  downloaded {name} from {url}")
        ok = info["checksum_status"] == "ok"
        lines.append("checksum ok (md5/sha256 of the decompressed content match the published values)" if ok
                     else "checksum MISMATCH allowed by --allow-checksum-mismatch (status 'override')")
        for name, rec in info["checksums"].items():
            lines.append(f"  {name}: {rec['status']} ({', '.join(rec['checked'])}) sha256 {rec['sha256']}")
        lines.append(f"resolution: {info['resolution']}x{info['resolution']}; {info['pixels']}")
    else:
        lines.append(f"generated: {info['source']['generator']}; params {info['params']}")
    lines.append(f"splits: {info['split_rule']}")
    n_classes = info["n_classes"]
    width = max(6, *(len(str(c)) for counts in info["class_counts"].values() for c in counts))
    lines.append(f"{'split':<6} {'total':>7}  " + " ".join(f"{c:>{width}}" for c in range(n_classes)))
    for split, counts in info["class_counts"].items():
        lines.append(f"{split:<6} {info['split_sizes'][split]:>7}  " + " ".join(f"{c:>{width}}" for c in counts))
    if info.get("note"):
        lines.append(f"note: {info['note']}")
    return "\n".join(lines)
