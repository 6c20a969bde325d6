"""Saving over an existing projector: a kill at any instant leaves the old projector or the new one, complete and
loadable; run files of another adapter never sit beside a new projector.

A tiny custom conv base (rebuilt through ``base_factory``) keeps every load at milliseconds, so the kill loop
can afford a full ``from_pretrained`` after every trial; the save path does not depend on the base.
"""
import hashlib
import json
import os
import random
import shutil
import signal
import time

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from hello_labels import HelloLabelsError, LabelProjector

CLASSES = ["cat", "dog", "car", "ship", "tree"]
X = torch.randn(4, 3, 20, 20, generator=torch.Generator().manual_seed(0))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.conv(x)).flatten(1)


def make_encoder():
    torch.manual_seed(123)
    return Encoder()


def projector(seed, classes=CLASSES, **metadata):
    """A projector whose head (random, from ``seed``), class order and adapter all depend on ``seed``: a folder
    that mixed two saves would load and give outputs matching neither."""
    p = LabelProjector.from_base(make_encoder(), base_factory="test_save_atomic:make_encoder", base_mean=[0.5] * 3,
                                 base_std=[0.5] * 3, base_image_size=16, class_names=classes, head_init="random",
                                 seed=seed, lora_targets=[{"pattern": "conv.weight", "rank": 2}],
                                 metadata=metadata)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for t in p.trainable_parameters():
            t.add_(torch.randn(t.shape, generator=gen) * 0.1)
    return p


def outputs(path):
    with torch.no_grad():
        return LabelProjector.from_pretrained(path, trust_remote_code=True)(X)


@pytest.fixture
def old_and_new(tmp_path):
    """``(old, new, expected)``: two projectors (old saved in float32, new in float16, different class order and
    head) and the outputs each gives when loaded from a clean save."""
    old, new = projector(0, dataset="old"), projector(1, classes=CLASSES[::-1], dataset="new")
    old.save_pretrained(tmp_path / "ref-old")
    new.save_pretrained(tmp_path / "ref-new", dtype="float16")
    expected = {"old": outputs(tmp_path / "ref-old"), "new": outputs(tmp_path / "ref-new")}
    assert not torch.allclose(expected["old"], expected["new"])
    return old, new, expected


def which(path, expected):
    """``"old"`` or ``"new"``: the projector ``from_pretrained(path)`` gives; fails on anything else."""
    got = outputs(path)
    matches = [name for name, out in expected.items() if torch.equal(got, out)]
    assert len(matches) == 1, f"{path} loads a projector that is neither the old nor the new one"
    return matches[0]


def files(path):
    return sorted(p.name for p in path.iterdir())


class Killed(BaseException):
    """Stands for SIGKILL at one file-system step: nothing after it runs (BaseException: no handler catches it)."""


def test_save_replaces_the_three_files_and_leaves_nothing_else(old_and_new, tmp_path):
    old, new, expected = old_and_new
    out = tmp_path / "p"
    old.save_pretrained(out)
    new.save_pretrained(out, dtype="float16")
    assert files(out) == ["README.md", "adapter.safetensors", "config.json"]
    assert which(out, expected) == "new"
    config = json.loads((out / "config.json").read_text())
    assert config["adapter_sha256"] == hashlib.sha256((out / "adapter.safetensors").read_bytes()).hexdigest()
    assert "dataset: new" in (out / "README.md").read_text()


def test_equal_adapters_are_equal_files(old_and_new, tmp_path):
    """safetensors orders the metadata by a per-call hash: unsorted, ~half the saves would differ in bytes."""
    old, _, _ = old_and_new
    blobs = set()
    for k in range(8):
        old.save_pretrained(tmp_path / str(k))
        blobs.add((tmp_path / str(k) / "adapter.safetensors").read_bytes())
    assert len(blobs) == 1
    assert torch.equal(load_file(tmp_path / "0" / "adapter.safetensors")["head.bias"], old.head.bias)


def test_a_kill_at_every_step_of_a_save_leaves_old_or_new(old_and_new, tmp_path, monkeypatch):
    """Every rename/unlink of a save is a step that shows in the folder; kill the save just before each one."""
    old, new, expected = old_and_new
    out = tmp_path / "p"
    real = {"replace": os.replace, "unlink": os.unlink}
    seen, outcomes, step = [], [], 0
    while True:
        old.save_pretrained(out)  # also finishes or cleans up whatever the previous kill left
        assert which(out, expected) == "old" and files(out) == ["README.md", "adapter.safetensors", "config.json"]
        calls = []

        def counting(name):
            def call(*args, **kwargs):
                if len(calls) == step:
                    raise Killed
                calls.append(name)
                return real[name](*args, **kwargs)
            return call

        with monkeypatch.context() as m:
            m.setattr(os, "replace", counting("replace"))
            m.setattr(os, "unlink", counting("unlink"))
            try:
                new.save_pretrained(out, dtype="float16")
                finished = True
            except Killed:
                finished = False
        outcomes.append(which(out, expected))
        seen.append(len(calls))
        if finished:
            break
        step += 1
    # old until the config.json commit, new from then on: exactly one switch, and the last run completed
    assert outcomes == sorted(outcomes, key=["old", "new"].index) and outcomes[0] == "old" and outcomes[-1] == "new"
    assert step >= 4, seen  # staged adapter, config.json, adapter rename, README at least


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_old_or_new(old_and_new, tmp_path):
    """A forked child saves the new and the old projector over each other in a loop until it is SIGKILLed at a
    random moment; after every kill the folder loads as one of the two (60 trials)."""
    old, new, expected = old_and_new
    out = tmp_path / "p"
    old.save_pretrained(out)
    cycles = []  # one loop of the child (new, then old): kills drawn over two of them land in saves of both
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # timed as the child runs them
    try:
        for _ in range(2):  # the first cycle pays one-off costs; under load a single save time was too short a window
            start = time.perf_counter()
            new.save_pretrained(tmp_path / "timing", dtype="float16")
            old.save_pretrained(tmp_path / "timing")
            cycles.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    cycle_s = max(cycles)
    rng = random.Random(0)
    outcomes = []
    while len(outcomes) < 60 or (len(set(outcomes)) < 2 and len(outcomes) < 240):  # more kills under load
        ready, started = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never returns into pytest
            try:
                torch.set_num_threads(1)
                os.write(started, b"1")  # the kill is timed from the first save on, however slow the fork was
                while True:
                    new.save_pretrained(out, dtype="float16")
                    old.save_pretrained(out)
            finally:
                os._exit(1)
        os.close(started)
        os.read(ready, 1)
        os.close(ready)
        time.sleep(rng.uniform(0, 2 * cycle_s))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL  # it was still saving
        outcomes.append(which(out, expected))
    assert set(outcomes) == {"old", "new"}  # kills landed in saves of both


