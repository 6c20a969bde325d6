"""The SRe2L and RDED shims, inside loops written after those codebases' conventions."""
import math
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import ddp_ranks
import numpy as np
import pytest
import sre2l_reference as ref
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from hello_labels import HelloLabelsError
from hello_labels.adapters import rded, sre2l

SIZE = 32


@pytest.fixture(scope="module")
def projector_dir(distilled_projector):
    """A projector distilled (briefly) from the toy teacher."""
    return distilled_projector


@pytest.fixture(scope="module")
def untrained_projector_dir(tiny_projector, toy_folder, tmp_path_factory):
    """An untrained tiny-ViT projector over the toy folder's 5 classes (its labels still depend on the image)."""
    out = tmp_path_factory.mktemp("untrained") / "projector"
    tiny_projector(toy_folder)[0].save_pretrained(out)
    return out


def student():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(64, 5))


def fkd_save_loader(folder, batch_size=8):
    """What train_FKD.py builds after the documented diff: ImageFolder_FKD_MIX in fkd_save mode + SRe2L sampler."""
    return fkd_save_loader_of(ref.ReferenceFKDFolder(str(folder), "fkd_save", input_size=SIZE, min_scale=0.25),
                              batch_size)


def fkd_save_loader_of(dataset, batch_size=8):
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


@pytest.mark.slow
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


@pytest.mark.slow
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

    # a 2-class RDED dataset labelled by two of the projector's classes: only with a class map
    projector = LabelProjector.from_pretrained(projector_dir)
    subset = rded.teacher(projector, classes=range(2), class_map=[0, projector.config.class_names[3]])
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(subset(x), projector(x)[:, [0, 3]], atol=1e-4)
    assert not any(p.requires_grad for p in subset.parameters()) and not subset.training
    with pytest.raises(HelloLabelsError, match="has 2 classes but the projector has 5: give a class map"):
        rded.teacher(projector, classes=[0, 3])
    with pytest.raises(HelloLabelsError, match="outside the projector's 5 classes"):
        rded.teacher(projector, classes=[0, 1, 2, 3, 9])


def test_documented_sre2l_diff_changes_at_most_five_lines():
    from pathlib import Path

    diff = (Path(__file__).resolve().parents[1] / "examples" / "sre2l_train_FKD.diff").read_text().splitlines()
    added = [line for line in diff if line.startswith("+") and not line.startswith("+++")]
    removed = [line for line in diff if line.startswith("-") and not line.startswith("---")]
    assert len(added) <= 5 and len(removed) <= len(added)
    assert any("sre2l.ProjectorLabels(args.projector, args," in line for line in added)


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
    with pytest.raises(HelloLabelsError, match=r"RDED's dataset has 4 classes but the projector has 5: give a class"):
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


@pytest.mark.slow
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


# ----------------------------------------------------------------------------- RDED: keep the images, name the classes
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NETTE_WNIDS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042",
               "n03425413", "n03445777", "n03888257"]  # fast.ai Imagenette's folders
WOOF_WNIDS = ["n02086240", "n02087394", "n02088364", "n02089973", "n02093754", "n02096294", "n02099601",
              "n02105641", "n02111889", "n02115641"]  # fast.ai Imagewoof's folders


def diff_lines(name, path, sign):
    """Lines the documented diff ``name`` adds (``+``) or removes (``-``) in ``path``."""
    lines, current = [], None
    for line in (EXAMPLES / name).read_text().splitlines():
        if line.startswith("+++ "):
            current = line[6:]
        elif line.startswith(sign) and not line.startswith(sign * 3):
            lines.append((current, line[1:].strip()))
    return [text for where, text in lines if where == path]


def rded_synthesis(args):
    """RDED's synthesize.main.main, condensed: empties syn_data, then needs the real teacher's checkpoint."""
    shutil.rmtree(args.syn_data_path, ignore_errors=True)
    os.makedirs(args.syn_data_path)
    raise FileNotFoundError(f"./data/pretrain_models/{args.subset}_{args.arch_name}.pth")


def rded_main(args, validate):
    """RDED's main.py after examples/rded_validation.diff (synthesis, then validation)."""
    if not rded.skip_synthesis(args):
        rded_synthesis(args)
    validate(args)


def syn_data(root, nclass=3, ipc=2):
    for c in range(nclass):
        (root / f"{c:05d}").mkdir(parents=True)
        for k in range(ipc):
            (root / f"{c:05d}" / f"class{c:05d}_id{k:05d}.jpg").write_bytes(b"jpeg")
    return root


