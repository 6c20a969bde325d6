"""The SRe2L family's own training loops, patched by the diffs in examples/, run a tiny CPU case with a projector.

Each test needs an upstream checkout named by an environment variable and is skipped without one (CI has none):

- ``HELLO_LABELS_SRE2L_CHECKOUT``: VILA-Lab/SRe2L (``SRe2L/validate/train_FKD.py``, which CDA uses too)
- ``HELLO_LABELS_LPLD_CHECKOUT``: he-y/soft-label-pruning-for-dataset-distillation
- ``HELLO_LABELS_GVBSM_CHECKOUT``: shaoshitong/G_VBSM_Dataset_Condensation
- ``HELLO_LABELS_EDC_CHECKOUT``: shaoshitong/EDC

The script's folder is copied to a temporary directory, the documented diff is applied there with ``git apply``, and
the script's own ``main()`` (``main_worker`` for the DDP scripts, as one process on gloo) trains a probe student for
two epochs. What is replaced, and only that: CUDA calls become no-ops on the CPU, experiment loggers (wandb, aim) and
plotting are stubs, the validation set is a small folder (no download), and the student is a probe that records
what it is fed. The test then checks that the soft labels the loop consumed equal ``projector(the images the loop
mixed with its own mix_aug)`` exactly, and that no batch held one class.
"""
import os
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import ddp_ranks
import pytest
import torch
import torchvision
from torch import nn

from hello_labels import HelloLabelsError
from hello_labels.adapters import _load, sre2l

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
pytestmark = [pytest.mark.upstream, pytest.mark.slow]


def needs(variable):
    """Skip unless ``variable`` names a checkout (before any fixture is built: CI has no checkouts)."""
    return pytest.mark.skipif(not os.environ.get(variable), reason=f"set {variable} to an upstream checkout")


def checkout(variable):
    return Path(os.environ[variable])


@pytest.fixture(scope="module")
def projector_dir(tiny_projector, toy_folder, tmp_path_factory):
    """An untrained tiny-ViT projector over the toy folder's 5 classes (its labels still depend on the image)."""
    projector, _ = tiny_projector(toy_folder)
    out = tmp_path_factory.mktemp("family") / "projector"
    projector.save_pretrained(out)
    return out


class Probe(nn.Module):
    """The student: records each training batch it is fed (the images after the loop's own mix_aug)."""

    def __init__(self, seen, classes=5):
        super().__init__()
        self.seen, self.linear = seen, nn.Linear(3, classes)

    def forward(self, x):
        if self.training:
            self.seen.append(x.detach().clone())
        return self.linear(x.mean((2, 3)))


class _Null:
    """Stands in for a logger's run object: any attribute, call or item assignment is accepted and ignored."""

    def __getattr__(self, name):
        return self

    def __call__(self, *args, **kwargs):
        return self

    def __setitem__(self, key, value):
        pass

    def __iter__(self):
        return iter(())


LOGGERS = ("wandb", "aim", "ema_pytorch", "plotly", "plotly.express", "matplotlib", "matplotlib.pyplot")  # stubbed


def _stub(name, **attrs):
    module = types.ModuleType(name)
    module.__getattr__ = lambda attr: _Null()
    module.__dict__.update(attrs)
    return module


@dataclass
class Record:
    """What an upstream run did: the batches the shim yielded, the images the loop's own ``mix_aug`` returned, what
    the student was fed, the shims; for per-slice labels each slice the loop took ``(batch number, rows, labels,
    the projector's batch sizes while labelling it)``; and the batch size of every projector call."""

    batches: list = field(default_factory=list)
    mixed: list = field(default_factory=list)
    seen: list = field(default_factory=list)
    shims: list = field(default_factory=list)
    taken: list = field(default_factory=list)
    labelled: list = field(default_factory=list)

    @property
    def shim(self):
        return self.shims[0] if self.shims else None


