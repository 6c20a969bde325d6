"""A projector's files and the Hub: save, load, push and the model card, under the names and arguments of
huggingface_hub's ``ModelHubMixin`` (as its ``hub_mixin.py``). :class:`~hello_labels.model.projector.LabelProjector`
has them as its methods (``save_pretrained``, ``from_pretrained``, ``push_to_hub``, ``generate_model_card``,
``config_dict``, ``adapter_facts``); this module never imports it.

On disk (and on the Hub) a projector is ``config.json`` + ``adapter.safetensors`` (adapter tensors only, never
base weights) + a ``README.md`` model card; huggingface_hub provides download (local dir or Hub id, cache,
revision, offline mode) and upload (``push_to_hub``, checked first by :mod:`.publish`: nothing published may
name the author's machine). Loading reads ``config.json`` strictly (:mod:`.config`), runs no factory it names
unless trusted, and checks the base's pin.

The mixin is not inherited: its save deletes ``config.json`` before writing (a kill then leaves no projector; ours
is atomic, :mod:`.directory`), its load decodes ``config.json`` leniently into constructor arguments (ours refuses
unknown keys and runs nothing a file names) and its push uploads the folder unchecked.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from torch import nn

from ..errors import BadInputError, HelloLabelsError
from ..version import __version__
from . import directory, hub
from .bases import base_pin, pin_mismatch
from .card import AdapterFacts, fidelity_plot, model_card
from .config import ADAPTER_DTYPES, ProjectorConfig, read_config
from .directory import CONFIG_FILE

log = logging.getLogger(__name__)


class UnpinnedBaseWarning(UserWarning):
    """A projector file without a base pin was loaded: its base weights could not be checked."""


def pinned(pin) -> bool:
    """Whether a ``base_pin`` fixes the weights (a sha256 of the weights file or of the tensors)."""
    return isinstance(pin, dict) and bool(pin.get("weights_sha256") or pin.get("tensors_sha256"))


def pin_base(projector, check: bool) -> None:
    """Record the base weights' fingerprint (new projector, 0.x file) or check it against the recorded one.
    Runs before LoRA and merging touch the weights."""
    recorded = projector.config.base_pin
    if not pinned(recorded):  # a new projector, or a file without a pin (see _from_pretrained's warning)
        projector.config.base_pin = base_pin(projector.base)
        return
    differs = pin_mismatch(recorded, projector.base)
    if differs:
        message = (f"base weights differ from those this adapter was trained on ({differs}): its labels would "
                   f"change")
        if check:
            raise HelloLabelsError(f"{message}; use the same base weights, or pass check_base=False "
                                   f"(CLI: --ignore-base-mismatch) to load it anyway")
        log.warning("%s; loading anyway (check_base=False)", message)


def config_dict(projector, adapter_dtype: Optional[str] = None) -> dict:
    """``config.json``'s content; ``adapter_dtype`` overrides the stored dtype (for one save)."""
    out = asdict(projector.config)
    out.pop("adapter_sha256")  # a property of one saved file, added by the save that writes it
    out["adapter_dtype"] = adapter_dtype or projector.config.adapter_dtype
    out["library_version"] = __version__
    return out


def adapter_file(projector, dtype: Optional[str] = None) -> bytes:
    """``adapter.safetensors`` as a save at ``dtype`` (default: the configured one) writes it."""
    return directory.adapter_file(projector.adapter_state_dict(), projector.config.class_names,
                                  dtype or projector.config.adapter_dtype)


def num_adapter_bytes(projector, dtype: Optional[str] = None) -> int:
    """Bytes of adapter tensor data at ``dtype`` (default: the configured storage dtype), without the file's
    header: a part of :func:`adapter_file_bytes`."""
    return directory.tensor_bytes(projector.adapter_state_dict(), dtype or projector.config.adapter_dtype)


def adapter_file_bytes(projector, dtype: Optional[str] = None) -> int:
    """Size of ``adapter.safetensors`` saved at ``dtype``: the adapter's bytes wherever a size is shown (``info``,
    the card, ``repr``, the demo's table)."""
    return len(adapter_file(projector, dtype))


def adapter_facts(projector, dtype: Optional[str] = None, file_bytes: Optional[int] = None) -> AdapterFacts:
    """What the card and ``info`` say about the adapter (parameters, file bytes, head rank as built)."""
    dtype = dtype or projector.config.adapter_dtype
    return AdapterFacts(parameters=projector.num_adapter_parameters(),
                        file_bytes=len(adapter_file(projector, dtype)) if file_bytes is None else file_bytes,
                        dtype=dtype, head_rank=projector.adapter.head_rank, image_size=projector.inputs.size)


def generate_model_card(projector, dtype: Optional[str] = None, repo_id: Optional[str] = None):
    """The ``README.md`` card a save at ``dtype`` writes (``repo_id``: the id its usage snippets name)."""
    dtype = dtype or projector.config.adapter_dtype
    return model_card(projector.config, adapter_facts(projector, dtype),
                      plot=fidelity_plot(projector.config) is not None, repo_id=repo_id)


