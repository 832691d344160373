"""Where MNIST and Fashion-MNIST are found, how they are downloaded, and their checksums.

Look-up order (the first place holding all four IDX files wins)::

    1. data_dir/<name>/              --data-dir or REGLAB_DATA_DIR (resolved by the CLI)
    2. cache_dir/<name>/             $XDG_CACHE_HOME/reglab, default ~/.cache/reglab (resolved by the CLI)
    3. /usr/share/datasets/<name>/   Debian's dataset packages (e.g. dataset-fashion-mnist)
    4. download from the mirrors into cache_dir/<name>/

Each file may be stored gzip-compressed (``<file>.gz``) or raw (``<file>``).
Checksums are those of the DECOMPRESSED content (md5 and sha256 for MNIST, md5
for Fashion-MNIST), so a re-compressed copy is accepted. A found file whose
checksum differs is an error unless ``allow_checksum_mismatch`` is set; a
downloaded file must always match, and reaches its final name only after it
has been verified (temp file in the same folder, then ``os.replace``), so a
failed or interrupted download never leaves a file that is later trusted.

Library functions take explicit paths; nothing here reads the environment.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reglab.errors import ReglabError
from reglab.data.idx import check_pair, gunzip, parse_idx, read_bytes

SYSTEM_DATASET_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)
DOWNLOAD_TIMEOUT_S = 30.0   # per network operation (connect, each read), seconds
_CHUNK = 1 << 20


@dataclass(frozen=True)
class IdxFile:
    name: str                          # decompressed file name, e.g. "train-images-idx3-ubyte"
    shape: tuple[int | None, ...]      # expected IDX shape; None = any size along that axis
    md5: str                           # md5 of the decompressed content (hex)
    sha256: str | None = None          # sha256 of the decompressed content (hex), where published

    @property
    def candidates(self) -> tuple[str, str]:
        """File names accepted on disk, in order of preference."""
        return (self.name + ".gz", self.name)


@dataclass(frozen=True)
class ImageSource:
    name: str                          # "mnist" or "fashion-mnist"; also the folder name under every root
    train_images: IdxFile
    train_labels: IdxFile
    test_images: IdxFile
    test_labels: IdxFile
    mirrors: tuple[str, ...]           # base URLs; file URL = base + name + ".gz"
    n_classes: int = 10
    class_names: tuple[str, ...] = field(default=())

    @property
    def files(self) -> tuple[IdxFile, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


SOURCES: dict[str, ImageSource] = {
    "mnist": ImageSource(
        name="mnist",
        train_images=IdxFile("train-images-idx3-ubyte", (60000, 28, 28), "6bbc9ace898e44ae57da46a324031adb",
                             "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        train_labels=IdxFile("train-labels-idx1-ubyte", (60000,), "a25bea736e30d166cdddb491f175f624",
                             "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        test_images=IdxFile("t10k-images-idx3-ubyte", (10000, 28, 28), "2646ac647ad5339dbf082846283269ea",
                            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        test_labels=IdxFile("t10k-labels-idx1-ubyte", (10000,), "27ae3e4e09519cfbb04c329615203637",
                            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        # torchvision's mirror first; LeCun's own site often refuses scripted downloads.
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "http://yann.lecun.com/exdb/mnist/"),
        class_names=tuple(str(d) for d in range(10)),
    ),
    "fashion-mnist": ImageSource(
        name="fashion-mnist",
        train_images=IdxFile("train-images-idx3-ubyte", (60000, 28, 28), "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        train_labels=IdxFile("train-labels-idx1-ubyte", (60000,), "9018921c3c673c538a1fc5bad174d6f9"),
        test_images=IdxFile("t10k-images-idx3-ubyte", (10000, 28, 28), "8181f5470baa50b63fa0f6fddb340f0a"),
        test_labels=IdxFile("t10k-labels-idx1-ubyte", (10000,), "15d484375f8d13e6eb1aabb0c3f46965"),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}


def get_source(name: str) -> ImageSource:
    """The image source called `name`; an unknown name is a one-line error."""
    if name not in SOURCES:
        raise ReglabError(f"unknown image dataset {name!r}; known: {', '.join(SOURCES)}. "
                          f"Fix: use one of those names.")
    return SOURCES[name]


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/reglab``, or ``~/.cache/reglab`` (the CLI passes ``os.environ``)."""
    xdg = environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path(environ.get("HOME", "~")).expanduser() / ".cache"
    return base / "reglab"


