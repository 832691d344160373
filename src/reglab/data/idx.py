"""The IDX file format (LeCun's MNIST format), raw or gzip-compressed, fully validated.

Layout of an IDX file (all integers big-endian)::

    bytes 0-1   0x00 0x00                 magic: two zero bytes
    byte  2     dtype code                0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     rank r                    number of dimensions (MNIST: 3 for images, 1 for labels)
    4 .. 4+4r   r x uint32 sizes          dims[0] is the item count
    then        prod(dims) items          C order, each of the dtype's size

A file is accepted only when the magic, dtype code, rank and every size are
valid and its length is exactly ``4 + 4r + prod(dims) * itemsize`` bytes.
Every failure is a :class:`ReglabError` naming the file, the problem and the
fix; no gzip, zlib or numpy exception reaches the user.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from reglab.errors import ReglabError

# IDX dtype code -> numpy dtype (big-endian, as stored)
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
# No real IDX file has more dimensions; a larger rank means the header is garbage.
MAX_RANK = 8

_FIX_REPLACE = "Fix: replace it with a fresh copy of the dataset (`reglab data fetch <name>` downloads one into the cache)."


def read_bytes(path: str | Path) -> bytes:
    """The decompressed content of `path`: gunzipped when its name ends in .gz, else as is.

    A ``.gz`` name whose bytes are not gzip (or are cut short) is an error,
    and so is a plain name whose bytes are gzip: the two must agree.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ReglabError(f"{p} does not exist. Fix: check the path.") from None
    except IsADirectoryError:
        raise ReglabError(f"{p} is a directory, not an IDX file. Fix: point at the file.") from None
    except PermissionError:
        raise ReglabError(f"{p} cannot be read (permission denied). Fix: chmod a+r {p}.") from None
    except OSError as e:
        raise ReglabError(f"{p} cannot be read ({e.strerror or e}). Fix: check the disk and the path.") from None
    if p.suffix == ".gz":
        return gunzip(data, p)
    if data[:2] == GZIP_MAGIC:
        raise ReglabError(f"{p} is gzip-compressed but its name does not end in .gz. "
                          f"Fix: rename it to {p.name}.gz.")
    return data


def gunzip(data: bytes, source: str | Path) -> bytes:
    """Decompress gzip `data`; `source` (a path or URL) names it in error messages."""
    if data[:2] != GZIP_MAGIC:
        raise ReglabError(f"{source} is not gzip data (first bytes {data[:4].hex() or 'none: empty file'}) "
                          f"although its name ends in .gz. {_FIX_REPLACE}")
    try:
        return gzip.decompress(data)
    except EOFError:
        raise ReglabError(f"{source} is a truncated gzip file (the compressed stream ends early). "
                          f"{_FIX_REPLACE}") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        raise ReglabError(f"{source} is a corrupt gzip file ({e}). {_FIX_REPLACE}") from None


def parse_idx(data: bytes, path: str | Path, *, expect_rank: int | None = None,
              expect_shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """Parse IDX bytes into a native-endian array of shape dims.

    `path` (a path or URL) only names the file in error messages.
    `expect_rank` and `expect_shape` (None entries mean "any size") reject a
    valid IDX file of the wrong kind, e.g. a label file given where images
    are expected.
    """
    p = str(path)
    if len(data) < 4:
        raise ReglabError(f"{p} is too short to be an IDX file ({len(data)} bytes, the header alone needs 4). "
                          f"{_FIX_REPLACE}")
    if data[0] != 0 or data[1] != 0:
        raise ReglabError(f"{p} has a wrong IDX magic number (first bytes {data[:4].hex()}, expected 0000 then "
                          f"dtype and rank): it is not an IDX file. {_FIX_REPLACE}")
    code, rank = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ReglabError(f"{p} has an unknown IDX dtype code 0x{code:02X} (known: {known}). {_FIX_REPLACE}")
    if not 1 <= rank <= MAX_RANK:
        raise ReglabError(f"{p} has IDX rank {rank}; a valid file has 1 to {MAX_RANK} dimensions. {_FIX_REPLACE}")
    header_len = 4 + 4 * rank
    if len(data) < header_len:
        raise ReglabError(f"{p} is truncated inside its header ({len(data)} bytes, the header of a rank-{rank} "
                          f"file needs {header_len}). {_FIX_REPLACE}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=rank, offset=4))
    if expect_rank is not None and rank != expect_rank:
        raise ReglabError(f"{p} has rank {rank} (shape {dims}) but rank {expect_rank} was expected: "
                          f"it is the wrong kind of IDX file. Fix: check which file is which.")
    if expect_shape is not None:
        for want, got in zip(expect_shape, dims):
            if want is not None and want != got:
                raise ReglabError(f"{p} has shape {dims}, expected {_shape_text(expect_shape)}. "
                                  f"Fix: use the dataset's original file.")
    if dims[0] == 0:
        raise ReglabError(f"{p} holds 0 items. {_FIX_REPLACE}")
    dtype = IDX_DTYPES[code]
    n_values = int(np.prod(dims, dtype=object))  # Python ints: four uint32 sizes can overflow int64
    expected_len = header_len + n_values * dtype.itemsize
    if len(data) < expected_len:
        item_bytes = dtype.itemsize * (n_values // dims[0])
        complete = (len(data) - header_len) // item_bytes if item_bytes else 0
        raise ReglabError(f"{p} is truncated: its header declares {dims[0]} items (shape {dims}, "
                          f"{expected_len} bytes) but the file has {len(data)} bytes ({complete} whole items). "
                          f"{_FIX_REPLACE}")
    if len(data) > expected_len:
        raise ReglabError(f"{p} has {len(data) - expected_len} bytes after the {dims[0]} items its header declares "
                          f"(shape {dims}): wrong item count or a damaged file. {_FIX_REPLACE}")
    values = np.frombuffer(data, dtype=dtype, count=n_values, offset=header_len)
    return values.reshape(dims).astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path, *, expect_rank: int | None = None,
             expect_shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """Read and validate one IDX file (raw or .gz); see :func:`parse_idx`."""
    return parse_idx(read_bytes(path), path, expect_rank=expect_rank, expect_shape=expect_shape)


def check_pair(images: np.ndarray, labels: np.ndarray, images_path: str | Path, labels_path: str | Path,
               n_classes: int) -> None:
    """An image file and its label file must hold the same number of items, labels in [0, n_classes)."""
    if images.shape[0] != labels.shape[0]:
        raise ReglabError(f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
                          f"{labels.shape[0]} labels: the two files do not belong together. "
                          f"Fix: use the image and label files of the same split and release.")
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ReglabError(f"{labels_path} has label {int(labels[i])} at item {i}; labels must be in "
                          f"0..{n_classes - 1}. {_FIX_REPLACE}")


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
