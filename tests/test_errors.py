"""Errors a program can catch (issue 21, item 6): each documented subclass of HelloLabelsError is what the library
raises where docs/safety.md and RELIABILITY.md say it is, and the CLI still prints one line with exit status 2."""
import json
import threading

import pytest
import torch

from hello_labels import HelloLabelsError
from hello_labels.cli import main
from hello_labels.errors import BadInputError, CorruptFileError, FolderBusyError, HubUnreachableError, TrustRefusedError


def test_the_hierarchy():
    for cls in (BadInputError, CorruptFileError, FolderBusyError, HubUnreachableError, TrustRefusedError):
        assert issubclass(cls, HelloLabelsError) and issubclass(cls, ValueError)  # old `except` clauses still work
    assert len({BadInputError, CorruptFileError, FolderBusyError, HubUnreachableError, TrustRefusedError}) == 5


def test_folder_busy_while_another_writer_holds_the_lock(tmp_path):
    """Another thread (or process) holds the folder: FolderBusyError, to retry later. The holding thread itself
    may lock it again (distill saving into its own --out)."""
    from hello_labels.runs import RunLock

    held, done = threading.Event(), threading.Event()

    def hold():
        with RunLock(tmp_path):
            held.set()
            done.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        held.wait(30)
        with pytest.raises(FolderBusyError, match="is being written by another run"):
            RunLock(tmp_path).acquire()
    finally:
        done.set()
        thread.join()
    with RunLock(tmp_path), RunLock(tmp_path) as inner:  # re-entry by the holder
        assert inner.held
    assert not (tmp_path / ".hello-labels.lock").exists()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from hello_labels import LabelProjector

    path = tmp_path_factory.mktemp("errors") / "p"
    LabelProjector.from_base(encoder(), base_mean=[0.5] * 3, base_std=[0.5] * 3, base_image_size=8,
                             class_names=["a", "b"], head_init="zero", lora_targets=["0.weight"],
                             base_factory="test_errors:encoder").save_pretrained(path)
    return path


def encoder():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())


def _copy(saved, tmp_path, config=None, adapter=None):
    out = tmp_path / "copy"
    out.mkdir()
    data = json.loads((saved / "config.json").read_text())
    (out / "config.json").write_text(config if isinstance(config, str) else json.dumps(config(data) if config
                                                                                        else data))
    (out / "adapter.safetensors").write_bytes(adapter if adapter is not None
                                              else (saved / "adapter.safetensors").read_bytes())
    return out


@pytest.mark.parametrize("damage, match", [
    (dict(config="{not json"), "is not valid JSON"),
    (dict(config=lambda c: dict(c, head_rank="eight")), "'head_rank' must be"),
    (dict(config=lambda c: dict(c, surprise=1)), "unknown keys"),
    (dict(adapter=b"\x00" * 12), "truncated or corrupt"),
    (dict(config=lambda c: dict(c, adapter_sha256="0" * 64)), "is not the one config.json was saved with"),
])
def test_corrupt_projector_files(saved, tmp_path, damage, match, capsys):
    from hello_labels import LabelProjector

    path = _copy(saved, tmp_path, **damage)
    with pytest.raises(CorruptFileError, match=match):
        LabelProjector.from_pretrained(path, trust_remote_code=True)
    assert main(["info", str(path), "--trust-remote-code"]) == 2  # the CLI catches every subclass: one line
    assert capsys.readouterr().err.count("\n") == 1


def test_corrupt_label_files_and_checkpoints(tmp_path):
    from hello_labels.labels.fkd import load_batch
    from hello_labels.labels.targets import load_image_labels
    from hello_labels.train.distill import load_state

    (tmp_path / "batch_0.tar").write_bytes(b"")
    with pytest.raises(CorruptFileError, match="truncated or not an SRe2L batch file"):
        load_batch(tmp_path / "batch_0.tar")
    torch.save(torch.zeros(3, dtype=torch.long), tmp_path / "labels.pt")
    with pytest.raises(CorruptFileError, match=r"must hold one float tensor \[N, C\]"):
        load_image_labels(str(tmp_path / "labels.pt"))
    (tmp_path / "train_state.pt").write_bytes(b"not a zip file")
    with pytest.raises(CorruptFileError, match="delete it to start over"):
        load_state(tmp_path / "train_state.pt")


def test_bad_inputs_and_arguments(saved):
    from hello_labels import LabelProjector
    from hello_labels.labels.teachers import load_teachers
    from hello_labels.storage import LabelSetting

    projector = LabelProjector.from_pretrained(saved, trust_remote_code=True)
    with pytest.raises(BadInputError, match="images must have shape"):
        projector(torch.zeros(2, 1, 8, 8))
    with pytest.raises(BadInputError, match="outside what pixels in"):
        projector(torch.full((2, 3, 8, 8), 255.0))
    with pytest.raises(BadInputError, match="classes must be a positive integer"):
        LabelSetting.from_ipc(0, 10)
    with pytest.raises(BadInputError, match="expected timm:NAME"):
        load_teachers(["nonsense"])
    with pytest.raises(BadInputError, match="unknown dtype"):
        projector.save_pretrained(saved.parent / "other", dtype="int3")


def test_a_lock_file_that_is_not_a_pid_keeps_the_error_one_line(tmp_path):
    """The lock file's text goes into the message: before, a holder that wrote ``"1\\nsecond line"`` (any process
    may write the file) made the CLI's error two lines."""
    import fcntl
    import os

    from hello_labels.runs import LOCK_FILE, RunLock

    path = tmp_path / LOCK_FILE
    path.write_text("1\nsecond line\n")
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(FolderBusyError) as err:
            RunLock(tmp_path).acquire()
    finally:
        os.close(fd)
    assert "\n" not in str(err.value) and "(pid ?)" in str(err.value)


def test_rank_zero_errors_keep_their_class_on_every_rank():
    """on_main/all_ok share one rank's error with the others: a busy folder must stay FolderBusyError (retry), not
    turn into a plain HelloLabelsError, on the rank that hit it and on the ranks it is shared with."""
    from hello_labels import distributed
    from hello_labels.errors import FolderBusyError, HelloLabelsError

    env = distributed.DistEnv()

    def busy():
        raise FolderBusyError("out is being written by another run")

    with pytest.raises(FolderBusyError, match="another run"):
        distributed.on_main(env, busy)
    with pytest.raises(FolderBusyError, match="another run"):
        distributed.all_ok(env, busy)
    with pytest.raises(FolderBusyError, match="shared"):  # what another rank receives
        distributed._raise(None, ("FolderBusyError", "shared"))
    with pytest.raises(HelloLabelsError) as err:  # a name that is no error class of ours stays the base class
        distributed._raise(None, ("os.system", "x"))
    assert type(err.value) is HelloLabelsError
