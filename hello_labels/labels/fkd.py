"""SRe2L-format soft-label directories (shared by CDA, LPLD and, with a seventh element, G-VBSM).

Layout ``<fkd_path>/epoch_<e>/batch_<b>.tar``; each file is a ``torch.save``d list
``[coords [B, 4] float32, flip_status [B] bool, mix_index [B] int64 | None, mix_lam float | None,
mix_bbox [x1, y1, x2, y2] ints | None, soft_label [B, C] fp16/fp32]`` (+ G-VBSM's ``index``). SRe2L's own
files hold numpy integers in ``mix_bbox`` (read here with those types allow-listed); ours hold Python ints.
Image order: batches of a ``RandomSampler`` with one generator seeded ``fkd_seed`` (42) over the ImageFolder
(sorted by class), epoch ``e`` using the generator's ``e``-th permutation, batch size fixed for all epochs.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from ..constants import FKD_SEED
from ..errors import BadInputError, CorruptFileError, first_line
from ..files import atomic_torch_save

# float32 rounding of SRe2L's i/H + h/H can pass 1 by an ulp; a crop beyond this reaches outside the image
COORDS_SLACK = 1e-4
_BATCH_RE = re.compile(r"^batch_(\d+)\.tar$")
_EPOCH_RE = re.compile(r"^epoch_(\d+)$")
# Only the numpy scalar types these files contain are allowed through weights_only unpickling. Files written
# under numpy 1.x name the scalar constructor numpy.core.multiarray.scalar, under numpy 2 numpy._core...
_SCALAR = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
_DTYPES = [getattr(np.dtypes, f"{kind}{bits}DType") for kind in ("Int", "UInt") for bits in (8, 16, 32, 64)
           ] + [np.dtypes.Float32DType, np.dtypes.Float64DType] if hasattr(np, "dtypes") else []
SAFE_GLOBALS = [_SCALAR, (_SCALAR, "numpy.core.multiarray.scalar"), (_SCALAR, "numpy._core.multiarray.scalar"),
                np.dtype, *_DTYPES]


@dataclass
class FKDBatch:
    """One batch file's content. ``index`` is G-VBSM's optional seventh element."""

    coords: torch.Tensor
    flip: torch.Tensor
    mix_index: Optional[torch.Tensor]
    mix_lam: Optional[float]
    mix_bbox: Optional[list]
    soft_label: torch.Tensor
    index: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return int(self.soft_label.shape[0])

    def to_list(self) -> list:
        items = [self.coords, self.flip, self.mix_index, self.mix_lam, self.mix_bbox, self.soft_label]
        return items + ([self.index] if self.index is not None else [])


def load_batch(path) -> FKDBatch:
    """Read and validate one batch file (``torch.load(weights_only=True)``, numpy scalars allow-listed)."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            items = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise CorruptFileError(f"label file missing: {path}") from err
    except Exception as err:
        raise CorruptFileError(f"label file {path} is truncated or not an SRe2L batch file "
                               f"({first_line(err, 160)})") from err
    if not isinstance(items, (list, tuple)) or len(items) not in (6, 7):
        raise CorruptFileError(f"label file {path}: expected a list of 6 (SRe2L) or 7 (G-VBSM) elements")
    batch = FKDBatch(*items)
    _validate(batch, path)
    return batch


