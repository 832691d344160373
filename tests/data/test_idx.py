"""The IDX reader: valid files of every dtype, and every malformed input as a one-line error."""

import gzip

import numpy as np
import pytest

from reglab.data.idx import check_pair, parse_idx, read_bytes, read_idx
from reglab.errors import ReglabError

from .helpers import assert_clean_error, idx_bytes

IMAGES = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_a_valid_file_of_every_idx_dtype_reads_back_exactly(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    path = tmp_path / "a-idx3"
    path.write_bytes(idx_bytes(a))
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, a)


def test_gzip_and_raw_copies_of_a_file_read_the_same(tmp_path):
    (tmp_path / "x-idx3-ubyte").write_bytes(idx_bytes(IMAGES))
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(IMAGES)))
    np.testing.assert_array_equal(read_idx(tmp_path / "x-idx3-ubyte"), IMAGES)
    np.testing.assert_array_equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), IMAGES)


def test_the_returned_array_is_writable_and_owns_its_memory(tmp_path):
    (tmp_path / "x").write_bytes(idx_bytes(IMAGES))
    a = read_idx(tmp_path / "x")
    a[0, 0, 0] = 255
    assert a.flags.owndata


def test_expected_rank_and_shape_accept_the_right_file(tmp_path):
    (tmp_path / "x").write_bytes(idx_bytes(IMAGES))
    assert read_idx(tmp_path / "x", expect_rank=3, expect_shape=(None, 4, 5)).shape == (3, 4, 5)


# ----------------------------------------------------------------------------
# malformed input: one line, naming the file, the problem and the fix

def _bad(tmp_path, data: bytes, name: str = "bad-idx3-ubyte") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_a_wrong_magic_number_is_a_one_line_error(tmp_path):
    path = _bad(tmp_path, b"\x01\x02\x08\x03" + idx_bytes(IMAGES)[4:])
    with pytest.raises(ReglabError) as e:
        read_idx(path)
    assert_clean_error(e, path, "magic")


def test_an_unknown_dtype_code_is_a_one_line_error(tmp_path):
    data = bytearray(idx_bytes(IMAGES))
    data[2] = 0x0A
    path = _bad(tmp_path, bytes(data))
    with pytest.raises(ReglabError) as e:
        read_idx(path)
    assert_clean_error(e, path, "dtype code 0x0A")


@pytest.mark.parametrize("rank", [0, 200])
def test_an_impossible_rank_is_a_one_line_error(tmp_path, rank):
    path = _bad(tmp_path, bytes([0, 0, 8, rank]) + b"\x00" * 64)
    with pytest.raises(ReglabError) as e:
        read_idx(path)
    assert_clean_error(e, path, f"rank {rank}")


def test_a_file_cut_inside_its_header_is_a_one_line_error(tmp_path):
    path = _bad(tmp_path, idx_bytes(IMAGES)[:9])
    with pytest.raises(ReglabError) as e:
        read_idx(path)
    assert_clean_error(e, path, "truncated inside its header")


@pytest.mark.parametrize("size", [0, 3])
def test_an_empty_or_tiny_file_is_a_one_line_error(tmp_path, size):
    path = _bad(tmp_path, b"\x00" * size)
    with pytest.raises(ReglabError) as e:
        read_idx(path)
    assert_clean_error(e, path, "too short")


def test_a_truncated_file_is_a_one_line_error_saying_how_much_is_there(tmp_path):
    path = _bad(tmp_path, idx_bytes(IMAGES)[:-25])  # 16 header bytes + 35 of 60 values: 1 whole 4x5 item
    with pytest.raises(ReglabError) as e:
        read_idx(path)
    assert_clean_error(e, path, "truncated", "declares 3 items", "1 whole items")


def test_bytes_beyond_the_declared_item_count_are_a_one_line_error(tmp_path):
    path = _bad(tmp_path, idx_bytes(IMAGES) + b"\x00" * 20)
    with pytest.raises(ReglabError) as e:
        read_idx(path)
    assert_clean_error(e, path, "20 bytes after the 3 items")


def test_a_wrong_item_count_for_the_expected_shape_is_a_one_line_error(tmp_path):
    path = _bad(tmp_path, idx_bytes(IMAGES))
    with pytest.raises(ReglabError) as e:
        read_idx(path, expect_rank=3, expect_shape=(60000, 4, 5))
    assert_clean_error(e, path, "shape (3, 4, 5)", "expected (60000, 4, 5)")


