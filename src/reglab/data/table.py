"""Tables: a CSV, Parquet or .npz file, scikit-learn's bundled sets, or arrays / DataFrames from Python.

One narrow door: every source is read into ``(features DataFrame, labels Series, provenance)``
-- by pandas / pyarrow / NumPy, never a hand-written parser -- and :func:`table_dataset` turns
that into a recorded :class:`~reglab.data.Dataset`, with the same checks, encoding, split and
record whatever the source was. :func:`read_table` is the read (a :class:`TableRead`: a file is
read and hashed once), :func:`load_table` the read and the door together; a command that sizes
its study from the table trains on the same :class:`TableRead`.

What :func:`table_dataset` does, in order (every refusal is one ReglabError line naming the fix,
raised before any training):

1. **Split column** (``data.split_column``): its values ``train`` / ``val`` (or ``validation``,
   ``valid``) / ``test`` (any case) name each row's split; the column is not a feature.
2. **Missing values** (NaN, None, empty CSV cells): refused (``data.missing = "error"``), or
   their rows dropped (``"drop"``), or imputed (``"impute"``: a number by its column's mean
   over the training split; a string by its own one-hot category ``<column>=<missing>``).
   A missing label is never imputed: its row is refused or dropped.
3. **Classes**: the distinct labels, sorted (numbers by value, anything else by its text), are
   classes 0..C-1; the labels are recorded (``info["classes"]``). At least 2 are needed.
4. **Features**: numbers (and booleans, as 0/1) as they are; a column of strings (or pandas
   categories) one-hot encoded, one 0/1 column ``<column>=<value>`` per distinct value, sorted,
   at most ``data.max_categories`` values per column. Infinite values, dates and other objects
   are refused. The vocabulary is read from the whole table (labels are not used).
5. **Split** (no split column): stratified by class from ``data.data_seed``. Of each class's n
   rows, ``max(1, round(n * val_fraction))`` go to validation, ``max(1, round(n * test_fraction))``
   to test and the rest (at least 1) to training, so a class needs at least 3 rows. Within each
   split the rows are in one random order of that seed.
6. **Standardization** (``data.standardize``, on in the table presets): each feature's mean and
   standard deviation over the training split alone, recorded in ``info["standardize"]``
   (:func:`reglab.data.splits.assemble`, as for point clouds).

Provenance: a file's sha256 (its bytes); a Python object's sha256 is that of
``pandas.util.hash_pandas_object`` of the features and of the labels (index excluded), so the
same values give the same digest in any session.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import math
import zipfile
from pathlib import Path

import numpy as np
import torch

from reglab.config import DataConfig
from reglab.data.dataset import Dataset
from reglab.data.splits import assemble
from reglab.errors import ReglabError

SKLEARN_SETS = {"digits": "load_digits", "breast_cancer": "load_breast_cancer", "wine": "load_wine",
                "iris": "load_iris"}
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
NPZ_SUFFIXES = (".npz",)
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
MIN_ROWS_PER_CLASS = 3            # one each for train, val and test
MISSING_CATEGORY = "<missing>"    # the one-hot category of an imputed missing string
SNIFF_BYTES = 64 * 1024           # of a CSV, read by csv.Sniffer for the delimiter and the header


@dataclasses.dataclass(frozen=True, eq=False)
class TableRead:
    """A table source read once: its features, labels and provenance (a file's sha256 is that of
    the bytes these frames were parsed from).

    ``reglab run table`` reads the table to size the study and trains on the same read
    (``data=`` of :func:`load_table`, :func:`reglab.study.runner.run_study`), so the file is read
    and hashed once per command and the study is sized from the table it trains on.
    """

    source: str        # DataConfig.source it was read from ("" for Python data)
    target: str        # DataConfig.target it was read with
    features: object   # pandas DataFrame, the label column removed
    labels: object     # pandas Series
    provenance: dict   # source, checksums, target (reglab.data.table's module docstring)

    def matches(self, cfg: DataConfig) -> bool:
        """True when `cfg` names the source and label column this was read from."""
        return (self.source, self.target) == (cfg.source, cfg.target)


def read_table(cfg: DataConfig, data=None) -> TableRead:
    """Read (and hash) the table `cfg` names (``cfg.source``), or take the Python objects `data`.

    `data` is ``(X, y)`` (arrays, lists or a DataFrame and a label sequence) or ``(frame, "target")``.
    """
    if data is not None:
        if cfg.source:
            raise ReglabError(f"both data.source ({cfg.source!r}) and Python data were given. "
                              "Fix: pass one: data.source = \"\" with data=(X, y), or no data=.")
        features, labels, provenance = from_python(data)
    elif not cfg.source:
        raise ReglabError("a table study needs its data, and none was given. Fix: reglab run table --data FILE "
                          "--target COLUMN, or reglab.run_study(cfg, data=(X, y)).")
    elif cfg.source.startswith("sklearn:"):
        features, labels, provenance = read_sklearn(cfg.source)
    else:
        features, labels, provenance = read_file(Path(cfg.source), cfg.target)
    return TableRead(source=cfg.source, target=cfg.target, features=features, labels=labels,
                     provenance=provenance)


def load_table(cfg: DataConfig, data=None) -> Dataset:
    """The table `cfg` names (``cfg.source``), or the Python objects `data`, as a recorded Dataset.

    `data` is ``(X, y)`` (arrays, lists or a DataFrame and a label sequence), ``(frame, "target")``,
    or a :class:`TableRead` of `cfg`'s source (not read again).
    """
    if isinstance(data, TableRead):
        if not data.matches(cfg):
            raise ReglabError(f"the table read from {data.source or 'Python data'!r} (label {data.target!r}) is not "
                              f"the one this study names ({cfg.source or 'Python data'!r}, label {cfg.target!r}). "
                              "Fix: pass the TableRead of the study's own data.source, or no data=.")
        read = data
    else:
        read = read_table(cfg, data)
    return table_dataset(read.features, read.labels, cfg, read.provenance)


# ----------------------------------------------------------------------------
# readers: every source -> (features, labels, provenance)

def read_file(path: Path, target: str):
    """A CSV / Parquet / .npz file -> (features DataFrame, labels Series, provenance)."""
    import pandas as pd

    if not path.exists():
        raise ReglabError(f"table file {path} does not exist. Fix: give the path of a CSV, Parquet or .npz file.")
    if path.is_dir():
        raise ReglabError(f"table file {path} is a folder. Fix: give the path of a CSV, Parquet or .npz file.")
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES + NPZ_SUFFIXES:
        raise ReglabError(f"table file {path} has suffix {suffix or '(none)'!r}; reglab reads "
                          f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES + NPZ_SUFFIXES)}. "
                          "Fix: rename it after what it holds, or convert it to CSV.")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ReglabError(f"table file {path} cannot be read ({e.strerror or e}). Fix: check its permissions.") from None
    if not raw.strip():
        raise ReglabError(f"table file {path} is empty. Fix: give a file with a header and rows.")
    provenance = {"source": {"kind": "file", "path": str(path.resolve()), "format": suffix.lstrip(".")},
                  "checksums": {path.name: {"sha256": hashlib.sha256(raw).hexdigest(), "status": "ok",
                                            "bytes": len(raw)}}}
    if suffix in NPZ_SUFFIXES:
        x, y = _read_npz(path, raw)
        frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
        provenance["source"]["arrays"] = {"X": list(x.shape), "y": list(y.shape)}
        return frame, pd.Series(y, name="y"), provenance
    if suffix in PARQUET_SUFFIXES:
        frame = _read_parquet(path, raw)
    else:
        frame, dialect = _read_csv(path, raw)
        provenance["source"].update(dialect)
    if frame.shape[0] == 0:
        raise ReglabError(f"table file {path} has a header but no rows. Fix: give a file with rows.")
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if not target:
        raise ReglabError(f"which column of {path} is the label? Its columns: {_list(columns)}. "
                          "Fix: --target COLUMN (data.target in a TOML study).")
    if target not in columns:
        raise ReglabError(f"table file {path} has no column {target!r}; its columns: {_list(columns)}. "
                          "Fix: --target one of those.")
    provenance["target"] = target
    return frame.drop(columns=[target]), frame[target], provenance


def _read_csv(path: Path, raw: bytes):
    import pandas as pd

    if b"\x00" in raw[:SNIFF_BYTES]:
        raise ReglabError(f"table file {path} is not text (it holds NUL bytes), so not a CSV. "
                          "Fix: give a CSV, or name a Parquet file .parquet and an npz file .npz.")
    try:
        text = raw.decode("utf-8-sig")   # a UTF-8 byte-order mark, if any, is dropped
    except UnicodeDecodeError as e:
        raise ReglabError(f"table file {path} is not UTF-8 text (byte {e.start}). "
                          "Fix: save it as UTF-8 (with or without BOM).") from None
    sample = text[:SNIFF_BYTES]
    sniffer = csv.Sniffer()
    try:
        delimiter = sniffer.sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","   # one column, or too little to tell
    try:
        header = sniffer.has_header(sample)
    except csv.Error:
        header = True
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, header=0 if header else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ReglabError(f"table file {path} is not a CSV pandas can read ({first}). "
                          "Fix: one header line, then rows with the same number of fields.") from None
    if not header:
        frame.columns = [str(i) for i in range(frame.shape[1])]
    return frame, {"delimiter": delimiter, "header": bool(header), "encoding": "utf-8" +
                   ("-sig (BOM)" if text is not None and raw.startswith(b"\xef\xbb\xbf") else "")}


def _read_parquet(path: Path, raw: bytes):
    import pandas as pd

    if not (raw[:4] == b"PAR1" and raw[-4:] == b"PAR1"):
        raise ReglabError(f"table file {path} is not a Parquet file (no PAR1 marks). "
                          "Fix: give a Parquet file, or name the file after what it holds (.csv, .npz).")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ReglabError("reading Parquet needs pyarrow. Fix: pip install 'reglab[parquet]'.") from None
    try:
        return pd.read_parquet(io.BytesIO(raw))
    except Exception as e:   # pyarrow's errors have no common base class
        raise ReglabError(f"table file {path} is a damaged Parquet file ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:120] if str(e) else ''}). Fix: write it again.") from None


def _read_npz(path: Path, raw: bytes):
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ReglabError(f"table file {path} is not an .npz archive ({type(e).__name__}). "
                          "Fix: write it with numpy.savez(path, X=X, y=y), or name it after what it holds.") from None
    except ValueError:
        raise ReglabError(f"table file {path} holds object arrays, which reglab does not unpickle. "
                          "Fix: save numeric X and numeric or string y with numpy.savez(path, X=X, y=y).") from None
    layout = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items()) or "no arrays"
    fix = "Fix: numpy.savez(path, X=X, y=y) with X of shape (rows, features) and y of shape (rows,)."
    if "X" not in arrays or "y" not in arrays:
        raise ReglabError(f"table file {path} holds {layout}; an .npz table needs arrays X and y. {fix}")
    x, y = arrays["X"], arrays["y"]
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ReglabError(f"table file {path} holds {layout}; X must be (rows, features) and y (rows,) "
                          f"with the same rows. {fix}")
    if x.dtype.kind not in "biuf":
        raise ReglabError(f"table file {path}: X has dtype {x.dtype}; an .npz X must hold numbers. {fix}")
    return x, y


def read_sklearn(source: str):
    """``sklearn:NAME`` -> one of scikit-learn's bundled sets (no download), as a DataFrame and labels."""
    name = source.split(":", 1)[1]
    if name not in SKLEARN_SETS:
        raise ReglabError(f"unknown scikit-learn set {name!r}; reglab knows "
                          f"{', '.join('sklearn:' + k for k in SKLEARN_SETS)}. Fix: use one of those.")
    try:
        import sklearn
        import sklearn.datasets
    except ImportError:
        raise ReglabError(f"{source} needs scikit-learn. Fix: pip install 'reglab[sklearn]'.") from None
    bunch = getattr(sklearn.datasets, SKLEARN_SETS[name])(as_frame=True)
    features, labels = bunch.data, bunch.target
    provenance = {"source": {"kind": "sklearn", "name": name, "loader": f"sklearn.datasets.{SKLEARN_SETS[name]}",
                             "sklearn_version": sklearn.__version__,
                             "target_names": [str(t) for t in getattr(bunch, "target_names", [])]},
                  "checksums": {source: {"sha256": frame_sha256(features, labels), "status": "ok",
                                         "of": "pandas.util.hash_pandas_object(features), then of labels"}}}
    return features, labels, provenance


