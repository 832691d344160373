"""Where datasets are found, checksums, and downloads from a real HTTP server on 127.0.0.1."""

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from reglab.data.sources import (SOURCES, checksum_record, default_cache_dir, fetch, fetch_or_fail, get_source,
                                 load_arrays, locate)
from reglab.errors import ReglabError

from .helpers import Route, assert_clean_error, assert_one_line, closed_port_url, idx_bytes, tiny_images

TIMEOUT = 5.0  # seconds per network operation; everything here is on 127.0.0.1


def _locate(tiny, **kw):
    kw.setdefault("system_dirs", ())
    kw.setdefault("download", False)
    return locate(tiny.source, timeout=TIMEOUT, **kw)


def _files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


# ----------------------------------------------------------------------------
# the published checksum table

def test_the_checksum_table_holds_the_values_of_the_datasets_readme():
    mnist, fashion = SOURCES["mnist"], SOURCES["fashion-mnist"]
    assert mnist.train_images.sha256 == "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    assert mnist.test_labels.md5 == "27ae3e4e09519cfbb04c329615203637"
    assert fashion.train_labels.md5 == "9018921c3c673c538a1fc5bad174d6f9"
    assert fashion.test_images.sha256 is None  # only md5 is published for Fashion-MNIST
    for source in (mnist, fashion):
        assert [f.shape[0] for f in source.files] == [60000, 60000, 10000, 10000]


def test_an_unknown_image_dataset_name_is_a_one_line_error():
    with pytest.raises(ReglabError) as e:
        get_source("cifar")
    assert_clean_error(e, "'cifar'", "mnist, fashion-mnist")


def test_checksums_are_of_the_decompressed_content_and_both_are_checked():
    tiny = tiny_images()
    f = tiny.source.train_labels
    data = tiny.content(f.name)
    record = checksum_record(data, f, "p", allow_mismatch=False)
    assert record == {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest(),
                      "checked": ["md5", "sha256"], "status": "ok"}


def test_an_md5_only_file_is_checked_on_md5_alone():
    tiny = tiny_images(sha256=False)
    f = tiny.source.test_labels
    assert checksum_record(tiny.content(f.name), f, "p", allow_mismatch=False)["checked"] == ["md5"]


def test_a_checksum_mismatch_is_an_error_unless_allowed_and_then_recorded_as_override():
    tiny = tiny_images()
    f = tiny.source.train_labels
    other = idx_bytes((np.arange(40) % 10 == 3).astype(np.uint8))
    with pytest.raises(ReglabError) as e:
        checksum_record(other, f, "/d/x.gz", allow_mismatch=False)
    assert_clean_error(e, "/d/x.gz", "checksum mismatch", "--allow-checksum-mismatch")
    record = checksum_record(other, f, "/d/x.gz", allow_mismatch=True)
    assert record["status"] == "override" and record["expected"]["md5"] == f.md5
    json.dumps(record)


# ----------------------------------------------------------------------------
# look-up order

def test_the_data_dir_comes_before_the_cache_and_the_cache_before_the_system_folder(tmp_path):
    tiny = tiny_images()
    data, cache, system = (tmp_path / d for d in ("data", "cache", "system"))
    for root in (data, cache, system):
        tiny.write(root)
    assert _locate(tiny, data_dir=data, cache_dir=cache, system_dirs=[system]).place == "data_dir"
    assert _locate(tiny, cache_dir=cache, system_dirs=[system]).place == "cache"
    found = _locate(tiny, system_dirs=[system])
    assert found.place == "system" and found.folder == system / "tiny"


def test_raw_and_gzip_files_are_both_found(tmp_path):
    tiny = tiny_images()
    tiny.write(tmp_path, gz=False)
    found = _locate(tiny, data_dir=tmp_path)
    arrays, records = load_arrays(tiny.source, found)
    assert all(p.suffix != ".gz" for p in found.paths.values())
    np.testing.assert_array_equal(arrays["train-images-idx3-ubyte"], tiny.arrays["train-images-idx3-ubyte"])
    assert {r["status"] for r in records.values()} == {"ok"}


def test_a_place_missing_one_file_is_skipped_and_reported(tmp_path):
    tiny = tiny_images()
    data, cache = tmp_path / "data", tmp_path / "cache"
    tiny.write(data)
    tiny.write(cache)
    (data / "tiny" / "t10k-labels-idx1-ubyte.gz").unlink()
    found = _locate(tiny, data_dir=data, cache_dir=cache)
    assert found.place == "cache"
    assert any("lacks t10k-labels-idx1-ubyte[.gz]" in note for note in found.looked)


