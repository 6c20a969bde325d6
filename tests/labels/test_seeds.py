"""derive_seed: one stable way to derive seeds; streams of different seeds never coincide."""
import numpy as np
import pytest

from hello_labels.labels.export import _plans
from hello_labels.labels.fkd import sampler_order
from hello_labels.labels.settings import ExportConfig
from hello_labels.labels.views import stream_plans
from hello_labels.seeds import derive_seed


def test_derive_seed_is_a_stable_63_bit_hash_of_its_parts():
    seeds = {derive_seed(s, "crop", e, b) for s in range(3) for e in range(20) for b in range(20)}
    assert len(seeds) == 1200 and all(0 <= s < 2 ** 63 for s in seeds)
    assert derive_seed(0, "crop", 5) == derive_seed(np.int64(0), "crop", np.uint32(5))  # numpy ints are ints
    assert derive_seed(1, 23) != derive_seed(12, 3) and derive_seed("1") != derive_seed(1)
    with pytest.raises(TypeError):
        derive_seed(1.5)


def test_stream_of_seed_1_is_not_seed_0_shifted():
    """Linear seed formulas made seed 1's first epoch seed 0's 7,919th (and its crops seed 0's later ones)."""
    ahead = next(stream_plans(20, 20, seed=0, start_step=7919, num_steps=7920))
    first = next(stream_plans(20, 20, seed=1, start_step=0, num_steps=1))
    assert first.indices.tolist() != ahead.indices.tolist()
    later = {k[1] for p in stream_plans(20, 20, 0, 50_000, 50_010) for k in p.keys}
    assert not later & {k[1] for k in first.keys}
    assert next(stream_plans(20, 20, 0, 0, 1)).keys != first.keys


def test_no_two_exported_crops_share_a_seed():
    """SRe2L relabels in batches of 1,024: crop 257 of batch b and crop 0 of batch b + 31 must differ."""
    order = sampler_order(300 * 40, 300)
    files = [(e, b) for e in range(2) for b in range(order.batches_per_epoch)]
    plans = list(_plans(order, files, ExportConfig(seed=0, mix_type=None, input_size=32)))
    seeds = [key[1] for plan in plans for key in plan.keys]
    assert len(seeds) == len(set(seeds)) == 2 * 300 * 40
