"""Settings dataclasses are their own flags (hello_labels.options): each field of DistillConfig / RefineConfig is a
flag of its verbs, parsed back into the same settings. Fast and torch-free: nothing here trains."""
import argparse
import dataclasses
from dataclasses import dataclass
from typing import Optional

import pytest

from hello_labels.cli import build_parser
from hello_labels.labels.settings import ExportConfig
from hello_labels.options import add_options, option, options_from
from hello_labels.train.settings import DistillConfig, RefineConfig


def _verb(name):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


DISTILL = ["--data", "d", "--teacher", "t", "--out", "o", "--base", "b"]
CONVERT = ["--data", "d", "--labels", "l", "--out", "o", "--base", "b"]
REFINE = ["p", "--data", "d", "--teacher", "t", "--out", "o"]


@pytest.mark.parametrize("verb, argv, cls, expected", [
    ("distill", DISTILL, DistillConfig, DistillConfig()),
    ("convert", CONVERT, DistillConfig, DistillConfig(steps=None)),  # convert's own default: one pass
    ("refine", REFINE, RefineConfig, RefineConfig()),
])
def test_unset_flags_give_the_library_defaults(verb, argv, cls, expected):
    assert options_from(cls, _verb(verb).parse_args(argv)) == expected


def test_every_setting_is_a_flag_and_reaches_the_config():
    args = _verb("distill").parse_args(DISTILL + [
        "--steps", "7", "--batch-size", "8", "--lr", "0.5", "--weight-decay", "0.25", "--warmup-steps", "2",
        "--grad-clip", "0", "--loss", "kl", "-T", "2", "--ce-weight", "0.5", "--precision", "fp32", "--seed", "3",
        "--checkpoint-every", "4", "--eval-every", "5", "--eval-views", "6", "--workers", "2", "--save-dtype", "int8",
        "--no-calibrate"])
    config = options_from(DistillConfig, args)
    assert config == DistillConfig(7, 8, 0.5, 0.25, 2, 0.0, "kl", 2.0, 0.5, "fp32", 3, 4, 5, 6, 2, "int8", False)
    flagged = {f.name for f in dataclasses.fields(DistillConfig)}
    assert flagged == {a.dest for a in _verb("convert")._actions} & flagged  # convert takes every one too


def test_refine_flags_spell_none_and_fractions():
    args = _verb("refine").parse_args(REFINE + ["--mix-type", "none", "--lr", "2/255", "--epsilon", "0.5",
                                                "--min-scale", "0.5"])
    config = options_from(RefineConfig, args)
    assert (config.mix_type, config.lr, config.epsilon, config.min_scale) == (None, 2 / 255, 0.5, 0.5)
    assert config.eval_batch_size == RefineConfig.eval_batch_size  # no help: no flag, the default


def test_a_new_setting_is_one_field():
    @dataclass
    class Settings:
        rate: float = option(0.5, "a rate", aliases=("-r",))
        mix: Optional[str] = option(None, "a mix", choices=("cutmix", "none"))
        shuffle: bool = option(True, "keep the order", flag="--no-shuffle")
        verbose: bool = option(False, "say more")
        hidden: int = 3

    parser = argparse.ArgumentParser()
    add_options(parser, Settings)
    assert options_from(Settings, parser.parse_args([])) == Settings()
    given = options_from(Settings, parser.parse_args(["-r", "2", "--mix", "cutmix", "--no-shuffle", "--verbose"]))
    assert given == Settings(2.0, "cutmix", False, True)
    assert options_from(Settings, parser.parse_args(["--rate", "1"]), hidden=4) == Settings(rate=1.0, hidden=4)
    with pytest.raises(SystemExit):
        parser.parse_args(["--hidden", "4"])


EXPORT = ["p", "--data", "d", "--out", "o", "--epochs", "2", "--batch-size", "8"]


def test_export_fkd_flags_are_export_config_fields():
    verb = _verb("export-fkd")
    assert options_from(ExportConfig, verb.parse_args(EXPORT)) == ExportConfig(epochs=2, batch_size=8)
    args = verb.parse_args(EXPORT + ["--mix-type", "mixup", "--fp16", "--input-size", "32", "--min-scale", "0.5",
                                     "--max-scale", "0.9", "--fkd-seed", "7", "--seed", "3", "--gvbsm-index",
                                     "--workers", "2"])
    assert options_from(ExportConfig, args) == ExportConfig(2, 8, "mixup", True, 32, 0.5, 0.9, 7, 3, True, 2)
    flagged = {f.name for f in dataclasses.fields(ExportConfig) if "help" in f.metadata}
    assert flagged == {a.dest for a in verb._actions} & {f.name for f in dataclasses.fields(ExportConfig)}
    for without in (EXPORT[:5] + EXPORT[7:], EXPORT[:7]):  # no --epochs, no --batch-size: required fields are
        with pytest.raises(SystemExit):                  # required flags
            verb.parse_args(without)