def test_nothing_found_is_one_error_listing_every_place_looked_and_the_fix(tmp_path):
    tiny = tiny_images()
    data, cache, system = tmp_path / "data", tmp_path / "cache", tmp_path / "system"
    data.mkdir()
    with pytest.raises(ReglabError) as e:
        _locate(tiny, data_dir=data, cache_dir=cache, system_dirs=[system])
    assert_clean_error(e, "tiny not found", str(data / "tiny"), str(cache / "tiny"), str(system / "tiny"),
                       "download: not allowed", "--data-dir")


def test_nothing_found_and_no_network_lists_the_places_and_each_mirror_that_failed(tmp_path):
    offline = closed_port_url()
    tiny = tiny_images(mirrors=(offline,))
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(ReglabError) as e:
        _locate(tiny, data_dir=data, cache_dir=tmp_path / "cache", download=True)
    assert_clean_error(e, "download failed", str(data / "tiny"), offline + "train-images-idx3-ubyte.gz",
                       "unreachable", "reglab data fetch tiny")
    assert not (tmp_path / "cache" / "tiny").exists()  # nothing half-written was left, not even a folder


def test_a_missing_data_dir_is_an_error_not_a_silent_fall_through(tmp_path):
    tiny = tiny_images()
    tiny.write(tmp_path / "cache")
    with pytest.raises(ReglabError) as e:
        _locate(tiny, data_dir=tmp_path / "typo", cache_dir=tmp_path / "cache")
    assert_clean_error(e, str(tmp_path / "typo"), "does not exist")


def test_a_data_dir_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ReglabError) as e:
        _locate(tiny_images(), data_dir=tmp_path / "f")
    assert_clean_error(e, str(tmp_path / "f"), "is a file")


def test_idx_files_put_directly_in_the_data_dir_get_a_hint_to_move_them(tmp_path):
    tiny = tiny_images()
    for name in tiny.arrays:
        (tmp_path / (name + ".gz")).write_bytes(gzip.compress(tiny.content(name)))
    with pytest.raises(ReglabError) as e:
        _locate(tiny, data_dir=tmp_path)
    assert_clean_error(e, "the data dir is the folder ABOVE tiny/", str(tmp_path / "tiny"))


def _error_of_locate_as_unprivileged(data_dir: Path) -> str:
    """The ReglabError message of locate(mnist, data_dir); as root, computed in a child forked as nobody.

    Root reads every folder whatever its mode, so only an unprivileged process sees the permission error.
    """
    def run() -> str:
        try:
            locate(SOURCES["mnist"], data_dir=data_dir, download=False, system_dirs=())
        except ReglabError as e:
            return str(e)
        return "no error"

    if os.geteuid() != 0:
        return run()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop to nobody, report, and leave without running pytest's teardown
        status = 1
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, run().encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged child failed"
    return message


def test_an_unreadable_data_dir_is_a_one_line_error():
    parent = Path(tempfile.mkdtemp(prefix="reglab-unreadable-"))
    unreadable = parent / "data"
    try:
        parent.chmod(0o755)  # nobody may enter the parent, not the data dir
        (unreadable / "mnist").mkdir(parents=True)
        unreadable.chmod(0o000)
        message = _error_of_locate_as_unprivileged(unreadable)
        assert_one_line(message, str(unreadable), "permission denied")
    finally:
        unreadable.chmod(0o755)
        shutil.rmtree(parent)


# ----------------------------------------------------------------------------
# downloads from a local HTTP server

def _serve(server, tiny, prefix="good/", **overrides):
    """Serve tiny's four files as .gz under /prefix/; overrides: file name -> Route."""
    for name in tiny.arrays:
        server.routes[f"/{prefix}{name}.gz"] = overrides.get(name) or Route(gzip.compress(tiny.content(name)))
    return server.url(prefix)


def test_a_download_lands_verified_in_the_cache_and_is_found_there_afterwards(server, tmp_path):
    tiny = tiny_images()
    url = _serve(server, tiny)
    cache = tmp_path / "cache"
    found = _locate(tiny, cache_dir=cache, download=True, mirrors=[url])
    assert found.place == "download" and found.folder == cache / "tiny"
    assert found.urls["train-images-idx3-ubyte"] == url + "train-images-idx3-ubyte.gz"
    assert _files_in(cache / "tiny") == {n + ".gz" for n in tiny.arrays}
    arrays, records = load_arrays(tiny.source, found)
    np.testing.assert_array_equal(arrays["t10k-images-idx3-ubyte"], tiny.arrays["t10k-images-idx3-ubyte"])
    assert {r["status"] for r in records.values()} == {"ok"}
    n_requests = len(server.requests)
    assert _locate(tiny, cache_dir=cache, download=True, mirrors=[url]).place == "cache"
    assert len(server.requests) == n_requests