def from_python(data):
    """``(X, y)`` or ``(frame, "target")`` from Python -> (features DataFrame, labels Series, provenance)."""
    import pandas as pd

    fix = "Fix: data=(X, y) with X of shape (rows, features), or data=(frame, \"target column\")."
    if not isinstance(data, tuple) or len(data) != 2:
        raise ReglabError(f"data must be a pair; got {type(data).__name__}. {fix}")
    x, y = data
    if isinstance(x, pd.DataFrame) and isinstance(y, str):
        columns = [str(c) for c in x.columns]
        if y not in columns:
            raise ReglabError(f"the DataFrame has no column {y!r}; its columns: {_list(columns)}. "
                              "Fix: name one of those as the target.")
        frame = x.copy()
        frame.columns = columns
        features, labels, target = frame.drop(columns=[y]), frame[y], y
    else:
        if isinstance(x, pd.DataFrame):
            features = x.copy()
            features.columns = [str(c) for c in features.columns]
        else:
            arr = np.asarray(x)
            if arr.ndim != 2:
                raise ReglabError(f"X must be 2-D (rows, features); got shape {arr.shape}. {fix}")
            features = pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
        labels = pd.Series(np.asarray(y)) if not isinstance(y, pd.Series) else y
        if labels.ndim != 1 or len(labels) != len(features):
            raise ReglabError(f"y must be 1-D with one label per row of X; got {len(labels)} labels for "
                              f"{len(features)} rows. {fix}")
        target = str(labels.name) if labels.name is not None else "y"
    features = features.reset_index(drop=True)
    labels = labels.reset_index(drop=True)
    provenance = {"source": {"kind": "python", "type": f"{type(x).__module__}.{type(x).__name__}"},
                  "target": target,
                  "checksums": {"python-data": {"sha256": frame_sha256(features, labels), "status": "ok",
                                                "of": "pandas.util.hash_pandas_object(features), then of labels"}}}
    return features, labels, provenance