def _validate(b: FKDBatch, path) -> None:
    """Shapes, and values that would make a label silently wrong or fail deep in training: crops inside the image,
    mix indices inside the batch, a mixing weight in [0, 1], a box with x1 <= x2 and y1 <= y2, finite labels."""
    def bad(what):
        raise CorruptFileError(f"label file {path}: {what}")

    if not (isinstance(b.soft_label, torch.Tensor) and b.soft_label.ndim == 2 and b.soft_label.is_floating_point()):
        bad("soft_label must be a float tensor [B, C]")
    n = b.soft_label.shape[0]
    if not (isinstance(b.coords, torch.Tensor) and tuple(b.coords.shape) == (n, 4) and b.coords.is_floating_point()):
        bad(f"coords must be a [{n}, 4] float tensor")
    if not (isinstance(b.flip, torch.Tensor) and tuple(b.flip.shape) == (n,)):
        bad(f"flip_status must be a [{n}] tensor")
    top, left, height, width = b.coords.double().unbind(1)
    inside = ((top >= 0) & (left >= 0) & (height > 0) & (width > 0) & (top + height <= 1 + COORDS_SLACK)
              & (left + width <= 1 + COORDS_SLACK))  # False for NaN too
    if not inside.all():
        row = int((~inside).nonzero()[0])
        bad(f"coords[{row}] = {[round(v, 6) for v in b.coords[row].tolist()]} is not a crop inside the image "
            f"(SRe2L's coords: top, left, height, width as fractions of it, with top + height <= 1 and "
            f"left + width <= 1)")
    if b.mix_index is not None:
        if not (isinstance(b.mix_index, torch.Tensor) and tuple(b.mix_index.shape) == (n,)
                and not b.mix_index.is_floating_point() and b.mix_index.dtype != torch.bool):
            bad(f"mix_index must be a [{n}] integer tensor or None")
        outside = (b.mix_index < 0) | (b.mix_index >= n)
        if outside.any():
            row = int(outside.nonzero()[0])
            bad(f"mix_index[{row}] = {int(b.mix_index[row])} is not a position 0..{n - 1} in the batch")
        if b.mix_lam is None:
            bad("mix_index given without mix_lam")
    if b.mix_lam is not None and not (isinstance(b.mix_lam, (float, int, np.integer, np.floating))
                                      and 0 <= b.mix_lam <= 1):
        bad(f"mix_lam = {b.mix_lam!r} is not a mixing weight in [0, 1]")  # NaN fails the comparison too
    if b.mix_bbox is not None:
        if b.mix_index is None:
            bad("mix_bbox given without mix_index")
        if not (isinstance(b.mix_bbox, (list, tuple)) and len(b.mix_bbox) == 4
                and all(isinstance(v, (int, np.integer)) for v in b.mix_bbox)):
            bad(f"mix_bbox = {b.mix_bbox!r} must be [x1, y1, x2, y2] integers or None")
        x1, y1, x2, y2 = (int(v) for v in b.mix_bbox)
        if not (0 <= x1 <= x2 and 0 <= y1 <= y2):
            bad(f"mix_bbox = {[x1, y1, x2, y2]} is not a box (SRe2L's: [x1, y1, x2, y2] pixels with 0 <= x1 <= x2 "
                f"and 0 <= y1 <= y2)")
    if b.index is not None and not (isinstance(b.index, torch.Tensor) and b.index.numel() == n):
        bad(f"index must hold {n} image indices")
    check_finite(b.soft_label, f"label file {path}: soft_label")


def check_finite(labels: torch.Tensor, what: str) -> None:
    """Refuse stored soft labels holding NaN or inf (:class:`CorruptFileError` naming ``what`` and the first
    row): they train nothing and evaluate as a KL of nan. Every reader of stored labels calls it.

    The smallest and largest value (NaN propagates into both) take one pass: on a [1024, 1000] batch, one CPU
    thread, 12x (fp32) to 16x (fp16) faster than ``isfinite(labels).all()``, which only a refused file pays."""
    if labels.numel() == 0 or torch.isfinite(torch.stack(torch.aminmax(labels))).all():
        return
    finite = torch.isfinite(labels).all(1)
    if not finite.all():
        row = int((~finite).nonzero()[0])
        bad = labels[row][~torch.isfinite(labels[row])]
        raise CorruptFileError(f"{what} holds NaN or infinite values ({int((~finite).sum())} of {len(labels)} "
                               f"rows; row {row} has {float(bad[0])})")


def save_batch(path, batch: FKDBatch, fp16: bool = False, tmp_dir=None) -> None:
    """Write one batch file atomically, in SRe2L's list layout; the archive inside is named ``batch_<b>`` as
    SRe2L's ``torch.save(obj, 'batch_<b>.tar')`` names it. ``tmp_dir``: where the temporary lives (keep it out
    of ``epoch_<e>``, whose every entry SRe2L's reader counts).

    ``mix_bbox`` and ``mix_lam`` are written as Python ``int``/``float`` (SRe2L writes numpy scalars): SRe2L only
    slices with them, and its plain ``torch.load`` then reads the file under torch >= 2.6's ``weights_only=True``
    default."""
    fields = dict(batch.__dict__)
    if fields["mix_bbox"] is not None:
        fields["mix_bbox"] = [int(v) for v in fields["mix_bbox"]]
    if fields["mix_lam"] is not None:
        fields["mix_lam"] = float(fields["mix_lam"])
    if fp16:
        fields["soft_label"] = fields["soft_label"].half()
    atomic_torch_save(FKDBatch(**fields).to_list(), path, tmp_dir=tmp_dir)