def test_documented_rded_main_validates_existing_images_and_never_empties_them(tmp_path, capsys):
    assert diff_lines("rded_validation.diff", "main.py", "+")[-2:] == [
        "if not rded.skip_synthesis(args):  # --projector: keep syn_data, synthesis would empty it",
        "synth_main(args)"]
    images = syn_data(tmp_path / "syn_data")
    before = sorted(p.relative_to(images) for p in images.rglob("*"))
    args = SimpleNamespace(projector="runs/p", syn_data_path=str(images), nclass=3, ipc=2, subset="cifar10",
                           arch_name="conv3")
    seen = []
    rded_main(args, lambda a: seen.append(sorted(p.relative_to(images) for p in images.rglob("*"))))
    assert seen == [before] and sorted(p.relative_to(images) for p in images.rglob("*")) == before
    assert "synthesis skipped" in capsys.readouterr().out

    # too few images (or none): refused before anything is touched
    for case in ("short", "empty", "missing"):
        folder = tmp_path / case
        if case == "short":
            syn_data(folder, nclass=3, ipc=1)
        elif case == "empty":
            folder.mkdir()
        kept = sorted(folder.rglob("*")) if folder.exists() else None
        bad = SimpleNamespace(**{**vars(args), "syn_data_path": str(folder)})
        with pytest.raises(HelloLabelsError) as err:
            rded_main(bad, seen.append)
        message = str(err.value)
        assert "\n" not in message and "synthesise first with RDED's main.py without --projector" in message
        assert f"{folder}/00000 holds {1 if case == 'short' else 0} of the 2 images" in message
        assert (sorted(folder.rglob("*")) if folder.exists() else None) == kept and len(seen) == 1
    # without --projector RDED runs as it always did: synthesis first
    with pytest.raises(FileNotFoundError):
        rded_main(SimpleNamespace(**{**vars(args), "projector": None}), seen.append)


def test_documented_rded_validation_says_which_teacher_it_uses(projector_dir):
    added = diff_lines("rded_validation.diff", "validation/main.py", "+")
    assert 'print("=> teacher: {}".format(teacher_model.description))' in added
    assert any("class_map=args.projector_classes" in line for line in added)
    assert any("subset=args.subset" in line for line in added)
    assert diff_lines("rded_validation.diff", "argument.py", "+")[1].startswith(
        'parser.add_argument("--projector-classes"')
    description = rded.teacher(str(projector_dir), classes=range(5)).description
    assert f"hello-labels projector '{projector_dir}'" in description and "5 classes" in description
    assert "pre-trained" not in description


@pytest.fixture(scope="module")
def imagenet_projector(tiny_vit_dir):
    from hello_labels import LabelProjector

    return LabelProjector.from_base(f"local-dir:{tiny_vit_dir}", class_names="imagenet", head_init="random")


def test_known_rded_subsets_are_imagenettes_and_imagewoofs_classes():
    from timm.data import ImageNetInfo

    wnids = ImageNetInfo().label_names()
    assert [wnids[i] for i in rded.SUBSETS["imagenet-nette"]] == NETTE_WNIDS
    assert [wnids[i] for i in rded.SUBSETS["imagenet-woof"]] == WOOF_WNIDS


@pytest.mark.parametrize("subset", ["imagenet-nette", "imagenet-woof"])
def test_rded_subsets_of_an_imagenet_projector_get_their_own_classes(imagenet_projector, subset):
    import open_clip

    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = imagenet_projector(x)[:, rded.SUBSETS[subset]]
        named = rded.teacher(imagenet_projector, classes=range(10), subset=subset)  # RDED's args for the subset
        assert torch.allclose(named(x), expected, atol=1e-5)
        indices = ",".join(str(i) for i in rded.SUBSETS[subset])  # --projector-classes 0,217,...
        by_index = rded.teacher(imagenet_projector, classes=range(10), class_map=indices, subset=subset)
        names = [open_clip.IMAGENET_CLASSNAMES[i] for i in rded.SUBSETS[subset]]
        by_name = rded.teacher(imagenet_projector, classes=range(10), class_map=names)
        assert torch.allclose(by_index(x), expected, atol=1e-5) and torch.allclose(by_name(x), expected, atol=1e-5)
    assert "0: " + str(rded.SUBSETS[subset][0]) in named.description
    # an unknown 10-class subset is not silently ImageNet's first ten classes
    with pytest.raises(HelloLabelsError, match=r"dataset imagenet-10 has 10 classes but the projector has 1000: "
                                               r"give a class map"):
        rded.teacher(imagenet_projector, classes=range(10), subset="imagenet-10")