# ----------------------------------------------------------------------------
# looking in the places

@dataclass(frozen=True)
class Located:
    place: str                         # "data_dir" | "cache" | "system" | "download"
    folder: Path                       # the <root>/<name>/ folder holding the files
    paths: dict[str, Path]             # IdxFile.name -> the file found (.gz or raw)
    looked: tuple[str, ...]            # what each place looked at before this one held
    urls: dict[str, str] = field(default_factory=dict)  # IdxFile.name -> URL, when downloaded now

    @property
    def place_text(self) -> str:
        return {"data_dir": "data dir, from --data-dir / REGLAB_DATA_DIR",
                "cache": "user cache", "system": "system datasets folder",
                "download": "downloaded now into the user cache"}[self.place]


def _scan(folder: Path, source: ImageSource) -> tuple[dict[str, Path] | None, str]:
    """The files of `source` in `folder`: (paths, "") when all are there, else (None, what is missing)."""
    try:
        if not folder.exists():
            return None, f"{folder}: absent"
        if not folder.is_dir():
            return None, f"{folder}: not a folder"
        present = {p.name for p in folder.iterdir()}
    except PermissionError:
        raise ReglabError(f"cannot read {folder} (permission denied) while looking for {source.name}. "
                          f"Fix: chmod a+rx {folder}, or point --data-dir elsewhere.") from None
    except OSError as e:
        raise ReglabError(f"cannot read {folder} ({e.strerror or e}) while looking for {source.name}. "
                          f"Fix: check the folder.") from None
    paths, missing = {}, []
    for f in source.files:
        hit = next((c for c in f.candidates if c in present), None)
        if hit is None:
            missing.append(f.name)
        else:
            paths[f.name] = folder / hit
    if missing:
        return None, f"{folder}: lacks {', '.join(m + '[.gz]' for m in missing)}"
    return paths, ""


def _check_data_dir(data_dir: Path) -> None:
    """An explicitly given data dir must be a readable folder: a typo there is an error, not a fall-through."""
    try:
        exists, is_dir = data_dir.exists(), data_dir.is_dir()
        if is_dir:
            next(data_dir.iterdir(), None)
    except PermissionError:
        raise ReglabError(f"data dir {data_dir} cannot be read (permission denied). "
                          f"Fix: chmod a+rx {data_dir}, or give another --data-dir / REGLAB_DATA_DIR.") from None
    except OSError as e:
        raise ReglabError(f"data dir {data_dir} cannot be read ({e.strerror or e}). "
                          f"Fix: check it, or give another --data-dir / REGLAB_DATA_DIR.") from None
    if not exists:
        raise ReglabError(f"data dir {data_dir} does not exist. Fix: give a folder holding mnist/ and/or "
                          f"fashion-mnist/ with --data-dir or REGLAB_DATA_DIR (or leave both unset).")
    if not is_dir:
        raise ReglabError(f"data dir {data_dir} is a file, not a folder. Fix: give the folder that holds "
                          f"mnist/ and/or fashion-mnist/.")


