import os
import stat
from pathlib import Path

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


def test_a_write_killed_midway_leaves_its_temporary_where_asked_and_the_next_run_clears_it(tmp_path):
    import subprocess
    import sys

    import hello_labels
    from hello_labels.files import remove_stale_temps

    # torch.save writes half a file, then the process is killed (SIGKILL: no cleanup runs)
    script = (
        "import os, signal, sys, torch\n"
        "from hello_labels.files import atomic_torch_save\n"
        "def half(obj, f):\n"
        "    open(f, 'wb').write(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "torch.save = half\n"
        "atomic_torch_save([1], sys.argv[1] + '/epoch_0/batch_0.tar', tmp_dir=sys.argv[1] + '/run')\n")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)],
                          env=dict(os.environ, PYTHONPATH=str(Path(hello_labels.__file__).parents[1])))
    assert proc.returncode == -9
    assert list((tmp_path / "epoch_0").iterdir()) == []  # nothing half-written where readers list files
    stale = list((tmp_path / "run").iterdir())
    assert len(stale) == 1 and stale[0].name.startswith(".batch_0.tar.") and stale[0].name.endswith(".tmp")
    assert remove_stale_temps(tmp_path / "run") == stale and list((tmp_path / "run").iterdir()) == []
