"""Property-based bad input (Hypothesis): whatever a user hands reglab, it answers in one line.

Study TOML files, IDX files, run directories and tune storage URLs are damaged at random;
the CLI runs in-process (``reglab.cli.main``). Invariant for every case: exit status 2 and one
line ``reglab: ... Fix: ...`` naming the input, never a traceback, and the input's bytes are
the same afterwards. Where a damaged input is still usable (a flipped pixel, a damaged file a
resume rewrites anyway) the command may succeed, and then its results must be right.

Examples per property: REGLAB_FUZZ_EXAMPLES (default below; docs/reliability.md). Hypothesis
derandomizes, so a run replays exactly; a failure prints the smallest input it found.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reglab.cli import main
from reglab.config import DataConfig, MethodConfig, StudyConfig, load_toml
from reglab.errors import ReglabError
from reglab.results import read_json

EXAMPLES = int(os.environ.get("REGLAB_FUZZ_EXAMPLES", "0")) or None


def _settings(default: int):
    return settings(max_examples=EXAMPLES or default, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def cli(argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `reglab ARGV`, run in this process."""
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse
            rc = e.code
    torch.set_num_threads(threads)
    return rc, out.getvalue(), err.getvalue()


def assert_one_line(err: str, *names: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("reglab: ") and "Fix: " in lines[0], err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], f"{name!r} not named in: {lines[0]}"


def tree(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file() and not p.is_symlink()}


# ----------------------------------------------------------------------------
# study TOML files

BASE = {"name": "prop", "hidden": [8], "n_epochs": 1, "seeds": [0], "checkpoint_every": 1,
        "data": {"name": "moons", "n_points": 60},
        "methods": [{"name": "a", "l2": 0.001}, {"name": "b", "dropout_hidden": 0.5}]}
