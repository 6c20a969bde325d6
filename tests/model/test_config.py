"""config.json is strict and versioned, the base is pinned, and saving is deterministic."""
import hashlib
import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from hello_labels import HelloLabelsError, LabelProjector
from hello_labels.cli import main
from hello_labels.model.config import FORMAT_VERSION


@pytest.fixture(scope="module")
def saved(tiny_rn_dir, tmp_path_factory):
    p = LabelProjector.from_base(f"local-dir:{tiny_rn_dir}", class_names=["cat", "dog", "car"], templates="simple",
                                 head_rank=4, input_mean=[0.5] * 3, input_std=[0.25] * 3,
                                 metadata={"teacher": "t", "dataset": "d"})
    with torch.no_grad():
        p.head.bias.copy_(torch.tensor([0.5, -0.5, 0.0]))
    path = tmp_path_factory.mktemp("cfg") / "p"
    p.save_pretrained(path)
    return p, path


def _with(saved, tmp_path, edit=None, text=None):
    """A copy of the saved projector whose config.json is edited (``edit(dict)``) or replaced (``text``)."""
    out = tmp_path / "edited"
    out.mkdir()
    (out / "adapter.safetensors").write_bytes((saved[1] / "adapter.safetensors").read_bytes())
    config = json.loads((saved[1] / "config.json").read_text())
    if edit:
        edit(config)
    (out / "config.json").write_text(text if text is not None else json.dumps(config))
    return out


def test_saved_config_states_its_format_and_pin(saved):
    config = json.loads((saved[1] / "config.json").read_text())
    assert config["format_version"] == FORMAT_VERSION
    assert config["base_pin"]["weights_file"] == "open_clip_model.safetensors"
    assert len(config["base_pin"]["weights_sha256"]) == 64


def test_output_changing_fields_must_be_present(saved, tmp_path):
    # before: a missing input_mean silently became ImageNet's
    with pytest.raises(HelloLabelsError, match=r"missing \['input_mean'\]: these change the projector's outputs"):
        LabelProjector.from_pretrained(_with(saved, tmp_path, lambda c: c.pop("input_mean")))


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(head_rank="eight"), r"'head_rank' must be an integer from 0 to 65536, got \"eight\""),
    (lambda c: c.update(head_rank=True), r"'head_rank' must be an integer from 0 to 65536, got true"),
    (lambda c: c.update(input_std=[0.2, 0.0, 0.2]), r"'input_std' must be a list of 1 or 3 numbers in \[0.001, 1\]"),
    (lambda c: c.update(normalize_features="yes"), r"'normalize_features' must be true or false"),
    (lambda c: c.update(surprise=1), r"unknown keys \['surprise'\]"),
    (lambda c: c["base"].update(pretrained=3), r"base 'pretrained' must be a string or null, got 3"),
    (lambda c: c["base"].update(kind="onnx"), r"base 'kind' must be one of"),
    (lambda c: c["lora"][0].update(rank="8"), r"lora\[0\] 'rank' must be an integer from 1 to 65536"),
    (lambda c: c.update(format_version=FORMAT_VERSION + 1), r"format_version 2 was written by a newer hello-labels"),
    (lambda c: (c.pop("format_version"), c.update(library_version="1.2.0")), r"no format_version, and library_vers"),
])
def test_wrong_types_unknown_keys_and_newer_formats_are_one_line_errors(saved, tmp_path, edit, message):
    with pytest.raises(HelloLabelsError, match=message) as err:
        LabelProjector.from_pretrained(_with(saved, tmp_path, edit))
    assert "\n" not in str(err.value) and "config.json" in str(err.value)


@pytest.mark.parametrize("text, message", [("{not json", "is not valid JSON"),
                                           ("null", "expected a JSON object, got null"),
                                           ("[1, 2]", r"expected a JSON object, got \[1, 2\]")])
