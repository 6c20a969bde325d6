"""Runs that never mix: one writer per output folder, settings fingerprinted and checked on every rerun or resume,
inputs checked before long work, resumes that end where an uninterrupted run ends."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from hello_labels import HelloLabelsError
from hello_labels.cli import main
from hello_labels.labels.export import export_fkd, run_folder
from hello_labels.labels.targets import TeacherTargets
from hello_labels.runs import LOCK_FILE, RunLock
from hello_labels.train.distill import DistillConfig, distill
from hello_labels.train.jobs import distill_from_teachers
from hello_labels.train.refine import RefineConfig, refine

SIZE = 32
CFG = dict(batch_size=8, lr=3e-3, warmup_steps=2, eval_views=32)


def cli(*args):
    return [sys.executable, "-m", "hello_labels", *map(str, args)]


def distill_args(vit, folder, spec, out, steps, *extra):
    return ["distill", "--data", folder, "--teacher", spec, "--base", f"local-dir:{vit}", "--templates", "simple",
            "--head-rank", 4, "--input-size", SIZE, "--min-scale", 0.25, "--steps", steps, "--batch-size", 8,
            "--warmup-steps", 2, "--out", out, "--quiet", *extra]


def wait_for_lock(path, proc, timeout=300):
    """Until ``proc`` holds the lock at ``path`` (the lock file names its pid)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.is_file() and path.read_text().strip() == str(proc.pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"process never took the lock (exit {proc.poll()})")


