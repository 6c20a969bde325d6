"""A projector directory on disk, saved so that a kill at any instant leaves the old projector or the new one.

The layout is the one users and the Hub expect: ``config.json`` + ``adapter.safetensors`` + ``README.md``.
Three files cannot be replaced at once, so ``config.json`` is the single commit point: it records the sha256 of
the adapter file it was saved with (``adapter_sha256``). A save holds the folder's lock
(:class:`~hello_labels.runs.RunLock`: a second save or run into it meanwhile fails with ``FolderBusyError``) and

1. finishes a save that was killed after its commit (renames that save's staged adapter into place);
2. writes the new adapter as ``.adapter-<sha256>.safetensors`` (temporary file, fsync, rename);
3. removes run files that describe another adapter (below);
4. replaces ``config.json`` (temporary file, fsync, rename, fsync of the folder): **the commit**;
5. renames the staged adapter onto ``adapter.safetensors``;
6. replaces ``README.md`` and the card's ``fidelity.png`` (removed when the card has none), then removes what
   killed saves left behind (staged adapters, temporary files).

A reader (:func:`read_adapter`) takes the adapter that ``config.json`` names: the staged file while it exists,
else ``adapter.safetensors``, and checks its sha256. Before step 4 it gets the old pair, from step 4 on the new
one; a folder that mixes two saves is an error, never a silent mix. The model card is not read back: a kill
between steps 4 and 6 leaves the previous card beside the new projector until the next save.

The adapter file (:func:`adapter_file`: the tensors at the save's dtype, or quantized) is bound to the class
order it was fitted with: its safetensors metadata holds ``class_names_sha256`` (:func:`class_order_digest` of the
ordered names), and a reader given ``config.json``'s ``class_names`` refuses a mismatch (a hand-edited config.json
that re-orders or renames classes would permute or mislabel every output). Files saved before that key existed load
with an :class:`UnboundClassesWarning`. Adapter values are floats: an integer tensor is refused, except a quantized
file's codes (:mod:`.quantize`).

Run files: ``metrics.json`` and ``train_state.pt`` (written by ``distill`` beside its projector) describe the run
whose adapter ``train_state.pt`` holds. A save keeps them only when ``train_state.pt`` holds exactly the adapter
being saved (``distill``'s own final save, or a re-save of it); otherwise it removes them before its commit, so
they never sit beside a projector they do not describe. Other files in the folder are left alone.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

from ..errors import BadInputError, CorruptFileError
from ..files import atomic_path, atomic_write_json, atomic_write_text, fsync_dir, is_sha256, loads_json, not_a_file
from ..runs import WRITE_CHECK, RunLock
from .config import DTYPES
from .quantize import QUANTIZED, dequantize_adapter, quantizable, quantize_adapter, quantized_bytes

ADAPTER_FILE = "adapter.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
PLOT_FILE = "fidelity.png"  # the card's per-class fidelity plot
PUBLISHED = (CONFIG_FILE, ADAPTER_FILE, CARD_FILE, PLOT_FILE)  # what a push uploads: run files stay local
SHA_KEY = "adapter_sha256"  # in config.json: the sha256 of the adapter file it was committed with
CLASSES_KEY = "class_names_sha256"  # in the adapter's metadata: the class order it was fitted with
RUN_FILES = ("metrics.json", "train_state.pt")  # distill's; they describe the adapter in train_state.pt
_LEFTOVERS = (".adapter-*.safetensors", "..adapter-*.safetensors.*.tmp", f".{CONFIG_FILE}.*.tmp",
              f".{CARD_FILE}.*.tmp", f".{ADAPTER_FILE}.*.tmp",
              f".{PLOT_FILE}.*.tmp", f"{WRITE_CHECK}*.tmp")


def staged_name(sha256: str) -> str:
    """The name under which an adapter with this sha256 waits for its commit. ``sha256`` comes from a file, so
    anything but 64 hex digits is refused before it becomes a path (:class:`CorruptFileError`)."""
    if not is_sha256(sha256):
        raise CorruptFileError(f"{CONFIG_FILE}: '{SHA_KEY}' must be 64 hex digits, got {str(sha256)[:80]!r}")
    return f".adapter-{sha256}.safetensors"


class UnboundClassesWarning(UserWarning):
    """An adapter file saved before its class order was recorded was loaded: that order could not be checked."""


def class_order_digest(class_names: Sequence[str]) -> str:
    """sha256 of the ordered class names (JSON, UTF-8): what an adapter file records as ``class_names_sha256``."""
    text = json.dumps(list(class_names), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def adapter_blob(tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """``tensors`` serialised as a safetensors file (adapters are small: a few MB)."""
    from safetensors.torch import save

    return _sorted_metadata(save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata))


def adapter_file(tensors: Dict[str, torch.Tensor], class_names: Sequence[str], dtype: str) -> bytes:
    """``adapter.safetensors`` as a save at ``dtype`` writes it: ``tensors`` cast to ``dtype`` (or quantized, see
    :mod:`.quantize`), bound to the order of ``class_names`` (module docstring)."""
    if dtype in QUANTIZED:
        tensors, metadata = quantize_adapter(tensors, dtype)
    else:
        tensors, metadata = {k: v.to(DTYPES[dtype]) for k, v in tensors.items()}, {}
    bound = {CLASSES_KEY: class_order_digest(class_names)}
    return adapter_blob(tensors, metadata={"format": "pt", **bound, **metadata})


def tensor_bytes(tensors: Dict[str, torch.Tensor], dtype: str) -> int:
    """Bytes of the data of ``tensors`` in an adapter file at ``dtype``, without the file's header."""
    if dtype in QUANTIZED:
        return quantized_bytes(tensors, dtype)
    return sum(t.numel() for t in tensors.values()) * torch.empty(0, dtype=DTYPES[dtype]).element_size()