def test_invalid_json_null_and_lists_are_one_line_errors(saved, tmp_path, text, message, capsys):
    path = _with(saved, tmp_path, text=text)
    with pytest.raises(HelloLabelsError, match=message):
        LabelProjector.from_pretrained(path)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_a_0x_config_without_format_version_or_pin_still_loads(saved, tmp_path):
    def as_0x(config):
        del config["format_version"], config["base_pin"]
        config["library_version"] = "0.1.0"

    from hello_labels.model.projector import UnpinnedBaseWarning

    x = torch.rand(2, 3, 32, 32)
    with pytest.warns(UnpinnedBaseWarning):  # loads, but says the base could not be checked
        q = LabelProjector.from_pretrained(_with(saved, tmp_path, as_0x))
    with torch.no_grad():
        assert torch.equal(q((x - 0.5) / 0.25), saved[0]((x - 0.5) / 0.25))
    assert q.config.base_pin == saved[0].config.base_pin  # pinned now, for its next save


def test_changed_base_weights_are_refused_unless_opted_out(saved, tiny_rn_dir, tmp_path, capsys):
    from conftest import TINY_RN, write_open_clip_dir

    other = write_open_clip_dir(tmp_path / "other-weights", TINY_RN, seed=1)  # same architecture, new weights

    def repoint(config):
        config["base"]["name"] = f"local-dir:{other}"

    path = _with(saved, tmp_path, repoint)
    with pytest.raises(HelloLabelsError, match=r"base weights differ .*weights file 'open_clip_model.safetensors' "
                                               r"sha256 \w{12}… -> 'open_clip_model.safetensors' sha256") as err:
        LabelProjector.from_pretrained(path)
    assert "check_base=False" in str(err.value) and "\n" not in str(err.value)
    assert LabelProjector.from_pretrained(path, check_base=False).num_classes == 3
    assert main(["info", str(path)]) == 2 and "--ignore-base-mismatch" in capsys.readouterr().err
    assert main(["info", str(path), "--ignore-base-mismatch"]) == 0


def test_random_init_bases_are_pinned_by_their_tensors(tmp_path):
    p = LabelProjector.from_base("timm:test_resnet", False, class_names=["a", "b"], head_init="random", image_size=32)
    assert set(p.config.base_pin) == {"tag", "hub_id", "tensors_sha256"} and p.config.base_pin["tag"] is None
    p.save_pretrained(tmp_path / "t")
    LabelProjector.from_pretrained(tmp_path / "t")
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    config["base_pin"]["tensors_sha256"] = "0" * 64  # e.g. another torch version initialises differently
    (tmp_path / "t" / "config.json").write_text(json.dumps(config))
    with pytest.raises(HelloLabelsError, match=r"encoder tensors sha256 000000000000… -> "):
        LabelProjector.from_pretrained(tmp_path / "t")


SAVE_AGAIN = """
import sys
from hello_labels import LabelProjector
LabelProjector.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2])
"""


def _digests(path):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(path.iterdir())}


@pytest.mark.slow
def test_the_same_projector_saves_byte_identical_files(saved, tmp_path):
    p, path = saved
    # in one process: the safetensors header's metadata order used to change from save to save
    digests = [_digests(p.save_pretrained(tmp_path / f"s{i}") or tmp_path / f"s{i}") for i in range(8)]
    assert all(d == digests[0] for d in digests)
    assert digests[0] == _digests(path)
    # in another process with another hash seed, after a load
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", SAVE_AGAIN, str(path), str(tmp_path / "other")], check=True, env=env)
    assert _digests(tmp_path / "other") == digests[0]


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(input_mean=[float("nan"), 0.5, 0.5]), r"'input_mean' must be a list of 1 or 3 .*got \[NaN"),
    (lambda c: c.update(input_std=[0.25, float("inf"), 0.25]), r"'input_std' must be a list of 1 or 3 numbers in"),
    (lambda c: c.update(input_mean=[0.5, float("-inf"), 0.5]), r"'input_mean' must be"),
    # an integer no float can hold (JSON has them): before, a raw OverflowError from the finiteness test
    (lambda c: c.update(input_mean=[10 ** 400, 0.5, 0.5]), r"'input_mean' must be"),
    (lambda c: c["base"].update(kind="module", factory=None, kwargs={}, mean=[10 ** 400, 0, 0], std=[1, 1, 1],
                                image_size=[32, 32]) or [c["base"].pop(k, None) for k in ("name", "pretrained")],
     r"base 'mean' must be 3 numbers in \[0, 1\]"),
    (lambda c: c.update(templates=["a {} and a {}."]), r"'templates' must be a list of strings that format one"),
    (lambda c: c.update(templates=["a photo of a {name}, {}."]), r"'templates' must be"),
    (lambda c: c.update(templates=["a {} of {"]), r"'templates' must be"),
])
def test_non_finite_normalisation_and_templates_that_do_not_format_are_refused_at_load(saved, tmp_path, edit, message):
    """json reads NaN/Infinity and ``"{} {}"`` passed the '{}' test: before, each loaded, then gave NaN labels or a
    raw IndexError/KeyError when the text head was built."""
    from hello_labels.errors import CorruptFileError

    with pytest.raises(CorruptFileError, match=message) as err:
        LabelProjector.from_pretrained(_with(saved, tmp_path, edit))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("pin", ["absent", None, {}, {"tag": None, "hub_id": None}])