@pytest.mark.parametrize("classes, class_map, message", [
    ([-1], None, r"RDED classes must be class numbers >= 0; got -1"),
    ([], None, r"RDED classes is empty"),
    (["0", "2"], None, r"RDED classes must be integers; got '0' \(str\)"),
    ([0.0, 1.0], None, r"RDED classes must be integers; got 0.0 \(float\)"),
    ([0, 0], None, r"RDED classes list class 0 twice"),
    (range(2), [-1, 3], r"class map sends folder '00000' to -1, which is not one of the 1000 class names"),
    (range(2), [], r"the class map lists 0 classes but the RDED dataset has 2"),
    (range(2), [0, "tench"], r"sends two of the RDED dataset's classes to the projector's class 0 \('tench'\)"),
    (range(2), "0,x7", r"sends folder '00001' to 'x7', which is not one of the 1000"),
    (range(2), "imagenet-nette", r"the class map lists 10 classes but the RDED dataset has 2"),
])
def test_rded_class_lists_and_maps_that_make_no_sense_give_one_line(imagenet_projector, classes, class_map,
                                                                      message):
    with pytest.raises(HelloLabelsError, match=message) as err:
        rded.teacher(imagenet_projector, classes=classes, class_map=class_map)
    assert "\n" not in str(err.value)


def test_a_known_subset_needs_projector_classes_of_those_names(projector_dir):
    with pytest.raises(HelloLabelsError, match="sends folder '00000' to 'tench', which is not one of the 5 class"):
        rded.teacher(str(projector_dir), classes=range(10), subset="imagenet-nette")


# ----------------------------------------------------------------------------- the SRe2L family: LPLD, G-VBSM, EDC
class _ReadsLabelFilesOnSetEpoch(ref.ReferenceFKDFolder):
    """G-VBSM's ImageFolder_FKD_MIX: ``set_epoch`` loads that epoch's label files (there are none with a projector)."""

    def set_epoch(self, epoch):
        raise FileNotFoundError(f"{self.fkd_path}/epoch_{epoch}/batch_*.tar")


def _family_dataset(folder, cls=ref.ReferenceFKDFolder):
    return cls(str(folder), "fkd_save", input_size=SIZE, min_scale=0.25, return_index=True)  # (..., index)


def test_a_loader_replaying_a_stored_order_is_reshuffled_per_epoch_and_says_so(projector_dir, toy_folder, caplog):
    loader = torch.utils.data.DataLoader(_family_dataset(toy_folder, _ReadsLabelFilesOnSetEpoch), batch_size=8,
                                         shuffle=False)  # G-VBSM / EDC: the order stored at relabel time
    assert all(len(set(batch[1].tolist())) == 1 for batch in loader)  # as it is: every batch holds one class
    shim = sre2l.ProjectorLabels(str(projector_dir), SimpleNamespace(mix_type="cutmix"), loader, layout="gvbsm")
    assert "fresh random order per epoch" in caplog.text

    def targets(epoch):
        shim.dataset.set_epoch(epoch)  # the dataset's own set_epoch (it would read label files) is not called
        return [batch[1].tolist() for batch in shim]

    first = targets(0)
    assert all(len(set(t)) > 1 for t in first) and sorted(sum(first, [])) == sorted(loader.dataset.targets)
    assert targets(0) == first and targets(1) != first  # seeded by epoch: a resumed run draws the same order
    assert len(shim) == len(loader) == 5


@pytest.mark.parametrize("mix_type", ["cutmix", "mixup"])
@pytest.mark.parametrize("layout, fields", [("gvbsm", 4), ("edc-imagenet", 5)])
def test_flat_layouts_with_per_sample_boxes_rebuild_the_labelled_images(layout, fields, mix_type, projector_dir,
                                                                      toy_folder):
    shim = sre2l.ProjectorLabels(str(projector_dir), SimpleNamespace(mix_type=mix_type, mode="fkd_load"),
                                 fkd_save_loader_of(_family_dataset(toy_folder)), layout=layout)
    for batch_data in shim:  # G-VBSM's loop: batch_data[:4], batch_data[4:] (EDC's ImageNet scripts: 5)
        assert len(batch_data) == fields + 4
        images = batch_data[0]
        mix_index, mix_lam, mix_bbox, soft_label = batch_data[fields:]
        assert isinstance(mix_lam, float) and len(mix_bbox) == 4
        assert all(v.shape == (images.shape[0],) and bool((v == v[0]).all()) for v in mix_bbox)  # one box, per sample
        box = [v[0] for v in mix_bbox]  # what G-VBSM's loop does after checking the boxes agree
        remixed, _, _, _ = ref.mix_aug(images.clone(), mix_type, "fkd_load", mix_index, mix_lam, box)
        with torch.no_grad():
            assert torch.allclose(shim.projector(remixed), soft_label, atol=1e-5)


