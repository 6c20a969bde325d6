"""SRe2L's sampler order, computed epoch by epoch: identical to SRe2L's loop, without holding every epoch."""
import tracemalloc
from pathlib import Path

import torch
from torch.utils.data import BatchSampler, RandomSampler

from hello_labels.labels.fkd import LabelDir, SamplerOrder, sampler_batches


def _sre2l_batches(num_images, batch_size, epochs, seed=42):
    """SRe2L's relabel loop: one DataLoader over a RandomSampler with one seeded generator, iterated per epoch."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    batches = BatchSampler(RandomSampler(range(num_images), generator=generator), batch_size, drop_last=False)
    return [[list(b) for b in batches] for _ in range(epochs)]


def test_any_epoch_in_any_order_is_sre2ls():
    expected = _sre2l_batches(23, 5, 9, seed=7)
    order = SamplerOrder(23, 5, seed=7)
    assert order.batches_per_epoch == 5
    for epoch in [3, 0, 5, 5, 2, 8, 1, 8, 0]:  # forwards, backwards, repeated
        assert order.batches(epoch) == expected[epoch]
        assert [order.batch(epoch, b) for b in range(5)] == expected[epoch]
    assert SamplerOrder(23, 5, seed=7).batch(8, 4) == expected[8][4]  # straight to a late epoch
    assert sampler_batches(23, 5, 9, seed=7) == expected


def test_replaying_a_late_epoch_does_not_hold_every_epoch():
    """5,000 images x 100 epochs as Python lists would be ~18 MB; one epoch at a time stays well under 2 MB."""
    info = LabelDir(Path("unused"), 100, 50, 100, 5_000, 10, torch.float16, seed=3)
    tracemalloc.start()
    try:
        last = info.image_order(99, 49)
        first = info.image_order(0, 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2 ** 20, f"{peak / 2 ** 20:.1f} MiB"
    expected = _sre2l_batches(5_000, 100, 100, seed=3)
    assert last == expected[99][49] and first == expected[0][0]
