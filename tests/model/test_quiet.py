"""open_clip's "no CLIP weights found" warnings: dropped for the shipped random-init configs (and inside
``random_init_expected``), by a filter; every other record still reaches the handlers."""
import logging

import open_clip
from conftest import TINY_VIT, write_open_clip_dir

from hello_labels import LabelProjector
from hello_labels.model.quiet import random_init_expected


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_shipped_random_init_base_loads_quietly(caplog, tmp_path):
    with caplog.at_level(logging.WARNING):
        LabelProjector.from_base("hello-labels:tiny-clip-vit", class_names=["a", "b"], templates="simple")
        logging.warning("another warning")  # the root logger still works
    assert _warnings(caplog) == ["another warning"]
    assert not logging.getLogger().disabled

    config_only = write_open_clip_dir(tmp_path / "config-only", TINY_VIT, weights=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # another random-init model: open_clip's warning stays
        open_clip.create_model(f"local-dir:{config_only}")
    assert any("no CLIP weights found" in m for m in _warnings(caplog))

    caplog.clear()
    with caplog.at_level(logging.WARNING), random_init_expected():
        open_clip.create_model(f"local-dir:{config_only}")
        logging.warning("kept")
    assert _warnings(caplog) == ["kept"]