def second_writer_is_refused(first_cmd, second_cmd, lock_path):
    first = subprocess.Popen(cli(*first_cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_lock(lock_path, first)
        second = subprocess.run(cli(*second_cmd), capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first writer ended before the second one tried"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert second.returncode == 2, second.stderr[-2000:]
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "is being written by another run" in lines[0] and str(first.pid) in lines[0]
    with RunLock(lock_path.parent):  # the kernel dropped the killed writer's lock
        pass
    assert not lock_path.exists()


@pytest.mark.slow
def test_a_second_distill_into_the_same_folder_stops_at_once(tiny_vit_dir, toy_folder, toy_teacher, tmp_path):
    out = tmp_path / "run"
    args = distill_args(tiny_vit_dir, toy_folder, toy_teacher[1], out, 100_000, "--checkpoint-every", 100_000)
    second_writer_is_refused(args, args, out / LOCK_FILE)
    assert not (out / "config.json").exists()


@pytest.mark.slow
def test_a_second_export_into_the_same_folder_stops_at_once(tiny_projector, toy_folder, tmp_path):
    projector, _ = tiny_projector(toy_folder)
    projector.save_pretrained(tmp_path / "p")
    out = tmp_path / "fkd"
    args = ["export-fkd", tmp_path / "p", "--data", toy_folder, "--out", out, "--epochs", 100_000,
            "--batch-size", 16, "--input-size", SIZE, "--quiet"]
    second_writer_is_refused(args, args, run_folder(out) / LOCK_FILE)


def test_export_rerun_with_other_settings_is_refused_naming_them(tiny_projector, toy_folder, tmp_path):
    projector, _ = tiny_projector(toy_folder)
    out = tmp_path / "fkd"
    kw = dict(epochs=1, batch_size=16, mix_type="cutmix", input_size=SIZE, progress=False)
    export_fkd(projector, toy_folder, out, **kw)
    before = {p: p.read_bytes() for p in out.rglob("*.tar")}
    for change, key in [(dict(seed=1), "seed"), (dict(fp16=True), "fp16"), (dict(mix_type="mixup"), "mix_type"),
                        (dict(min_scale=0.5), "scale")]:
        with pytest.raises(HelloLabelsError, match=rf"other settings: settings differ in 1 key \[{key}\]"):
            export_fkd(projector, toy_folder, out, **{**kw, **change})
    other, _ = tiny_projector(toy_folder)
    with torch.no_grad():
        other.head.bias.add_(1.0)
    with pytest.raises(HelloLabelsError, match=r"\[model.adapter\]"):
        export_fkd(other, toy_folder, out, **kw)
    assert {p: p.read_bytes() for p in out.rglob("*.tar")} == before  # nothing mixed in
    info = export_fkd(projector, toy_folder, out, **{**kw, "epochs": 2})  # the same settings may add epochs
    assert info.epochs == 2 and all(p.read_bytes() == b for p, b in before.items())


class DiesAtStep(TeacherTargets):
    """Teacher targets whose run is killed (KeyboardInterrupt) when it reaches ``step``."""

    step = None

    def __call__(self, plan, mixed):
        if plan.step == self.step:
            raise KeyboardInterrupt
        return super().__call__(plan, mixed)


@pytest.mark.slow
def test_metrics_do_not_depend_on_where_a_run_was_interrupted(tiny_projector, toy_folder, toy_teacher, tmp_path):
    cfg = DistillConfig(steps=20, checkpoint_every=5, calibrate=False, **CFG)  # calibration would call the targets
    projector, images = tiny_projector(toy_folder)
    distill(projector, TeacherTargets(images, toy_teacher[0]), tmp_path / "full", cfg, progress=False)

    projector, images = tiny_projector(toy_folder)
    dying = DiesAtStep(images, toy_teacher[0])
    dying.step = 13
    with pytest.raises(KeyboardInterrupt):
        distill(projector, dying, tmp_path / "cut", cfg, progress=False)
    assert torch.load(tmp_path / "cut" / "train_state.pt", weights_only=True)["step"] == 10
    projector, images = tiny_projector(toy_folder)
    distill(projector, TeacherTargets(images, toy_teacher[0]), tmp_path / "cut", cfg, resume=True, progress=False)

    full, cut = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("full", "cut"))
    full.pop("seconds"), cut.pop("seconds")
    assert full == cut and full["final_loss"] is not None


@pytest.mark.slow
def test_resuming_a_finished_run_prints_its_result(tiny_vit_dir, toy_folder, toy_teacher, tmp_path, capsys):
    args = [str(a) for a in distill_args(tiny_vit_dir, toy_folder, toy_teacher[1], tmp_path / "run", 4)]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args + ["--resume"]) == 0
    again = capsys.readouterr().out
    assert "final loss" in again and again.split("steps,")[1].split("s,", 1)[1] == first.split("steps,")[1].split(
        "s,", 1)[1]  # same loss and agreement; only the seconds may differ


def test_damaged_or_malicious_checkpoints_give_one_line(tiny_projector, toy_folder, toy_teacher, tmp_path):
    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'pwned'}",)

    out = tmp_path / "run"
    out.mkdir()
    cases = [(b"not a zip file at all", "is damaged or not a hello-labels training checkpoint"),
             (Evil(), "is damaged or not a hello-labels training checkpoint"),
             ([1, 2, 3], r"not a hello-labels training checkpoint \(bad or missing step, adapter"),
             ({"step": 2, "adapter": {}, "optimizer": {}, "scheduler": {}, "rng": torch.zeros(2),
               "history": "[]", "fingerprint": {}, "running": {"loss": "x"}}, r"bad or missing running")]
    for content, message in cases:
        if isinstance(content, bytes):
            (out / "train_state.pt").write_bytes(content)
        else:
            torch.save(content, out / "train_state.pt")
        projector, images = tiny_projector(toy_folder)
        with pytest.raises(HelloLabelsError, match=message) as err:
            distill(projector, TeacherTargets(images, toy_teacher[0]), out, DistillConfig(steps=2, **CFG),
                    resume=True, progress=False)
        assert "\n" not in str(err.value)
    assert not (tmp_path / "pwned").exists()


