"""Label directories at their real size: each batch file stat-ed once per process, a late epoch's order reached
without building every epoch before it (benchmarks/scale.py measures the full-size run, docs/scale.md)."""
import hashlib
import os

import pytest
import torch
from torch.utils.data import BatchSampler, RandomSampler

from hello_labels.labels.fkd import LabelDir, SamplerOrder
from hello_labels.storage import scan_label_dir

EPOCHS, BATCHES = 40, 3


@pytest.fixture(scope="module")
def many_epochs(tmp_path_factory):
    """40 epochs x 3 batch files (2 images each, the last 1) of SRe2L's list, as its relabel step saves them."""
    root = tmp_path_factory.mktemp("labels")
    for e in range(EPOCHS):
        (root / f"epoch_{e}").mkdir()
        for b in range(BATCHES):
            n = 1 if b == BATCHES - 1 else 2
            items = [torch.rand(n, 4) * 0.5, torch.zeros(n, dtype=torch.bool), torch.arange(n).flip(0), 0.5,
                     [0, 0, 4, 4], torch.randn(n, 3).half()]
            torch.save(items, root / f"epoch_{e}" / f"batch_{b}.tar")
    return root


@pytest.fixture
def label_stats(monkeypatch):
    """Counts ``os.stat`` calls on batch files (``Path.stat``, ``is_file`` and ``os.path.getsize`` go through it)."""
    calls = []
    real = os.stat

    def counting(path, *args, **kwargs):
        if str(path).endswith(".tar"):
            calls.append(str(path))
        return real(path, *args, **kwargs)
    monkeypatch.setattr(os, "stat", counting)
    return calls


def test_each_batch_file_is_stat_ed_once_and_the_fingerprint_is_the_same(many_epochs, label_stats):
    info = LabelDir.scan(many_epochs)
    fingerprint = info.fingerprint()
    assert info.fingerprint() == fingerprint and info.total_bytes() == fingerprint["bytes"]
    assert len(label_stats) == EPOCHS * BATCHES  # convert and eval ask for the fingerprint again: no new pass
    sizes = [(many_epochs / f"epoch_{e}" / f"batch_{b}.tar").stat().st_size for e in range(EPOCHS)
             for b in range(BATCHES)]
    first = hashlib.sha256((many_epochs / "epoch_0" / "batch_0.tar").read_bytes()).hexdigest()[:16]
    # as recorded by earlier runs (their resume checks compare it): sizes hashed as str(list) in file order
    assert fingerprint == {"files": len(sizes), "bytes": sum(sizes),
                           "sizes": hashlib.sha256(str(sizes).encode()).hexdigest()[:16], "first_file": first}
    assert LabelDir.scan(many_epochs, epochs=7).fingerprint()["files"] == 7 * BATCHES


def test_storage_measures_a_directory_with_one_stat_per_batch_file(many_epochs, label_stats):
    setting, disk = scan_label_dir(many_epochs)
    assert len(label_stats) == EPOCHS * BATCHES
    assert setting.epochs == EPOCHS and disk.bytes == LabelDir.scan(many_epochs).total_bytes()
    assert disk.allocated >= disk.bytes


def _sampler_batches(num_images, batch_size, epochs, seed):
    generator = torch.Generator().manual_seed(seed)
    batches = BatchSampler(RandomSampler(range(num_images), generator=generator), batch_size, drop_last=False)
    return [[list(b) for b in batches] for _ in range(epochs)]


@pytest.fixture
def sampler_passes(monkeypatch):
    """Counts full passes of ``RandomSampler`` (each builds one epoch's order as Python integers)."""
    passes = []
    real = RandomSampler.__iter__

    def counting(self):
        passes.append(1)
        return real(self)
    monkeypatch.setattr(RandomSampler, "__iter__", counting)
    return passes


def test_a_late_epoch_is_reached_without_building_the_epochs_before_it(sampler_passes):
    expected = _sampler_batches(50, 8, 61, seed=5)
    sampler_passes.clear()
    order = SamplerOrder(50, 8, seed=5)
    assert order.batches(60) == expected[60]
    assert len(sampler_passes) <= 2  # the epoch itself, and one pass checking that skipping draws as a pass does
    assert order.batches(30) == expected[30]  # back to an earlier one: from its saved state, one pass
    assert len(sampler_passes) <= 3


def test_a_sampler_that_draws_otherwise_is_followed_pass_by_pass(monkeypatch):
    """If torch's RandomSampler ever draws differently, skipping falls back to real passes: still its order."""
    def extra_draw(self):
        torch.rand(3, generator=self.generator)  # a draw the skip does not make
        yield from torch.randperm(len(self.data_source), generator=self.generator).tolist()
    monkeypatch.setattr(RandomSampler, "__iter__", extra_draw)
    assert SamplerOrder(23, 5, seed=7).batches(9) == _sampler_batches(23, 5, 10, seed=7)[9]


def test_the_saved_generator_states_are_bytes_not_tensors():
    """One state per epoch reached is kept; as tensors, allocated between the sampler's randperm buffers, they
    pinned those heap pages (RSS grew with epochs x images); as bytes they hold 5 KB each and nothing else."""
    order = SamplerOrder(1000, 64, seed=3)
    order.epoch(40)
    assert len(order._states) == 42 and all(type(state) is bytes for state in order._states)
    assert order.batches(12) == _sampler_batches(1000, 64, 13, seed=3)[12]  # restored from bytes: the same order
