"""refine: the image update raises teacher–projector agreement within the pixel budget, mirrors the folder, never
touches the input, resumes after an interruption, and (optionally) pulls stored patches towards their sources."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hello_labels.train.refine as refine_module
from hello_labels import HelloLabelsError
from hello_labels.cli import main
from hello_labels.labels.targets import TeacherTargets
from hello_labels.train.distill import DistillConfig, calibrate, distill
from hello_labels.train.refine import RefineConfig, refine

SIZE = 32


def snapshot(folder):
    """Relative path -> sha256 of every file under ``folder``."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def pixels(path):
    return np.asarray(Image.open(path), dtype=np.int16)


@pytest.mark.slow
def test_refine_raises_agreement_within_the_pixel_budget(tiny_projector, toy_folder, toy_teacher, tmp_path):
    teacher, _ = toy_teacher
    projector, images = tiny_projector(toy_folder)
    # A briefly trained projector: calibrated, then ten distillation steps; it clearly disagrees with the teacher.
    targets = TeacherTargets(images, teacher, mix_type="cutmix")
    calibrate(projector, targets, targets.held_out(160, 32))
    distill(projector, targets, tmp_path / "projector",
            DistillConfig(steps=10, batch_size=16, lr=3e-3, warmup_steps=2, calibrate=False), progress=False,
            device="cpu")
    original = snapshot(toy_folder)
    config = RefineConfig(steps=30, input_size=SIZE, min_scale=0.8, eval_views=160)
    report = refine(projector, [teacher], toy_folder, tmp_path / "refined", config, progress=False, device="cpu")

    before, after = report["before"], report["after"]
    assert before["agreement"] <= 0.5, before
    assert after["agreement"] >= before["agreement"] + 0.15, (before["agreement"], after["agreement"])
    assert after["kl"] < before["kl"]
    assert set(after["per_class"]) == set(before["per_class"]) == {p.name for p in toy_folder.iterdir()}
    assert all(set(c) == {"views", "agreement", "kl"} for c in after["per_class"].values())
    # the budget holds on the saved files (PNG is lossless: 8/255 is exactly 8 levels)
    change = report["pixel_change"]
    assert change["max_abs"] <= 8 and 0 < change["mean_abs"] <= 8 and change["psnr_db"] > 28, change
    # same layout, names and format; the input untouched; the report on disk
    assert snapshot(toy_folder) == original
    refined = snapshot(tmp_path / "refined")
    assert set(refined) == set(original) | {"refine.json"}
    for rel in original:
        with Image.open(toy_folder / rel) as a, Image.open(tmp_path / "refined" / rel) as b:
            assert (b.format, b.mode, b.size) == (a.format, a.mode, a.size)
    saved = json.loads((tmp_path / "refined" / "refine.json").read_text())
    assert saved["status"] == "done" and saved["after"]["agreement"] == after["agreement"]
    assert saved["refined_this_run"] == 40 and saved["kept_from_earlier_run"] == 0


@pytest.fixture
def mixed_folder(toy_folder, tmp_path):
    """Five classes of the toy set as PNG (two sizes), JPEG and greyscale PNG, two images per class."""
    root = tmp_path / "mixed"
    for c, cls in enumerate(sorted(p.name for p in toy_folder.iterdir())):
        (root / cls).mkdir(parents=True)
        for k in range(2):
            image = Image.open(toy_folder / cls / f"img_{k:02d}.png")
            if c == 1:
                image.save(root / cls / f"img_{k:02d}.jpg", quality=95)
            elif c == 2:
                image.convert("L").save(root / cls / f"img_{k:02d}.png")
            elif c == 3:
                image.resize((36, 36)).save(root / cls / f"img_{k:02d}.png")
            else:
                image.save(root / cls / f"img_{k:02d}.png")
    return root


