"""Hub and file access for projectors: huggingface_hub does download, cache, revisions and offline mode; this
module turns its exceptions (and broken adapter files) into one-line errors that say what to do.

Before asking the Hub, :func:`resolve_file` checks in well under a second what would otherwise cost the client's
timeouts and retries (25-47 s): a path of this machine that is not a projector folder (``DIR/config.json``) is
refused as such, and with ``HF_HUB_OFFLINE`` set or the endpoint not accepting a connection it reads the local
cache only, raising :class:`~hello_labels.errors.HubUnreachableError` when the file is not there.
:func:`check_can_push` does the same for uploads, and checks the login, before any work;
:func:`offline_when_unreachable` does it for other libraries' downloads (open_clip's and timm's pretrained weights)."""
from __future__ import annotations

import contextlib
import os
import socket
import warnings
from typing import TYPE_CHECKING, Dict, List, Optional
from urllib.parse import urlsplit

from huggingface_hub import constants, hf_hub_download
from huggingface_hub import errors as hf_errors

from ..errors import BadInputError, CorruptFileError, HelloLabelsError, HubUnreachableError, first_line
from ..files import not_a_file

if TYPE_CHECKING:
    import torch

CONNECT_TIMEOUT = 3.0  # seconds a TCP connection to the endpoint may take before the Hub counts as unreachable
_HTTP_CLIENTS = ("httpx", "httpx2", "requests", "urllib3")  # what huggingface_hub versions send requests with


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
        raise HubUnreachableError(
            f"cannot fetch '{model_id}' from the Hugging Face Hub (offline or unreachable) and it is not in the "
            f"local cache; {_predownload_hint(model_id, revision)}") from err
    except hf_errors.GatedRepoError as err:
        raise HelloLabelsError(f"Hub repo '{model_id}' is gated: accept its terms and log in (`hf auth login`)") \
            from err
    except hf_errors.RepositoryNotFoundError as err:
        raise HelloLabelsError(
            f"Hub repo '{model_id}' not found (private repos need `hf auth login`); a local path must exist") from err
    except hf_errors.RevisionNotFoundError as err:
        raise HelloLabelsError(f"revision '{revision}' not found in Hub repo '{model_id}'") from err
    except hf_errors.EntryNotFoundError as err:
        raise HelloLabelsError(f"Hub repo '{model_id}' lacks a projector file: {err}".splitlines()[0]) from err
    except hf_errors.HfHubHTTPError as err:
        raise HelloLabelsError(f"Hub request for '{model_id}' failed: {str(err).splitlines()[0]}") from err


def hub_unreachable(timeout: float = CONNECT_TIMEOUT) -> Optional[str]:
    """None if the Hub endpoint (``HF_ENDPOINT``) accepts a TCP connection within ``timeout`` seconds and offline
    mode is off; else why not, in a few words."""
    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    url = urlsplit(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        return f"{host}:{port} does not answer ({err.strerror or type(err).__name__})"
    return None


@contextlib.contextmanager
def offline_when_unreachable():
    """While inside, when the Hub is unreachable (:func:`hub_unreachable`), huggingface_hub's offline mode (what
    ``HF_HUB_OFFLINE=1`` sets) is on in this process: downloads that other libraries make through it (open_clip's,
    timm's pretrained weights) come from the local cache or fail at once, not after the client's retries (about
    25 s a file). Yields why the Hub is unreachable, or None (then nothing changes)."""
    why = hub_unreachable()
    if why is None:
        yield None
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield why
    finally:
        constants.HF_HUB_OFFLINE = before


def _local_path_hint(model_id: str) -> Optional[str]:
    """Why ``model_id`` (not a folder) is a path of this machine rather than a Hub id, or None."""
    if os.path.exists(model_id):
        return f"'{model_id}' is a file, not a projector folder: pass the folder that holds config.json"
    head = model_id.split("/")[0]
    if model_id.startswith((".", "~", os.sep)) or model_id.count("/") > 1 or (head and os.path.isdir(head)):
        return f"'{model_id}' is neither a projector folder on this machine nor a Hub repo id (ORG/NAME)"
    return None


def resolve_file(model_id: str, filename: str, **download_kwargs) -> str:
    """Local path of ``filename`` in a projector directory, or download it (cached) from the Hub repo; from the
    cache alone when the Hub is unreachable (:func:`hub_unreachable`)."""
    if os.path.isdir(model_id):
        path = os.path.join(model_id, filename)
        kind = not_a_file(path)
        if kind:
            raise CorruptFileError(f"{path} is {kind}, not a file: not a usable projector folder")
        if filename == "config.json" and not os.path.isfile(path):
            raise HelloLabelsError(f"'{model_id}' has no config.json: not a hello-labels projector")
        if not os.path.isfile(path):
            raise HelloLabelsError(f"{filename} missing: {path}")
        return path
    local = _local_path_hint(model_id)
    if local:
        raise BadInputError(local)
    revision = download_kwargs.get("revision")
    why = None if download_kwargs.get("local_files_only") else hub_unreachable()
    if why:
        try:
            return hf_hub_download(repo_id=model_id, filename=filename, **dict(download_kwargs, local_files_only=True))
        except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled):
            raise HubUnreachableError(f"cannot fetch '{model_id}' from the Hugging Face Hub (offline or unreachable: "
                                      f"{why}) and it is not in the local cache; "
                                      f"{_predownload_hint(model_id, revision)}") from None
        except hf_errors.HFValidationError as err:
            raise HelloLabelsError(f"'{model_id}' is neither a local directory nor a valid Hub repo id") from err
    with translate_errors(model_id, revision):
        return hf_hub_download(repo_id=model_id, filename=filename, **download_kwargs)


