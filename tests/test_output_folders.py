"""Output folders that hold what they should not (issue 39): a lock path that is a link, a pipe or a folder; a folder
where a projector file should be; a disk that fills up during a save or an export. Each stops in one line naming the
path, nothing is written through a link, and nothing already in the folder is lost or left half-written."""
import contextlib
import errno
import os
import pathlib
import signal

import pytest
import torch

from hello_labels import LabelProjector
from hello_labels.cli import main
from hello_labels.errors import BadInputError, CorruptFileError, DiskFullError
from hello_labels.labels.export import run_folder
from hello_labels.runs import LOCK_FILE, RunLock

SIZE = 32
X = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(0))


def encoder():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())


def projector(seed=0):
    """A projector on a three-layer base, built in milliseconds; its outputs depend on ``seed``."""
    return LabelProjector.from_base(encoder(), base_mean=[0.5] * 3, base_std=[0.5] * 3, base_image_size=8,
                                    class_names=["a", "b", "c"], head_init="random", seed=seed,
                                    lora_targets=["0.weight"], base_factory="test_output_folders:encoder")


def outputs(folder):
    with torch.no_grad():
        return LabelProjector.from_pretrained(folder, trust_remote_code=True)(X)


def outputs_of(p):
    with torch.no_grad():
        return p(X)


def files(folder):
    """Every regular file under ``folder`` (hidden ones too) and its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in pathlib.Path(folder).rglob("*") if p.is_file()}


def one_line(err, *parts):
    text = str(err.value if hasattr(err, "value") else err)
    assert "\n" not in text and all(str(part) in text for part in parts), text
    return text


def cli_error(capsys, argv, *parts):
    """``hello-labels ARGV`` exits 2 with one ``error:`` line containing ``parts``."""
    assert main([str(a) for a in argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return one_line(lines[0], *parts)


def full(*_, **__):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# -- the lock -----------------------------------------------------------------------------------------------------

class Hung(Exception):
    """Raised by :func:`deadline`: the call blocked (opening a named pipe waits for a writer forever)."""


@contextlib.contextmanager
def deadline(seconds=30):
    def expire(*_):
        raise Hung(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("kind", ["symbolic link", "named pipe", "folder"])
def test_a_lock_path_that_is_not_a_regular_file_is_refused_in_one_line(tmp_path, kind):
    """Before: a symlink's target (any file of the user's) was truncated and got the pid; a pipe or a folder
    gave a raw OSError."""
    outside = tmp_path / "notes.txt"
    outside.write_text("my notes\n")
    folder = tmp_path / "p"
    folder.mkdir()
    lock = folder / LOCK_FILE
    {"symbolic link": lambda: lock.symlink_to(outside), "named pipe": lambda: os.mkfifo(lock),
     "folder": lock.mkdir}[kind]()
    with deadline(), pytest.raises(BadInputError) as err:
        projector().save_pretrained(folder)
    one_line(err, lock, kind, "not a regular file")
    with deadline(), pytest.raises(BadInputError):
        RunLock(folder).acquire()
    assert outside.read_text() == "my notes\n" and os.listdir(folder) == [LOCK_FILE]


def test_a_lock_file_hard_linked_elsewhere_is_replaced_never_written(tmp_path):
    """A lock file left in the folder may be anyone's file (here a hard link to one outside): it is unlinked and a
    new one made, never truncated. Before: the outside file was truncated and held the pid."""
    outside = tmp_path / "notes.txt"
    outside.write_text("my notes\n")
    folder = tmp_path / "p"
    folder.mkdir()
    os.link(outside, folder / LOCK_FILE)
    with RunLock(folder):
        assert (folder / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        assert not os.path.samefile(folder / LOCK_FILE, outside)
    projector().save_pretrained(folder)
    assert outside.read_text() == "my notes\n" and not (folder / LOCK_FILE).exists()


def test_export_fkd_refuses_a_symlinked_lock_in_one_line(tiny_projector, toy_folder, tmp_path, capsys):
    """Before: export-fkd wrote its pid into the link's target and ran."""
    tiny_projector(toy_folder)[0].save_pretrained(tmp_path / "p")
    outside = tmp_path / "notes.txt"
    outside.write_text("my notes\n")
    out = tmp_path / "fkd"
    run_folder(out).mkdir()
    (run_folder(out) / LOCK_FILE).symlink_to(outside)
    cli_error(capsys, ["export-fkd", tmp_path / "p", "--data", toy_folder, "--out", out, "--epochs", 1,
                       "--batch-size", 16, "--input-size", SIZE, "--quiet"], run_folder(out) / LOCK_FILE,
              "is a symbolic link")
    assert outside.read_text() == "my notes\n" and not list(out.glob("epoch_*/*"))


def test_a_full_disk_while_writing_the_pid_leaves_no_lock_held(tmp_path, monkeypatch):
    """Before: a raw OSError, and the lock stayed held by this process: the next save into the folder failed
    "being written by another run (pid ?)"."""
    folder = tmp_path / "p"
    with monkeypatch.context() as m:
        m.setattr(os, "write", full)
        with pytest.raises(DiskFullError) as err:
            projector().save_pretrained(folder)
    one_line(err, "no space left", folder)
    assert not (folder / LOCK_FILE).exists()
    projector().save_pretrained(folder)
    assert torch.equal(outputs(folder), outputs_of(projector()))