class SamplerOrder:
    """SRe2L's image order, one epoch at a time: epoch ``e`` is the ``e``-th pass of one ``RandomSampler`` whose
    generator is seeded ``seed`` once and runs on across epochs, cut into batches of ``batch_size`` (the last
    one smaller).

    Epoch ``e`` is computed on demand by resuming the generator from its saved state at the start of ``e``
    (5 KB of ``bytes`` per epoch reached so far, see :meth:`_save`) and running the very ``RandomSampler`` SRe2L
    runs, so the order is SRe2L's whatever torch's sampler does; only the last epoch's order ``[N]`` is kept.
    Epochs on the way are skipped without building their order (the sampler's ``randperm`` draws alone, see
    :meth:`_skip`): reaching epoch 299 of 50,000 images costs 600 ``randperm`` calls, not 15 million Python
    integers.
    """

    def __init__(self, num_images: int, batch_size: int, seed: int = FKD_SEED):
        if num_images <= 0 or batch_size <= 0:
            raise BadInputError(f"sampler order needs images and a positive batch size; got {num_images} "
                                f"images, batch size {batch_size}")
        self.num_images, self.batch_size, self.seed = num_images, batch_size, seed
        self.batches_per_epoch = -(-num_images // batch_size)
        self._states = [self._save(torch.Generator().manual_seed(seed))]  # generator state at the start of epoch e
        self._last: tuple = (-1, None)
        self._draws_known: Optional[bool] = None  # whether _skip's draws leave the generator where a pass does

    @staticmethod
    def _save(generator: torch.Generator) -> bytes:
        """``generator``'s state as ``bytes``: a kept state tensor per epoch, allocated between the sampler's
        ``randperm`` buffers, pinned those heap pages (about 13 MB more RSS at 300 epochs of 10,000 images)."""
        return generator.get_state().numpy().tobytes()

    def _pass(self, generator: torch.Generator) -> torch.Tensor:
        """One epoch's order, drawn by ``RandomSampler`` as SRe2L's DataLoader draws it (a full pass)."""
        sampler = torch.utils.data.RandomSampler(range(self.num_images), generator=generator)
        return torch.tensor(list(sampler), dtype=torch.int64)

    def _skip(self, generator: torch.Generator) -> None:
        """Advance ``generator`` by one epoch without building its order: ``RandomSampler``'s draws of a pass
        (``randperm(n)`` for the order, then one more whose slice to ``n % n == 0`` elements it discards). Checked
        once against a real pass; if torch's sampler draws otherwise, every epoch is a real pass."""
        if self._draws_known is None:
            start = generator.get_state()
            self._pass(generator)
            passed = generator.get_state()
            generator.set_state(start)
            for _ in range(2):
                torch.randperm(self.num_images, generator=generator)
            self._draws_known = bool(torch.equal(generator.get_state(), passed))
            generator.set_state(passed)
        elif self._draws_known:
            for _ in range(2):
                torch.randperm(self.num_images, generator=generator)
        else:
            self._pass(generator)

    def epoch(self, epoch: int) -> torch.Tensor:
        """Image indices ``[N]`` int64 of ``epoch`` in sampler order."""
        if epoch < 0:
            raise BadInputError(f"epoch must be >= 0, got {epoch}")
        if self._last[0] == epoch:
            return self._last[1]
        start = min(epoch, len(self._states) - 1)
        generator = torch.Generator()
        generator.set_state(torch.frombuffer(bytearray(self._states[start]), dtype=torch.uint8))
        for e in range(start, epoch):
            self._skip(generator)
            if e + 1 == len(self._states):
                self._states.append(self._save(generator))
        order = self._pass(generator)
        if epoch + 1 == len(self._states):
            self._states.append(self._save(generator))
        self._last = (epoch, order)
        return order

    def batch(self, epoch: int, batch: int) -> List[int]:
        """Image indices of batch ``batch`` of ``epoch``."""
        if not 0 <= batch < self.batches_per_epoch:
            raise BadInputError(f"batch {batch} out of range: an epoch has {self.batches_per_epoch} batches")
        return self.epoch(epoch)[batch * self.batch_size:(batch + 1) * self.batch_size].tolist()

    def batches(self, epoch: int) -> List[List[int]]:
        """Every batch of ``epoch``."""
        return [chunk.tolist() for chunk in self.epoch(epoch).split(self.batch_size)]


@lru_cache(maxsize=8)
def sampler_order(num_images: int, batch_size: int, seed: int = FKD_SEED) -> SamplerOrder:
    """The shared :class:`SamplerOrder` of a label directory's settings (a few KB per epoch reached)."""
    return SamplerOrder(num_images, batch_size, seed)


def sampler_batches(num_images: int, batch_size: int, epochs: int, seed: int = FKD_SEED) -> List[List[List[int]]]:
    """Image indices of every batch of every epoch, as SRe2L's seeded ``RandomSampler`` yields them.

    Materialises all epochs (at ImageNet scale, hundreds of MB): use :func:`sampler_order` to go epoch by epoch.
    """
    order = SamplerOrder(num_images, batch_size, seed)
    return [order.batches(e) for e in range(epochs)]


def batch_path(fkd_path, epoch: int, batch: int) -> Path:
    return Path(fkd_path) / f"epoch_{epoch}" / f"batch_{batch}.tar"


@dataclass(frozen=True)
class FileSizes:
    """The batch files in use, each stat-ed once by :meth:`LabelDir.scan`: how many, their bytes, the filesystem
    blocks they take (bytes, as ``du``; None where ``stat`` has no ``st_blocks``) and a digest of their sizes in
    epoch, batch order (``sha256(str([size, ...]))``, built as it goes: no list of every file is kept)."""

    files: int
    bytes: int
    allocated: Optional[int]
    digest: str


class _SizeCounter:
    """Accumulates :class:`FileSizes` one ``stat`` result at a time."""

    def __init__(self):
        self.files = self.bytes = self.allocated = 0
        self.has_blocks = True
        self.hash = hashlib.sha256(b"[")

    def add(self, st: os.stat_result) -> None:
        self.hash.update(f"{', ' if self.files else ''}{st.st_size}".encode())
        self.files, self.bytes = self.files + 1, self.bytes + st.st_size
        self.has_blocks = self.has_blocks and hasattr(st, "st_blocks")
        self.allocated += getattr(st, "st_blocks", 0) * 512

    def result(self) -> FileSizes:
        self.hash.update(b"]")
        return FileSizes(self.files, self.bytes, self.allocated if self.has_blocks else None,
                         self.hash.hexdigest()[:16])


def _batch_numbers(folder: Path) -> List[int]:
    return sorted(int(m.group(1)) for m in map(_BATCH_RE.match, os.listdir(folder)) if m)


@dataclass
class LabelDir:
    """A scanned, complete label directory. ``sizes``: its files' sizes as :meth:`scan` found them (None: stat-ed
    when first needed)."""

    path: Path
    epochs: int
    batches_per_epoch: int
    batch_size: int
    num_images: int
    num_classes: int
    dtype: torch.dtype
    seed: int = FKD_SEED
    sizes: Optional[FileSizes] = field(default=None, repr=False, compare=False)
    _fingerprint: Optional[dict] = field(default=None, init=False, repr=False, compare=False)

    @property
    def total_files(self) -> int:
        """Batch files in use: ``epochs`` × ``batches_per_epoch``."""
        return self.epochs * self.batches_per_epoch

    @classmethod
    def scan(cls, path, epochs: Optional[int] = None, seed: int = FKD_SEED) -> "LabelDir":
        """Check layout and completeness; ``epochs`` uses only the first ``epochs`` (complete) epochs.

        A partial directory is reported with what is missing, never half-used. Each epoch folder is listed and
        each batch file in use stat-ed once, one epoch at a time (their sizes kept as :class:`FileSizes`).
        """
        path = Path(path)
        if not path.is_dir():
            raise BadInputError(f"label directory not found: {path}")
        found = sorted(int(m.group(1)) for m in map(_EPOCH_RE.match, os.listdir(path)) if m)
        if not found:
            raise BadInputError(f"{path} holds no epoch_<e> folders: not an SRe2L label directory")
        if found != list(range(len(found))):
            missing = sorted(set(range(found[-1] + 1)) - set(found))
            raise CorruptFileError(f"label directory {path} is incomplete: epochs {missing[:5]} missing")
        use = len(found) if epochs is None else epochs
        if use > len(found):
            raise BadInputError(f"{path} holds {len(found)} epochs, fewer than the {use} asked for")
        count, sizes = None, _SizeCounter()
        for e in range(use):
            batches = _batch_numbers(path / f"epoch_{e}")
            count = len(batches) if count is None else count
            for b in batches:  # an empty file would only fail when training reaches it
                st = batch_path(path, e, b).stat()
                if st.st_size == 0:
                    raise CorruptFileError(f"label file {batch_path(path, e, b)} is empty (0 bytes): regenerate it")
                sizes.add(st)
            if batches != list(range(count)):
                expected = set(range(max(count, len(batches))))
                missing = sorted(expected - set(batches))
                raise CorruptFileError(
                    f"label directory {path} is incomplete: epoch_{e} has {len(batches)} of "
                    f"{max(count, len(batches))} batch files (missing batch_{missing[0] if missing else '?'}.tar); "
                    f"regenerate it or use only the complete epochs (epochs={e})")
        if not count:
            raise CorruptFileError(f"label directory {path}: epoch_0 holds no batch files")
        first, last = load_batch(batch_path(path, 0, 0)), load_batch(batch_path(path, 0, count - 1))
        info = cls(path=path, epochs=use, batches_per_epoch=count, batch_size=len(first),
                   num_images=len(first) * (count - 1) + len(last), num_classes=first.soft_label.shape[1],
                   dtype=first.soft_label.dtype, seed=seed, sizes=sizes.result())
        return info

    def image_batches(self) -> List[List[List[int]]]:
        """Image indices of every batch file of every epoch (all of them in memory: prefer :meth:`image_order`)."""
        return sampler_batches(self.num_images, self.batch_size, self.epochs, self.seed)

    def image_order(self, epoch: int, batch: int) -> List[int]:
        """Image indices of one batch file (its epoch's order computed on demand, see :class:`SamplerOrder`)."""
        return sampler_order(self.num_images, self.batch_size, self.seed).batch(epoch, batch)

    def load(self, epoch: int, batch: int) -> FKDBatch:
        """Load one batch and check it against the directory's batch size, classes and image order."""
        path = batch_path(self.path, epoch, batch)
        b = load_batch(path)
        expected = self.image_order(epoch, batch)
        if len(b) != len(expected):
            raise CorruptFileError(f"label file {path} holds {len(b)} labels; the sampler order expects "
                                   f"{len(expected)}")
        if b.soft_label.shape[1] != self.num_classes:
            raise CorruptFileError(f"label file {path} has {b.soft_label.shape[1]} classes, epoch_0 has "
                                   f"{self.num_classes}")
        if b.index is not None and b.index.flatten().tolist() != expected:
            raise CorruptFileError(f"label file {path}: its image indices disagree with the seed-{self.seed} "
                                   "sampler order")
        return b

    def file_sizes(self) -> FileSizes:
        """The batch files' sizes: as :meth:`scan` stat-ed them, else stat-ed now (once)."""
        if self.sizes is None:
            counter = _SizeCounter()
            for e in range(self.epochs):
                for b in range(self.batches_per_epoch):
                    counter.add(batch_path(self.path, e, b).stat())
            self.sizes = counter.result()
        return self.sizes

    def fingerprint(self) -> dict:
        """File names and sizes of the epochs in use, and a hash of the first file (regenerated labels differ
        there); hashing every file would read gigabytes. Computed once per instance."""
        if self._fingerprint is None:
            sizes = self.file_sizes()
            first = hashlib.sha256(batch_path(self.path, 0, 0).read_bytes()).hexdigest()[:16]
            self._fingerprint = {"files": sizes.files, "bytes": sizes.bytes, "sizes": sizes.digest,
                                 "first_file": first}
        return dict(self._fingerprint)

    def total_bytes(self) -> int:
        """Bytes of the batch files in use."""
        return self.file_sizes().bytes