def test_run_files_stay_only_beside_the_adapter_they_describe(old_and_new, tmp_path):
    old, new, expected = old_and_new
    out = tmp_path / "run"
    out.mkdir()
    # what distill leaves: its state holds the adapter it trained, then it saves that adapter
    torch.save({"step": 10, "adapter": {k: v.detach().clone() for k, v in old.adapter_state_dict().items()}},
               out / "train_state.pt")
    old.save_pretrained(out)
    (out / "metrics.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    old.save_pretrained(out, dtype="float16")  # a re-save of the same adapter keeps them
    assert {"train_state.pt", "metrics.json"} <= set(files(out))
    new.save_pretrained(out)  # another adapter: they would describe the wrong projector
    assert files(out) == ["README.md", "adapter.safetensors", "config.json", "notes.txt"]
    with torch.no_grad():
        assert torch.equal(LabelProjector.from_pretrained(out, trust_remote_code=True)(X), new(X))

    # a train_state.pt of another run (or none that can be read) does not vouch for metrics.json either
    (out / "metrics.json").write_text("{}")
    (out / "train_state.pt").write_bytes(b"not a checkpoint")
    new.save_pretrained(out)
    assert files(out) == ["README.md", "adapter.safetensors", "config.json", "notes.txt"]


def test_a_folder_mixing_two_saves_is_an_error_not_a_silent_mix(old_and_new, tmp_path):
    old, new, _ = old_and_new
    old.save_pretrained(tmp_path / "a")
    new.save_pretrained(tmp_path / "b")
    shutil.copy(tmp_path / "b" / "adapter.safetensors", tmp_path / "a" / "adapter.safetensors")
    with pytest.raises(HelloLabelsError, match="is not the one config.json was saved with") as err:
        LabelProjector.from_pretrained(tmp_path / "a", trust_remote_code=True)
    assert "\n" not in str(err.value)


def test_folders_saved_before_the_checksum_still_load(old_and_new, tmp_path):
    old, _, expected = old_and_new
    old.save_pretrained(tmp_path / "p")
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    del config["adapter_sha256"]
    (tmp_path / "p" / "config.json").write_text(json.dumps(config))
    assert which(tmp_path / "p", expected) == "old"


def test_save_pretrained_rejects_a_foreign_config_and_a_bad_dtype(old_and_new, tmp_path):
    old, _, _ = old_and_new
    with pytest.raises(HelloLabelsError, match="config= is not accepted"):
        old.save_pretrained(tmp_path / "p", config={"a": 1})
    with pytest.raises(HelloLabelsError, match="unknown dtype 'float8'"):
        old.save_pretrained(tmp_path / "p", dtype="float8")
    assert not (tmp_path / "p" / "config.json").exists()
    assert "_save_dtype" not in old.__dict__


@pytest.mark.parametrize("name", ["/../../victim", "../victim", "A" * 64, "0" * 63 + "/"])
def test_a_sha256_read_from_the_folder_never_becomes_a_path_outside_it(tmp_path, name):
    """``adapter_sha256`` in an existing config.json names a staged file: a save (finishing a killed one) and a
    load take it only as 64 hex digits; before, ``"/../../victim"`` moved ``../victim.safetensors`` into the folder
    and the save overwrote it."""
    from hello_labels.errors import CorruptFileError

    folder = tmp_path / "p"
    projector(0).save_pretrained(folder)
    victim = tmp_path / "victim.safetensors"
    victim.write_bytes(b"precious")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, adapter_sha256=name)))
    (folder / ".adapter-").mkdir()  # the empty staging folder "/../../victim" climbs out of
    with pytest.raises(CorruptFileError, match="adapter_sha256"):
        LabelProjector.from_pretrained(folder, trust_remote_code=True)
    projector(1).save_pretrained(folder)
    assert victim.read_bytes() == b"precious"
    torch.testing.assert_close(outputs(folder), projector(1)(X))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_in_adapter_tensors_is_refused_at_load(tmp_path, bad):
    """Before: the projector loaded and every label it gave was NaN."""
    from safetensors.torch import save_file

    from hello_labels.errors import CorruptFileError

    folder = tmp_path / "p"
    projector(0).save_pretrained(folder)
    tensors = load_file(folder / "adapter.safetensors")
    tensors["head.bias"][2] = bad
    save_file(tensors, str(folder / "adapter.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    config["adapter_sha256"] = hashlib.sha256((folder / "adapter.safetensors").read_bytes()).hexdigest()
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CorruptFileError, match=r"tensors \['head.bias'\] hold NaN or infinite values"):
        LabelProjector.from_pretrained(folder, trust_remote_code=True)