def locate(source: ImageSource, *, data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
           download: bool = True, mirrors: Sequence[str] | None = None,
           system_dirs: Sequence[str | Path] = SYSTEM_DATASET_DIRS,
           timeout: float = DOWNLOAD_TIMEOUT_S) -> Located:
    """Find `source` in the look-up order of this module, downloading into `cache_dir` as the last resort.

    Nothing found (and no download possible) is one error listing every
    place looked and how to fix it.
    """
    looked: list[str] = []
    places: list[tuple[str, Path]] = []
    if data_dir is not None:
        data_dir = Path(data_dir)
        _check_data_dir(data_dir)
        places.append(("data_dir", data_dir / source.name))
    else:
        looked.append("data dir: none given (--data-dir / REGLAB_DATA_DIR)")
    if cache_dir is not None:
        places.append(("cache", Path(cache_dir) / source.name))
    else:
        looked.append("user cache: none given")
    places += [("system", Path(d) / source.name) for d in system_dirs]

    for place, folder in places:
        paths, note = _scan(folder, source)
        if paths is not None:
            return Located(place, folder, paths, tuple(looked))
        if place == "data_dir" and data_dir is not None:
            note += _hint_if_files_directly_in(data_dir, source)
        looked.append(f"{_short_place(place)} {note}")

    fix = (f"Fix: put the four IDX files ({', '.join(f.name + '.gz' for f in source.files)}) in "
           f"<folder>/{source.name}/ and pass --data-dir <folder> (or set REGLAB_DATA_DIR)")
    if not download:
        looked.append("download: not allowed")
        raise ReglabError(f"{source.name} not found. Looked in: {'; '.join(looked)}. {fix}, or allow the download.")
    if cache_dir is None:
        looked.append("download: impossible without a cache folder")
        raise ReglabError(f"{source.name} not found. Looked in: {'; '.join(looked)}. {fix}, or give a cache folder "
                          f"to download into (cache_dir=...).")
    try:
        urls = fetch(source, cache_dir, mirrors=mirrors, timeout=timeout)
    except _DownloadFailed as e:
        looked.append(f"download: {e}")
        raise ReglabError(f"{source.name} not found and the download failed. Looked in: {'; '.join(looked)}. "
                          f"{fix}, or run `reglab data fetch {source.name}` on a machine with network "
                          f"and copy the {source.name}/ folder of its cache into your data dir.") from None
    folder = Path(cache_dir) / source.name
    paths, _ = _scan(folder, source)
    assert paths is not None, "fetch() returned without every file in place"
    return Located("download", folder, paths, tuple(looked), urls)


def _short_place(place: str) -> str:
    return {"data_dir": "data dir", "cache": "user cache", "system": "system folder"}[place]


def _hint_if_files_directly_in(data_dir: Path, source: ImageSource) -> str:
    try:
        names = {p.name for p in data_dir.iterdir()}
    except OSError:
        return ""
    if any(c in names for f in source.files for c in f.candidates):
        return (f" (the IDX files are directly in {data_dir}; the data dir is the folder ABOVE "
                f"{source.name}/, so move them into {data_dir / source.name})")
    return ""


# ----------------------------------------------------------------------------
# checksums and loading

def checksum_record(content: bytes, f: IdxFile, path: str | Path, *, allow_mismatch: bool) -> dict:
    """md5 and sha256 of the decompressed `content`, compared with the published values.

    Returns a JSON-safe record ``{"md5", "sha256", "checked": [...], "status": "ok" | "override"}``;
    a mismatch raises unless `allow_mismatch`, and is then recorded as "override".
    """
    got = {"md5": hashlib.md5(content).hexdigest(), "sha256": hashlib.sha256(content).hexdigest()}
    want = {"md5": f.md5, "sha256": f.sha256}
    checked = [alg for alg in ("md5", "sha256") if want[alg]]
    wrong = [alg for alg in checked if got[alg] != want[alg]]
    record = {**got, "checked": checked, "status": "ok"}
    if wrong:
        alg = wrong[0]
        if not allow_mismatch:
            raise ReglabError(f"{path}: checksum mismatch, the {alg} of its decompressed content is {got[alg]} but "
                              f"{f.name} should have {want[alg]}: the file is damaged or another release. "
                              f"Fix: replace it with a fresh copy (`reglab data fetch <name>`), or pass "
                              f"--allow-checksum-mismatch (allow_checksum_mismatch=True) to use it anyway.")
        record.update(status="override", expected={a: want[a] for a in wrong})
    return record


