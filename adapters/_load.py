"""Shared by the shims: accept a projector object, a directory or a Hub id."""
import torch


def load_projector(projector, device=None, trust_remote_code: bool = False):
    """A ``LabelProjector`` on ``device`` (default: CUDA if available), merged for zero-overhead inference.
    ``trust_remote_code``: as :meth:`LabelProjector.from_pretrained` (a custom base's factory may run)."""
    from hello_labels import LabelProjector

    if isinstance(projector, (str, bytes)) or hasattr(projector, "__fspath__"):
        projector = LabelProjector.from_pretrained(str(projector), trust_remote_code=trust_remote_code)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else projector.device
    return projector.to(device).merge().eval().requires_grad_(False)