def save_projector(directory, config: dict, blob: bytes, card: str,
                   adapter: Optional[Dict[str, torch.Tensor]] = None, plot: Optional[bytes] = None) -> None:
    """Replace the projector in ``directory`` by ``config`` + adapter file ``blob`` + ``card`` (+ the card's
    ``plot``, PNG bytes; see the module docstring for the order of steps). ``adapter``: the tensors as trained
    (before any dtype cast), to tell whether the folder's run files describe them."""
    folder = Path(directory)
    with RunLock(folder, what=f"projector folder {folder}"):  # two saves at once would delete each other's files
        _save_locked(folder, config, blob, card, adapter, plot)


def _save_locked(folder: Path, config: dict, blob: bytes, card: str, adapter, plot) -> None:
    for name in PUBLISHED + RUN_FILES:  # else a raw error after the commit (os.replace), or with run files gone
        kind = not_a_file(folder / name)
        if kind:
            raise BadInputError(f"cannot save into projector folder {folder}: {folder / name} is {kind}, not a file "
                                f"(move it away)")
    _finish_committed(folder)
    sha256 = hashlib.sha256(blob).hexdigest()
    staged = folder / staged_name(sha256)
    with atomic_path(staged) as tmp:
        tmp.write_bytes(blob)
    if not (adapter is not None and _run_files_describe(folder, adapter)):
        for name in RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / name)
    atomic_write_json(folder / CONFIG_FILE, dict(config, **{SHA_KEY: sha256}))
    fsync_dir(folder)
    os.replace(staged, folder / ADAPTER_FILE)
    fsync_dir(folder)
    atomic_write_text(folder / CARD_FILE, card)
    if plot is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / PLOT_FILE)
    else:
        with atomic_path(folder / PLOT_FILE) as tmp:
            tmp.write_bytes(plot)
    for pattern in _LEFTOVERS:
        for path in folder.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def read_adapter(model_id: str, sha256: Optional[str], resolve: Callable[[str], str],
                 class_names: Optional[Sequence[str]] = None) -> Tuple[Dict[str, torch.Tensor], str]:
    """``(tensors, path)`` of the adapter that a ``config.json`` with ``adapter_sha256 = sha256`` was committed
    with. ``resolve(name)`` gives the local path of a file of ``model_id`` (a folder or a downloaded Hub file).
    ``class_names``: the config's, checked against the class order the file records (module docstring).

    The file is read once, so a save finishing meanwhile cannot swap it between the check and the parse."""
    data = path = None
    if sha256 and os.path.isdir(model_id):  # a save killed between its commit and its last rename
        path = os.path.join(model_id, staged_name(sha256))
        data = _read(path)
    if data is None:
        path = resolve(ADAPTER_FILE)
        data = _read(path)
        if data is None:
            raise CorruptFileError(f"adapter file missing: {path}")
    tensors, metadata = _parse(data, path)
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise CorruptFileError(f"adapter file {path} is not the one {CONFIG_FILE} was saved with (sha256 "
                               f"{hashlib.sha256(data).hexdigest()[:12]}…, config says {sha256[:12]}…): save the "
                               f"projector again, or copy both files from one save")
    if class_names is not None:
        _check_class_order(metadata.get(CLASSES_KEY), class_names, path)
    return tensors, path


