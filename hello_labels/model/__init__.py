"""The projector itself: LoRA on a frozen base encoder, an input adapter, a low-rank head, and its files."""