def test_a_config_without_a_base_pin_loads_loudly_as_unpinned(saved, tmp_path, capsys, pin):
    """A missing, null or empty ``base_pin`` turned the base check off without a word (and ``info`` showed a pin
    computed at load as if it had been checked): now a warning on every load and ``unpinned`` in ``info``."""
    from hello_labels.model.projector import UnpinnedBaseWarning

    path = _with(saved, tmp_path, lambda c: c.pop("base_pin") if pin == "absent" else c.update(base_pin=pin))
    with pytest.warns(UnpinnedBaseWarning, match="has no base_pin, so the base weights were not checked"):
        q = LabelProjector.from_pretrained(path)
    assert q.base_unpinned
    assert main(["info", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "base weights:   unpinned" in out and "warning: " in err and "has no base_pin" in err  # one line each
    q.save_pretrained(tmp_path / "resaved")  # as the warning says: the next save pins the base it loaded with
    assert json.loads((tmp_path / "resaved" / "config.json").read_text())["base_pin"] == saved[0].config.base_pin
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not LabelProjector.from_pretrained(saved[1]).base_unpinned  # a pinned file loads quietly
        assert not LabelProjector.from_pretrained(tmp_path / "resaved").base_unpinned


def _rewrite_adapter(path, change):
    """Replace ``path``'s adapter by ``change(tensors, metadata)`` and point config.json at it, as a consistent
    pair of files would be (the adapter_sha256 check is not what is tested)."""
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(path / "adapter.safetensors"), "pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    change(tensors, metadata)
    blob = save(tensors, metadata=metadata)
    (path / "adapter.safetensors").write_bytes(blob)
    config = json.loads((path / "config.json").read_text())
    config["adapter_sha256"] = hashlib.sha256(blob).hexdigest()
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_integer_adapter_tensors_are_refused(saved, tmp_path, dtype, capsys):
    """Before: an int64 ``head.bias`` loaded as whole numbers (``.to(float)``, or ``.float()`` in a quantized file)
    and changed every logit. A quantized file's own integer codes still load."""
    from hello_labels.errors import CorruptFileError

    saved[0].save_pretrained(tmp_path / "p", dtype=dtype)
    LabelProjector.from_pretrained(tmp_path / "p")  # int8 codes + float16 scales: fine

    def integer_bias(tensors, metadata):
        tensors["head.bias"] = torch.tensor([3, -2, 0], dtype=torch.int64)

    path = _rewrite_adapter(tmp_path / "p", integer_bias)
    with pytest.raises(CorruptFileError, match=r"tensor 'head.bias' holds torch.int64 values where floats are "
                                               r"expected") as err:
        LabelProjector.from_pretrained(path)
    assert "\n" not in str(err.value)
    assert main(["info", str(path)]) == 2 and "head.bias" in capsys.readouterr().err
    tensors = dict(saved[0].adapter_state_dict(), **{"head.bias": torch.tensor([1, 0, 0])})
    with pytest.raises(CorruptFileError, match=r"tensor 'head.bias' holds torch.int64 values where floats"):
        saved[0].load_adapter_state_dict(tensors)  # e.g. a train_state.pt


def test_class_names_reordered_in_config_json_are_refused(saved, tmp_path, capsys):
    """Before: class_names reversed by hand in config.json loaded, and every label came out permuted. The adapter
    file records the order it was fitted with; config.json, the file people edit, cannot re-order it."""
    from hello_labels.errors import CorruptFileError
    from hello_labels.model.publish import push_directory

    for name, edit in [("reversed", lambda c: c["class_names"].reverse()),
                       ("renamed", lambda c: c["class_names"].__setitem__(0, "kitten"))]:
        (tmp_path / name).mkdir()
        path = _with(saved, tmp_path / name, edit)
        with pytest.raises(CorruptFileError, match=r"was fitted for other class names or another class order than "
                                                   r"config.json's 3 class_names") as err:
            LabelProjector.from_pretrained(path)
        assert "\n" not in str(err.value)
        assert main(["info", str(path)]) == 2
        assert capsys.readouterr().err.count("\n") == 1
        with pytest.raises(CorruptFileError, match="another class order"):
            push_directory(path, "someone/projector")  # refused before anything is uploaded
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert LabelProjector.from_pretrained(saved[1]).config.class_names == ["cat", "dog", "car"]


def test_an_adapter_saved_before_the_class_binding_loads_with_a_warning(saved, tmp_path):
    """Files without the class-order digest (every file saved before it existed) still load, loudly; saving again
    binds them."""
    from hello_labels.model.directory import CLASSES_KEY, UnboundClassesWarning

    path = _rewrite_adapter(_with(saved, tmp_path), lambda tensors, metadata: metadata.pop(CLASSES_KEY))
    x = torch.rand(2, 3, 32, 32)
    with pytest.warns(UnboundClassesWarning, match="does not record the class order it was fitted with"):
        q = LabelProjector.from_pretrained(path)
    with torch.no_grad():
        assert torch.equal(q((x - 0.5) / 0.25), saved[0]((x - 0.5) / 0.25))
    q.save_pretrained(tmp_path / "resaved")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LabelProjector.from_pretrained(tmp_path / "resaved")
    assert _digests(tmp_path / "resaved")["adapter.safetensors"] == _digests(saved[1])["adapter.safetensors"]


def _config(saved) -> dict:
    return json.loads((saved[1] / "config.json").read_text())


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(input_mean=[1e6] * 3), r"'input_mean' must be a list of 1 or 3 numbers in \[0, 1\]"),
    (lambda c: c.update(input_mean=[-0.5, 0.5, 0.5]), r"'input_mean' must be"),
    (lambda c: c.update(input_std=[1e-9] * 3), r"'input_std' must be a list of 1 or 3 numbers in \[0.001, 1\]"),
    (lambda c: c.update(input_std=[255.0] * 3), r"'input_std' must be"),
    (lambda c: c.update(image_size=[100000, 100000]), r"'image_size' must be \[H, W\] of 1 to 4096 pixels, or null"),
    (lambda c: c.update(class_names=["cat", "dog", "cat"]), r"'class_names' names \"cat\" 2 times \(rows \[0, 2\]\)"),
    (lambda c: c.update(class_names=["cat", "", "car"]), r"'class_names' has an empty name at index 1"),
    (lambda c: c.update(class_names=["cat", "dog", "  "]), r"'class_names' has an empty name at index 2"),
    (lambda c: c.update(class_names=[f"c{i}" for i in range(1_000_001)]), r"'class_names' must list 1 to 1,000,000 "
                                                                          r"classes, got 1,000,001"),
    (lambda c: c.update(head_rank=10 ** 12), r"'head_rank' must be an integer from 0 to 65536"),
    (lambda c: c.update(head_alpha=0), r"'head_alpha' must be a number in \(0, 65536\] or null"),
    (lambda c: c.update(head_alpha=1e300), r"'head_alpha' must be"),
    (lambda c: c["lora"][0].update(rank=10 ** 12), r"lora\[0\] 'rank' must be an integer from 1 to 65536"),
    (lambda c: c["lora"][0].update(alpha=-8), r"lora\[0\] 'alpha' must be a number in \(0, 65536\] or null"),
    (lambda c: c.update(seed=2 ** 64), r"'seed' must be an integer in \[0, 2\*\*63\)"),
    (lambda c: c.update(seed=-1), r"'seed' must be"),
    (lambda c: c["base"].update(kind="module", factory=None, kwargs={}, mean=[0.5] * 3, std=[0.5] * 3,
                                image_size=[32, 100000]) or [c["base"].pop(k, None) for k in ("name", "pretrained")],
     r"base 'image_size' must be \[H, W\] of 1 to 4096 pixels"),
    (lambda c: c["base"].update(kind="module", factory=None, kwargs={}, mean=[0.5] * 3, std=[0.0001] * 3,
                                image_size=[32, 32]) or [c["base"].pop(k, None) for k in ("name", "pretrained")],
     r"base 'std' must be 3 numbers in \[0.001, 1\]"),
])
def test_implausible_values_are_refused_when_config_json_is_read(saved, edit, message):
    """Before, each was read: a mean of 1e6 or a std of 1e-9 turned every input into one refused as out of range
    (or far from the base's), a side of 100000 allocated 120 GB at the first batch, a repeated or empty class name
    made a head row nothing names, a seed of 2**64 raised a raw ValueError inside torch, and -1 gave 2**64-1's
    stream; alpha 0 silenced the adapter, 1e300 overflowed the logits."""
    from hello_labels.errors import CorruptFileError
    from hello_labels.model.config import ProjectorConfig

    config = _config(saved)
    edit(config)
    with pytest.raises(CorruptFileError, match=message) as err:
        ProjectorConfig.from_dict(config, source="p/config.json")
    assert "\n" not in str(err.value) and str(err.value).startswith("p/config.json: ")


