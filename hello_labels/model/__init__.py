"""The projector itself: LoRA on a frozen base encoder, an input adapter, a low-rank head, and its files."""
from . import quiet

quiet.install()  # open_clip's "no CLIP weights found" on every load of a shipped random-init base: dropped