def save_pretrained(projector, save_directory, *, dtype: Optional[str] = None, config=None,
                    repo_id: Optional[str] = None, push_to_hub: bool = False, model_card_kwargs=None,
                    **push_to_hub_kwargs):
    """Write ``config.json``, ``adapter.safetensors`` (``dtype``, this save only: ``float32``, ``float16``,
    ``bfloat16``, or quantized ``int8`` / ``int4`` with group-wise float16 scales, see
    :mod:`hello_labels.model.quantize`; default the configured ``adapter_dtype``) and a ``README.md`` card into
    ``save_directory``, atomically as a whole: after a kill at any instant the folder holds the old projector
    or the new one, complete and loadable (``config.json`` is the commit point; see
    :mod:`hello_labels.model.directory`). Distill's ``metrics.json`` / ``train_state.pt`` stay only if
    ``train_state.pt`` holds this very adapter; other files are left alone. ``push_to_hub=True`` then pushes
    the folder to ``repo_id`` (default: the folder's name) as :meth:`push_to_hub` does (``branch=``,
    ``private=``, ``token=``, ``commit_message=``); returns the ``CommitInfo`` then, else ``None``."""
    if config is not None:
        raise BadInputError("save_pretrained writes the projector's own config.json: config= is not accepted")
    if dtype is not None and dtype not in ADAPTER_DTYPES:
        raise BadInputError(f"unknown dtype '{dtype}'; expected one of {list(ADAPTER_DTYPES)}")
    _write(projector, Path(save_directory), dtype or projector.config.adapter_dtype)
    if push_to_hub:
        from .publish import push_directory

        branch = push_to_hub_kwargs.pop("branch", None)
        return push_directory(save_directory, repo_id or Path(save_directory).name, revision=branch,
                              **push_to_hub_kwargs)
    return None


def _write(projector, folder: Path, dtype: str) -> None:
    """The save itself: the adapter at ``dtype``, its config and card, committed by :mod:`.directory`."""
    blob = adapter_file(projector, dtype)
    plot = fidelity_plot(projector.config)
    card = model_card(projector.config, adapter_facts(projector, dtype, file_bytes=len(blob)), plot=plot is not None)
    directory.save_projector(folder, config_dict(projector, dtype), blob, str(card),
                             adapter=projector.adapter_state_dict(), plot=plot)


def push_to_hub(projector, repo_id: str, *, dtype: Optional[str] = None, branch: Optional[str] = None,
                private: Optional[bool] = None, token=None, commit_message: Optional[str] = None,
                license: Optional[str] = None):
    """Save this projector (``dtype`` as in :meth:`save_pretrained`) and upload it to ``repo_id`` (created if
    needed) on ``branch`` in one commit, after the checks of :func:`hello_labels.model.publish.push_directory`
    (no file may name this machine; the base must be one others can fetch); the card names ``repo_id`` and
    ``license`` (if given). Returns the ``CommitInfo`` (``.oid`` is the commit sha)."""
    import tempfile

    from .publish import check_portable_config, check_repo_id, push_directory

    check_repo_id(repo_id)
    check_portable_config(config_dict(projector), "projector config")  # before any work
    with tempfile.TemporaryDirectory(prefix="hello-labels-push-") as tmp:
        save_pretrained(projector, tmp, dtype=dtype)
        return push_directory(tmp, repo_id, revision=branch, private=private, token=token,
                              commit_message=commit_message, license=license)


def from_pretrained(cls, pretrained_model_name_or_path, *, revision: Optional[str] = None,
                    cache_dir=None, force_download: bool = False, local_files_only: bool = False,
                    token=None, trust_remote_code: bool = False, check_base: bool = True,
                    check_inputs: bool = True, **model_kwargs):
    """Load from a local directory or a Hub repo id (``revision`` pins a branch/tag/commit).

    Loading runs no code the files name: a custom-module base is handed in as ``base_module=`` or, only with
    ``trust_remote_code=True``, rebuilt by the factory its config names (nothing in the files can switch
    that on). ``check_base=False`` loads even if the base weights differ from those pinned at training;
    ``check_inputs=False`` skips the per-call input range check. ``map_location`` defaults to ``"cpu"``."""
    model_id = str(pretrained_model_name_or_path)
    # Read the config ourselves, strictly: the mixin would turn its keys into constructor arguments.
    config_path = hub.resolve_file(model_id, CONFIG_FILE, revision=revision, cache_dir=cache_dir,
                                   force_download=force_download, local_files_only=local_files_only, token=token)
    config = read_config(config_path)
    with hub.translate_errors(model_id, revision):
        return _from_pretrained(cls, model_id=model_id, revision=revision, cache_dir=cache_dir,
                                force_download=force_download, local_files_only=local_files_only,
                                token=token, config=config, trust_remote_code=trust_remote_code,
                                check_base=check_base, check_inputs=check_inputs, **model_kwargs)


def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                     config=None, base_module: Optional[nn.Module] = None, map_location="cpu",
                     trust_remote_code: bool = False, check_base: bool = True, check_inputs: bool = True,
                     **unused):
    if config is None:
        raise BadInputError(f"'{model_id}' has no {CONFIG_FILE}: not a hello-labels projector")
    if not isinstance(config, ProjectorConfig):
        config = ProjectorConfig.from_dict(config, source=f"{model_id}/{CONFIG_FILE}")
    unpinned = not pinned(config.base_pin)
    sha256 = config.adapter_sha256  # the adapter file this config.json was committed with
    tensors, adapter_path = directory.read_adapter(model_id, sha256, lambda name: hub.resolve_file(
        model_id, name, revision=revision, cache_dir=cache_dir, force_download=force_download,
        local_files_only=local_files_only, token=token), class_names=config.class_names)
    projector = cls(config, base_module=base_module, trust_remote_code=trust_remote_code, check_base=check_base)
    if unpinned:  # 0.x files, or a pin removed: nothing to check the base against; never silently
        projector.base_unpinned = True
        warnings.warn(f"{model_id}: {CONFIG_FILE} has no base_pin, so the base weights were not checked against "
                      f"those the adapter was trained on (unpinned; its labels are right only on the same "
                      f"weights); saving it again pins the base it loaded with", UnpinnedBaseWarning, stacklevel=3)
    projector.load_adapter_state_dict(tensors, source=f"adapter {adapter_path}")
    projector.check_inputs = check_inputs
    return projector.to(map_location)
