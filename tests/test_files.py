import os
import stat

import pytest

from hello_labels.files import atomic_write_json, atomic_write_text


def test_new_file_gets_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_replacing_keeps_the_existing_mode_and_a_failed_write_keeps_the_old_text(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    path.chmod(0o640)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o640
    with pytest.raises(TypeError):
        atomic_write_text(path, None)
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