def test_a_disk_without_room_for_a_new_file_is_one_line(tmp_path, monkeypatch):
    """A file system out of inodes refuses even an empty file: the writability probe said "cannot write to output
    folder" as if the folder were read-only. Before: that BadInputError, without "no space left"."""
    folder = tmp_path / "p"
    real = os.open

    def no_new_file(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            full()
        return real(path, flags, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(os, "open", no_new_file)
        with pytest.raises(DiskFullError) as err:
            projector().save_pretrained(folder)
    one_line(err, "no space left", folder)
    assert os.listdir(folder) == []
    projector().save_pretrained(folder)
    assert torch.equal(outputs(folder), outputs_of(projector()))


# -- a folder where a file should be ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["adapter.safetensors", "config.json", "README.md", "metrics.json"])
def test_a_folder_where_a_projector_file_should_be_is_one_line(tmp_path, name):
    """Before: a raw IsADirectoryError after the commit (adapter) or removing a run file (metrics.json); refused
    only after the run files were removed (config.json) or after the commit (README.md). Loading said the file was
    missing, or that the folder had no config.json."""
    folder = tmp_path / "p"
    projector(0).save_pretrained(folder)
    (folder / "metrics.json").write_text("{}\n")  # a run file: a save removes it before its commit
    (folder / name).unlink()
    (folder / name).mkdir()
    (folder / name / "kept.txt").write_text("x")
    before = files(folder)
    with pytest.raises(BadInputError) as err:
        projector(1).save_pretrained(folder)
    one_line(err, folder / name, "is a folder")
    assert files(folder) == before
    if name in ("README.md", "metrics.json"):  # neither is read back
        assert torch.equal(outputs(folder), outputs_of(projector(0)))
    else:
        with pytest.raises(CorruptFileError) as err:
            outputs(folder)
        one_line(err, folder / name, "is a folder, not a file")


# -- a full disk --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("writer", ["write_bytes", "write_text"])  # the staged adapter; config.json, the commit
def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_projector(tmp_path, monkeypatch, writer):
    """Before: a raw OSError (the data was safe already)."""
    folder = tmp_path / "p"
    projector(0).save_pretrained(folder)
    before = files(folder)
    real = getattr(pathlib.Path, writer)

    def half_then_full(self, data, *args, **kwargs):
        real(self, data[:len(data) // 2], *args, **kwargs)
        full()

    with monkeypatch.context() as m:
        m.setattr(pathlib.Path, writer, half_then_full)
        with pytest.raises(DiskFullError) as err:
            projector(1).save_pretrained(folder)
    one_line(err, "no space left", folder)
    after = files(folder)
    assert {k: v for k, v in after.items() if k in before} == before  # a staged adapter may wait for the next save
    assert not [p for p in after if p.name.endswith(".tmp")] and not (folder / LOCK_FILE).exists()
    assert torch.equal(outputs(folder), outputs_of(projector(0)))
    projector(1).save_pretrained(folder)
    assert torch.equal(outputs(folder), outputs_of(projector(1)))


@pytest.mark.parametrize("error", ["OSError", "torch"])
def test_a_full_disk_during_export_fkd_is_one_line_and_keeps_the_files(tiny_projector, toy_folder, tmp_path,
                                                                        monkeypatch, capsys, error):
    """``torch.save`` on a full disk raises a RuntimeError without errno ("unexpected pos"), told apart by a probe
    write. Before: a raw OSError or RuntimeError traceback."""
    tiny_projector(toy_folder)[0].save_pretrained(tmp_path / "p")
    out = tmp_path / "fkd"
    argv = ["export-fkd", tmp_path / "p", "--data", toy_folder, "--out", out, "--batch-size", 16, "--input-size",
            SIZE, "--quiet"]
    assert main([str(a) for a in argv + ["--epochs", 1]]) == 0
    before = files(out)
    real = torch.save

    with monkeypatch.context() as m:
        def half_then_full(obj, path, *args, **kwargs):
            real(obj, path, *args, **kwargs)
            os.truncate(path, os.path.getsize(path) // 2)
            m.setattr(os, "write", full)  # the disk is full from now on
            if error == "OSError":
                full()
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

        m.setattr(torch, "save", half_then_full)
        cli_error(capsys, argv + ["--epochs", 2], "no space left", out)
    assert files(out) == before and not [p for p in files(run_folder(out)) if p.name.endswith(".tmp")]
    assert main([str(a) for a in argv + ["--epochs", 2]]) == 0
    assert {k: v for k, v in files(out).items() if k in before} == before
    assert sum(k.suffix == ".tar" for k in files(out)) == 2 * sum(k.suffix == ".tar" for k in before)  # + the record


def test_only_a_full_disk_reads_as_one(tmp_path, monkeypatch):
    """A writer's RuntimeError with space left is not called a full disk (it stays the writer's own error)."""
    from hello_labels.files import out_of_space

    unexpected = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert not out_of_space(unexpected, tmp_path) and not out_of_space(OSError(errno.EIO, "I/O error"), tmp_path)
    assert out_of_space(RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
                        tmp_path)
    monkeypatch.setattr(os, "write", full)  # a full disk: the 1 MiB probe is refused
    assert out_of_space(unexpected, tmp_path) and not out_of_space(OSError(errno.EIO, "I/O error"), tmp_path)
    assert not list(tmp_path.iterdir())  # the probe file is removed again
