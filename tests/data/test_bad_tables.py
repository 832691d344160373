"""Bad tables (Hypothesis): each kind gets one line ``reglab: ... Fix: ...``, exit 2, before any training.

Every case runs ``reglab run table`` in-process on a generated file; invariants: exit status 2,
one line naming the problem, the file's bytes unchanged, and no run directory written.
Examples per property: REGLAB_FUZZ_EXAMPLES (as tests/test_bad_input.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reglab.cli import main

EXAMPLES = int(os.environ.get("REGLAB_FUZZ_EXAMPLES", "0")) or None


def _settings(default: int):
    return settings(max_examples=EXAMPLES or default, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def refused(path: Path, *extra: str, target: str | None = "label") -> str:
    """Run `reglab run table` on `path`; assert the invariants; return the one error line."""
    before = path.read_bytes() if path.exists() else None
    out_dir = path.parent / "run"
    argv = ["run", "table", "--data", str(path), "--out", str(out_dir), "--threads", "1", "--quiet", *extra]
    if target is not None:
        argv += ["--target", target]
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    torch.set_num_threads(threads)
    lines = err.getvalue().strip().splitlines()
    assert rc == 2, (rc, err.getvalue())
    assert len(lines) == 1 and lines[0].startswith("reglab: ") and "Fix:" in lines[0], err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert (path.read_bytes() if path.exists() else None) == before
    assert not out_dir.exists()
    return lines[0]


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)


@st.composite
def good_frames(draw, min_per_class: int = 4):
    """A table that is fine: 2-4 numeric features, a string feature, 2-4 classes of >= min_per_class rows."""
    n_classes = draw(st.integers(2, 4))
    per = draw(st.lists(st.integers(min_per_class, 12), min_size=n_classes, max_size=n_classes))
    cols = draw(st.lists(names.filter(lambda s: s != "label"), min_size=2, max_size=4, unique=True))
    n = sum(per)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    frame = pd.DataFrame({c: rng.normal(size=n).round(3) for c in cols})
    frame["kind"] = rng.choice(["p", "q"], n)
    frame["label"] = np.repeat([f"c{i}" for i in range(n_classes)], per)
    return frame


def write(frame: pd.DataFrame, suffix: str = ".csv") -> Path:
    path = Path(tempfile.mkdtemp()) / f"t{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


@_settings(15)
@given(good_frames(), names)
def test_a_missing_target_column_lists_the_columns(frame, target):
    frame = frame.drop(columns=[c for c in frame.columns if c == target])
    line = refused(write(frame), target=target)
    assert f"no column {target!r}" in line and "label" in line


@_settings(15)
@given(good_frames(), st.data())
def test_missing_values_are_counted_and_the_choice_named(frame, data):
    cells = data.draw(st.lists(st.tuples(st.integers(0, len(frame) - 1), st.sampled_from(list(frame.columns[:-1]))),
                               min_size=1, max_size=6, unique=True))
    for r, c in cells:
        frame.loc[r, c] = None
    line = refused(write(frame, data.draw(st.sampled_from([".csv", ".parquet"]))))
    assert f"{len(cells)} missing values" in line and "--missing drop" in line and "--missing impute" in line


@_settings(10)
@given(good_frames())
def test_a_single_class_is_refused(frame):
    frame["label"] = "only"
    assert "single class ('only')" in refused(write(frame))


@_settings(15)
@given(good_frames(), st.integers(1, 2))
def test_a_class_too_small_to_split_names_the_class_and_its_rows(frame, k):
    extra = frame.iloc[:k].copy()
    extra["label"] = "tiny"
    line = refused(write(pd.concat([frame, extra], ignore_index=True)))
    assert "class 'tiny'" in line and f"only {k} row" in line


@_settings(10)
@given(good_frames(), st.integers(2, 5))
def test_a_string_column_with_too_many_values_is_refused(frame, cap):
    frame["id"] = [f"id{i}" for i in range(len(frame))]
    line = refused(write(frame), "--max-categories", str(cap))
    assert "column 'id'" in line and "max_categories" in line


@_settings(10)
@given(st.sampled_from([".csv", ".parquet", ".npz"]), st.sampled_from([b"", b"\n", b"  \r\n\t"]))
def test_an_empty_file_is_refused(suffix, content):
    path = Path(tempfile.mkdtemp()) / f"t{suffix}"
    path.write_bytes(content)
    assert "is empty" in refused(path)


@_settings(15)
@given(st.dictionaries(names, st.lists(st.integers(1, 4), min_size=0, max_size=3), min_size=0, max_size=3))
def test_a_wrong_npz_layout_says_what_it_holds(arrays):
    arrays = {k: np.zeros(tuple(shape)) for k, shape in arrays.items()}
    good = ("X" in arrays and "y" in arrays and arrays["X"].ndim == 2 and arrays["y"].ndim == 1
            and arrays["X"].shape[0] == arrays["y"].shape[0])
    if good:
        return
    path = Path(tempfile.mkdtemp()) / "t.npz"
    np.savez(path, **arrays)
    assert "needs arrays X and y" in refused(path, target=None) or "X must be" in refused(path, target=None)


@_settings(15)
@given(good_frames(), st.sampled_from([".parquet", ".npz", ".csv"]), st.binary(min_size=1, max_size=200))
def test_a_file_that_is_not_what_its_extension_says_is_refused(frame, suffix, junk):
    path = Path(tempfile.mkdtemp()) / f"t{suffix}"
    if suffix == ".csv":   # binary bytes (NUL), or text that is not UTF-8
        path.write_bytes(junk + (b"\x00" if len(junk) % 2 else b"\xff\xfe\xfa"))
    elif len(junk) % 2:   # a CSV named .parquet / .npz
        path.write_text(frame.to_csv(index=False))
    else:
        path.write_bytes(b"\x01" + junk)
    line = refused(path)
    assert "not" in line