def test_extra_fields_pass_through_and_the_sampler_takes_the_epoch(projector_dir, toy_folder):
    """LPLD: its dataset yields a 5th field (the index) and its train() calls ``train_loader.sampler.set_epoch``."""
    args = SimpleNamespace(mix_type="cutmix")
    dataset = _family_dataset(toy_folder)
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=1, rank=0, seed=3)
    shim = sre2l.ProjectorLabels(str(projector_dir), args, torch.utils.data.DataLoader(dataset, 8, sampler=sampler))
    images, target, flip_status, coords_status, index = next(iter(shim))[0]
    assert index.dtype == torch.int64 and [dataset.targets[i] for i in index.tolist()] == target.tolist()

    def mixes():
        return [(b[1].tolist(), b[2]) for b in shim]

    shim.sampler.set_epoch(3)
    assert sampler.epoch == 3  # a sampler's own set_epoch is kept (DistributedSampler reshuffles by it)
    by_sampler = mixes()
    shim.dataset.set_epoch(3)
    assert mixes() == by_sampler and len(shim.sampler) == len(sampler)


# ----------------------------------------------------------------------------- DDP: each process labels its rows
def parallel_train(args, model, gpu, ngpus_per_node, labelled):
    """G-VBSM's and EDC's ``train_FKD_parallel.train()``, condensed (one pass, KL loss): every process loads the
    whole batch, mixes it in place with ``mix_aug`` and trains on its slices. Returns what it took and fed, as
    :func:`ddp_ranks.check_labels_only_its_rows` reads it (``labelled``: the projector's batch sizes so far)."""
    run = {"mixed": [], "taken": [], "fed": []}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    kl = nn.KLDivLoss(reduction="batchmean")
    for batch_idx, batch_data in enumerate(args.train_loader):
        images, target, flip_status, coords_status = batch_data[:4]
        mix_index, mix_lam, mix_bbox, soft_label = batch_data[4:]
        images = images.cuda()
        soft_label = soft_label.cuda().float()
        mix_bbox = [mix_bbox[0][0], mix_bbox[1][0], mix_bbox[2][0], mix_bbox[3][0]]
        images, _, _, _ = ref.mix_aug(images, args.mix_type, "fkd_load", mix_index, mix_lam, mix_bbox)
        run["mixed"].append(images.clone())
        optimizer.zero_grad()
        small_bs = args.batch_size // (args.gradient_accumulation_steps * ngpus_per_node)
        last_batch = batch_idx == len(args.train_loader) - 1
        accum_step = math.ceil(images.shape[0] / small_bs / ngpus_per_node) if last_batch else \
            args.gradient_accumulation_steps
        for accum_id in range(0, accum_step * ngpus_per_node, ngpus_per_node):
            if accum_id == accum_step * ngpus_per_node - ngpus_per_node and last_batch:
                last_number = (images.shape[0] - small_bs * (accum_step * ngpus_per_node - ngpus_per_node)) // \
                    ngpus_per_node
                start, stop = accum_id * small_bs + last_number * gpu, accum_id * small_bs + last_number * (gpu + 1)
            else:
                start, stop = (accum_id + gpu) * small_bs, (accum_id + gpu + 1) * small_bs
            before = len(labelled)
            partial_soft_label = soft_label[start:stop]
            run["taken"].append((batch_idx, (start, stop), partial_soft_label, labelled[before:]))
            run["fed"].append(images[start:stop])
            output = F.log_softmax(model(images[start:stop]) / 4.0, dim=1)
            loss = kl(output, F.softmax(partial_soft_label / 4.0, dim=1)) / args.gradient_accumulation_steps
            loss.backward()
        optimizer.step()
    return run


