"""Storage accounting: bytes of every way to supply soft labels, side by side."""
from .report import *  # noqa: F401,F403