KEYS = ([("", f) for f in StudyConfig.__dataclass_fields__] + [("data", f) for f in DataConfig.__dataclass_fields__]
        + [("methods", f) for f in MethodConfig.__dataclass_fields__])

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.integers(min_value=-10**40, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20),
    st.sampled_from(["inf", "nan", "-1", "", "mnist", "sgd", "val_loss", "1e999"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


@st.composite
def mutation(draw):
    kind = draw(st.sampled_from(["set", "set", "set", "delete", "unknown", "nesting", "methods"]))
    if kind == "set":
        return ("set", draw(st.sampled_from(KEYS)), draw(values))
    if kind == "delete":
        return ("delete", draw(st.sampled_from([("", "name"), ("", "methods"), ("", "data"), ("data", "name"),
                                                ("methods", "name")])))
    if kind == "unknown":
        return ("unknown", draw(st.sampled_from(["", "data", "methods"])), draw(st.text(min_size=1, max_size=12)),
                draw(scalars))
    if kind == "nesting":
        return ("nesting", draw(st.sampled_from(["data is a list", "data is a string", "methods is a table",
                                                 "method is a number", "method key at the top", "data key in a method",
                                                 "study key in data", "methods inside data"])))
    return ("methods", draw(st.sampled_from(["empty", "duplicate names", "many duplicates", "no seeds",
                                            "duplicate seeds"])))


def _section(study: dict, section: str):
    """The table a key of `section` lives in (the first method's for "methods"), or None."""
    if section == "":
        return study
    if section == "data":
        return study.get("data")
    methods = study.get("methods")
    return methods[0] if isinstance(methods, list) and methods else None


def apply(study: dict, m: tuple) -> None:
    if m[0] == "set":
        (section, key), value = m[1], m[2]
        target = _section(study, section)
        if isinstance(target, dict):
            target[key] = value
    elif m[0] == "delete":
        section, key = m[1]
        target = _section(study, section)
        if isinstance(target, dict):
            target.pop(key, None)
    elif m[0] == "unknown":
        target = _section(study, m[1])
        if isinstance(target, dict):
            target["x_" + m[2]] = m[3]
    elif m[0] == "nesting":
        what = m[1]
        if what == "data is a list":
            study["data"] = [study.get("data")] if study.get("data") is not None else [1]
        elif what == "data is a string":
            study["data"] = "moons"
        elif what == "methods is a table":
            study["methods"] = {"name": "a"}
        elif what == "method is a number":
            study["methods"] = [1, 2]
        elif what == "method key at the top":
            study["l2"] = 0.1
        elif what == "data key in a method":
            if isinstance(_section(study, "methods"), dict):
                _section(study, "methods")["n_points"] = 100
        elif what == "study key in data":
            if isinstance(study.get("data"), dict):
                study["data"]["n_epochs"] = 2
        elif what == "methods inside data":
            if isinstance(study.get("data"), dict):
                study["data"]["methods"] = study.pop("methods", [])
    elif m[0] == "methods":
        what = m[1]
        if what == "empty":
            study["methods"] = []
        elif what == "duplicate names":
            study["methods"] = [{"name": "a"}, {"name": "a", "l2": 0.1}]
        elif what == "many duplicates":
            study["methods"] = [{"name": "x"}] * 50
        elif what == "no seeds":
            study["seeds"] = []
        else:
            study["seeds"] = [3, 3]


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(type(v))


def toml_text(study: dict) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in study.items() if v is not None)


def test_a_damaged_study_file_is_one_line_naming_it_never_a_traceback(tmp_path):
    seen = Counter()

    @_settings(300)
    @given(st.lists(mutation(), min_size=1, max_size=3))
    def check(mutations):
        study = json.loads(json.dumps(BASE))
        for m in mutations:
            apply(study, m)
        with tempfile.TemporaryDirectory(dir=tmp_path) as d:
            path = Path(d) / "study.toml"
            path.write_text(toml_text(study))
            before = path.read_bytes()
            seen["tried"] += 1
            try:
                load_toml(path)
                seen["still valid (not run)"] += 1  # e.g. lr set to another valid number
                return
            except ReglabError:
                pass
            rc, out, err = cli(["run", "--config", str(path), "--out", str(Path(d) / "run"), "--quiet",
                                "--no-report", "--threads", "1"])
            assert rc == 2, (rc, err)
            assert_one_line(err, str(path))
            assert path.read_bytes() == before
            assert not (Path(d) / "run").exists()
            seen["rejected in one line"] += 1

    check()
    print(f"\nfault suite: {seen['tried']} damaged study files: {seen['rejected in one line']} rejected in one "
          f"line naming the file, {seen['still valid (not run)']} still valid")
    assert seen["rejected in one line"] >= 0.5 * seen["tried"]


# ----------------------------------------------------------------------------
# IDX files: cut, grown, flipped

IDX_FILES = ("t10k-labels-idx1-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte")
ALL_IDX = IDX_FILES + ("train-images-idx3-ubyte",)


@st.composite
def idx_damage(draw):
    name = draw(st.sampled_from(IDX_FILES))
    gz = draw(st.booleans())
    kind = draw(st.sampled_from(["cut", "cut header", "grow", "flip", "flip header", "empty"]))
    return name, gz, kind, draw(st.integers(0, 2**31)), draw(st.integers(1, 255)), draw(st.booleans())


def _content(data: bytes, gz: bool) -> bytes | None:
    import gzip
    try:
        return gzip.decompress(data) if gz else data
    except Exception:  # noqa: BLE001
        return None


def test_a_damaged_idx_file_is_one_line_naming_it_never_a_traceback(data_dir, tmp_path):
    import gzip
    src = data_dir / "mnist"
    raw = {n: gzip.decompress((src / f"{n}.gz").read_bytes()) for n in IDX_FILES}
    seen = Counter()

    @_settings(25)
    @given(idx_damage())
    def check(damage):
        name, gz, kind, where, xor, allow = damage
        data = (src / f"{name}.gz").read_bytes() if gz else raw[name]
        n = len(data)
        if kind == "cut":
            data = data[: where % n]
        elif kind == "cut header":
            data = data[: where % 16]
        elif kind == "grow":
            data = data + bytes([xor]) * (1 + where % 64)
        elif kind == "flip":
            i = where % n
            data = data[:i] + bytes([data[i] ^ xor]) + data[i + 1:]
        elif kind == "flip header":
            i = where % min(n, 16)
            data = data[:i] + bytes([data[i] ^ xor]) + data[i + 1:]
        else:
            data = b""
        with tempfile.TemporaryDirectory(dir=tmp_path) as d:
            folder = Path(d) / "mnist"
            folder.mkdir()
            for other in ALL_IDX:
                if other != name:
                    (folder / f"{other}.gz").symlink_to(src / f"{other}.gz")
            damaged = folder / (f"{name}.gz" if gz else name)
            damaged.write_bytes(data)
            before = tree(Path(d))
            rc, out, err = cli(["data", "info", "mnist", "--data-dir", d, "--no-download",
                                "--cache-dir", str(Path(d) / "cache")] + (["--allow-checksum-mismatch"] if allow else []))
            seen["tried"] += 1
            assert tree(Path(d)) == before
            if rc == 0:  # a damage the format cannot see (a flipped pixel), accepted only as a checksum override,
                # or one that leaves the content as it was (a gzip header flag)
                assert (allow or _content(data, gz) == raw[name]) and "Traceback" not in err
                seen["accepted"] += 1
                return
            assert rc == 2, (rc, err)
            assert_one_line(err, name)
            seen["rejected in one line"] += 1

    check()
    print(f"\nfault suite: {seen['tried']} damaged IDX files: {seen['rejected in one line']} rejected in one line "
          f"naming the file, {seen['accepted']} accepted (content intact, or only with --allow-checksum-mismatch)")


# ----------------------------------------------------------------------------
# run directories: truncated, garbage or missing files

RUN_STUDY = '''name = "damaged"
hidden = [8]
n_epochs = 3
batch_size = 20
seeds = [0, 1]
checkpoint_every = 1
[data]
name = "moons"
n_points = 120
[[methods]]
name = "l2"
l2 = 0.001
[[methods]]
name = "dropout"
dropout_hidden = 0.3
'''


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A complete run, and the same study interrupted in epoch 3 (checkpoints 1 and 2 on disk)."""
    from reglab.results import RunWriter
    from reglab.study import runner
    root = tmp_path_factory.mktemp("runs")
    (root / "study.toml").write_text(RUN_STUDY)
    with mock.patch.object(runner, "TIMING_MIN_SECONDS", 0.0), mock.patch.object(runner, "TIMING_MAX_EPOCHS", 1):
        assert cli(["run", "--config", str(root / "study.toml"), "--out", str(root / "complete"), "--quiet",
                    "--no-report", "--threads", "1"])[0] == 0
        real = RunWriter.write_epoch

        def die_in_epoch_3(self, epoch, *a):
            if epoch == 3:
                raise KeyboardInterrupt
            real(self, epoch, *a)
        with mock.patch.object(RunWriter, "write_epoch", die_in_epoch_3):
            assert cli(["run", "--config", str(root / "study.toml"), "--out", str(root / "interrupted"),
                        "--quiet", "--no-report", "--threads", "1"])[0] == 130
    assert read_json(root / "interrupted" / "manifest.json")["status"] == "interrupted"
    return root


@st.composite
def run_damage(draw, files):
    name = draw(st.sampled_from(files))
    kind = draw(st.sampled_from(["truncate", "garbage", "delete", "flip", "empty"]))
    return name, kind, draw(st.integers(0, 2**31)), draw(st.integers(1, 255))


def _damage(path: Path, kind: str, where: int, xor: int) -> None:
    data = path.read_bytes()
    if kind == "delete":
        path.unlink()
    elif kind == "truncate":
        path.write_bytes(data[: where % max(1, len(data))])
    elif kind == "garbage":
        path.write_bytes(bytes((where * 7 + i * xor) % 256 for i in range(max(1, len(data) // 2))))
    elif kind == "flip" and data:
        i = where % len(data)
        path.write_bytes(data[:i] + bytes([data[i] ^ xor]) + data[i + 1:])
    else:
        path.write_bytes(b"")


def _csv(path: Path) -> list[list[str]]:
    import csv
    rows = list(csv.reader(path.open()))
    drop = [i for i, c in enumerate(rows[0]) if c.endswith("time_s")]
    return [[c for i, c in enumerate(r) if i not in drop] for r in rows]


@pytest.mark.parametrize("base", ["complete", "interrupted"])
def test_a_damaged_run_directory_is_one_line_or_resumes_to_the_right_results(runs, tmp_path, base):
    from reglab.report import figures
    from reglab.study import runner
    files = sorted(str(p.relative_to(runs / base)) for p in (runs / base).rglob("*")
                   if p.is_file() and not p.name.startswith("."))
    seen = Counter()

    @_settings(40)
    @given(run_damage(files), st.sampled_from(["verify", "resume", "report"]))
    def check(damage, command):
        name, kind, where, xor = damage
        with tempfile.TemporaryDirectory(dir=tmp_path) as d:
            run = Path(d) / "run"
            shutil.copytree(runs / base, run)
            original = (run / name).read_bytes()
            _damage(run / name, kind, where, xor)
            same = (run / name).exists() and (run / name).read_bytes() == original
            before = tree(run)
            argv = {"verify": ["verify", str(run)], "report": ["report", str(run)],
                    "resume": ["run", "--resume", str(run), "--quiet", "--no-report"]}[command]
            # drawing figures is not under test here (it reads what load_run read); it takes seconds
            with mock.patch.object(figures, "all_figures", lambda digest: []), \
                    mock.patch.object(runner, "TIMING_MIN_SECONDS", 0.0), \
                    mock.patch.object(runner, "TIMING_MAX_EPOCHS", 1):
                rc, out, err = cli(argv)
            seen["tried"] += 1
            assert "Traceback" not in err
            if command == "verify":
                if name == "manifest.json":
                    assert rc in ((0,) if same else (1, 2)), (rc, out, err)
                else:
                    assert rc == (0 if same else 1), (rc, out, err)
                    assert same or f"{run / name}" in out
                if rc == 2:
                    assert_one_line(err)
                assert tree(run) == before
                seen[f"verify: {'found' if rc else 'unchanged'}"] += 1
                return
            if rc == 2:
                assert_one_line(err)
                changed = {k for k in set(before) | set(tree(run)) if before.get(k) != tree(run).get(k)}
                assert changed <= {"manifest.json"}, changed  # the run marked interrupted; nothing else touched
                seen[f"{command}: one line"] += 1
                return
            if command == "report":
                assert rc in (0, 3), (rc, err)
                if not same and not name.startswith(("figures/", "report.html", "summary.md")):
                    assert cli(["verify", str(run)])[0] != 0, "the rebuilt report recorded a damaged file as good"
                seen["report: built"] += 1
                return
            assert rc == 0, (rc, err)
            # resumed: the results must be the uninterrupted run's
            if base == "complete":
                assert same or name.startswith(runner.REBUILT), f"{name} damaged ({kind}) and the resume accepted it"
            for csv_name in ("metrics_epoch.csv", "metrics_iter.csv"):
                assert _csv(run / csv_name) == _csv(runs / "complete" / csv_name)
            seen["resume: resumed to the uninterrupted results"] += 1

    check()
    print(f"\nfault suite: {seen['tried']} damaged {base} run directories: "
          + ", ".join(f"{k} {v}" for k, v in sorted(seen.items()) if k != "tried"))


# ----------------------------------------------------------------------------
# tune storage URLs

@st.composite
def storage_url(draw, folder: Path):
    kind = draw(st.sampled_from(["folder", "garbage file", "missing folder", "no driver", "unknown scheme", "text",
                                 "empty", "sqlite no path"]))
    word = draw(st.text(alphabet="abcxyz019-_/:@.?=", min_size=0, max_size=12))
    if kind == "folder":
        return f"sqlite:///{folder}"
    if kind == "garbage file":
        return f"sqlite:///{folder / 'garbage.db'}"
    if kind == "missing folder":
        return f"sqlite:///{folder / 'no' / 'such' / word.replace('/', '') or 'x'}.db"
    if kind == "no driver":
        return draw(st.sampled_from(["postgresql", "mysql", "oracle", "mssql"])) + f"://u:pw@nohost/{word}"
    if kind == "unknown scheme":
        return f"{draw(st.sampled_from(['foo', 'http', 'file', 'sqlite3']))}://{word}"
    if kind == "text":
        return word or "x"
    if kind == "empty":
        return ""
    return "sqlite://"  # in memory: usable


def test_a_bad_tune_storage_url_is_one_line_never_a_traceback(tmp_path):
    folder = tmp_path / "storage"
    folder.mkdir()
    (folder / "garbage.db").write_bytes(b"this is not a database" * 50)
    seen = Counter()

    @_settings(30)
    @given(storage_url(folder))
    def check(url):
        before = tree(folder)
        with tempfile.TemporaryDirectory(dir=tmp_path) as d:
            rc, out, err = cli(["tune", "pointcloud", "--smoke", "--methods", "l2", "--trials", "1", "--storage", url,
                                "--out", str(Path(d) / "tune"), "--quiet", "--threads", "1"])
            seen["tried"] += 1
            assert "Traceback" not in err
            assert tree(folder) == before
            if rc == 0:
                seen["usable"] += 1
                return
            assert rc == 2, (rc, err)
            assert_one_line(err)
            assert not (Path(d) / "tune").exists()  # nothing half-written
            seen["rejected in one line"] += 1

    check()
    print(f"\nfault suite: {seen['tried']} tune storage URLs: {seen['rejected in one line']} rejected in one line, "
          f"{seen['usable']} usable")


# ----------------------------------------------------------------------------
# issue 22: path, thread, size and memory arguments, alone and combined

NAME_MAX = 255


@st.composite
def bad_path(draw, root: Path, a_file: Path):
    """A path no command can use: too long, a name too long, unrepresentable, or under a file."""
    kind = draw(st.sampled_from(["long name", "long path", "nul", "surrogate", "under a file"]))
    where = draw(st.sampled_from([root, a_file.parent / "new"]))
    if kind == "long name":
        return kind, str(where / ("n" * draw(st.integers(NAME_MAX + 1, 3 * NAME_MAX))))
    if kind == "long path":
        depth = draw(st.integers(17, 40))
        return kind, str(where.joinpath(*["d" * 250] * depth))
    if kind == "nul":
        return kind, f"{where}/a\0{draw(st.text(alphabet='xyz', max_size=3))}"
    if kind == "surrogate":
        return kind, f"{where}/a{chr(draw(st.integers(0xD800, 0xDBFF)))}b"
    return kind, str(a_file / draw(st.sampled_from(["run", "a/b", "x.toml"])))


PATH_OPTIONS = {"--out": ["run", "pointcloud", "--smoke"], "--config": ["run"], "--resume": ["run"],
                "--data-dir": ["run", "mnist", "--smoke"]}
OTHER_COMMANDS = {"tune --out": ["tune", "pointcloud", "--smoke", "--out"], "report RUN_DIR": ["report"],
                  "verify RUN_DIR": ["verify"], "adam --out": ["adam", "--smoke", "--out"]}


def test_a_bad_path_argument_is_one_line_naming_the_option_before_anything_is_printed(tmp_path):
    seen = Counter()
    a_file = tmp_path / "FILE"
    a_file.write_text("keep me")

    @_settings(80)
    @given(st.sampled_from(sorted(PATH_OPTIONS) + sorted(OTHER_COMMANDS)), st.data())
    def check(option, data):
        kind, path = data.draw(bad_path(tmp_path, a_file))
        before = tree(tmp_path)
        if option in OTHER_COMMANDS:
            argv = OTHER_COMMANDS[option] + [path]
        else:
            argv = PATH_OPTIONS[option] + [option, path]
        rc, out, err = cli(argv + (["--threads", "1"] if argv[0] in ("run", "tune", "adam") else []))
        seen[kind] += 1
        assert rc == 2, (argv, err)
        assert out == "", out                     # nothing printed before the check
        assert_one_line(err)
        line = err.strip()
        assert option.split()[-1] in line or "config file" in line or a_file.name in line, line
        assert tree(tmp_path) == before           # nothing written
    check()
    print(f"\nbad-input suite: {sum(seen.values())} bad path arguments ({dict(seen)}): all one line, exit 2")
    assert len(seen) == 5


class TinyMemory:
    """available_memory() of a machine with 1 MiB free: no study fits, so every command must stop early."""
    def __enter__(self):
        self.patch = mock.patch("reglab.memory.available_memory", lambda device="cpu", **kw: {"MemAvailable": 2**20})
        self.patch.start()

    def __exit__(self, *exc):
        self.patch.stop()


sizes = st.one_of(st.integers(-3, 3), st.integers(4, 10**7), st.sampled_from([2**31, 10**12]))


@st.composite
def run_arguments(draw):
    """A combination of `reglab run` options: sizes, seeds, epochs, threads, a --set or two."""
    argv = ["run", draw(st.sampled_from(["mnist", "pointcloud"])), "--smoke"]
    if draw(st.booleans()):
        argv += ["--seeds", str(draw(sizes))]
    if draw(st.booleans()):
        argv += ["--epochs", str(draw(sizes))]
    for key in draw(st.lists(st.sampled_from(["hidden", "batch_size", "eval_batch_size", "n_epochs"]),
                             max_size=2, unique=True)):
        if key == "hidden":
            widths = draw(st.lists(sizes, min_size=0, max_size=3))
            argv += ["--set", f"hidden=[{', '.join(map(str, widths))}]"]
        else:
            argv += ["--set", f"{key}={draw(sizes)}"]
    argv += ["--threads", str(draw(st.integers(1, 4)))]
    if draw(st.booleans()):
        argv += ["--resume", "nowhere"]           # with other options: refused as a combination
    return argv


def test_any_combination_of_size_arguments_is_refused_in_one_line_when_memory_is_short(tmp_path):
    seen = Counter()

    @_settings(80)
    @given(run_arguments())
    def check(argv):
        out_dir = tmp_path / "run"
        with TinyMemory():
            rc, out, err = cli(argv + ([] if "--resume" in argv else ["--out", str(out_dir)]))
        assert rc == 2, (argv, err)
        assert out == "", out
        lines = [ln for ln in err.strip().splitlines() if "usable CPU" not in ln]   # a capped --threads
        # --set reports every bad setting, one line each (issue 15); anything else is one line
        assert 1 <= len(lines) <= max(1, argv.count("--set")), err
        for ln in lines:
            assert_one_line(ln)
        assert not out_dir.exists()
        line = lines[0]
        seen["memory" if "needs about" in line else "combination" if "--resume" in line else "value"] += 1
    check()
    print(f"\nbad-input suite: {sum(seen.values())} combinations of run size arguments: {dict(seen)}; all one line")
    assert seen["memory"] and seen["value"]


@st.composite
def tune_arguments(draw):
    argv = ["tune", "pointcloud", "--smoke"]
    for opt in draw(st.lists(st.sampled_from(["--trials", "--batch-trials", "--seeds-per-trial",
                                              "--epochs-per-task", "--max-retries"]), max_size=3, unique=True)):
        argv += [opt, str(draw(st.integers(-2, 10**6)))]
    if draw(st.booleans()):
        argv += ["--timeout", draw(st.sampled_from(["0", "-1", "nan", "inf", "1e9", "5"]))]
    return argv


def test_any_combination_of_tune_budget_arguments_is_one_line_before_the_base_config_is_printed(tmp_path):
    seen = Counter()

    @_settings(40)
    @given(tune_arguments())
    def check(argv):
        out_dir = tmp_path / "tune"
        with TinyMemory():
            rc, out, err = cli(argv + ["--out", str(out_dir), "--threads", "1"])
        assert rc == 2, (argv, err)
        assert out == "", out                     # the base config is printed only after every check
        assert_one_line(err)
        assert not out_dir.exists()
        seen["memory" if "needs about" in err else "argument"] += 1
    check()
    print(f"\nbad-input suite: {sum(seen.values())} combinations of tune arguments: {dict(seen)}; all one line")
    assert seen["memory"] and seen["argument"]


def test_threads_are_capped_to_the_usable_cpus_and_announced_only_then(monkeypatch):
    from reglab import threads
    from reglab.study.cli import resolve_threads

    @_settings(60)
    @given(st.integers(-5, 10**6), st.integers(1, 64))
    def check(requested, usable):
        monkeypatch.setattr(threads, "usable_cpus", lambda: usable)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                got = resolve_threads(requested, None)
            except ReglabError as e:
                assert requested < 1 and "Fix: " in str(e)
                return
        assert got == min(requested, usable)
        assert (err.getvalue().count("\n") == 1) == (requested > usable)
    check()
