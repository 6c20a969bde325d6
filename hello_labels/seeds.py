"""One way to derive a seed from several parts (seed, epoch, batch, step, index, ...), used by every layer."""
from __future__ import annotations

import hashlib
import operator
from typing import Union


def derive_seed(*parts: Union[int, str]) -> int:
    """A 63-bit seed (``0 <= s < 2**63``) that is a stable hash (BLAKE2b) of ``parts``.

    Parts are integers (Python or numpy) or short strings naming the stream (``"crop"``, ``"mix"``): two
    different tuples give unrelated seeds, unlike ``seed * K + epoch`` formulas, whose streams collide
    (seed 1 epoch 0 == seed 0 epoch K). The value is the same on every platform, Python and numpy version.
    """
    if not parts:
        raise ValueError("derive_seed needs at least one part")
    # repr of plain ints and strs is stable; numpy ints are made plain first (their repr changed in numpy 2)
    key = repr(tuple(p if isinstance(p, str) else int(operator.index(p)) for p in parts))
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") >> 1
