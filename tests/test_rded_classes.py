"""RDED shim class matching: by name wherever RDED's class names are known (a known subset, a projector named
after RDED's folders), through ImageNet's open_clip names, WordNet ids and indices alike; never by position when
names are known, refused when they do not match."""
import pytest
import torch

from hello_labels import LabelProjector
from hello_labels.adapters import rded
from hello_labels.errors import HelloLabelsError
from hello_labels.labels.classes import class_index

NETTE = "imagenet-nette"


def imagenet_names():
    """ImageNet's wnids (timm) and open_clip's class names, in class-index order."""
    import open_clip
    from timm.data import ImageNetInfo

    return ImageNetInfo().label_names(), open_clip.IMAGENET_CLASSNAMES


def nette(table: int):
    """Imagenette's 10 classes in RDED's order, from ImageNet's wnids (0) or open_clip's names (1)."""
    return [imagenet_names()[table][i] for i in rded.SUBSETS[NETTE]]


@pytest.mark.slow
def test_a_subset_sized_projector_is_matched_by_name_not_position(tiny_vit_dir):
    """Imagenette's names in alphabetical order, as ImageFolder orders name folders: the RDED teacher's column i is
    the projector's row named like RDED class i."""
    names = sorted(nette(1))
    assert names != nette(1)
    projector = LabelProjector.from_base(f"local-dir:{tiny_vit_dir}", class_names=names, head_init="random")
    teacher = rded.teacher(projector, classes=range(10), subset=NETTE, device="cpu")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        rows = [names.index(n) for n in nette(1)]
        assert torch.allclose(teacher(x), teacher.projector(x)[:, rows], atol=1e-5)
    assert rded.projector_rows(range(10), sorted(nette(0)), subset=NETTE) == [sorted(nette(0)).index(w)
                                                                            for w in nette(0)]


def test_a_subset_sized_projector_of_other_names_is_refused():
    names = ["cat", "dog", "car", "ship", "tree", "bus", "cow", "fish", "owl", "pen"]
    with pytest.raises(HelloLabelsError, match=r"sends folder '00000' to 'tench', which is not one of the 10"):
        rded.projector_rows(range(10), names, subset=NETTE)


@pytest.mark.parametrize("naming", ["wnid", "rded", "open_clip"])
def test_a_1000_class_projector_resolves_a_known_subset_by_wnid_or_index(naming):
    wnids, words = imagenet_names()
    names = {"wnid": list(wnids), "rded": [f"{i:05d}" for i in range(1000)], "open_clip": list(words)}[naming]
    assert rded.projector_rows(range(10), names, subset=NETTE) == rded.SUBSETS[NETTE]
    assert rded.projector_rows(range(10), names, class_map=NETTE) == rded.SUBSETS[NETTE]  # --projector-classes
    shuffled = names[::-1]  # order of the rows is free: matched by name
    assert rded.projector_rows(range(10), shuffled, subset=NETTE) == [999 - i for i in rded.SUBSETS[NETTE]]


def test_a_projector_named_after_rdeds_folders_is_matched_by_folder():
    names = [f"{i:05d}" for i in (3, 1, 2, 0, 4, 5, 6, 7, 8, 9)]
    assert rded.projector_rows(range(10), names, subset=NETTE)[:4] == [3, 1, 2, 0]


def test_wnid_folders_map_onto_an_imagenet_named_projector_of_any_size():
    assert class_index(nette(0)[::-1], nette(1)) == list(range(9, -1, -1))