@pytest.mark.slow
def test_interrupted_refine_resumes_to_the_uninterrupted_result(tiny_projector, mixed_folder, toy_teacher, tmp_path,
                                                                monkeypatch, capsys):
    teacher, spec = toy_teacher
    projector, _ = tiny_projector(mixed_folder)
    projector.save_pretrained(tmp_path / "projector")
    config = RefineConfig(steps=3, batch_size=3, input_size=SIZE, min_scale=0.25, eval_views=20)
    original = snapshot(mixed_folder)
    refine(projector, [teacher], mixed_folder, tmp_path / "full", config, progress=False, device="cpu")
    full = snapshot(tmp_path / "full")
    assert set(full) == set(original) | {"refine.json"}
    for rel in original:  # format, mode and size kept; PNG within budget, JPEG re-encoded near it
        with Image.open(mixed_folder / rel) as a, Image.open(tmp_path / "full" / rel) as b:
            assert (b.format, b.mode, b.size) == (a.format, a.mode, a.size), rel
        delta = np.abs(pixels(mixed_folder / rel) - pixels(tmp_path / "full" / rel)).max()
        assert delta <= (8 if rel.endswith(".png") else 24), (rel, delta)

    # interrupt after three files: those stay complete, nothing half-written remains
    write, calls = refine_module.write_image, []

    def interrupted(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(args[1])
        write(*args, **kwargs)

    monkeypatch.setattr(refine_module, "write_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        refine(projector, [teacher], mixed_folder, tmp_path / "resumed", config, progress=False, device="cpu")
    monkeypatch.setattr(refine_module, "write_image", write)
    partial = snapshot(tmp_path / "resumed")
    assert set(partial) == {Path(p).relative_to(tmp_path / "resumed").as_posix() for p in calls} | {"refine.json"}
    assert json.loads((tmp_path / "resumed" / "refine.json").read_text())["status"] == "running"
    stale = tmp_path / "resumed" / Path(calls[0]).parent.name / ".img_01.png.x1y2z3.png.tmp"
    stale.write_bytes(b"half a file, as a kill during a write leaves it")

    # changed settings are refused; the same command (here through the CLI) finishes the job
    args = ["refine", tmp_path / "projector", "--data", mixed_folder, "--teacher", spec, "--out",
            tmp_path / "resumed", "--steps", 3, "--batch-size", 3, "--input-size", SIZE, "--min-scale", 0.25,
            "--eval-views", 20, "--device", "cpu", "--epsilon", "8/255", "--quiet"]
    assert main([str(a) for a in args[:-3] + ["--epsilon", "4/255", "--quiet"]]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main([str(a) for a in args]) == 0
    out = capsys.readouterr().out
    assert "3 kept from an earlier run" in out and "agreement" in out and "PSNR" in out
    resumed = snapshot(tmp_path / "resumed")
    assert {k: v for k, v in resumed.items() if k in partial and k != "refine.json"} == \
        {k: v for k, v in partial.items() if k != "refine.json"}
    assert {k: v for k, v in resumed.items() if k != "refine.json"} == {k: v for k, v in full.items()
                                                                         if k != "refine.json"}
    assert snapshot(mixed_folder) == original


def test_refine_refuses_unsafe_output_folders(tiny_projector, mixed_folder, toy_teacher, tmp_path):
    teacher, _ = toy_teacher
    projector, _ = tiny_projector(mixed_folder)
    config = RefineConfig(steps=1, input_size=SIZE, eval_views=10)
    for out in (mixed_folder, mixed_folder / "refined", tmp_path):
        with pytest.raises(HelloLabelsError, match="outside the input folder"):
            refine(projector, [teacher], mixed_folder, out, config, progress=False, device="cpu")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("someone else's")
    with pytest.raises(HelloLabelsError, match="not empty"):
        refine(projector, [teacher], mixed_folder, tmp_path / "other", config, progress=False, device="cpu")
    assert not (mixed_folder / "refined").exists()


def stitched_folder(toy_folder, root):
    """RDED-style images: four 20x20 patches, each a 40x40 toy image downsampled, and the patch map."""
    classes = sorted(p.name for p in toy_folder.iterdir())
    (root / "sources").mkdir(parents=True)
    patch_map = {}
    for c, cls in enumerate(classes):
        (root / "data" / cls).mkdir(parents=True)
        canvas, entries = Image.new("RGB", (40, 40)), []
        for k, (top, left) in enumerate([(0, 0), (0, 20), (20, 0), (20, 20)]):
            source = Image.open(toy_folder / cls / f"img_{k:02d}.png")
            source.save(root / "sources" / f"{c}_{k}.png")
            canvas.paste(source.resize((20, 20), Image.BILINEAR), (left, top))
            entries.append({"box": [top, left, 20, 20], "source": f"sources/{c}_{k}.png"})
        canvas.save(root / "data" / cls / "stitched.png")
        patch_map[f"{cls}/stitched.png"] = entries
    (root / "patches.json").write_text(json.dumps(patch_map))
    return root / "data", root / "patches.json"


def test_patch_feature_term_pulls_stored_patches_towards_their_sources(tiny_projector, toy_folder, toy_teacher,
                                                                       tmp_path):
    teacher, _ = toy_teacher
    data, patches = stitched_folder(toy_folder, tmp_path)
    projector, _ = tiny_projector(data)
    config = RefineConfig(steps=15, input_size=SIZE, min_scale=0.25, eval_views=10, feature_weight=20.0)
    report = refine(projector, [teacher], data, tmp_path / "refined", config, patches=patches, progress=False,
                    device="cpu")
    distance = report["patch_feature_distance"]
    assert distance["after"] < 0.8 * distance["before"], distance
    assert report["pixel_change"]["max_abs"] <= 8

    bad = json.loads(patches.read_text())
    first = next(iter(bad))
    bad[first][0]["box"] = [30, 30, 20, 20]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(HelloLabelsError, match="lies outside"):
        refine(projector, [teacher], data, tmp_path / "r2", config, patches=tmp_path / "bad.json", progress=False,
               device="cpu")
    with pytest.raises(HelloLabelsError, match="not an image of the folder"):
        refine(projector, [teacher], data, tmp_path / "r3", config,
               patches={"nowhere/x.png": [{"box": [0, 0, 4, 4], "source": str(patches)}]}, progress=False,
               device="cpu")


def test_a_one_channel_projector_refines_a_folder_as_grey_images(tiny_vit_dir, toy_folder, tmp_path):
    """A projector for grey images (Fashion-MNIST-like) refines an ImageFolder: every image is read as its luma,
    as the projector's views are, refined within the budget and written back grey (refused before)."""
    import torch
    from torch import nn

    from hello_labels.train.jobs import augmented, make_projector

    images = augmented(toy_folder, SIZE, mean=[0.5], std=[0.25], min_scale=0.5)
    assert images[0, 0][0].shape == (1, SIZE, SIZE)  # the folder's RGB files seen through one channel
    projector = make_projector(images, f"local-dir:{tiny_vit_dir}", templates="simple", head_rank=4)
    assert projector.config.input_channels == 1
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    config = RefineConfig(steps=3, input_size=SIZE, min_scale=0.5, eval_views=40, epsilon=4 / 255, lr=0.01)
    report = refine(projector, [teacher], toy_folder, tmp_path / "refined", config, progress=False, device="cpu")
    assert report["refined_this_run"] == 40 and report["after"]["kl"] is not None
    change = report["pixel_change"]  # against the originals' luma
    assert 0 < change["max_abs"] <= 4, change
    for rel in snapshot(toy_folder):
        with Image.open(toy_folder / rel) as a, Image.open(tmp_path / "refined" / rel) as b:
            assert (b.format, b.mode, b.size) == (a.format, "L", a.size)
            luma = np.asarray(a.convert("L"), dtype=np.int16)
            assert np.abs(np.asarray(b, dtype=np.int16) - luma).max() <= 4
    # the other folder paths read it the same way: eval against the teacher, export of label files
    from hello_labels.labels.export import export_fkd
    from hello_labels.train.jobs import evaluate

    assert 0 <= evaluate(projector, toy_folder, teachers=[teacher], views=20, input_size=SIZE).agreement <= 1
    assert export_fkd(projector, toy_folder, tmp_path / "fkd", epochs=1, batch_size=20, input_size=SIZE,
                      progress=False, device="cpu").epochs == 1


def test_refine_opens_the_input_folder_once(tiny_projector, toy_folder, toy_teacher, tmp_path, monkeypatch):
    """The job lists the input folder and scores it before refining from one opened ImageFolder (and opens the
    refined folder once, to score it after)."""
    import torchvision.datasets

    projector, _ = tiny_projector(toy_folder)
    opened = []

    class Counted(torchvision.datasets.ImageFolder):
        def __init__(self, root, *args, **kwargs):
            opened.append(Path(root))
            super().__init__(root, *args, **kwargs)

    monkeypatch.setattr(torchvision.datasets, "ImageFolder", Counted)
    refine(projector, [toy_teacher[0]], toy_folder, tmp_path / "refined",
           RefineConfig(steps=1, input_size=SIZE, eval_views=8), progress=False, device="cpu")
    assert sorted(map(str, opened)) == sorted(map(str, [toy_folder, tmp_path / "refined"]))
