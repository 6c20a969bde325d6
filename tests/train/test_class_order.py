"""One class-order contract: projector output i is ``config.class_names[i]`` (the teacher's logit i); image folders
map onto it by folder name, and every job stops in one line when classes or counts differ."""
import json
import shutil

import pytest
import torch
from conftest import TOY_CLASSES
from torch import nn

from hello_labels import HelloLabelsError
from hello_labels.labels.classes import ClassOrder, check_classes, class_index
from hello_labels.labels.export import export_fkd
from hello_labels.labels.views import open_images
from hello_labels.train import distill as distill_module
from hello_labels.train.distill import DistillConfig
from hello_labels.train.jobs import augmented, distill_from_teachers, evaluate, make_projector

SIZE = 32
FOLDER = sorted(TOY_CLASSES)  # ImageFolder's numbering of the toy folder


# ----------------------------------------------------------------------------- the mapping itself
def test_folders_map_by_name_not_by_sort_order():
    names = ["T-shirt top", "Trouser", "Bag", "Ankle boot"]  # teacher order, not sorted
    folders = sorted(["T-shirt_top", "Trouser", "Bag", "Ankle_boot"])  # ['Ankle_boot', 'Bag', 'T-shirt_top', 'Trouser']
    assert class_index(folders, names) == [3, 2, 0, 1]


def test_class_mismatch_is_one_line_naming_count_or_names():
    with pytest.raises(HelloLabelsError, match="the image folder has 4 classes but the projector has 5"):
        class_index(["a", "b", "c", "d"], list("abcde"))
    with pytest.raises(HelloLabelsError) as err:
        class_index(["cat", "dog", "truck"], ["cat", "dog", "car"])
    assert "['truck']" in str(err.value) and "['car']" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(HelloLabelsError, match="teacher outputs 4 classes but the image folder has 5"):
        check_classes(list("abcde"), list("abcde"), model_classes=4)


def test_numbered_and_imagenet_folders_and_explicit_maps(tmp_path):
    import open_clip
    from timm.data import ImageNetInfo

    assert class_index(["new000", "new001", "new002"], ["x", "y", "z"]) == [0, 1, 2]  # SRe2L's folder names
    imagenet = list(open_clip.IMAGENET_CLASSNAMES)
    wnids = ImageNetInfo().label_names()
    assert class_index(sorted(wnids), imagenet) == list(range(1000))
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"kitty": "cat", "puppy": 0}))
    assert class_index(["kitty", "puppy"], ["dog", "cat"], str(path)) == [1, 0]
    with pytest.raises(HelloLabelsError, match="class map has no entry for folder 'puppy'"):
        class_index(["kitty", "puppy"], ["dog", "cat"], {"kitty": "cat"})


def test_class_order_dataset_remaps_imagefolder_labels(toy_folder):
    names = list(TOY_CLASSES)  # the conftest order, not sorted
    ordered = ClassOrder(open_images(toy_folder), names)
    for i in range(0, len(ordered), 7):
        path = ordered.source.samples[i][0]
        assert names[ordered[i][1]] == path.split("/")[-2]


# ----------------------------------------------------------------------------- the jobs
@pytest.fixture(scope="module")
def base(tiny_vit_dir):
    return f"local-dir:{tiny_vit_dir}"


@pytest.fixture(scope="module")
def four_class_folder(toy_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("four") / "train"
    for name in FOLDER[:4]:
        shutil.copytree(toy_folder / name, root / name)
    return root


def test_distill_ce_labels_follow_the_projector_order(base, toy_folder, toy_teacher, tmp_path, monkeypatch):
    images = augmented(toy_folder, SIZE, min_scale=0.25)
    names = list(reversed(FOLDER))  # a teacher whose logit order is not the folder order
    projector = make_projector(images, base, class_names=names, templates="simple", head_rank=4)
    seen = []
    real = distill_module.loss_fn

    def spy(cfg, logits, target, labels, plan, *rest):
        seen.append((plan.indices.clone(), labels.clone()))
        return real(cfg, logits, target, labels, plan, *rest)

    monkeypatch.setattr(distill_module, "loss_fn", spy)
    reversed_teacher = _Permuted(toy_teacher[0], list(reversed(range(5))))
    distill_from_teachers(toy_folder, [reversed_teacher], tmp_path / "p", projector,
                          DistillConfig(steps=2, batch_size=8, ce_weight=1.0, calibrate=False), images=images,
                          progress=False)
    folder = open_images(toy_folder)
    for indices, labels in seen:
        expected = [names.index(folder.classes[folder.targets[i]]) for i in indices.tolist()]
        assert labels.tolist() == expected


def test_prototype_head_rows_follow_the_class_names(base, toy_folder):
    images = augmented(toy_folder, SIZE)
    folder_order = make_projector(images, base, head_init="prototype", head_rank=4)
    names = list(reversed(folder_order.config.class_names))
    reordered = make_projector(images, base, class_names=names, head_init="prototype", head_rank=4)
    assert torch.allclose(reordered.head.weight, folder_order.head.weight.flip(0), atol=1e-5)


def test_teacher_of_another_class_count_is_refused(tiny_projector, toy_folder, tmp_path):
    projector, images = tiny_projector(toy_folder)
    four = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))
    with pytest.raises(HelloLabelsError, match="the teacher outputs 4 classes but the projector has 5"):
        distill_from_teachers(toy_folder, [four], tmp_path / "p", projector, DistillConfig(steps=1, batch_size=4),
                              images=images, progress=False)
    with pytest.raises(HelloLabelsError, match="the teacher outputs 4 classes but the projector has 5"):
        evaluate(projector, toy_folder, teachers=[four], views=8, input_size=SIZE)


