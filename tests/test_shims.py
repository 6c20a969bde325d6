"""The SRe2L and RDED shims, inside loops written after those codebases' conventions."""
from types import SimpleNamespace

import numpy as np
import pytest
import sre2l_reference as ref
import torch
import torch.nn.functional as F
import torchvision
from hello_labels.adapters import rded, sre2l
from torch import nn

from hello_labels import HelloLabelsError
from hello_labels.train.distill import DistillConfig
from hello_labels.train.jobs import distill_from_teachers

SIZE = 32


@pytest.fixture(scope="module")
def projector_dir(tiny_projector, toy_folder, toy_teacher, tmp_path_factory):
    """A projector distilled (briefly) from the toy teacher."""
    projector, images = tiny_projector(toy_folder)
    out = tmp_path_factory.mktemp("shim") / "projector"
    distill_from_teachers(toy_folder, [toy_teacher[1]], out, projector,
                          DistillConfig(steps=60, batch_size=16, lr=3e-3, warmup_steps=5), images=images,
                          progress=False)
    return out


def student():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(64, 5))


def fkd_save_loader(folder, batch_size=8):
    """What train_FKD.py builds after the documented diff: ImageFolder_FKD_MIX in fkd_save mode + SRe2L sampler."""
    dataset = ref.ReferenceFKDFolder(str(folder), "fkd_save", input_size=SIZE, min_scale=0.25)
    sampler = torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(42))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0)


@pytest.mark.parametrize("mix_type", ["cutmix", "mixup", None])
def test_sre2l_batches_have_sre2l_structure_and_remixing_rebuilds_the_labelled_images(mix_type, projector_dir,
                                                                                     toy_folder):
    args = SimpleNamespace(mix_type=mix_type, mode="fkd_load")
    loader = sre2l.ProjectorLabels(str(projector_dir), args, fkd_save_loader(toy_folder))
    projector = loader.projector
    assert len(loader) == 5 and loader.dataset.mode == "fkd_save"
    for batch_data in loader:
        images, target, flip_status, coords_status = batch_data[0]
        mix_index, mix_lam, mix_bbox, soft_label = batch_data[1:]
        b = images.shape[0]
        assert images.dtype == torch.float32 and images.shape == (b, 3, SIZE, SIZE)
        assert target.dtype == torch.int64 and flip_status.dtype == torch.bool
        assert coords_status.dtype == torch.float32 and coords_status.shape == (b, 4)
        assert soft_label.dtype == torch.float32 and soft_label.shape == (b, 5) and soft_label.device.type == "cpu"
        if mix_type is None:
            assert mix_index is None and mix_lam is None and mix_bbox is None
        else:
            assert mix_index.dtype == torch.int64 and sorted(mix_index.tolist()) == list(range(b))
            assert isinstance(mix_lam, float) and 0 <= mix_lam <= 1
            assert (mix_bbox is None) == (mix_type == "mixup")
            if mix_bbox is not None:
                assert len(mix_bbox) == 4 and all(isinstance(v, np.integer) for v in mix_bbox)
        # what train_FKD does next, with SRe2L's mix_aug conventions (reference re-implementation)
        remixed, _, _, _ = ref.mix_aug(images.clone(), mix_type, "fkd_load", mix_index, mix_lam, mix_bbox)
        with torch.no_grad():
            assert torch.allclose(projector(remixed), soft_label, atol=1e-5)