def test_imagenet_s_own_repeated_names_are_read(saved):
    """open_clip's ImageNet-1K list names two classes 'missile' and two 'sunglasses': projectors on it must load."""
    import open_clip

    from hello_labels.model.config import ProjectorConfig

    config = dict(_config(saved), class_names=list(open_clip.IMAGENET_CLASSNAMES))
    assert ProjectorConfig.from_dict(config).class_names[:2] == ["tench", "goldfish"]
    with pytest.raises(HelloLabelsError, match="'class_names' names \"missile\" 2 times"):
        ProjectorConfig.from_dict(dict(config, class_names=config["class_names"][:-1]))


def test_an_implausible_config_json_is_one_line_in_info(saved, tmp_path, capsys):
    path = _with(saved, tmp_path, lambda c: c.update(image_size=[100000, 100000]))
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "'image_size' must be [H, W] of 1 to 4096" in err


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": 100000}, r"projector settings: 'image_size' must be \[H, W\] of 1 to 4096 pixels"),
    ({"seed": 2 ** 64}, r"projector settings: 'seed' must be an integer in \[0, 2\*\*63\)"),
    ({"input_mean": [128.0] * 3}, r"projector settings: 'input_mean' must be"),
    ({"class_names": ["a", "b", "a"]}, r"projector settings: 'class_names' names \"a\" 2 times"),
    ({"lora_rank": 10 ** 9}, r"projector settings \(lora_rank\): lora\[0\] 'rank' must be an integer from 1 to"),
])
def test_a_projector_built_in_code_is_bounded_as_config_json_is(kwargs, message):
    """Before: from_base built these (the seed as a raw ValueError from torch.manual_seed)."""
    from hello_labels.errors import BadInputError

    kwargs = {"class_names": ["a", "b"], **kwargs}
    with pytest.raises(BadInputError, match=message) as err:
        LabelProjector.from_base("timm:test_resnet", False, head_init="random", **kwargs)
    assert "\n" not in str(err.value)