def check_can_push(token=None) -> str:
    """Before any work that ends in an upload: the Hub answers and a token is logged in. Returns the user name;
    raises :class:`HubUnreachableError` or a one-line :class:`HelloLabelsError` (not logged in)."""
    from huggingface_hub import HfApi

    why = hub_unreachable()
    if why:
        raise HubUnreachableError(f"cannot push: the Hugging Face Hub is unreachable ({why})")
    try:
        return HfApi(token=token).whoami()["name"]
    except hf_errors.LocalTokenNotFoundError:
        raise HelloLabelsError("cannot push: not logged in to the Hugging Face Hub (run `hf auth login` or set "
                               "HF_TOKEN)") from None
    except hf_errors.HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status == 401:
            raise HelloLabelsError("cannot push: the Hub refused the token (run `hf auth login` again)") from None
        raise HubUnreachableError(f"cannot push: the Hub's login check failed ({first_line(err)})") from None
    except Exception as err:  # the connection broke after the probe: the HTTP client's own error types
        if not isinstance(err, OSError) and type(err).__module__.split(".")[0] not in _HTTP_CLIENTS:
            raise
        raise HubUnreachableError(f"cannot push: the Hugging Face Hub is unreachable ({first_line(err)})") from None


def read_safetensors(path: str) -> Dict[str, "torch.Tensor"]:
    """Load a safetensors file, naming the file if it is truncated or not safetensors at all."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise HelloLabelsError(f"adapter file missing: {path}")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise HelloLabelsError(f"adapter file {path} is truncated or corrupt ({str(err).splitlines()[0]})") from err


class UnreadableCardWarning(UserWarning):
    """A Hub repo tagged ``hello-labels`` whose card facts cannot be read: :func:`find_projectors` skips it."""


def _matches_base(wanted: str, spec: dict) -> bool:
    """``wanted`` as a user names a base (``RN50``, ``open_clip:RN50``, ``timm:resnet50``, ``hello-labels:...``)."""
    name = str(spec.get("name") or spec.get("factory") or "")
    return wanted in (name, f"{spec.get('kind')}:{name}")


def find_projectors(base: Optional[str] = None, classes: Optional[int] = None, search: Optional[str] = None,
                    limit: int = 50, token=None) -> List[dict]:
    """Projectors on the Hub: model repos tagged ``hello-labels`` (huggingface_hub ``list_models``) whose card says
    they are on ``base`` (as ``--base`` names it) with ``classes`` classes, and whose id contains ``search``; at
    most ``limit``. Each row: ``id``, ``base`` (``kind:name``), ``classes``, ``agreement`` (end of training, or
    None), ``adapter_bytes``, ``adapter_dtype``, ``downloads``. A repo whose card facts have the wrong types
    (:func:`~hello_labels.model.card.read_card_facts`) is skipped with an :class:`UnreadableCardWarning` naming it
    and the field, so one stranger's card cannot break the list for everyone."""
    from huggingface_hub import HfApi

    from .card import TAGS, read_card_facts

    why = hub_unreachable()
    if why:
        raise HubUnreachableError(f"cannot list projectors: the Hugging Face Hub is unreachable ({why})")
    rows = []
    with translate_errors("the Hub's model list"):
        for model in HfApi(token=token).list_models(filter=TAGS[0], search=search, cardData=True):
            try:
                facts = read_card_facts(model.card_data.to_dict() if model.card_data else {}, "its card")
            except CorruptFileError as err:  # one stranger's card must not hide everyone else's projectors
                warnings.warn(f"skipped {model.id}: {err}", UnreadableCardWarning, stacklevel=2)
                continue
            spec = facts.get("base", {})
            if base and not _matches_base(base, spec):
                continue
            if classes is not None and facts.get("num_classes") != classes:
                continue
            fidelity = facts.get("fidelity", {})
            rows.append({"id": model.id, "base": f"{spec.get('kind')}:{spec.get('name') or spec.get('factory')}"
                         if spec else None, "classes": facts.get("num_classes"),
                         "agreement": fidelity.get("agreement"), "adapter_bytes": facts.get("adapter_bytes"),
                         "adapter_dtype": facts.get("adapter_dtype"), "downloads": model.downloads})
            if len(rows) >= limit:
                break
    return rows