def test_a_corrupted_download_is_rejected_and_the_next_mirror_is_used(server, tmp_path):
    tiny = tiny_images()
    wrong = tiny.arrays["train-labels-idx1-ubyte"].copy()
    wrong[0] = 9
    bad = _serve(server, tiny, "bad/", **{"train-labels-idx1-ubyte": Route(gzip.compress(idx_bytes(wrong)))})
    good = _serve(server, tiny, "good/")
    found = _locate(tiny, cache_dir=tmp_path, download=True, mirrors=[bad, good])
    assert found.urls["train-labels-idx1-ubyte"] == good + "train-labels-idx1-ubyte.gz"
    assert found.urls["train-images-idx3-ubyte"] == bad + "train-images-idx3-ubyte.gz"
    assert {r["status"] for r in load_arrays(tiny.source, found)[1].values()} == {"ok"}


@pytest.mark.parametrize("how", ["wrong content", "body cut short", "gzip cut short", "not gzip", "http 404",
                                 "no length, cut short"])
def test_a_failed_download_leaves_no_file_in_the_cache(server, tmp_path, how):
    tiny = tiny_images()
    name = "t10k-images-idx3-ubyte"
    gz = gzip.compress(tiny.content(name))
    wrong = gzip.compress(idx_bytes(tiny.arrays[name] ^ 1))
    route = {"wrong content": Route(wrong),
             "body cut short": Route(gz, close_after=len(gz) // 2),
             "gzip cut short": Route(gz[: len(gz) // 2]),
             "not gzip": Route(b"<html>moved</html>"),
             "http 404": Route(b"", status=404),
             "no length, cut short": Route(gz, declared_length=None, close_after=len(gz) - 30)}[how]
    url = _serve(server, tiny, **{name: route})
    with pytest.raises(ReglabError) as e:
        fetch_or_fail(tiny.source, tmp_path, mirrors=[url], timeout=TIMEOUT)
    assert_clean_error(e, url + name + ".gz")
    # the files before it were verified and kept; the failed one and every temp file are gone
    assert _files_in(tmp_path / "tiny") == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"}


def test_a_truncated_download_reports_the_bytes_received(server, tmp_path):
    tiny = tiny_images()
    name = "train-images-idx3-ubyte"
    gz = gzip.compress(tiny.content(name))
    url = _serve(server, tiny, **{name: Route(gz, close_after=10)})
    with pytest.raises(ReglabError) as e:
        fetch_or_fail(tiny.source, tmp_path, mirrors=[url], timeout=TIMEOUT)
    assert_clean_error(e, f"got 10 of {len(gz)} bytes")


def test_a_corrupted_file_in_the_cache_is_replaced_by_fetch_and_never_trusted_before(server, tmp_path):
    tiny = tiny_images()
    folder = tiny.write(tmp_path)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(tiny.arrays["t10k-labels-idx1-ubyte"][::-1].copy())))
    with pytest.raises(ReglabError) as e:
        load_arrays(tiny.source, _locate(tiny, cache_dir=tmp_path))
    assert_clean_error(e, str(labels), "checksum mismatch")
    url = _serve(server, tiny)
    got = fetch(tiny.source, tmp_path, mirrors=[url], timeout=TIMEOUT)
    assert set(got) == {"t10k-labels-idx1-ubyte"}  # only the bad file was downloaded again
    load_arrays(tiny.source, _locate(tiny, cache_dir=tmp_path))


def test_the_default_cache_follows_xdg_cache_home_else_home():
    assert default_cache_dir({"XDG_CACHE_HOME": "/x/c", "HOME": "/h"}) == Path("/x/c/reglab")
    assert default_cache_dir({"HOME": "/h"}) == Path("/h/.cache/reglab")
    assert default_cache_dir({"XDG_CACHE_HOME": "rel", "HOME": "/h"}) == Path("/h/.cache/reglab")


@pytest.mark.slow
def test_real_mnist_downloads_from_a_local_mirror_and_verifies_against_the_published_table(
        server, tmp_path, data_dir):
    source = SOURCES["mnist"]
    for f in source.files:
        server.routes[f"/mnist/{f.name}.gz"] = Route((data_dir / "mnist" / f"{f.name}.gz").read_bytes())
    found = locate(source, cache_dir=tmp_path, mirrors=[server.url("mnist/")], system_dirs=(), timeout=TIMEOUT)
    assert found.place == "download"
    arrays, records = load_arrays(source, found)
    assert {r["status"] for r in records.values()} == {"ok"}
    assert arrays["train-images-idx3-ubyte"].shape == (60000, 28, 28)