def load_arrays(source: ImageSource, located: Located, *, allow_checksum_mismatch: bool = False,
                ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """The four validated arrays {IdxFile.name: array} and their checksum records {IdxFile.name: record}."""
    arrays, records = {}, {}
    for f in source.files:
        path = located.paths[f.name]
        content = read_bytes(path)
        arrays[f.name] = parse_idx(content, path, expect_rank=len(f.shape), expect_shape=f.shape)
        records[f.name] = {"path": str(path),
                           **checksum_record(content, f, path, allow_mismatch=allow_checksum_mismatch)}
    for images, labels in ((source.train_images, source.train_labels), (source.test_images, source.test_labels)):
        check_pair(arrays[images.name], arrays[labels.name], located.paths[images.name],
                   located.paths[labels.name], source.n_classes)
    return arrays, records


# ----------------------------------------------------------------------------
# downloading

class _DownloadFailed(Exception):
    """Every mirror failed for some file; the message lists each mirror's reason."""


def fetch(source: ImageSource, cache_dir: str | Path, *, mirrors: Sequence[str] | None = None,
          timeout: float = DOWNLOAD_TIMEOUT_S) -> dict[str, str]:
    """Download every file of `source` not already verified in ``cache_dir/<name>/``.

    A cached file is kept when its decompressed content matches the checksums
    and replaced otherwise. Each file is tried on every mirror in turn;
    returns {IdxFile.name: URL} for the files downloaded now. Raises
    ``_DownloadFailed`` (internal; :func:`locate` and the CLI turn it into a
    :class:`ReglabError`) when some file could be got from no mirror.
    """
    folder = Path(cache_dir) / source.name
    bases = list(mirrors) if mirrors is not None else list(source.mirrors)
    if not bases:
        raise _DownloadFailed("no mirrors given")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReglabError(f"cannot create the cache folder {folder} ({e.strerror or e}). "
                          f"Fix: give a writable --cache-dir or set XDG_CACHE_HOME.") from None
    try:
        return _fetch_into(folder, source, bases, timeout)
    except _DownloadFailed:
        if created and not any(folder.iterdir()):
            folder.rmdir()  # a failed first download leaves no trace in the cache
        raise


def _fetch_into(folder: Path, source: ImageSource, bases: list[str], timeout: float) -> dict[str, str]:
    got: dict[str, str] = {}
    for f in source.files:
        dest = folder / (f.name + ".gz")
        if _verified(dest, f):
            continue
        reasons = []
        for base in bases:
            url = base.rstrip("/") + "/" + f.name + ".gz"
            try:
                _download_verified(url, dest, f, timeout)
            except _DownloadFailed as e:
                reasons.append(f"{url}: {e}")
                continue
            got[f.name] = url
            break
        else:
            raise _DownloadFailed(", ".join(reasons))
    return got


def fetch_or_fail(source: ImageSource, cache_dir: str | Path, *, mirrors: Sequence[str] | None = None,
                  timeout: float = DOWNLOAD_TIMEOUT_S) -> dict[str, str]:
    """:func:`fetch`, with a failed download as a one-line :class:`ReglabError`."""
    try:
        return fetch(source, cache_dir, mirrors=mirrors, timeout=timeout)
    except _DownloadFailed as e:
        raise ReglabError(f"could not download {source.name} into {Path(cache_dir) / source.name}: {e}. "
                          f"Fix: check the network (or give --mirror URL), or copy the four IDX .gz files "
                          f"there by hand.") from None


def _verified(path: Path, f: IdxFile) -> bool:
    """True when `path` exists and its decompressed content has the published checksums."""
    if not path.is_file():
        return False
    try:
        content = read_bytes(path)
        parse_idx(content, path, expect_rank=len(f.shape), expect_shape=f.shape)
        checksum_record(content, f, path, allow_mismatch=False)
    except ReglabError:
        return False
    return True


def _download_verified(url: str, dest: Path, f: IdxFile, timeout: float) -> None:
    """Stream `url` to a temp file beside `dest`, verify it, then rename it to `dest`.

    Only a complete file whose decompressed content parses as IDX with the
    expected shape and matches the checksums is renamed; anything else is
    deleted and raises ``_DownloadFailed`` with the reason.
    """
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            n_bytes, declared = _stream(url, out, timeout)
            out.flush()
            os.fsync(out.fileno())
        if declared is not None and n_bytes != declared:
            raise _DownloadFailed(f"truncated, got {n_bytes} of {declared} bytes")
        try:
            label = "the downloaded file"
            content = gunzip(tmp.read_bytes(), label)
            parse_idx(content, label, expect_rank=len(f.shape), expect_shape=f.shape)
            checksum_record(content, f, label, allow_mismatch=False)
        except ReglabError as e:
            raise _DownloadFailed(str(e).split(" Fix:")[0].rstrip(".")) from None
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _stream(url: str, out, timeout: float) -> tuple[int, int | None]:
    """Copy the body of `url` into `out`: (bytes received, Content-Length or None)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            declared = int(length) if length and length.isdigit() else None
            n_bytes = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                n_bytes += len(chunk)
            return n_bytes, declared
    except urllib.error.HTTPError as e:
        raise _DownloadFailed(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _DownloadFailed(f"unreachable ({e.reason})") from None
    except (TimeoutError, http.client.HTTPException, OSError) as e:
        raise _DownloadFailed(f"failed ({type(e).__name__}: {e})") from None
