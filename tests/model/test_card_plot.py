"""The card's ``fidelity.png`` is written only where matplotlib is installed: the ``plot`` extra brings it, the
``demo`` extra does not (docs/files.md, "Share a projector")."""
import importlib.metadata
import importlib.util

from hello_labels import LabelProjector

FIDELITY = {"agreement": 0.75, "kl": 0.125, "temperature": 4.0, "views": 64, "in_sample": False,
            "per_class": {"cat": 1.0, "dog": 0.5, "car": 0.75}}


def _save(path):
    LabelProjector.from_base("hello-labels:tiny-clip-vit", class_names=["cat", "dog", "car"], templates="simple",
                             head_rank=4, metadata={"fidelity": FIDELITY}).save_pretrained(path)
    return path


def test_fidelity_png_only_with_matplotlib(tmp_path, monkeypatch):
    with_plot = _save(tmp_path / "with")
    assert (with_plot / "fidelity.png").is_file() and "fidelity.png" in (with_plot / "README.md").read_text()

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    without = _save(tmp_path / "without")
    assert not (without / "fidelity.png").exists() and "fidelity.png" not in (without / "README.md").read_text()


def test_matplotlib_comes_with_the_plot_extra_not_the_demo_extra():
    extras = {}
    for req in importlib.metadata.requires("hello-labels") or []:
        if "extra ==" in req:
            name, extra = req.split(";")[0].strip(), req.split("extra ==")[1].strip().strip("'\"")
            extras.setdefault(extra, set()).add(name.split(">")[0].split("=")[0].strip())
    assert "matplotlib" in extras["plot"] and "matplotlib" not in extras["demo"]
