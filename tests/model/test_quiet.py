"""open_clip's "no CLIP weights found" warnings: dropped for the shipped random-init configs (and inside
``random_init_expected``), by a filter; every other record still reaches the handlers."""
import logging

import open_clip

from hello_labels import LabelProjector
from hello_labels.model.quiet import random_init_expected


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_shipped_random_init_base_loads_quietly(caplog, tiny_vit_dir):
    with caplog.at_level(logging.WARNING):
        LabelProjector.from_base("hello-labels:tiny-clip-vit", class_names=["a", "b"], templates="simple")
        logging.warning("another warning")  # the root logger still works
    assert _warnings(caplog) == ["another warning"]
    assert not logging.getLogger().disabled

    caplog.clear()
    with caplog.at_level(logging.WARNING):  # another random-init model: open_clip's warning stays
        open_clip.create_model(f"local-dir:{_config_only(tiny_vit_dir)}")
    assert any("no CLIP weights found" in m for m in _warnings(caplog))

    caplog.clear()
    with caplog.at_level(logging.WARNING), random_init_expected():
        open_clip.create_model(f"local-dir:{_config_only(tiny_vit_dir)}")
        logging.warning("kept")
    assert _warnings(caplog) == ["kept"]


def _config_only(folder):
    """A copy of a tiny open_clip folder without its weights file."""
    target = folder.parent / (folder.name + "-config-only")
    target.mkdir(exist_ok=True)
    (target / "open_clip_config.json").write_text((folder / "open_clip_config.json").read_text())
    return target
