"""export-fkd and refine under torchrun (2 gloo processes on the CPU): each process its share, rank 0 the record,
the same bytes as a one-process run, and a rerun after a partial loss writes only what is missing."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hello_labels.cli import main

pytestmark = [pytest.mark.torchrun, pytest.mark.slow]
SIZE = 32


@pytest.fixture(scope="module")
def projector_dir(distilled_projector):
    return distilled_projector


def torchrun(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "hello_labels", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def test_export_fkd_under_torchrun_writes_the_one_process_files(projector_dir, toy_folder, tmp_path):
    args = ["export-fkd", projector_dir, "--data", toy_folder, "--epochs", 2, "--batch-size", 8, "--mix-type",
            "cutmix", "--input-size", SIZE, "--quiet", "--out"]
    assert main([str(a) for a in args + [tmp_path / "one"]]) == 0
    torchrun(*args, tmp_path / "two")
    one, two = files(tmp_path / "one"), files(tmp_path / "two")
    assert len(one) == 2 * 5 + 1 and "hello-labels.json" in one and one == two  # byte for byte (+ the record)
    record = json.loads((tmp_path / "two.hello-labels" / "export.json").read_text())
    assert record == json.loads((tmp_path / "one.hello-labels" / "export.json").read_text())

    # files lost as a killed process would have left them missing: the rerun writes those alone, the same bytes
    lost = ["epoch_0/batch_1.tar", "epoch_1/batch_2.tar", "epoch_1/batch_3.tar"]
    kept = {rel: (tmp_path / "two" / rel).stat().st_mtime_ns for rel in two
            if rel not in lost and rel != "hello-labels.json"}  # the record: written again, same bytes, at the end
    for rel in lost:
        (tmp_path / "two" / rel).unlink()
    torchrun(*args, tmp_path / "two")
    assert files(tmp_path / "two") == one
    assert all((tmp_path / "two" / rel).stat().st_mtime_ns == t for rel, t in kept.items())


def test_refine_under_torchrun_writes_the_one_process_images(projector_dir, toy_folder, toy_teacher, tmp_path):
    args = ["refine", projector_dir, "--data", toy_folder, "--teacher", toy_teacher[1], "--steps", 2,
            "--batch-size", 8, "--views", 2, "--input-size", SIZE, "--min-scale", 0.25, "--eval-views", 16,
            "--device", "cpu", "--quiet", "--out"]
    assert main([str(a) for a in args + [tmp_path / "one"]]) == 0
    torchrun(*args, tmp_path / "two")
    one, two = files(tmp_path / "one"), files(tmp_path / "two")
    images = {k: v for k, v in one.items() if k.endswith(".png")}
    assert len(images) == 40 and {k: v for k, v in two.items() if k.endswith(".png")} == images
    report_one = json.loads(one["refine.json"])
    report_two = json.loads(two["refine.json"])  # rank 0's, counting every process's images
    assert report_two["status"] == "done" and report_two["refined_this_run"] == 40
    for key in ("before", "after", "pixel_change", "settings"):
        assert report_two[key] == report_one[key], key
    assert report_two["loss"] == pytest.approx(report_one["loss"])  # means over the same losses, in another order

    # images of both processes' batches lost: the rerun refines those alone, the same bytes
    lost = sorted(images)[::9]
    for rel in lost:
        (tmp_path / "two" / rel).unlink()
    torchrun(*args, tmp_path / "two")
    again = json.loads((tmp_path / "two" / "refine.json").read_text())
    assert again["refined_this_run"] == len(lost) and again["kept_from_earlier_run"] == 40 - len(lost)
    assert {k: v for k, v in files(tmp_path / "two").items() if k.endswith(".png")} == images