def test_eval_and_export_refuse_a_folder_of_other_classes(tiny_projector, toy_folder, toy_teacher, four_class_folder,
                                                          tmp_path):
    projector, _ = tiny_projector(toy_folder)
    with pytest.raises(HelloLabelsError, match="the image folder has 4 classes but the projector has 5"):
        evaluate(projector, four_class_folder, teachers=[toy_teacher[0]], views=8, input_size=SIZE)
    with pytest.raises(HelloLabelsError, match="the image folder has 4 classes but the projector has 5"):
        export_fkd(projector, four_class_folder, tmp_path / "fkd", epochs=1, batch_size=8, input_size=SIZE,
                   progress=False)
    with pytest.raises(HelloLabelsError, match="the model outputs 5 classes but the image folder has 4"):
        export_fkd(toy_teacher[0], four_class_folder, tmp_path / "fkd2", epochs=1, batch_size=8, input_size=SIZE,
                   progress=False, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert not (tmp_path / "fkd").exists() and not (tmp_path / "fkd2").exists()


def test_export_refuses_a_projector_whose_order_is_not_the_sorted_folder_order(base, toy_folder, tmp_path):
    images = augmented(toy_folder, SIZE)
    reordered = make_projector(images, base, class_names=list(reversed(FOLDER)), templates="simple", head_rank=4)
    with pytest.raises(HelloLabelsError, match="SRe2L numbers classes by sorted folder name"):
        export_fkd(reordered, toy_folder, tmp_path / "fkd", epochs=1, batch_size=8, input_size=SIZE,
                   progress=False)


def test_per_class_agreement_is_keyed_by_the_projectors_names(base, toy_folder, toy_teacher):
    images = augmented(toy_folder, SIZE)
    names = list(reversed(FOLDER))
    reordered = make_projector(images, base, class_names=names, templates="simple", head_rank=4)
    report = evaluate(reordered, toy_folder, teachers=[_Permuted(toy_teacher[0], list(reversed(range(5))))],
                      views=40, batch_size=20, input_size=SIZE, min_scale=0.25)
    assert sorted(report.per_class) == sorted(names) and sum(report.per_class_views.values()) == 40


def test_augmented_with_class_names_labels_in_that_order(toy_folder):
    names = [n for n in TOY_CLASSES]
    images = augmented(toy_folder, SIZE, class_names=names)
    assert images.source.classes == names
    assert {images[(i, None)][1] for i in range(len(images))} == set(range(5))


# ----------------------------------------------------------------------------- helpers
class _Permuted(nn.Module):
    """A teacher whose logit ``i`` is the wrapped teacher's logit ``order[i]``."""

    def __init__(self, teacher, order):
        super().__init__()
        self.teacher, self.order = teacher, order

    def forward(self, x):
        return self.teacher(x)[:, self.order]



def test_refine_refuses_a_folder_of_other_classes(tiny_projector, toy_folder, toy_teacher, four_class_folder,
                                                  tmp_path):
    from hello_labels.train.refine import RefineConfig, refine

    projector, _ = tiny_projector(toy_folder)
    with pytest.raises(HelloLabelsError, match="the image folder has 4 classes but the projector has 5"):
        refine(projector, [toy_teacher[0]], four_class_folder, tmp_path / "out", RefineConfig(input_size=SIZE),
               progress=False)
    assert not (tmp_path / "out").exists()


def test_demo_students_see_labels_in_the_teachers_order(tmp_path):
    """The demo writes folders named after Fashion-MNIST classes; ImageFolder sorts them, the teacher and the test
    labels do not: the synthetic set must be read by name (the hard-label student scored 32% instead of 61%)."""
    from PIL import Image

    from hello_labels.demo.pipeline import DemoSettings, load_bundled, synthetic_images

    classes = load_bundled()[4]
    for name in classes:
        (tmp_path / name).mkdir()
        Image.new("RGB", (28, 28)).save(tmp_path / name / "000.png")
    images = synthetic_images(tmp_path, classes, DemoSettings())
    folder = open_images(tmp_path)
    labels = {folder.classes[folder.targets[i]]: images[(i, None)][1] for i in range(len(images))}
    assert labels == {name: k for k, name in enumerate(classes)}
