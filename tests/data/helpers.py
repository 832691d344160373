"""Test helpers: IDX files written independently of reglab, tiny image sources, a local HTTP server."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reglab.data.sources import IdxFile, ImageSource

# written from the IDX spec with struct, not with reglab's reader
IDX_CODES = {np.dtype("uint8"): 0x08, np.dtype("int8"): 0x09, np.dtype("int16"): 0x0B,
             np.dtype("int32"): 0x0C, np.dtype("float32"): 0x0D, np.dtype("float64"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    a = np.asarray(array)
    header = struct.pack(">BBBB", 0, 0, IDX_CODES[a.dtype], a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def assert_one_line(message: str, *needles: str) -> None:
    """A user error: one line, says the fix, and names every needle (file, problem)."""
    assert "\n" not in message, message
    assert "Fix:" in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in: {message}"


def assert_clean_error(excinfo, *needles: str) -> None:
    """`excinfo` holds a one-line ReglabError with no gzip/zlib/numpy exception chained to it."""
    err = excinfo.value
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__), repr(err.__context__)
    assert_one_line(str(err), *needles)


@dataclass
class TinyImages:
    """A small image dataset in IDX form, with its matching ImageSource."""
    arrays: dict[str, np.ndarray]      # file name -> array
    source: ImageSource

    def content(self, name: str) -> bytes:
        return idx_bytes(self.arrays[name])

    def write(self, folder: Path, *, gz: bool = True) -> Path:
        """Write the four files into folder/<source.name>/ and return that folder."""
        target = folder / self.source.name
        target.mkdir(parents=True, exist_ok=True)
        for name in self.arrays:
            data = self.content(name)
            if gz:
                (target / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (target / name).write_bytes(data)
        return target


def tiny_images(n_train: int = 40, n_test: int = 20, side: int = 4, *, seed: int = 0, name: str = "tiny",
                sha256: bool = True, mirrors: tuple[str, ...] = ()) -> TinyImages:
    """Random uint8 images with labels cycling 0..9, and a source whose checksums match them."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, side, side), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, side, side), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    files = []
    for fname, a in arrays.items():
        data = idx_bytes(a)
        files.append(IdxFile(fname, a.shape, hashlib.md5(data).hexdigest(),
                             hashlib.sha256(data).hexdigest() if sha256 else None))
    source = ImageSource(name=name, train_images=files[0], train_labels=files[1], test_images=files[2],
                         test_labels=files[3], mirrors=mirrors)
    return TinyImages(arrays, source)


# ----------------------------------------------------------------------------
# a real HTTP server on 127.0.0.1

@dataclass
class Route:
    body: bytes
    status: int = 200
    declared_length: int | None = -1    # Content-Length sent: -1 = len(body), None = no header
    close_after: int | None = None      # send only this many body bytes, then drop the connection


@dataclass
class LocalServer:
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    port: int = 0

    def url(self, prefix: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{prefix}"


def start_server(state: LocalServer):
    """Serve `state.routes` from a thread; returns the server (call .shutdown() and .server_close())."""

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 5  # seconds: a stuck client cannot hold the test

        def do_GET(self):  # noqa: N802 (http.server's name)
            state.requests.append(self.path)
            route = state.routes.get(self.path)
            if route is None:
                self.send_error(404, "not here")
                return
            self.send_response(route.status)
            length = len(route.body) if route.declared_length == -1 else route.declared_length
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()
            body = route.body if route.close_after is None else route.body[:route.close_after]
            self.wfile.write(body)
            if route.close_after is not None or length is None:
                self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server._reglab_thread = thread
    return server


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting is refused at once, like a machine offline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
