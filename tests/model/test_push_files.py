"""A push uploads the files a projector consists of, as regular files of its folder: nothing a link points at."""
import contextlib
import os

import pytest
from hub_server import hub  # noqa: F401  (fixture)

from hello_labels import HelloLabelsError, LabelProjector
from hello_labels.cli import main
from hello_labels.model.publish import push_directory

BASE = "hello-labels:tiny-clip-vit"
SECRET = b"root:x:0:0:SECRET-OF-THIS-MACHINE\n"


@pytest.fixture
def saved(tmp_path):
    """``(projector folder, a secret file outside it)``."""
    p = LabelProjector.from_base(BASE, class_names=["cat", "dog"], templates="simple", head_rank=4)
    p.save_pretrained(tmp_path / "p")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "passwd").write_bytes(SECRET)
    return tmp_path / "p", tmp_path / "outside" / "passwd"


def _push_cli(folder, repo, capsys):
    if main(["push", str(folder), repo]) != 0:
        raise HelloLabelsError(capsys.readouterr().err.strip())


def _push_library(folder, repo, capsys):
    push_directory(folder, repo)


def _uploaded(hub):
    """Every byte the Hub stand-in holds, over all repos and commits."""
    return b"".join(data for repo in hub._repos.values() for commit in repo["commits"].values()
                    for data in commit.values())


def _link_to_outside(folder, name, secret):
    if name in ("fidelity.png", "README.md"):
        target = secret
    else:  # a valid file of its own projector, moved out of the folder and linked back
        target = secret.parent / name
        os.replace(folder / name, target)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(folder / name)
    os.symlink(target, folder / name)
    return target


@pytest.mark.parametrize("push", [_push_cli, _push_library])
@pytest.mark.parametrize("name", ["fidelity.png", "README.md", "config.json", "adapter.safetensors"])
def test_a_symlinked_file_is_refused_and_nothing_is_uploaded(name, push, saved, hub, capsys):
    folder, secret = saved
    target = _link_to_outside(folder, name, secret)
    with pytest.raises(HelloLabelsError) as err:
        push(folder, "lab/x", capsys)
    message = str(err.value)
    assert f"{name} is a symbolic link (to '{target}')" in message and "\n" not in message
    assert not any(path.endswith("/commit/main") for _, path in hub.requests)
    assert SECRET not in _uploaded(hub)


def test_a_hard_link_a_folder_or_a_fifo_under_a_published_name_is_refused(saved, hub):
    folder, secret = saved
    os.unlink(folder / "README.md")
    os.link(secret, folder / "README.md")
    with pytest.raises(HelloLabelsError, match=r"README.md is a hard link \(2 names"):
        push_directory(folder, "lab/x")
    os.unlink(folder / "README.md")
    (folder / "README.md").mkdir()
    with pytest.raises(HelloLabelsError, match="README.md is not a regular file"):
        push_directory(folder, "lab/x")
    os.rmdir(folder / "README.md")
    os.mkfifo(folder / "fidelity.png")  # opening a fifo to read would block
    with pytest.raises(HelloLabelsError, match="fidelity.png is not a regular file"):
        push_directory(folder, "lab/x")
    assert SECRET not in _uploaded(hub)


def test_only_the_projector_files_are_uploaded(saved, hub):
    folder, secret = saved
    (folder / "notes.txt").write_text("private notes")
    os.symlink(secret, folder / "extra.png")  # not a projector file: left out, not followed
    (folder / "metrics.json").write_text("{}")
    info = push_directory(folder, "lab/x")
    files = hub.files("lab/x", info.oid)
    assert sorted(files) == [".gitattributes", "README.md", "adapter.safetensors", "config.json"]
    for name in ("README.md", "adapter.safetensors", "config.json"):
        assert files[name] == (folder / name).read_bytes()
    assert SECRET not in _uploaded(hub)


@pytest.mark.slow
def test_push_to_hub_after_training_uploads_no_linked_file(hub, toy_folder, toy_teacher, tmp_path):
    """``distill --push-to-hub`` pushes with the same function; links planted in OUT are replaced by the save."""
    (tmp_path / "passwd").write_bytes(SECRET)
    out = tmp_path / "run"
    out.mkdir()
    for name in ("README.md", "fidelity.png"):
        os.symlink(tmp_path / "passwd", out / name)
    argv = ["distill", "--data", str(toy_folder), "--teacher", toy_teacher[1], "--base", BASE, "--templates",
            "simple", "--head-rank", "4", "--input-size", "32", "--steps", "2", "--batch-size", "8",
            "--eval-views", "8", "--quiet", "--out", str(out), "--push-to-hub", "lab/toy"]
    assert main(argv) == 0
    assert SECRET not in _uploaded(hub) and (tmp_path / "passwd").read_bytes() == SECRET
    assert not (out / "README.md").is_symlink()
