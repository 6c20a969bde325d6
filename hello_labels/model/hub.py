"""Hub and file access for projectors: huggingface_hub does download, cache, revisions and offline mode; this
module turns its exceptions (and broken adapter files) into one-line errors that say what to do."""
from __future__ import annotations

import contextlib
import os
from typing import Dict, Optional

import torch
from huggingface_hub import errors as hf_errors
from huggingface_hub import hf_hub_download

from ..errors import HelloLabelsError


def _predownload_hint(model_id: str, revision: Optional[str]) -> str:
    rev = f" --revision {revision}" if revision else ""
    return (f"pre-download it while online with `hf download {model_id}{rev}` (same HF_HOME/HF_HUB_CACHE), "
            f"or pass a local directory")


@contextlib.contextmanager
def translate_errors(model_id: str, revision: Optional[str] = None):
    """Re-raise huggingface_hub errors about ``model_id`` as :class:`HelloLabelsError` with a hint."""
    try:
        yield
    except HelloLabelsError:
        raise
    except hf_errors.HFValidationError as err:
        raise HelloLabelsError(f"'{model_id}' is neither a local directory nor a valid Hub repo id") from err
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled) as err:
        raise HelloLabelsError(
            f"cannot fetch '{model_id}' from the Hugging Face Hub (offline or unreachable) and it is not in the "
            f"local cache; {_predownload_hint(model_id, revision)}") from err
    except hf_errors.GatedRepoError as err:
        raise HelloLabelsError(f"Hub repo '{model_id}' is gated: accept its terms and log in (`hf auth login`)") from err
    except hf_errors.RepositoryNotFoundError as err:
        raise HelloLabelsError(
            f"Hub repo '{model_id}' not found (private repos need `hf auth login`); a local path must exist") from err
    except hf_errors.RevisionNotFoundError as err:
        raise HelloLabelsError(f"revision '{revision}' not found in Hub repo '{model_id}'") from err
    except hf_errors.EntryNotFoundError as err:
        raise HelloLabelsError(f"Hub repo '{model_id}' lacks a projector file: {err}".splitlines()[0]) from err
    except hf_errors.HfHubHTTPError as err:
        raise HelloLabelsError(f"Hub request for '{model_id}' failed: {str(err).splitlines()[0]}") from err


def resolve_file(model_id: str, filename: str, **download_kwargs) -> str:
    """Local path of ``filename`` in a projector directory, or download it (cached) from the Hub repo."""
    if os.path.isdir(model_id):
        path = os.path.join(model_id, filename)
        if filename == "config.json" and not os.path.isfile(path):
            raise HelloLabelsError(f"'{model_id}' has no config.json: not a hello-labels projector")
        if not os.path.isfile(path):
            raise HelloLabelsError(f"{filename} missing: {path}")
        return path
    with translate_errors(model_id, download_kwargs.get("revision")):
        return hf_hub_download(repo_id=model_id, filename=filename, **download_kwargs)


def read_safetensors(path: str) -> Dict[str, torch.Tensor]:
    """Load a safetensors file, naming the file if it is truncated or not safetensors at all."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise HelloLabelsError(f"adapter file missing: {path}")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise HelloLabelsError(f"adapter file {path} is truncated or corrupt ({str(err).splitlines()[0]})") from err
