"""Files and labels stay what the recorded release made (``tests/golden/``, see ``golden_outputs.py``)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from golden_outputs import GOLDEN, machine
from safetensors.torch import load_file

from hello_labels.model.fastpath import TOLERANCE

RECORD = json.loads((GOLDEN / "record.json").read_text())
SAME_MACHINE = RECORD["machine"] == machine()


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    """The outputs, made in a fresh interpreter importing this tree, as a user's script makes them (nothing an
    earlier test set up in this process can change them)."""
    folder, root = tmp_path_factory.mktemp("golden"), Path(__file__).parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, str(Path(__file__).with_name("golden_outputs.py")), str(folder)], check=True,
                   cwd=root, env=env, capture_output=True)
    files = json.loads((folder / "record.json").read_text())["files"]
    return files, load_file(str(folder / "labels.safetensors"))


def test_saved_projector_files_are_byte_identical_to_the_record(produced):
    files, _ = produced
    saved = {k: v for k, v in RECORD["files"].items() if k.startswith("save-")}
    assert {k: files.get(k) for k in saved} == saved


def test_export_writes_the_recorded_files(produced):
    files, _ = produced
    exported = sorted(k for k in RECORD["files"] if k.startswith("export/"))
    assert sorted(k for k in files if k.startswith("export/")) == exported
    if SAME_MACHINE:  # label bits depend on the CPU's kernels: elsewhere the labels are compared below
        assert {k: files[k] for k in exported} == {k: RECORD["files"][k] for k in exported}


def test_shim_and_export_labels_equal_the_record(produced):
    _, labels = produced
    recorded = load_file(str(GOLDEN / "labels.safetensors"))
    assert sorted(labels) == sorted(recorded)
    for name, expected in recorded.items():
        got = labels[name].to(expected.dtype)
        assert got.shape == expected.shape, name
        if SAME_MACHINE:
            assert torch.equal(got, expected), name
        else:
            scale = expected.float().abs().max().clamp_min(1e-6)
            tolerance = TOLERANCE if expected.dtype == torch.float32 else 2 ** -8  # fp16 files: their rounding
            assert (got.float() - expected.float()).abs().max() <= tolerance * scale, name
