"""The package as a wheel installs every room, its data files and the shims, and no top-level ``adapters``."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_all_rooms_and_shims_without_a_top_level_adapters_module(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("hello_labels-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert not any(n.startswith("adapters/") for n in names)
    for data in ("hello_labels/model/configs/tiny-clip-vit/open_clip_config.json",
                 "hello_labels/demo/data/fashion_mnist_subset.npz", "hello_labels/py.typed",
                 "hello_labels/cli/__init__.py", "hello_labels/cli/train.py"):
        assert data in names
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    probe = ("import importlib.util, hello_labels, hello_labels.adapters.sre2l, hello_labels.adapters.rded, "
             "hello_labels.demo, hello_labels.storage, hello_labels.cli; "
             "print(hello_labels.__file__); print(importlib.util.find_spec('adapters'))")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True, capture_output=True,
                         text=True).stdout.split("\n")
    assert out[0].startswith(str(tmp_path / "site"))  # the wheel's copy, not the checkout
    assert out[1] == "None"
