"""Path arguments are checked before work starts: each bad kind is one ReglabError naming the argument."""

import os
from types import SimpleNamespace
from unittest import mock

import pytest

from reglab import paths
from reglab.errors import ReglabError


def _refused(fn, *args, **kw) -> str:
    with pytest.raises(ReglabError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg and "Fix: " in msg, msg
    return msg


def test_a_name_longer_than_the_file_system_allows_is_refused_naming_the_option(tmp_path):
    msg = _refused(paths.check_folder_to_write, tmp_path / ("a" * 300), "--out")
    assert "--out" in msg and "300 bytes" in msg and "255" in msg


def test_a_whole_path_longer_than_path_max_is_refused(tmp_path):
    long = tmp_path.joinpath(*(["b" * 200] * 25))
    msg = _refused(paths.check_folder_to_write, long, "--out")
    assert "--out" in msg and str(paths.PATH_MAX - 1) in msg


def test_a_nul_byte_and_an_unencodable_character_are_refused(tmp_path):
    assert "NUL" in _refused(paths.check_path, f"{tmp_path}/a\0b", "--data-dir")
    assert "encoding" in _refused(paths.check_path, f"{tmp_path}/a\ud800b", "--config")


def test_a_file_where_a_folder_is_wanted_is_refused_itself_or_on_the_way(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    assert "is a file" in _refused(paths.check_folder_to_write, f, "--out")
    assert "is a file" in _refused(paths.check_folder_to_write, f / "sub" / "run", "--out")


def _statvfs(flag=0, free_blocks=10**9):
    return SimpleNamespace(f_flag=flag, f_bavail=free_blocks, f_frsize=4096)


def test_a_read_only_file_system_is_refused_before_anything_is_written(tmp_path):
    with mock.patch.object(paths.os, "statvfs", return_value=_statvfs(flag=os.ST_RDONLY)):
        assert "read-only" in _refused(paths.check_folder_to_write, tmp_path / "run", "--out")
    assert not (tmp_path / "run").exists()


def test_a_full_file_system_is_refused_with_what_is_free_and_needed(tmp_path):
    with mock.patch.object(paths.os, "statvfs", return_value=_statvfs(free_blocks=1)):
        msg = _refused(paths.check_folder_to_write, tmp_path / "run", "--out")
    assert "4.0 KiB free" in msg and "8.0 KiB" in msg
    with mock.patch.object(paths.os, "statvfs", return_value=_statvfs(free_blocks=2)):   # 8 KiB: enough to start
        assert paths.check_folder_to_write(tmp_path / "run", "--out") == tmp_path / "run"


def test_a_writable_folder_with_room_passes_and_nothing_is_created(tmp_path):
    assert paths.check_folder_to_write(tmp_path / "new" / "run", "--out") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()