@pytest.fixture
def upstream(monkeypatch, tmp_path, projector_dir):
    """``run(root, folder, diff, script, argv, entry)``: copy ``root/folder``, apply ``diff`` (None: the script as it
    is, without ``--projector``), import ``script`` and call ``entry(module)`` with ``sys.argv = [script, *argv]``;
    returns the run's :class:`Record` (``run.record``, filled as it goes: a forked process fills its own copy)."""
    modules = set(sys.modules)
    for name in LOGGERS:
        monkeypatch.setitem(sys.modules, name, _stub(name))
    monkeypatch.setitem(sys.modules, "prefetch_generator", _stub("prefetch_generator", BackgroundGenerator=iter))
    # CUDA on the CPU: calls become no-ops; the projector stays on the CPU
    real_is_available = torch.cuda.is_available  # torch's own checks keep the true answer

    def is_available():
        return sys._getframe(1).f_code.co_filename.startswith(str(tmp_path)) or real_is_available()

    monkeypatch.setattr(torch.cuda, "is_available", is_available)  # 'need gpu to train!'
    monkeypatch.setattr(torch.cuda, "set_device", lambda *a: None)
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    monkeypatch.setattr(nn.Module, "cuda", lambda self, *a, **k: self)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    record = Record()

    def load_on_cpu(projector, device=None, **kwargs):
        projector = _load.load_projector(projector, device="cpu", **kwargs)
        projector.register_forward_pre_hook(lambda module, args: record.labelled.append(args[0].shape[0]))
        return projector

    monkeypatch.setattr(sre2l, "load_projector", load_on_cpu)
    real_iter, real_take = sre2l.ProjectorLabels.__iter__, sre2l.SliceLabels.__getitem__

    def recording(self):
        record.shims.append(self)
        for batch in real_iter(self):
            record.batches.append(batch)
            yield batch

    def take(self, rows):
        before = len(record.labelled)
        labels = real_take(self, rows)
        number = next(k for k, batch in enumerate(record.batches) if batch[-1].mixed is self.mixed)
        record.taken.append((number, rows, labels, record.labelled[before:]))
        return labels

    monkeypatch.setattr(sre2l.ProjectorLabels, "__iter__", recording)
    monkeypatch.setattr(sre2l.SliceLabels, "__getitem__", take)
    monkeypatch.setitem(torchvision.models.__dict__, "hl_probe", lambda *a, **k: Probe(record.seen))

    def run(root, folder, diff, script, argv, entry):
        shutil.copytree(root / folder, tmp_path / folder, ignore=shutil.ignore_patterns("*.png", "*.jpg", "*.pth"))
        if diff is not None:
            applied = subprocess.run(["git", "apply", str(EXAMPLES / diff)], cwd=tmp_path, capture_output=True,
                                     text=True)
            assert applied.returncode == 0, applied.stderr
            argv = ["--projector", str(projector_dir), *argv]
        script = tmp_path / folder / script
        monkeypatch.chdir(script.parent)  # the scripts import '../relabel' relative to where they run
        monkeypatch.syspath_prepend(str(script.parent))
        monkeypatch.setattr(sys, "argv", [str(script), *argv])
        import importlib.util

        spec = importlib.util.spec_from_file_location(f"upstream_{script.stem}", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        own_mix_aug = module.mix_aug

        def recording_mix_aug(*args, **kwargs):  # the loop's own mix_aug, its output recorded
            result = own_mix_aug(*args, **kwargs)
            record.mixed.append(result[0].detach().clone())
            return result

        module.mix_aug = recording_mix_aug
        entry(module)
        return record

    run.record = record
    yield run
    for name in set(sys.modules) - modules:  # upstream's 'utils', 'relabel', ... must not leak into other tests
        module = sys.modules[name]
        places = [getattr(module, "__file__", None) or "", *(getattr(module, "__path__", None) or [])]
        if any(str(place).startswith(str(tmp_path)) for place in places):  # (namespace packages have no __file__)
            del sys.modules[name]


def check_labels_are_the_projectors_on_the_loops_mixed_images(record, target_at, mix_type, epochs=2, per_epoch=5):
    batches, mixed, seen, projector = record.batches, record.mixed, record.seen, record.shim.projector
    assert len(batches) == len(mixed) == len(seen) == per_epoch * epochs  # toy folder: 40 images, batch size 8
    for batch, images, fed in zip(batches, mixed, seen):
        soft_label, target = batch[-1], target_at(batch)
        with torch.no_grad():
            assert torch.equal(projector(images), soft_label)
        assert torch.equal(fed, images)  # the student trains on those images
        assert len(set(target.tolist())) > 1, "a batch held one class"
        mix_index, mix_lam = batch[-4], batch[-3]
        assert mix_index is not None and 0 <= mix_lam <= 1


def toy_val(toy_folder):
    """A validation set standing in for CIFAR's (whose loader would download)."""
    return lambda *a, transform=None, **k: torchvision.datasets.ImageFolder(str(toy_folder), transform)


# ----------------------------------------------------------------------------- SRe2L (and CDA, which trains with it)
@needs("HELLO_LABELS_SRE2L_CHECKOUT")
@pytest.mark.parametrize("mix_type", ["cutmix", "mixup"])
def test_sre2l_main_trains_on_projector_labels(mix_type, upstream, toy_folder, tmp_path):
    root = checkout("HELLO_LABELS_SRE2L_CHECKOUT")
    argv = ["--train-dir", str(toy_folder), "--val-dir", str(toy_folder), "--output-dir", str(tmp_path / "out"),
            "--batch-size", "8", "--epochs", "2", "--mix-type", mix_type, "--workers", "0", "--model", "hl_probe"]
    run = upstream(root, "SRe2L", "sre2l_train_FKD.diff", "validate/train_FKD.py", argv, lambda m: m.main())
    check_labels_are_the_projectors_on_the_loops_mixed_images(run, lambda b: b[0][1], mix_type)


# ----------------------------------------------------------------------------- LPLD
LPLD = "lpld_train_FKD_label_pruning_batch.diff"


@needs("HELLO_LABELS_LPLD_CHECKOUT")
@pytest.mark.parametrize("mix_type", ["cutmix", "mixup"])
def test_lpld_main_trains_on_projector_labels(mix_type, upstream, toy_folder, tmp_path):
    root = checkout("HELLO_LABELS_LPLD_CHECKOUT")
    argv = ["--dataset", "imagenet1k", "--train_dir", str(toy_folder), "--val_dir", str(toy_folder),
            "--output_dir", str(tmp_path / "out"), "--batch_size", "8", "--epochs", "2", "--mix_type", mix_type,
            "--prune_metric", "order", "--prune_ratio", "0", "--granularity", "epoch", "--workers", "0", "--model",
            "hl_probe", "--val_interval", "1"]
    run = upstream(root, "relabel_and_validate", LPLD, "train_FKD_label_pruning_batch.py", argv, lambda m: m.main())
    # LPLD's dataset yields a 5th field, the index, which its loop unpacks from batch_data[0]
    assert all(len(b[0]) == 5 and b[0][4].dtype == torch.int64 for b in run.batches)
    check_labels_are_the_projectors_on_the_loops_mixed_images(run, lambda b: b[0][1], mix_type)


@pytest.fixture(scope="module")
def tiny_imagenet(tiny_projector, tmp_path_factory):
    """``(train, val, projector_dir)``: 200 classes (LPLD's Tiny-ImageNet path insists on them), one 8-px image each,
    Tiny-ImageNet's validation layout (``wnids.txt`` beside ``val/images`` and ``val/val_annotations.txt``), and an
    untrained 200-class projector."""
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny-imagenet")
    wnids = [f"n{c:08d}" for c in range(200)]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for c, wnid in enumerate(wnids):
        (root / "train" / wnid).mkdir(parents=True)
        Image.new("RGB", (8, 8), (c, 255 - c, c // 2)).save(root / "train" / wnid / f"{wnid}_0.png")
        Image.new("RGB", (8, 8), (c, 255 - c, 0)).save(root / "val" / "images" / f"val_{c}.png")
    (root / "val" / "val_annotations.txt").write_text("".join(f"val_{c}.png\t{w}\t0\t0\t8\t8\n"
                                                               for c, w in enumerate(wnids)))
    projector, _ = tiny_projector(root / "train")
    projector.save_pretrained(root / "projector")
    return root / "train", root / "val", root / "projector"


@needs("HELLO_LABELS_LPLD_CHECKOUT")
@pytest.mark.parametrize("mix_type", ["cutmix", "mixup"])
def test_lpld_tiny_imagenet_main_trains_on_projector_labels(mix_type, upstream, tiny_imagenet, tmp_path, monkeypatch):
    """``--dataset tiny``: 64-px crops, a KL on log-probabilities (``log_target=True``) scaled by T²."""
    root = checkout("HELLO_LABELS_LPLD_CHECKOUT")
    train, val, projector = tiny_imagenet
    argv = ["--dataset", "tiny", "--train_dir", str(train), "--val_dir", str(val), "--output_dir",
            str(tmp_path / "out"), "--batch_size", "50", "--epochs", "1", "--mix_type", mix_type, "--prune_metric",
            "order", "--prune_ratio", "0", "--workers", "0", "--model", "hl_probe", "--projector", str(projector)]
    seen = upstream.record.seen
    monkeypatch.setitem(torchvision.models.__dict__, "hl_probe", lambda *a, **k: Probe(seen, classes=200))
    run = upstream(root, "relabel_and_validate", LPLD, "train_FKD_label_pruning_batch.py", argv, lambda m: m.main())
    check_labels_are_the_projectors_on_the_loops_mixed_images(run, lambda b: b[0][1], mix_type, epochs=1,
                                                              per_epoch=4)
    assert run.batches[0][-1].shape == (50, 200) and run.mixed[0].shape[-1] == 64


@needs("HELLO_LABELS_LPLD_CHECKOUT")
def test_lpld_pruning_settings_only_choose_the_epoch_numbers_seeding_the_mixes(upstream, toy_folder, tmp_path):
    """``--prune_metric random --prune_ratio 0.5`` over 4 epochs: LPLD draws each epoch's number from a pool of 2, so
    passes repeat mix parameters; crops, flips and order stay fresh, and every label is still projector(images)."""
    root = checkout("HELLO_LABELS_LPLD_CHECKOUT")
    argv = ["--dataset", "imagenet1k", "--train_dir", str(toy_folder), "--val_dir", str(toy_folder),
            "--output_dir", str(tmp_path / "out"), "--batch_size", "8", "--epochs", "4", "--mix_type", "cutmix",
            "--prune_metric", "random", "--prune_ratio", "0.5", "--workers", "0", "--model", "hl_probe",
            "--val_interval", "4"]
    run = upstream(root, "relabel_and_validate", LPLD, "train_FKD_label_pruning_batch.py", argv, lambda m: m.main())
    check_labels_are_the_projectors_on_the_loops_mixed_images(run, lambda b: b[0][1], "cutmix", epochs=4)
    passes = [run.batches[k:k + 5] for k in range(0, 20, 5)]
    mixes = [[(b[1].tolist(), b[2], [int(v) for v in b[3]]) for b in p] for p in passes]
    assert len({repr(m) for m in mixes}) <= 2  # two epoch numbers in the pool
    repeated = [(a, b) for a in range(4) for b in range(a + 1, 4) if mixes[a] == mixes[b]]
    assert repeated and all(not torch.equal(passes[a][0][0][0], passes[b][0][0][0]) for a, b in repeated)


@needs("HELLO_LABELS_LPLD_CHECKOUT")
@pytest.mark.parametrize("granularity", ["batch", "batch_to_epoch"])
def test_lpld_refuses_batch_granularity_in_one_line(granularity, upstream, toy_folder, tmp_path):
    """Called, ``main()`` raises a HelloLabelsError; run as ``python train_FKD_label_pruning_batch.py``, the script
    ends with that one line on stderr (no traceback) and status 1."""
    root = checkout("HELLO_LABELS_LPLD_CHECKOUT")
    argv = ["--train_dir", str(toy_folder), "--val_dir", str(toy_folder), "--output_dir", str(tmp_path / "out"),
            "--granularity", granularity, "--workers", "0", "--model", "hl_probe", "--use_aim"]  # (turns aim off)
    message = (f"--granularity {granularity} needs the stored label files; with --projector only --granularity epoch "
               f"is supported")
    stderr = []

    def main_and_as_a_script(module):
        with pytest.raises(HelloLabelsError, match=f"^{message}$"):
            module.main()
        done = subprocess.run([sys.executable, "-c", AS_MAIN, ",".join(LOGGERS), *sys.argv], capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 1, done.stderr
        stderr.append(done.stderr)

    upstream(root, "relabel_and_validate", LPLD, "train_FKD_label_pruning_batch.py", argv, main_and_as_a_script)
    assert stderr[0].splitlines() == [f"hello-labels: error: {message}"], stderr[0]


# `python -c AS_MAIN NAMES script.py ARGS`: `python script.py ARGS` with the modules NAMES (comma-separated) stubbed
# and torch.cuda.is_available() true (the scripts' first check; the refusals come before any GPU work)
AS_MAIN = """import os, runpy, sys, types
import torch
def stub(attr):
    if attr.startswith("__"):
        raise AttributeError(attr)
    return lambda *a, **k: None
for name in sys.argv[1].split(","):
    sys.modules[name] = types.ModuleType(name)
    sys.modules[name].__getattr__ = stub
torch.cuda.is_available = lambda: True
sys.argv = sys.argv[2:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


# ----------------------------------------------------------------------------- G-VBSM and EDC
SMALL_BRANCHES = [("Branch_CIFAR_10", "gvbsm_cifar10_train_FKD.diff"),
                  ("Branch_CIFAR_100", "gvbsm_cifar100_train_FKD.diff"),
                  ("Branch_Tiny_ImageNet", "gvbsm_tiny_imagenet_train_FKD.diff")]


def run_small_branch(root, branch, diff, mix_type, upstream, toy_folder, tmp_path, monkeypatch, workers=0):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", toy_val(toy_folder))
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", toy_val(toy_folder))

    # G-VBSM's student networks (baseline.py, which needs kornia and scipy): the probe instead
    seen = upstream.record.seen
    monkeypatch.setitem(sys.modules, "baseline", _stub("baseline", get_network=lambda *a, **k: Probe(seen)))

    def main(module):
        if hasattr(module, "get_tinyimagenet_dataloaders"):  # Tiny-ImageNet's validation loader
            val = torch.utils.data.DataLoader(toy_val(toy_folder)(transform=torchvision.transforms.Compose([
                torchvision.transforms.Resize(64), torchvision.transforms.ToTensor()])), batch_size=8)
            module.get_tinyimagenet_dataloaders = lambda **k: (None, val)
        module.main()

    argv = ["--train-dir", str(toy_folder), "--val-dir", str(tmp_path / "val"), "--output-dir", str(tmp_path / "out"),
            "--batch-size", "8", "--epochs", "2", "--mix-type", mix_type, "--workers", str(workers), "--model",
            "ConvNetProbe"]
    run = upstream(root, branch, diff, "train/train_FKD.py", argv, main)
    check_labels_are_the_projectors_on_the_loops_mixed_images(run, lambda b: b[1], mix_type)
    return run.shim


@needs("HELLO_LABELS_GVBSM_CHECKOUT")
@pytest.mark.parametrize("mix_type", ["cutmix", "mixup"])
@pytest.mark.parametrize("branch, diff", SMALL_BRANCHES)
def test_gvbsm_branch_trains_on_projector_labels(branch, diff, mix_type, upstream, toy_folder, tmp_path,
                                                 monkeypatch, caplog):
    root = checkout("HELLO_LABELS_GVBSM_CHECKOUT")
    run_small_branch(root, branch, diff, mix_type, upstream, toy_folder, tmp_path, monkeypatch)
    assert "fresh random order per epoch" in caplog.text  # shuffle=False replayed the stored order: said so


@needs("HELLO_LABELS_GVBSM_CHECKOUT")
def test_gvbsm_reshuffled_loader_keeps_its_worker_processes(upstream, toy_folder, tmp_path, monkeypatch):
    """``--workers 2`` (G-VBSM's default is 4): the rebuilt loader loads in worker processes like the original."""
    root = checkout("HELLO_LABELS_GVBSM_CHECKOUT")
    shim = run_small_branch(root, "Branch_CIFAR_10", "gvbsm_cifar10_train_FKD.diff", "cutmix", upstream, toy_folder,
                            tmp_path, monkeypatch, workers=2)
    assert shim.loader.num_workers == 2 and type(shim.loader.sampler).__name__ == "EpochShuffle"


@needs("HELLO_LABELS_EDC_CHECKOUT")
@pytest.mark.parametrize("mix_type", ["cutmix", "mixup"])
@pytest.mark.parametrize("branch, diff", SMALL_BRANCHES)
def test_edc_branch_trains_on_projector_labels(branch, diff, mix_type, upstream, toy_folder, tmp_path, monkeypatch):
    root = checkout("HELLO_LABELS_EDC_CHECKOUT")  # EDC's CIFAR / Tiny-ImageNet scripts are G-VBSM's: same diffs
    run_small_branch(root, branch, diff, mix_type, upstream, toy_folder, tmp_path, monkeypatch)


@pytest.mark.parametrize("variable", [pytest.param(v, marks=needs(v))
                                      for v in ("HELLO_LABELS_GVBSM_CHECKOUT", "HELLO_LABELS_EDC_CHECKOUT")])
def test_gvbsm_reads_export_fkd_files_as_its_own(variable, upstream, projector_dir, toy_folder, tmp_path,
                                                 monkeypatch):
    """The unpatched script with ``--fkd-path``: G-VBSM's own reader (7-element files, ``shuffle=False``, the stored
    image indices) over ``export_fkd(..., gvbsm_index=True)``. CutMix only: with Mixup G-VBSM's reader hands its loop
    one ``lam`` per sample, which its ``mixup`` cannot broadcast, whoever wrote the files."""
    from hello_labels import LabelProjector
    from hello_labels.labels.export import export_fkd

    root = checkout(variable)
    fkd = tmp_path / "FKD_cutmix"
    export_fkd(LabelProjector.from_pretrained(projector_dir), toy_folder, fkd, epochs=2, batch_size=8,
               mix_type="cutmix", input_size=32, gvbsm_index=True, progress=False)
    consumed = []

    class RecordingLoader(torch.utils.data.DataLoader):
        def __iter__(self):
            for batch in super().__iter__():
                consumed.append(batch)
                yield batch

    monkeypatch.setattr(torch.utils.data, "DataLoader", RecordingLoader)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", toy_val(toy_folder))
    seen = upstream.record.seen
    monkeypatch.setitem(sys.modules, "baseline", _stub("baseline", get_network=lambda *a, **k: Probe(seen)))
    argv = ["--train-dir", str(toy_folder), "--val-dir", str(tmp_path / "val"), "--output-dir", str(tmp_path / "out"),
            "--batch-size", "8", "--epochs", "2", "--mix-type", "cutmix", "--workers", "0", "--model", "ConvNetProbe",
            "--fkd-path", str(fkd)]
    mixed = upstream(root, "Branch_CIFAR_10", None, "train/train_FKD.py", argv, lambda m: m.main()).mixed
    training = [b for b in consumed if len(b) == 8]  # G-VBSM's 8 fields; validation batches have 2
    assert len(training) == len(mixed) == len(seen) == 10
    targets = torchvision.datasets.ImageFolder(str(toy_folder)).targets
    for k, batch in enumerate(training):
        stored = torch.load(fkd / f"epoch_{k // 5}" / f"batch_{k % 5}.tar")
        assert torch.equal(batch[7], stored[5])  # the soft labels the loop consumed are the exported ones
        assert batch[1].tolist() == [targets[i] for i in stored[6].tolist()]  # on the images they were made for
        assert len(set(batch[1].tolist())) > 1


def rank_run(record):
    """A DDP worker's :class:`Record`, as :func:`ddp_ranks.check_labels_only_its_rows` reads it."""
    taken = [(k, (rows.start, rows.stop), labels, calls) for k, rows, labels, calls in record.taken]
    run = {"mixed": record.mixed, "fed": record.seen, "taken": taken}
    return ddp_ranks.with_reference(run, record.shim.projector, record.labelled)


def run_ddp_workers(module, tmp_path, record, world):
    """``main()`` spawns one ``main_worker`` per GPU; here ``world`` workers on gloo (one: in this process, more:
    forked), the student in CPU DDP; returns each worker's :func:`rank_run`."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    args = module.get_args()
    args.dist_url, args.world_size, args.distributed = f"file://{tmp_path / 'rendezvous'}", world, True
    module.DDP = lambda model, *a, **k: DistributedDataParallel(model)  # no device_ids on the CPU

    def worker(rank):
        try:
            module.main_worker(rank, world, args)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
        return rank_run(record)

    return [worker(0)] if world == 1 else ddp_ranks.in_processes(worker, world, tmp_path)


DDP_SCRIPTS = [("HELLO_LABELS_GVBSM_CHECKOUT", "Branch_full_ImageNet_1k", "gvbsm_imagenet1k_train_FKD_parallel.diff",
                4),
               ("HELLO_LABELS_EDC_CHECKOUT", "Branch_full_ImageNet_1k", "edc_imagenet1k_train_FKD_parallel.diff", 5),
               ("HELLO_LABELS_EDC_CHECKOUT", "Branch_ImageNet_10", "edc_imagenet10_train_FKD_parallel.diff", 5)]


def ddp_argv(toy_folder, tmp_path, *extra):
    # made here: the scripts' own `if not exists: makedirs` runs in both ranks at once and races (FileExistsError)
    (tmp_path / "out").mkdir(exist_ok=True)
    return ["--train-dir", str(toy_folder), "--val-dir", str(toy_folder), "--output-dir", str(tmp_path / "out"),
            "--epochs", "2", "--workers", "0", "--model", "hl_probe", "--dist-backend", "gloo", "--gpu-id", "", *extra]


@pytest.mark.parametrize("mix_type", ["cutmix", "mixup"])
@pytest.mark.parametrize("variable, branch, diff, fields", [pytest.param(*p, marks=needs(p[0])) for p in DDP_SCRIPTS])
def test_ddp_script_worker_trains_on_projector_labels(variable, branch, diff, fields, mix_type, upstream, toy_folder,
                                                      tmp_path):
    root = checkout(variable)
    argv = ddp_argv(toy_folder, tmp_path, "--batch-size", "8", "--mix-type", mix_type)
    runs = []
    record = upstream(root, branch, diff, "train/train_FKD_parallel.py", argv,
                      lambda m: runs.extend(run_ddp_workers(m, tmp_path, upstream.record, world=1)))
    assert all(len(b) == fields + 4 for b in record.batches)  # batch_data[:fields], batch_data[fields:]
    assert all(len(set(b[1].tolist())) > 1 for b in record.batches), "a batch held one class"
    last = (0, 4) if diff.startswith("gvbsm") else (0, 8)  # G-VBSM trains on half a last batch: its `// 2`
    ddp_ranks.check_labels_only_its_rows(runs[0], ([[(0, 8)]] * 4 + [[last]]) * 2)  # each slice taken, labelled


@pytest.mark.torchrun
@pytest.mark.parametrize("variable, branch, diff, fields", [pytest.param(*p, marks=needs(p[0])) for p in DDP_SCRIPTS])
def test_each_ddp_rank_labels_only_the_rows_it_trains_on(variable, branch, diff, fields, upstream, toy_folder,
                                                         tmp_path):
    """Two gloo processes, batch size 12, two accumulation steps (40 images: batches of 12, 12, 12, 4): each process
    runs the projector on its half of each batch only, in the loop's own slices, and trains on projector(its rows
    of the mixed batch)."""
    root = checkout(variable)
    argv = ddp_argv(toy_folder, tmp_path, "--batch-size", "12", "--gradient-accumulation-steps", "2", "--mix-type",
                    "cutmix")
    runs = []
    upstream(root, branch, diff, "train/train_FKD_parallel.py", argv,
             lambda m: runs.extend(run_ddp_workers(m, tmp_path, upstream.record, world=2)))
    full, last = [[(0, 3), (6, 9)], [(3, 6), (9, 12)]], [[(0, 2)], [(2, 4)]]  # small_bs 3; the last batch split
    for rank, run in enumerate(runs):
        ddp_ranks.check_labels_only_its_rows(run, ([full[rank]] * 3 + [last[rank]]) * 2)
    assert all(torch.equal(a, b) for a, b in zip(runs[0]["mixed"], runs[1]["mixed"], strict=True))  # one batch