def frame_sha256(features, labels) -> str:
    """sha256 of the values (not the index) of `features` and then `labels`: same values, same digest."""
    import pandas as pd

    h = hashlib.sha256()
    h.update(",".join(map(str, features.columns)).encode())
    h.update(pd.util.hash_pandas_object(features, index=False).to_numpy().tobytes())
    h.update(pd.util.hash_pandas_object(pd.Series(labels), index=False).to_numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------
# the door: features + labels -> checked, encoded, split, recorded Dataset

def table_dataset(features, labels, cfg: DataConfig, provenance: dict) -> Dataset:
    """The checks, encoding, split and record of the module docstring, for any source."""
    import pandas as pd

    where = _where(provenance)
    features = features.reset_index(drop=True)
    labels = pd.Series(labels).reset_index(drop=True)
    shape = [int(features.shape[0]), int(features.shape[1]) + 1]   # as read: features and the label column
    if features.shape[0] == 0:
        raise ReglabError(f"{where} has no rows. Fix: give a table with rows.")

    split_names = None
    if cfg.split_column:
        if cfg.split_column not in features.columns:
            raise ReglabError(f"{where} has no split column {cfg.split_column!r}; its columns: "
                              f"{_list(list(features.columns))}. Fix: --split-column one of those, or none.")
        raw_split = features[cfg.split_column]   # not pop: a TableRead's frame serves several studies
        features = features.drop(columns=[cfg.split_column])
        split_names = raw_split.map(lambda v: SPLIT_NAMES.get(str(v).strip().lower()) if not _is_missing(v) else None)
        bad = sorted({str(v) for v, s in zip(raw_split, split_names) if s is None})
        if bad:
            raise ReglabError(f"split column {cfg.split_column!r} of {where} holds {_list(bad)}; each row must say "
                              "train, val (or validation) or test. Fix: correct those cells.")
    if features.shape[1] == 0:
        raise ReglabError(f"{where} has no feature columns besides the label. Fix: give a table with features.")

    # missing values: refuse, drop or (after the split) impute
    label_missing = labels.isna()
    feature_missing = features.isna()
    n_missing = int(feature_missing.to_numpy().sum()) + int(label_missing.sum())
    dropped = 0
    if n_missing and cfg.missing == "error":
        per = feature_missing.sum()
        per = per[per > 0].sort_values(ascending=False)
        cols = [f"{c!r} {int(k)}" for c, k in per.items()]
        if label_missing.any():
            cols.insert(0, f"the label {int(label_missing.sum())}")
        raise ReglabError(f"{where} has {n_missing} missing values ({_list(cols)}). Fix: --missing drop (drop those "
                          "rows) or --missing impute (training-split mean; a category for strings).")
    keep = ~label_missing
    if cfg.missing == "drop":
        keep &= ~feature_missing.any(axis=1)
    if not keep.all():
        dropped = int((~keep).sum())
        features, labels = features[keep].reset_index(drop=True), labels[keep].reset_index(drop=True)
        if split_names is not None:
            split_names = split_names[keep].reset_index(drop=True)
        if features.shape[0] == 0:
            raise ReglabError(f"{where}: every row has a missing value, so none is left. "
                              "Fix: --missing impute, or fill the table.")

    # classes
    classes, y = _classes(labels)
    if len(classes) < 2:
        raise ReglabError(f"{where} has a single class ({_label_text(classes[0])}) in column "
                          f"{provenance.get('target', 'y')!r}; a classifier needs at least 2. "
                          "Fix: choose the label column with --target.")
    counts = np.bincount(y, minlength=len(classes))

    x, encoding, numeric_cols = _encode(features, cfg, where)

    # split
    if split_names is not None:
        assign = split_names.to_numpy()
        order = np.arange(len(y))
        for s in ("train", "val", "test"):
            if not (assign == s).any():
                raise ReglabError(f"split column {cfg.split_column!r} of {where} names no {s} row. "
                                  "Fix: mark some rows of each split.")
        absent = [c for c in range(len(classes)) if not ((assign == "train") & (y == c)).any()]
        if absent:
            raise ReglabError(f"class {_label_text(classes[absent[0]])} has no training row in split column "
                              f"{cfg.split_column!r}. Fix: mark some of its rows train.")
        rule = f"from column {cfg.split_column!r}"
    else:
        assign, order = _stratified(y, classes, counts, cfg, where)
        rule = (f"stratified by class from data_seed {cfg.data_seed}: of each class's n rows, "
                f"max(1, round(n * {cfg.val_fraction:g})) to val, max(1, round(n * {cfg.test_fraction:g})) "
                "to test, the rest to train")

    # impute numbers by the training split's mean (strings were given a category by _encode)
    imputed = {}
    if cfg.missing == "impute":
        train_rows = assign == "train"
        for j, col in numeric_cols.items():
            nan = np.isnan(x[:, j])
            if nan.any():
                mean = float(np.nanmean(x[train_rows, j])) if np.isfinite(x[train_rows, j]).any() else 0.0
                x[nan, j] = mean
                imputed[col] = {"rows": int(nan.sum()), "value": mean}

    xt = torch.from_numpy(x.astype(np.float32))
    yt = torch.from_numpy(y.astype(np.int64))
    splits = {}
    for s in ("train", "val", "test"):
        idx = order[assign[order] == s]
        splits[s] = (xt[idx], yt[idx])
    info = dict(provenance)
    info.update(
        name=_name(provenance), kind="table", shape=shape, n_rows_used=int(len(y)), dropped_rows=dropped,
        missing=cfg.missing, imputed=imputed,
        classes=[_json_label(c) for c in classes], class_counts_all=[int(c) for c in counts],
        features=list(encoding["names"]), one_hot=encoding["one_hot"], split_rule=rule,
    )
    return assemble("table", splits, len(classes), cfg, info, per_feature_scale=True)


def _classes(labels):
    """Sorted distinct labels (numbers by value, else by text) and each row's class index."""
    values = labels.to_numpy()
    numeric = labels.dtype.kind in "biuf"
    if numeric:
        classes, y = np.unique(values, return_inverse=True)
        return [c.item() for c in classes], y.astype(np.int64)
    text = np.array([str(v) for v in values], dtype=object)
    classes, y = np.unique(text, return_inverse=True)
    return list(classes), y.astype(np.int64)


def _encode(features, cfg: DataConfig, where: str):
    """Numbers as they are, strings one-hot -> (float64 matrix, encoding record, {column index: name} of numbers)."""
    import pandas as pd

    blocks, names, one_hot, numeric_cols = [], [], {}, {}
    for col in features.columns:
        s = features[col]
        kind = s.dtype.kind
        if kind == "b" or str(s.dtype) == "boolean":
            s = s.astype("float64")
            kind = "f"
        if kind in "iuf":
            v = s.to_numpy(dtype=np.float64, na_value=np.nan)
            if np.isinf(v).any():
                raise ReglabError(f"column {col!r} of {where} holds {int(np.isinf(v).sum())} infinite values. "
                                  "Fix: replace them with numbers (or leave the cells empty and use --missing).")
            numeric_cols[len(names)] = col
            blocks.append(v[:, None])
            names.append(col)
            continue
        if kind in "mM" or isinstance(s.dtype, pd.DatetimeTZDtype):
            raise ReglabError(f"column {col!r} of {where} holds dates ({s.dtype}), which reglab does not encode. "
                              "Fix: convert it to numbers (e.g. days since a date) or drop the column.")
        present = s[~s.isna()]
        odd = [v for v in present if not isinstance(v, (str, int, float, np.integer, np.floating, bool, np.bool_))]
        if odd:
            raise ReglabError(f"column {col!r} of {where} holds {type(odd[0]).__name__} values, which cannot be "
                              "one-hot encoded. Fix: convert them to numbers or strings, or drop the column.")
        text = s.map(lambda v: MISSING_CATEGORY if _is_missing(v) else str(v))
        values = sorted(set(text))
        if len(values) > cfg.max_categories:
            raise ReglabError(f"column {col!r} of {where} holds {len(values)} distinct non-numeric values, more than "
                              f"data.max_categories={cfg.max_categories} for one-hot encoding. Fix: drop the column, "
                              f"convert it to numbers, or raise --max-categories to {len(values)}.")
        codes = pd.Categorical(text, categories=values).codes
        block = np.zeros((len(text), len(values)))
        block[np.arange(len(text)), codes] = 1.0
        blocks.append(block)
        names += [f"{col}={v}" for v in values]
        one_hot[col] = values
    x = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(features), 0))
    return x, {"names": names, "one_hot": one_hot}, numeric_cols