def test_a_zero_item_file_is_a_one_line_error(tmp_path):
    path = _bad(tmp_path, idx_bytes(np.zeros((0, 4), dtype=np.uint8)))
    with pytest.raises(ReglabError) as e:
        read_idx(path)
    assert_clean_error(e, path, "0 items")


def test_a_label_file_where_images_are_expected_is_a_one_line_error(tmp_path):
    path = _bad(tmp_path, idx_bytes(np.zeros(7, dtype=np.uint8)))
    with pytest.raises(ReglabError) as e:
        read_idx(path, expect_rank=3)
    assert_clean_error(e, path, "rank 1", "rank 3 was expected")


def test_garbage_behind_a_gz_name_is_a_one_line_error(tmp_path):
    path = _bad(tmp_path, b"<html>404 not found</html>", "x-idx3-ubyte.gz")
    with pytest.raises(ReglabError) as e:
        read_idx(path)
    assert_clean_error(e, path, "not gzip data")


def test_an_empty_gz_file_is_a_one_line_error(tmp_path):
    path = _bad(tmp_path, b"", "x-idx3-ubyte.gz")
    with pytest.raises(ReglabError) as e:
        read_idx(path)
    assert_clean_error(e, path, "empty file")


def test_a_truncated_gz_file_is_a_one_line_error(tmp_path):
    path = _bad(tmp_path, gzip.compress(idx_bytes(IMAGES))[:-12], "x-idx3-ubyte.gz")
    with pytest.raises(ReglabError) as e:
        read_idx(path)
    assert_clean_error(e, path, "truncated gzip")


def test_a_gz_file_with_a_damaged_stream_is_a_one_line_error(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(np.arange(4000, dtype=np.int32)), mtime=0))
    data[len(data) // 2] ^= 0xFF
    path = _bad(tmp_path, bytes(data), "x-idx1-ubyte.gz")
    with pytest.raises(ReglabError) as e:
        read_idx(path)
    assert_clean_error(e, path)
    assert "gzip" in str(e.value)


def test_a_gz_file_with_a_wrong_crc_is_a_one_line_error(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(IMAGES), mtime=0))
    data[-8] ^= 0xFF  # the CRC-32 of the content sits in the trailer's first 4 bytes
    path = _bad(tmp_path, bytes(data), "x-idx3-ubyte.gz")
    with pytest.raises(ReglabError) as e:
        read_idx(path)
    assert_clean_error(e, path, "corrupt gzip")


def test_gzip_bytes_behind_a_plain_name_are_a_one_line_error_naming_the_rename(tmp_path):
    path = _bad(tmp_path, gzip.compress(idx_bytes(IMAGES)), "x-idx3-ubyte")
    with pytest.raises(ReglabError) as e:
        read_idx(path)
    assert_clean_error(e, path, "rename it to x-idx3-ubyte.gz")


def test_a_missing_file_or_a_directory_is_a_one_line_error(tmp_path):
    with pytest.raises(ReglabError) as e:
        read_bytes(tmp_path / "nope")
    assert_clean_error(e, str(tmp_path / "nope"), "does not exist")
    with pytest.raises(ReglabError) as e:
        read_bytes(tmp_path)
    assert_clean_error(e, str(tmp_path), "is a directory")


def test_images_and_labels_of_different_counts_are_a_one_line_error():
    with pytest.raises(ReglabError) as e:
        check_pair(np.zeros((5, 2, 2)), np.zeros(4, dtype=np.uint8), "imgs.gz", "labs.gz", 10)
    assert_clean_error(e, "imgs.gz holds 5 images", "labs.gz holds 4 labels")


def test_a_label_outside_the_classes_is_a_one_line_error():
    labels = np.array([0, 3, 10, 2], dtype=np.uint8)
    with pytest.raises(ReglabError) as e:
        check_pair(np.zeros((4, 2, 2)), labels, "imgs", "labs", 10)
    assert_clean_error(e, "labs", "label 10 at item 2")


def test_parse_idx_names_the_given_source_in_errors():
    with pytest.raises(ReglabError) as e:
        parse_idx(b"\x00\x00\x08", "http://example/x.gz")
    assert_clean_error(e, "http://example/x.gz")
