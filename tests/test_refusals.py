"""Loud instead of NaN or a traceback (issue 21, item 5): arguments and inputs that used to crash mid-run, hang or
write where they should not are refused in one line, before any work or file."""
import subprocess
import sys

import pytest
import torch

from hello_labels.cli import main
from hello_labels.errors import BadInputError, FolderBusyError

SIZE = 32


def one_line_error(capsys, argv, match):
    """``hello-labels ARGV`` exits 2 with one ``error:`` line containing ``match``."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err
    return err[0]


def distill_argv(vit, data, spec, out, *extra):
    return ["distill", "--data", data, "--teacher", spec, "--base", f"local-dir:{vit}", "--templates", "simple",
            "--head-rank", 4, "--input-size", SIZE, "--steps", 2, "--batch-size", 8, "--out", out, "--quiet", *extra]


@pytest.mark.slow
def test_distill_eval_views_0_skips_evaluation_as_documented(tiny_vit_dir, toy_folder, toy_teacher, tmp_path,
                                                              capsys):
    """Before: calibration drew its views from the 0 held-out views and torch.cat raised a ValueError."""
    out = tmp_path / "run"
    assert main([str(a) for a in distill_argv(tiny_vit_dir, toy_folder, toy_teacher[1], out, "--eval-views", 0,
                                              "--eval-every", 1)]) == 0
    assert "held-out agreement" not in capsys.readouterr().out
    from hello_labels import LabelProjector

    assert "fidelity" not in LabelProjector.from_pretrained(out).config.metadata


@pytest.mark.parametrize("flag, value, match", [("--input-size", 0, "input size must be a positive number"),
                                                ("--checkpoint-every", 0, "checkpoint_every must be positive"),
                                                ("--eval-views", -1, "eval_views must be >= 0")])
def test_distill_sizes_and_intervals_out_of_range_are_one_line(tiny_vit_dir, toy_folder, toy_teacher, tmp_path,
                                                                capsys, flag, value, match):
    """Before: a RuntimeError from a resize (input size 0) or ZeroDivisionError (checkpoint every 0), mid-run."""
    out = tmp_path / "run"
    one_line_error(capsys, distill_argv(tiny_vit_dir, toy_folder, toy_teacher[1], out, flag, value), match)
    assert not (out / "config.json").exists()


@pytest.mark.parametrize("where", ["same", "inside"])
def test_distill_out_equal_to_or_inside_data_is_refused(tiny_vit_dir, toy_folder, toy_teacher, tmp_path, capsys,
                                                         where):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(toy_folder, data)
    out = data if where == "same" else data / "run"
    one_line_error(capsys, distill_argv(tiny_vit_dir, data, toy_teacher[1], out),
                   "must lie outside the input folder")
    assert sorted(p.name for p in data.iterdir()) == sorted(p.name for p in toy_folder.iterdir())


def test_a_refused_export_leaves_no_empty_run_folder(tiny_projector, toy_folder, tmp_path, capsys):
    """Before: ``OUT.hello-labels/`` (and ``OUT/``) stayed behind, empty, after the refusal."""
    projector, _ = tiny_projector(toy_folder)
    projector.save_pretrained(tmp_path / "p")
    (tmp_path / "fkd").mkdir()
    (tmp_path / "fkd" / "notes.txt").write_text("stray")
    base = ["export-fkd", tmp_path / "p", "--data", toy_folder, "--epochs", 1, "--batch-size", 8, "--quiet"]
    one_line_error(capsys, base + ["--out", tmp_path / "fkd", "--input-size", SIZE], "holds files other than")
    one_line_error(capsys, base + ["--out", tmp_path / "new", "--input-size", 0], "input size must be a positive")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fkd", "p"]


@pytest.mark.parametrize("flag", ["--json", "--plot"])
def test_storage_output_that_is_a_folder_is_one_line(tiny_vit_dir, tmp_path, capsys, flag):
    """Before: a raw IsADirectoryError from os.replace, after the measuring."""
    pytest.importorskip("matplotlib")
    (tmp_path / "out").mkdir()
    one_line_error(capsys, ["storage", "--classes", 10, "--ipc", 1, "--teacher", "none", "--base",
                            f"local-dir:{tiny_vit_dir}", flag, tmp_path / "out"], "is a folder: give a file name")


def conv_projector(classes):
    """A projector on a three-layer custom base: built in milliseconds."""
    from hello_labels import LabelProjector

    encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    return LabelProjector.from_base(encoder, base_mean=[0.5] * 3, base_std=[0.5] * 3, base_image_size=8,
                                    class_names=list(classes), head_init="zero", lora_targets=["0.weight"])


@pytest.mark.slow
@pytest.mark.parametrize("classes, extra", [("1000000000000000", []), ("200000000", ["--batch-size", "1"])])
def test_storage_with_a_huge_class_count_is_refused_at_once(classes, extra):
    """Before: ``--classes 1000000000000000`` built 10^15 placeholder names (and then tensors) until memory ran
    out; then files of logits were bounded, but 2*10^8 classes in batches of one still built 2*10^8 names and a
    head of that many rows (killed after 120 s). A subprocess, so that a regression cannot take the test run's
    memory: it gets 60 s."""
    run = subprocess.run([sys.executable, "-m", "hello_labels", "storage", "--classes", classes, "--ipc", "1",
                          "--teacher", "none", "--base", "RN50", *extra], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr[-500:]
    assert run.stderr.count("\n") == 1 and "classes must be at most 1,000,000" in run.stderr


@pytest.mark.parametrize("shape", [(1, 3, 0, 0), (2, 3, 0, 16), (0, 3, 16, 0)])
def test_a_0x0_image_is_one_line(tiny_vit_dir, shape):
    """Before: IndexError from amin() inside the range check."""
    from hello_labels import LabelProjector
    from hello_labels.labels.views import TensorImages

    p = LabelProjector.from_base(f"local-dir:{tiny_vit_dir}", class_names=["a", "b"], templates="simple",
                                 head_rank=2)
    with pytest.raises(BadInputError, match=r"images must have H, W > 0, got shape \["):
        p(torch.zeros(shape))
    with pytest.raises(BadInputError, match="H, W > 0"):
        TensorImages(torch.zeros(shape[0], 3, *shape[2:]), torch.zeros(shape[0]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_and_bf16_projectors_run_on_cpu(dtype):
    """A base whose input size differs from the batch's resizes with antialiasing, which CPU kernels lack in
    fp16/bf16: before, ``NotImplementedError: compute_index_ranges_weights not implemented for 'Half'``."""
    from hello_labels import LabelProjector

    p = LabelProjector.from_base("timm:test_resnet", False, class_names=["a", "b", "c"], head_init="random",
                                 head_rank=2)
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        reference = p(x)
        out = p.to(dtype)(x.to(dtype))
    assert out.dtype == dtype and out.shape == (2, 3)
    torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.05)


def test_two_processes_saving_into_one_folder(tmp_path):
    """Before: saves into one folder ran unlocked, each deleting the other's staged files (FileNotFoundError from
    os.replace, or one's adapter beside the other's card). Now the second save fails at once, FolderBusyError."""
    folder = tmp_path / "p"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom hello_labels.runs import RunLock\n"
                               "RunLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(120)",
                               str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        p = conv_projector("ab")
        with pytest.raises(FolderBusyError, match=rf"is being written by another run \(pid {holder.pid}\)"):
            p.save_pretrained(folder)
        assert not (folder / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    p.save_pretrained(folder)  # the lock died with its holder
    assert (folder / "config.json").is_file()


def test_refine_input_size_0_is_one_line(tiny_projector, toy_folder, toy_teacher, tmp_path):
    """Before: a RuntimeError from the resize, after the output folder and its record were created."""
    from hello_labels.train.refine import RefineConfig, refine

    projector, _ = tiny_projector(toy_folder)
    with pytest.raises(BadInputError, match="input_size positive"):
        refine(projector, [toy_teacher[0]], toy_folder, tmp_path / "out", RefineConfig(steps=1, input_size=0),
               progress=False, device="cpu")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, named", [(("--head-rank", 16), "--head-rank"), (("--lora-rank", 2), "--lora-rank"),
                                          (("--base", "timm:resnet18"), "--base"),
                                          (("--class-names", "imagenet"), "--class-names")])
def test_distill_init_with_projector_flags_is_one_line_naming_them(tiny_projector, toy_folder, toy_teacher, tmp_path,
                                                                   capsys, extra, named):
    """Before: with --init the projector flags were dropped without a word (the saved projector's settings won)."""
    projector, _ = tiny_projector(toy_folder)
    projector.save_pretrained(tmp_path / "init")
    argv = ["distill", "--data", toy_folder, "--teacher", toy_teacher[1], "--init", tmp_path / "init",
            "--input-size", SIZE, "--steps", 2, "--batch-size", 8, "--out", tmp_path / "run", "--quiet", *extra]
    line = one_line_error(capsys, argv, f"--init starts from the saved projector {tmp_path / 'init'}")
    assert named in line
    assert not (tmp_path / "run").exists()


def test_make_projector_with_init_and_base_settings_is_refused(tiny_projector, toy_folder, tmp_path):
    from hello_labels.train.jobs import make_projector

    projector, images = tiny_projector(toy_folder)
    projector.save_pretrained(tmp_path / "init")
    with pytest.raises(BadInputError, match="head_rank"):
        make_projector(images, init=str(tmp_path / "init"), head_rank=16)