def _stratified(y: np.ndarray, classes: list, counts: np.ndarray, cfg: DataConfig, where: str):
    """Each row's split ("train" / "val" / "test") and one random order of all rows, from data_seed."""
    small = [(c, int(k)) for c, k in enumerate(counts) if k < MIN_ROWS_PER_CLASS]
    if small:
        c, k = min(small, key=lambda ck: ck[1])
        raise ReglabError(f"class {_label_text(classes[c])} of {where} has only {k} row{'s' if k != 1 else ''}; a "
                          f"stratified train/val/test split needs at least {MIN_ROWS_PER_CLASS} per class. Fix: add "
                          "rows of that class, drop them, or give the split with --split-column.")
    rng = np.random.default_rng(cfg.data_seed)
    assign = np.empty(len(y), dtype=object)
    for c, n in enumerate(counts):
        rows = rng.permutation(np.flatnonzero(y == c))
        n_val = max(1, round(n * cfg.val_fraction))
        n_test = max(1, round(n * cfg.test_fraction))
        if n - n_val - n_test < 1:
            raise ReglabError(f"class {_label_text(classes[c])} of {where} has {n} rows: {n_val} to val and {n_test} "
                              "to test leave none to train. Fix: smaller --val-fraction / --test-fraction, or more rows.")
        assign[rows[:n_val]] = "val"
        assign[rows[n_val:n_val + n_test]] = "test"
        assign[rows[n_val + n_test:]] = "train"
    return assign, rng.permutation(len(y))


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is getattr(__import__("pandas"), "NA")


def _json_label(c):
    return c if isinstance(c, (str, int, float, bool)) else str(c)


def _label_text(c) -> str:
    return repr(_json_label(c))


def _list(items, n: int = 12) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:n]) + (f" ... ({len(items)} in all)" if len(items) > n else "")


def _where(provenance: dict) -> str:
    src = provenance["source"]
    if src["kind"] == "file":
        return f"table file {src['path']}"
    if src["kind"] == "sklearn":
        return f"sklearn:{src['name']}"
    return "the data given"


def _name(provenance: dict) -> str:
    src = provenance["source"]
    if src["kind"] == "file":
        return Path(src["path"]).name
    if src["kind"] == "sklearn":
        return f"sklearn:{src['name']}"
    return "python-data"