def test_changed_teachers_or_data_refuse_a_resume(tiny_projector, toy_folder, toy_teacher, tmp_path):
    folder = shutil.copytree(toy_folder, tmp_path / "data")
    teacher = toy_teacher[0]
    other = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 5))
    cfg = DistillConfig(steps=2, **CFG)

    def run(weights, **kw):
        projector, images = tiny_projector(folder)
        return distill_from_teachers(folder, [teacher, other], tmp_path / "run", projector, cfg,
                                     teacher_weights=weights, input_size=SIZE, min_scale=0.25, images=images,
                                     progress=False, **kw)

    run([1, 1])
    with pytest.raises(HelloLabelsError, match=r"cannot resume .*settings differ in 1 key \[targets.weights\]"):
        run([3, 1], resume=True)
    with pytest.raises(HelloLabelsError, match=r"already holds a training checkpoint of another run .*targets.weights"):
        run([3, 1])
    victim = sorted(folder.rglob("*.png"))[0]
    victim.write_bytes(sorted(folder.rglob("*.png"))[1].read_bytes())  # same count and names, other pixels
    with pytest.raises(HelloLabelsError, match=r"cannot resume .*\[data.source.bytes, data.source.sha256\]"):
        run([1, 1], resume=True)


def test_refine_rerun_with_other_teacher_weights_is_refused(tiny_projector, toy_folder, toy_teacher, tmp_path):
    projector, _ = tiny_projector(toy_folder)
    other = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 5))
    cfg = RefineConfig(steps=0, input_size=SIZE, eval_views=8, batch_size=40)
    refine(projector, [toy_teacher[0], other], toy_folder, tmp_path / "out", cfg, teacher_weights=[1, 1],
           progress=False, device="cpu")
    with pytest.raises(HelloLabelsError, match=r"other settings: settings differ in 1 key \[teacher\]"):
        refine(projector, [toy_teacher[0], other], toy_folder, tmp_path / "out", cfg, teacher_weights=[3, 1],
               progress=False, device="cpu")
    assert not (tmp_path / "out" / LOCK_FILE).exists()


@pytest.fixture(scope="module")
def corrupt_folder(toy_folder, tmp_path_factory):
    folder = shutil.copytree(toy_folder, tmp_path_factory.mktemp("corrupt") / "data")
    victim = folder / "green dots" / "img_03.png"
    victim.write_bytes(victim.read_bytes()[:200])  # the header opens; the pixels are gone
    return folder, victim


@pytest.mark.parametrize("job", ["distill", "export-fkd", "refine"])
def test_an_unreadable_image_is_named_before_any_work(job, corrupt_folder, tiny_projector, toy_teacher, tmp_path):
    folder, victim = corrupt_folder
    projector, images = tiny_projector(folder)
    out = tmp_path / "out"
    with pytest.raises(HelloLabelsError, match=rf"image {victim} cannot be read") as err:
        if job == "distill":
            distill(projector, TeacherTargets(images, toy_teacher[0]), out, DistillConfig(steps=2, **CFG),
                    progress=False)
        elif job == "export-fkd":
            export_fkd(projector, folder, out, epochs=1, batch_size=16, input_size=SIZE, progress=False)
        else:
            refine(projector, [toy_teacher[0]], folder, out, RefineConfig(steps=1, input_size=SIZE, eval_views=8),
                   progress=False, device="cpu")
    assert "\n" not in str(err.value)
    assert not [p for p in out.rglob("*") if p.name != "refine.json"] if out.exists() else True


def test_an_unwritable_out_fails_before_training(tiny_projector, toy_folder, toy_teacher, tmp_path):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    projector, images = tiny_projector(toy_folder)
    started = []
    targets = TeacherTargets(images, toy_teacher[0])
    targets.plans = lambda *a, **k: started.append(1) or TeacherTargets.plans(targets, *a, **k)
    with pytest.raises(HelloLabelsError, match=r"cannot write to output folder .*file.txt/run \(NotADirectoryError"):
        distill(projector, targets, tmp_path / "file.txt" / "run", DistillConfig(steps=3, **CFG), progress=False)
    assert not started
