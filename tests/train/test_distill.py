"""distill / resume / multi-process / eval, on a toy synthetic set, a tiny timm teacher and a tiny open_clip base."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hello_labels import HelloLabelsError, LabelProjector
from hello_labels.cli import main
from hello_labels.train.distill import DistillConfig
from hello_labels.train.jobs import distill_from_teachers, evaluate

SIZE = 32


@pytest.mark.slow
def test_distill_raises_agreement_well_above_the_untrained_projector(tiny_projector, toy_folder, toy_teacher,
                                                                     tmp_path):
    teacher, spec = toy_teacher
    projector, images = tiny_projector(toy_folder)
    kw = dict(views=160, batch_size=32, input_size=SIZE, min_scale=0.25)
    before = evaluate(projector, toy_folder, teachers=[teacher], **kw)
    summary = distill_from_teachers(toy_folder, [spec], tmp_path / "run", projector,
                                    DistillConfig(steps=200, batch_size=16, lr=3e-3, warmup_steps=10),
                                    images=images, progress=False)
    after = evaluate(LabelProjector.from_pretrained(tmp_path / "run"), toy_folder, teachers=[spec], **kw)
    assert after.agreement >= 0.8 and after.agreement >= before.agreement + 0.3, (before.agreement, after.agreement)
    assert after.kl < before.kl
    assert set(after.per_class) == {"red stripes", "green dots", "blue stripes", "yellow dots", "grey stripes"}
    assert summary["history"] and json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == 200
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["metadata"]["teacher"][0]["spec"] == "timm:test_resnet@teacher.safetensors"  # no directories
    assert config["metadata"]["distill"]["steps"] == 200


@pytest.mark.slow
def test_bf16_autocast_path_trains(tiny_projector, toy_folder, toy_teacher, tmp_path):
    projector, images = tiny_projector(toy_folder)
    before = {k: v.detach().clone() for k, v in projector.adapter_state_dict().items()}
    summary = distill_from_teachers(toy_folder, [toy_teacher[0]], tmp_path / "bf16", projector,
                                    DistillConfig(steps=5, batch_size=8, precision="bf16", calibrate=False),
                                    images=images, progress=False)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in summary["history"])
    after = projector.adapter_state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("lora_B"))


def test_weighted_teacher_ensemble_averages_logits(toy_teacher):
    from hello_labels.labels.teachers import load_teachers

    teacher, spec = toy_teacher
    x = torch.randn(3, 3, SIZE, SIZE)
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * SIZE * SIZE, 5))
    ensemble = load_teachers([spec, other], weights=[3, 1], num_classes=5)
    with torch.no_grad():
        expected = 0.75 * teacher(x) + 0.25 * other(x)
        assert torch.allclose(ensemble(x), expected, atol=1e-5)
    with pytest.raises(HelloLabelsError, match="teacher checkpoint not found"):
        load_teachers(["timm:test_resnet@/nowhere.pth"], num_classes=5)
    with pytest.raises(HelloLabelsError, match="does not fit"):
        load_teachers([spec.replace("test_resnet", "test_efficientnet")], num_classes=5)


def cli(*args):
    return [sys.executable, "-m", "hello_labels", *map(str, args)]


def distill_args(vit, folder, spec, out, steps, extra=()):
    return ["distill", "--data", folder, "--teacher", spec, "--base", f"local-dir:{vit}", "--templates", "simple",
            "--head-rank", 4, "--input-size", SIZE, "--min-scale", 0.25, "--steps", steps, "--batch-size", 8,
            "--lr", 3e-3, "--warmup-steps", 5, "--out", out, "--quiet", *extra]


def adapter(path):
    return load_file(str(Path(path) / "adapter.safetensors"))


@pytest.mark.slow
def test_kill_and_resume_gives_the_uninterrupted_adapter(tiny_vit_dir, toy_folder, toy_teacher, tmp_path):
    _, spec = toy_teacher
    steps = 150
    full = distill_args(tiny_vit_dir, toy_folder, spec, tmp_path / "full", steps, ["--checkpoint-every", 10])
    assert subprocess.run(cli(*full), capture_output=True).returncode == 0

    killed = distill_args(tiny_vit_dir, toy_folder, spec, tmp_path / "killed", steps, ["--checkpoint-every", 10])
    proc = subprocess.Popen(cli(*killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "train_state.pt"
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(state, weights_only=True)["step"]
    assert 0 < step < steps, "the run was not interrupted mid-way"
    assert not (tmp_path / "killed" / "adapter.safetensors").exists()

    # an existing checkpoint is never silently overwritten, and changed settings are refused
    refused = subprocess.run(cli(*killed), capture_output=True, text=True)
    assert refused.returncode == 2 and "already holds a training checkpoint" in refused.stderr
    changed = distill_args(tiny_vit_dir, toy_folder, spec, tmp_path / "killed", steps, ["--resume", "--lr", 1e-2])
    refused = subprocess.run(cli(*changed), capture_output=True, text=True)
    assert refused.returncode == 2 and "settings differ" in refused.stderr and "lr" in refused.stderr

    resumed = subprocess.run(cli(*killed, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a, b = adapter(tmp_path / "full"), adapter(tmp_path / "killed")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.slow
@pytest.mark.torchrun
def test_two_process_gloo_run_matches_a_single_process_run(tiny_vit_dir, toy_folder, toy_teacher, tmp_path):
    _, spec = toy_teacher
    extra = ["--mix-type", "none", "--checkpoint-every", 10]
    single = subprocess.run(cli(*distill_args(tiny_vit_dir, toy_folder, spec, tmp_path / "one", 12, extra)),
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    env = dict(os.environ, OMP_NUM_THREADS="1")
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "hello_labels", *map(str, distill_args(tiny_vit_dir, toy_folder, spec,
                                                                       tmp_path / "two", 12, extra))],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = adapter(tmp_path / "one"), adapter(tmp_path / "two")
    changed = 0
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-4, rtol=1e-3), name
        changed += int(name.endswith("lora_B") and a[name].abs().sum() > 0)
    assert changed > 0  # training moved the adapter, identically in both runs


def test_eval_cli_prints_and_writes_json_and_png(tiny_projector, toy_folder, toy_teacher, tmp_path, capsys):
    _, spec = toy_teacher
    projector, _ = tiny_projector(toy_folder)
    projector.save_pretrained(tmp_path / "p")
    code = main(["eval", str(tmp_path / "p"), "--data", str(toy_folder), "--teacher", spec, "--views", "40",
                 "--input-size", str(SIZE), "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png"),
                 "--merge"])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["views"] == 40 and 0 <= report["agreement"] <= 1 and len(report["per_class"]) == 5
    assert "agreement" in capsys.readouterr().out
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_distilling_a_merged_or_frozen_projector_trains_its_deltas(tiny_projector, toy_folder, toy_teacher, tmp_path):
    projector, images = tiny_projector(toy_folder)
    projector.merge().requires_grad_(False)
    distill_from_teachers(toy_folder, [toy_teacher[0]], tmp_path / "merged", projector,
                          DistillConfig(steps=5, batch_size=8, calibrate=False), images=images, progress=False)
    assert projector.merged  # handed back as it came
    saved = load_file(tmp_path / "merged" / "adapter.safetensors")
    lora_b = [v for k, v in saved.items() if k.startswith("encoder.") and k.endswith("lora_B")]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)
