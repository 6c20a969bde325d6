"""The command line's parsers: help on every flag with defaults shown, ``-v`` after the verb, ``--version``, and
``--help`` that imports no torch. Fast: nothing here trains or loads a model."""
import argparse
import dataclasses
import re
import subprocess
import sys

import pytest

from hello_labels.cli import build_parser, common, main
from hello_labels.errors import BadInputError, clip, first_line
from hello_labels.version import __version__


def _verbs(parser):
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_help_and_version_import_no_torch():
    """Nor does the settings dataclass behind config.json, whose fields are distill's projector flags."""
    probe = ("import sys, contextlib, io\n"
             "from hello_labels.cli import main\n"
             "from hello_labels.model.settings import ProjectorConfig\n"
             "ProjectorConfig(base={'kind': 'open_clip'}, class_names=['a'])\n"
             "for argv in (['--help'], ['--version'], ['distill', '--help'], ['convert', '--help'],\n"
             "             ['export-fkd', '--help'], ['storage', '--help'], ['list', '-h']):\n"
             "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
             "        main(argv)\n"
             "print(sorted(m for m in ('torch', 'open_clip', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _stated_default(help_text: str):
    """The value after "default: " in a flag's help, up to the first comma, semicolon or bracket."""
    found = re.search(r"default: ([^,;)]+)", " ".join(help_text.split()))
    return found and found.group(1).strip()


def _states(stated, default) -> bool:
    """Whether the help's stated default is the parser's: its printed form, or a fraction such as 1/255."""
    if stated == str(default):
        return True
    fraction = re.fullmatch(r"(\d+)/(\d+)", stated or "")
    return bool(fraction) and isinstance(default, float) and int(fraction[1]) / int(fraction[2]) == default


def test_every_flag_has_help_and_shows_its_default():
    """Each flag's help states the default the parser really uses (0 and 0.0 included); on/off switches have none."""
    parser = build_parser()
    assert "Replace gigabytes of stored soft labels" in parser.description  # a real description, not a docstring
    switches = (argparse._HelpAction, argparse._VersionAction, argparse._StoreTrueAction, argparse._StoreFalseAction)
    checked = 0
    for verb, sub in _verbs(parser).items():
        formatter = common.Formatter(verb)
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = action.option_strings[-1] if action.option_strings else action.dest
            assert action.help, f"{verb} {name} has no help"
            if isinstance(action, switches) or not action.option_strings or action.default in (None, argparse.SUPPRESS):
                continue
            stated = _stated_default(formatter._expand_help(action))
            assert _states(stated, action.default), f"{verb} {name}: help says {stated!r}, parser {action.default!r}"
            checked += 1
        assert "(default: %" not in sub.format_help()  # every default was substituted
    assert checked > 20


# Flags of the upstream code that a help names (SRe2L's --use-fp16), not flags of the verb itself.
UPSTREAM_FLAGS = {"--use-fp16"}


def test_every_flag_a_help_names_is_a_flag_of_that_verb():
    for verb, sub in _verbs(build_parser()).items():
        flags = {s for a in sub._actions for s in a.option_strings}
        for named in set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", sub.format_help())) - UPSTREAM_FLAGS:
            assert named in flags, f"{verb} --help names {named}"


def test_base_help_lists_the_shipped_bases():
    text = _verbs(build_parser())["distill"].format_help()
    for name in common.SHIPPED_BASES:
        assert name in text


def test_the_cli_and_the_library_take_their_choices_from_one_module():
    """hello_labels.constants is the one list of each (torch-free, for --help); the shipped bases are files too."""
    from importlib.resources import files

    from hello_labels import constants
    from hello_labels.labels import augment
    from hello_labels.model import config, efficientnet_lite, quantize
    from hello_labels.model.bases import SHIPPED_TIMM, shipped_bases
    from hello_labels.storage.setting import mix_name
    from hello_labels.train import distill, refine

    assert common.ADAPTER_DTYPES is constants.ADAPTER_DTYPES is config.ADAPTER_DTYPES
    assert tuple(config.DTYPES) + tuple(quantize.QUANTIZED) == constants.ADAPTER_DTYPES
    assert augment.MIX_TYPES is constants.MIX_TYPES and common.MIX_NAMES is constants.MIX_NAMES
    assert sorted(common.MIX_NAMES) == sorted(mix_name(m) for m in constants.MIX_TYPES)
    assert distill.LOSSES is refine.LOSSES is constants.LOSSES
    assert config.HEAD_INITS is common.HEAD_INITS is constants.HEAD_INITS
    configs = [constants.SHIPPED + p.name for p in (files("hello_labels") / "model" / "configs").iterdir()
               if p.is_dir()]
    assert sorted(common.SHIPPED_BASES) == sorted(configs + list(SHIPPED_TIMM)) == sorted(shipped_bases())
    assert efficientnet_lite.NAME in common.SHIPPED_BASES


@pytest.mark.parametrize("argv, verbose", [(["info", "x"], False), (["-v", "info", "x"], True),
                                           (["info", "x", "-v"], True), (["info", "-v", "x"], True),
                                           (["storage", "--classes", "4", "--verbose"], True)])
def test_verbose_before_or_after_the_verb(argv, verbose):
    assert build_parser().parse_args(argv).verbose is verbose


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.strip() == f"hello-labels {__version__}"


def test_base_pretrained_is_the_library_pretrained_argument():
    from hello_labels.cli.train import _pretrained

    parse = _verbs(build_parser())["distill"].parse_args
    required = ["--data", "d", "--teacher", "t", "--out", "o", "--base", "timm:resnet18"]
    assert _pretrained(parse(required)) is None  # the library decides
    assert _pretrained(parse(required + ["--base-pretrained"])) is True
    assert _pretrained(parse(required + ["--no-base-pretrained"])) is False
    assert _pretrained(parse(required + ["--pretrained", "openai"])) == "openai"
    with pytest.raises(BadInputError, match="not both"):
        _pretrained(parse(required + ["--pretrained", "x.pth", "--base-pretrained"]))


def test_clip_cuts_at_a_word_boundary():
    text = "cannot load timm teacher: " + " ".join(["weights"] * 40)
    cut = clip(text, 60)
    assert len(cut) <= 60 and cut.endswith("weights…") and text.startswith(cut[:-1])
    assert clip("short", 60) == "short" and clip("a\nb") == "a"
    assert first_line(ValueError("x" * 300), 50).endswith("…")


def test_a_hub_id_offline_or_a_file_path_fails_before_torch_is_imported(tmp_path):
    """``info`` resolves the projector's config.json before importing torch: these fail in well under a second."""
    import os

    (tmp_path / "config.json").write_text("{}")
    probe = ("import sys\n"
             "from hello_labels.cli import main\n"
             f"codes = [main(['info', 'lab/never-downloaded']), main(['info', {str(tmp_path / 'config.json')!r}])]\n"
             "print(codes, 'torch' in sys.modules)")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert proc.stdout.strip() == "[2, 2] False"
    first, second = proc.stderr.strip().splitlines()
    assert "offline or unreachable: HF_HUB_OFFLINE is set" in first and "is a file, not a projector folder" in second


def test_every_verb_that_loads_a_projector_takes_the_trust_and_mismatch_flags():
    """docs/cli.md (Trust flags): the verbs that load a saved projector take ``--trust-remote-code`` and, but
    ``storage`` (which reads files without building the base), ``--ignore-base-mismatch``; the others take neither."""
    def flags(verb):
        return {o for a in _verbs(build_parser())[verb]._actions for o in a.option_strings} & {
            "--trust-remote-code", "--ignore-base-mismatch"}

    for verb in ("info", "eval", "export-fkd", "refine", "distill", "convert"):
        assert flags(verb) == {"--trust-remote-code", "--ignore-base-mismatch"}, verb
    assert flags("storage") == {"--trust-remote-code"}
    assert not flags("push") and not flags("list") and not flags("demo")


def test_projector_config_is_one_class_from_a_torch_free_module():
    """``hello_labels.model.settings`` (torch-free: see the probe above) holds the dataclass; the library's names
    for it are the same class, with the defaults it had."""
    from hello_labels import ProjectorConfig
    from hello_labels.model import config, settings

    assert ProjectorConfig is config.ProjectorConfig is settings.ProjectorConfig
    made = ProjectorConfig(base={"kind": "open_clip"}, class_names=["a"])
    assert (made.head_init, made.head_rank, made.input_mean, made.format_version) == ("text", 64,
                                                                                      [0.485, 0.456, 0.406], 1)


@pytest.mark.parametrize("verb, required", [
    ("distill", ["--data", "d", "--teacher", "t", "--out", "o", "--base", "b"]),
    ("convert", ["--data", "d", "--labels", "l", "--out", "o", "--base", "b"])])
def test_projector_flags_are_projector_config_fields_and_reach_the_library(verb, required, monkeypatch):
    from hello_labels.cli import train
    from hello_labels.model.settings import ProjectorConfig
    from hello_labels.options import flag_values
    from hello_labels.train import jobs

    parse = _verbs(build_parser())[verb].parse_args
    flagged = {f.name for f in dataclasses.fields(ProjectorConfig) if "help" in f.metadata}
    assert flagged == {"head_init", "templates", "head_rank", "image_size"}
    # unset: None (the library's default; head_init as the base has a text tower or not) and --head-rank's 64
    assert flag_values(ProjectorConfig, parse(required)) == dict(head_init=None, templates=None, head_rank=64,
                                                                 image_size=None)
    built = {}
    monkeypatch.setattr(jobs, "make_projector", lambda images, *args, **kwargs: built.update(kwargs))
    train._projector(parse(required + ["--head-init", "random", "--templates", "simple", "--head-rank", "8",
                                       "--image-size", "32", "--lora-rank", "2"]), None)
    assert {k: built[k] for k in (*flagged, "lora_rank")} == dict(head_init="random", templates="simple",
                                                                   head_rank=8, image_size=32, lora_rank=2)


def test_the_demo_help_states_the_demo_settings_defaults():
    """demo's flags default to None (the settings fill in), so the generic check above skips them."""
    from hello_labels.demo.pipeline import DemoSettings

    sub = _verbs(build_parser())["demo"]
    formatter = common.Formatter("demo")
    fields = {"--ipc": "ipc", "--epochs": "label_epochs", "--seeds": "seeds", "--input-size": "input_size",
              "--teacher-steps": "teacher_steps"}
    for action in sub._actions:
        if action.option_strings and action.option_strings[-1] in fields:
            default = getattr(DemoSettings(), fields.pop(action.option_strings[-1]))
            assert _stated_default(formatter._expand_help(action)) == str(default), action.option_strings[-1]
    assert not fields