def test_tiny_sre2l_training_loop_learns_from_projector_labels(projector_dir, toy_folder):
    args = SimpleNamespace(mix_type="cutmix", mode="fkd_load", temperature=4.0)
    args.train_loader = sre2l.ProjectorLabels(str(projector_dir), args, fkd_save_loader(toy_folder))
    model = student()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    kl = nn.KLDivLoss(reduction="batchmean")
    epoch_losses = []
    for epoch in range(8):  # train_FKD.train(), condensed
        args.train_loader.dataset.set_epoch(epoch)
        losses = []
        for batch_data in args.train_loader:
            images, target, flip_status, coords_status = batch_data[0]
            mix_index, mix_lam, mix_bbox, soft_label = batch_data[1:]
            images, _, _, _ = ref.mix_aug(images, args.mix_type, args.mode, mix_index, mix_lam, mix_bbox)
            output = F.log_softmax(model(images) / args.temperature, dim=1)
            loss = kl(output, F.softmax(soft_label.float() / args.temperature, dim=1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        epoch_losses.append(sum(losses) / len(losses))
    assert epoch_losses[-1] < 0.6 * epoch_losses[0], epoch_losses


def test_rded_teacher_works_in_rded_loop_under_dataparallel(projector_dir, toy_folder):
    from hello_labels import LabelProjector

    transform = torchvision.transforms.Compose([
        torchvision.transforms.ToTensor(),
        torchvision.transforms.RandomResizedCrop(SIZE, scale=(0.5, 1.0), antialias=True),
        torchvision.transforms.RandomHorizontalFlip(),
        torchvision.transforms.Normalize(ref.IMAGENET_MEAN, ref.IMAGENET_STD)])
    dataset = torchvision.datasets.ImageFolder(str(toy_folder), transform)
    train_loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True,
                                               generator=torch.Generator().manual_seed(0))
    teacher_model = torch.nn.DataParallel(rded.teacher(str(projector_dir)))  # RDED then calls .cuda() on GPUs
    teacher_model.eval()
    for param in teacher_model.parameters():
        param.requires_grad = False
    student_model = student()
    optimizer = torch.optim.AdamW(student_model.parameters(), lr=3e-3)
    kl = nn.KLDivLoss(reduction="batchmean")
    torch.manual_seed(0)
    np.random.seed(0)
    epoch_losses = []
    for epoch in range(8):  # RDED validation/main.py train(), condensed
        losses = []
        for images, labels in train_loader:
            with torch.no_grad():
                mix_images, _, _, _ = ref.mix_aug(images, "cutmix", "fkd_save")
                soft_mix_label = F.softmax(teacher_model(mix_images) / 20.0, dim=1)
            loss = kl(F.log_softmax(student_model(mix_images) / 20.0, dim=1), soft_mix_label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        epoch_losses.append(sum(losses) / len(losses))
    assert epoch_losses[-1] < 0.6 * epoch_losses[0], epoch_losses

    # RDED's ImageNet subsets keep only some classifier rows
    projector = LabelProjector.from_pretrained(projector_dir)
    subset = rded.teacher(projector, classes=[0, 3])
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(subset(x), projector(x)[:, [0, 3]], atol=1e-4)
    assert not any(p.requires_grad for p in subset.parameters()) and not subset.training
    with pytest.raises(HelloLabelsError, match="outside the projector's 5 classes"):
        rded.teacher(projector, classes=[0, 9])


def test_documented_sre2l_diff_changes_at_most_five_lines():
    from pathlib import Path

    diff = (Path(__file__).resolve().parents[1] / "examples" / "sre2l_train_FKD.diff").read_text().splitlines()
    added = [l for l in diff if l.startswith("+") and not l.startswith("+++")]
    removed = [l for l in diff if l.startswith("-") and not l.startswith("---")]
    assert len(added) <= 5 and len(removed) <= len(added)
    assert any("sre2l.ProjectorLabels(args.projector, args," in l for l in added)


# ----------------------------------------------------------------------------- shims a researcher cannot misuse
def test_shims_refuse_a_missing_projector():
    with pytest.raises(HelloLabelsError, match="no projector given: pass --projector"):
        sre2l.ProjectorLabels(None, SimpleNamespace(mix_type=None), [])
    with pytest.raises(HelloLabelsError, match="no projector given"):
        rded.teacher(None)


def test_a_missing_relative_path_says_so_and_fails_fast_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HelloLabelsError) as err:
        sre2l.ProjectorLabels("runs/x", SimpleNamespace(mix_type=None), [])
    message = str(err.value)
    assert f"no local directory 'runs/x' (working directory {tmp_path})" in message and "Hub" in message
    assert "\n" not in message
    (tmp_path / "runs").mkdir()  # 'runs/' exists here: the user meant a local path, the Hub is not asked
    with pytest.raises(HelloLabelsError, match=r"projector directory 'runs/x' not found \(working directory"):
        rded.teacher("runs/x")


def test_shims_refuse_a_dataset_of_another_class_count(projector_dir, toy_folder, tmp_path):
    import shutil

    for name in sorted(p.name for p in toy_folder.iterdir())[:4]:
        shutil.copytree(toy_folder / name, tmp_path / "four" / name)
    with pytest.raises(HelloLabelsError, match="the training dataset has 4 classes but the projector has 5"):
        sre2l.ProjectorLabels(str(projector_dir), SimpleNamespace(mix_type="cutmix"),
                              fkd_save_loader(tmp_path / "four"))
    with pytest.raises(HelloLabelsError, match=r"classes = range\(4\) is a 4-class dataset but the projector has 5"):
        rded.teacher(str(projector_dir), classes=range(4))


def test_shims_leave_the_callers_projector_and_random_streams_alone(projector_dir, toy_folder, monkeypatch):
    from hello_labels import LabelProjector

    projector = LabelProjector.from_pretrained(projector_dir)
    grads = [p.requires_grad for p in projector.parameters()]
    seeded_cuda = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: seeded_cuda.append(seed))

    def student_stream(with_shim: bool):
        torch.manual_seed(0)
        if torch.cuda.is_available():
            torch.cuda.manual_seed(0)
        seeded_cuda.clear()
        loader = fkd_save_loader(toy_folder)
        if with_shim:
            loader = sre2l.ProjectorLabels(str(projector_dir), SimpleNamespace(mix_type="cutmix"), loader)
            assert not seeded_cuda  # loading a projector must not reseed the CUDA generators
        next(iter(loader))
        cuda = torch.rand(3, device="cuda").cpu() if torch.cuda.is_available() else torch.empty(0)
        return torch.cat([torch.rand(3), cuda])

    assert torch.equal(student_stream(False), student_stream(True))
    sre2l.ProjectorLabels(projector, SimpleNamespace(mix_type=None), fkd_save_loader(toy_folder))
    rded.teacher(projector)
    assert not projector.merged and [p.requires_grad for p in projector.parameters()] == grads


def test_sre2l_mixes_follow_set_epoch_and_start_epoch(projector_dir, toy_folder):
    def mixes(shim, epoch=None):
        if epoch is not None:
            shim.dataset.set_epoch(epoch)
        return [(b[1].tolist(), b[2]) for b in shim]

    args = SimpleNamespace(mix_type="cutmix")
    loader = fkd_save_loader(toy_folder)
    uninterrupted = sre2l.ProjectorLabels(str(projector_dir), args, loader)
    runs = [mixes(uninterrupted, epoch) for epoch in range(3)]
    assert runs[0] != runs[2]
    resumed = sre2l.ProjectorLabels(str(projector_dir), SimpleNamespace(mix_type="cutmix", start_epoch=2), loader)
    assert mixes(resumed) == runs[2]  # --start-epoch 2, before train() calls set_epoch
    assert mixes(resumed, 2) == runs[2] and mixes(resumed, 1) == runs[1]
    assert resumed.dataset.mode == "fkd_save" and len(resumed.dataset) == len(loader.dataset)