def check_adapter_tensors(tensors: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor], source: str,
                          base: str) -> None:
    """Refuse (:class:`CorruptFileError`) adapter ``tensors`` (from ``source``) that do not fit the projector
    whose adapter is ``expected`` (on base ``base``): class count, names, shapes, float dtypes."""
    bias = tensors.get("head.bias")
    if bias is not None and bias.shape != expected["head.bias"].shape:
        raise CorruptFileError(
            f"{source} was trained for {bias.shape[0] if bias.ndim else 0} classes but this projector has "
            f"{expected['head.bias'].shape[0]} class names")
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CorruptFileError(f"{source} does not match base '{base}' and LoRA targets: {detail} "
                               f"({len(missing)} missing, {len(unexpected)} unexpected)")
    for name, target in expected.items():
        if tensors[name].shape != target.shape:
            raise CorruptFileError(f"{source}: tensor '{name}' has shape {list(tensors[name].shape)} but the base "
                                   f"expects {list(target.shape)}")
        if not tensors[name].is_floating_point():  # copied in, an integer tensor would become whole numbers
            raise CorruptFileError(f"{source}: tensor '{name}' holds {tensors[name].dtype} values where floats "
                                   f"are expected")


# -- internals -------------------------------------------------------------------------------------------------

def _finish_committed(folder: Path) -> None:
    """Step 5 of a save that was killed after its commit: its staged adapter is the one config.json names."""
    try:
        sha256 = loads_json((folder / CONFIG_FILE).read_bytes()).get(SHA_KEY)
    except (OSError, ValueError, AttributeError):
        return
    staged = folder / staged_name(sha256) if is_sha256(sha256) else None  # a bad name is the load's to report
    if staged is not None and staged.is_file():
        os.replace(staged, folder / ADAPTER_FILE)
        fsync_dir(folder)


def _run_files_describe(folder: Path, adapter: Dict[str, torch.Tensor]) -> bool:
    """Whether ``folder/train_state.pt`` holds exactly ``adapter`` (then it and metrics.json belong to it)."""
    path = folder / RUN_FILES[1]
    if not path.is_file():
        return False
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)["adapter"]
    except Exception:  # unreadable or not distill's: it describes nothing we can vouch for
        return False
    return saved.keys() == adapter.keys() and all(
        saved[k].dtype == v.dtype and saved[k].shape == v.shape and torch.equal(saved[k], v.detach().cpu())
        for k, v in adapter.items())


def _sorted_metadata(blob: bytes) -> bytes:
    """safetensors writes ``__metadata__`` from a hash map, in an order that varies from call to call: sort it, so
    that equal adapters are equal files (same sha256; an unchanged push makes no Hub commit)."""
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    if not header.get("__metadata__"):
        return blob
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode().ljust(size)  # safetensors pads with spaces
    return blob[:8] + text + blob[8 + size:] if len(text) == size else blob


def _read(path) -> Optional[bytes]:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except (FileNotFoundError, IsADirectoryError):
        return None


def _check_class_order(recorded, class_names: Sequence[str], path: str) -> None:
    if recorded is None:
        warnings.warn(f"adapter file {path} does not record the class order it was fitted with (saved before "
                      f"hello-labels recorded it), so {CONFIG_FILE}'s class_names could not be checked against it; "
                      f"saving the projector again records it", UnboundClassesWarning, stacklevel=5)
        return
    digest = class_order_digest(class_names)
    if recorded != digest:
        raise CorruptFileError(f"adapter file {path} was fitted for other class names or another class order than "
                               f"{CONFIG_FILE}'s {len(class_names)} class_names (sha256 of the ordered names "
                               f"{str(recorded)[:12]}… in the adapter, {digest[:12]}… in {CONFIG_FILE}): restore "
                               f"class_names as saved; a re-ordered list would permute every label")


def _parse(data: bytes, path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """The adapter tensors (quantized files dequantized) and the file's metadata."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CorruptFileError(f"adapter file {path} is truncated or corrupt ({str(err).splitlines()[0]})") from err
    metadata = header.get("__metadata__") or {}
    quantized = bool(metadata.get("quantization"))
    ints = sorted(n for n, t in tensors.items() if not t.is_floating_point() and not (quantized and quantizable(n)))
    if ints:  # an integer bias or scale would load as whole numbers, silently changing every label
        raise CorruptFileError(f"adapter file {path}: tensor '{ints[0]}' holds {tensors[ints[0]].dtype} values where "
                               f"floats are expected (integers only as a quantized file's LoRA codes)")
    tensors = dequantize_adapter(tensors, metadata)  # int8 / 4-bit files: float32 again
    bad = sorted(name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all())
    if bad:  # a NaN or inf weight would make every label NaN (or silently saturate a softmax)
        raise CorruptFileError(f"adapter file {path}: tensors {bad[:3]} hold NaN or infinite values")
    return tensors, metadata