@pytest.mark.parametrize("accumulation, full", [(1, [[(0, 6)], [(6, 12)]]), (2, [[(0, 3), (6, 9)], [(3, 6), (9, 12)]])])
@pytest.mark.torchrun
def test_each_ddp_process_labels_only_the_rows_it_trains_on(accumulation, full, untrained_projector_dir, toy_folder,
                                                            tmp_path, monkeypatch):
    """Two gloo processes (the student in DDP), batch size 12 (40 images: batches of 12, 12, 12, 4): each runs the
    projector on its own half of each batch only, and trains on projector(its rows of the mixed batch)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)  # the loop's .cuda() on the CPU

    def process(gpu):
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=gpu, world_size=2)
        try:
            args = SimpleNamespace(mix_type="cutmix", batch_size=12, gradient_accumulation_steps=accumulation)
            loader = torch.utils.data.DataLoader(_family_dataset(toy_folder), batch_size=12, shuffle=False)
            args.train_loader = sre2l.ProjectorLabels(str(untrained_projector_dir), args, loader, layout="gvbsm",
                                                      device="cpu", per_slice=True)
            projector, labelled = args.train_loader.projector, []
            projector.register_forward_pre_hook(lambda module, inputs: labelled.append(inputs[0].shape[0]))
            run = parallel_train(args, DistributedDataParallel(student()), gpu, 2, labelled)
            return ddp_ranks.with_reference(run, projector, labelled)
        finally:
            dist.destroy_process_group()

    runs = ddp_ranks.in_processes(process, 2, tmp_path)
    last = [[(0, 2)], [(2, 4)]]  # the short last batch, split evenly
    for gpu, run in enumerate(runs):
        ddp_ranks.check_labels_only_its_rows(run, [full[gpu]] * 3 + [last[gpu]])
    assert all(torch.equal(a, b) for a, b in zip(runs[0]["mixed"], runs[1]["mixed"], strict=True))  # one batch


def test_slice_labels_apply_the_loops_conversions_to_each_slice_and_refuse_other_indices(untrained_projector_dir):
    from hello_labels.adapters._load import load_projector

    projector, x = load_projector(str(untrained_projector_dir), device="cpu"), torch.randn(6, 3, SIZE, SIZE)
    labels = sre2l.SliceLabels(projector, x).to(torch.float64)
    assert len(labels) == 6 and labels.shape == (6, 5)
    with torch.no_grad():
        assert torch.equal(labels[2:5], projector(x[2:5]).double())
    for index in (0, [0, 1], torch.arange(2)):
        with pytest.raises(HelloLabelsError, match=r"^soft_label labels the rows the loop takes as a slice"):
            labels[index]


@pytest.mark.slow
@pytest.mark.parametrize("script, message", [
    ("sre2l.require(SimpleNamespace(granularity='batch'), granularity='epoch')",
     "--granularity batch needs the stored label files; with --projector only --granularity epoch is supported"),
    ("rded.teacher(PROJECTOR, classes=range(4))",
     "RDED's dataset has 4 classes but the projector has 5: give a class map (--projector-classes: ImageNet indices "
     "or class names, one per RDED class) to say which of its classes they are")], ids=["lpld", "rded"])
def test_a_refusal_ends_the_training_script_in_one_line(script, message, untrained_projector_dir, tmp_path):
    """What a user running a patched script sees: the message alone on stderr (no traceback), status 1."""
    import subprocess
    import sys

    (tmp_path / "train.py").write_text("from types import SimpleNamespace\nfrom hello_labels.adapters import rded, "
                                       f"sre2l\nPROJECTOR = {str(untrained_projector_dir)!r}\n{script}\n")
    done = subprocess.run([sys.executable, str(tmp_path / "train.py")], capture_output=True, text=True, timeout=600)
    assert (done.returncode, done.stderr.splitlines()) == (1, [f"hello-labels: error: {message}"]), done.stderr


def test_settings_a_projector_cannot_serve_are_refused_in_one_line(projector_dir):
    sre2l.require(SimpleNamespace(granularity="epoch"), granularity="epoch")
    sre2l.require(SimpleNamespace(), granularity="epoch")  # a script without the setting
    with pytest.raises(HelloLabelsError, match="^--granularity batch needs the stored label files; with --projector "
                                               "only --granularity epoch is supported$"):
        sre2l.require(SimpleNamespace(granularity="batch"), granularity="epoch")
    with pytest.raises(HelloLabelsError, match=r"unknown batch layout 'lpld'; expected one of \['edc-imagenet', "):
        sre2l.ProjectorLabels(str(projector_dir), SimpleNamespace(mix_type=None), [], layout="lpld")
