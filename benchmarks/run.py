"""``python -m benchmarks run QUESTION --config NAME [--dry-run]``: one runner per question BENCHMARKS.md answers.

Each named config is a fixed set of a benchmark script's arguments, kept in :data:`QUESTIONS` (the report prints
its commands from the same entries); the runner calls that script's ``main(argv)``. The result is named
``<benchmark>-<machine>-torch<version>-<config>`` (:func:`benchmarks.machine.result_name`), so a run on another
machine or torch never replaces a committed file. ``--dry-run`` prints the command instead of running it; any
other argument goes on to the script after the config's (``--work DIR``, ``--pipeline-seeds 1``: a later value wins).

    python -m benchmarks run label-sources --config fashion-mnist-ipc10
    python -m benchmarks run reproduce --config check --dry-run
"""
from __future__ import annotations

import argparse
import importlib
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from .machine import run_name

RESULTS = "benchmarks/results"
# The part of a result name that says where it ran, as the report shows it (a run puts this machine's in its place).
ANY_MACHINE = "<machine>-torch<version>"


@dataclass(frozen=True)
class Config:
    """One named experiment: the script it runs, its arguments and where its result goes."""

    script: str  # the module whose main(argv) runs it
    args: tuple[str, ...] = ()
    output: tuple[str, ...] = ()  # the arguments naming the result ({name}: <benchmark>-<machine>-torch<ver>-<config>)
    benchmark: str = ""  # the result name's first part (default: the question's)


LABEL_SOURCES = "benchmarks.label_sources"
FASHION_MNIST = ("--effnet-size", "64", "--threads", "1", "--pipeline-seeds", "0", "1", "2", "--seeds", "1")
STORAGE = ("storage", "--classes", "1000", "--epochs", "300", "--batch-size", "1024", "--fp16", "--base", "RN50",
           "--class-names", "imagenet", "--teacher", "torchvision:resnet18")
JSON = ("--json", f"{RESULTS}/{{name}}.json")
# one recipe on two datasets: three student seeds per pipeline, the 2,400-step projector and convert's; three
# pipelines of one-epoch teachers, or pipeline 0 with the default eight-epoch teacher
ONE_RECIPE = ("--seeds", "3", "--threads", "1", "--projectors", "effnet", "--adapter-dtypes", "--distill-steps", "2400",
              "--convert", "1", "--only", "full stored labels", "hard labels", "teacher online (RDED)",
              "projector effnet", "converted effnet, 300 epochs")
ONE_EPOCH_TEACHERS = ("--teacher-epochs", "1", "--pipeline-seeds", "0", "1", "2", *ONE_RECIPE)
# stored labels against the teacher online under each students' mix and synthetic-set selection (MNIST, 3 pipelines)
STORED_VS_ONLINE = ("--dataset", "mnist", "--teacher-epochs", "1", "--pipeline-seeds", "0", "1", "2", "--seeds", "3",
                    "--threads", "1", "--adapter-dtypes", "--only", "full stored labels", "teacher online (RDED)")

QUESTIONS: dict[str, dict[str, Config]] = {
    "label-sources": {  # how good are a projector's labels against stored labels and the other sources?
        "fashion-mnist-ipc10": Config(LABEL_SOURCES, (*FASHION_MNIST, "--distill-steps", "600"), ("--name", "{name}")),
        "fashion-mnist-ipc50": Config(LABEL_SOURCES, (*FASHION_MNIST, "--ipc", "50", "--student-epochs", "100",
                                                      "--distill-steps", "600"), ("--name", "{name}")),
        "mnist-ipc10-p0": Config(LABEL_SOURCES, ("--dataset", "mnist", "--teacher-epochs", "1", "--seeds", "1",
                                                 "--threads", "1", "--distill-steps", "600", "--projectors", "effnet",
                                                 "--adapter-dtypes",
                                                 "--only", "full stored labels", "teacher online (RDED)",
                                                 "projector effnet"), ("--name", "{name}")),
        "mnist-ipc10": Config(LABEL_SOURCES, ("--dataset", "mnist", *ONE_EPOCH_TEACHERS), ("--name", "{name}")),
        "fashion-mnist-ipc10-as-mnist": Config(LABEL_SOURCES, ("--dataset", "fashion-mnist", *ONE_EPOCH_TEACHERS),
                                               ("--name", "{name}")),
        "mnist-ipc10-8-epoch-teacher-p0": Config(LABEL_SOURCES, ("--dataset", "mnist", "--teacher-epochs", "8",
                                                              "--pipeline-seeds", "0", *ONE_RECIPE),
                                                 ("--name", "{name}")),
        "mnist-ipc10-cutmix-confident": Config(LABEL_SOURCES, STORED_VS_ONLINE, ("--name", "{name}")),
        "mnist-ipc10-mixup-confident": Config(LABEL_SOURCES, (*STORED_VS_ONLINE, "--mix-type", "mixup"),
                                              ("--name", "{name}")),
        "mnist-ipc10-cutmix-random": Config(LABEL_SOURCES, (*STORED_VS_ONLINE, "--selection", "random"),
                                            ("--name", "{name}")),
        # students at T = 1: its own --work, or the T = 4 students of the same folders are recomputed
        "mnist-ipc10-cutmix-confident-T1": Config(LABEL_SOURCES, (*STORED_VS_ONLINE, "--temperature", "1"),
                                                  ("--name", "{name}")),
    },
    "throughput": {  # what does a projector cost per batch against the teacher it replaces?
        "imagenet": Config("benchmarks.throughput", ("--setting", "imagenet", "--batch-size", "32", "--threads", "2",
                                                     "--warmup", "2", "--repeats", "10"), JSON),
        "fashion-mnist": Config("benchmarks.throughput", ("--setting", "fashion-mnist", "--effnet-size", "32", "48",
                                                          "64", "--batch-size", "50", "--threads", "1", "--warmup",
                                                          "3", "--repeats", "30"), JSON),
    },
    "storage": {  # how many bytes does each way of supplying soft labels take at ImageNet-1K scale?
        "imagenet1k-ipc10": Config("hello_labels.cli", (*STORAGE, "--ipc", "10", "--plot-epochs", "100,300"),
                                   (*JSON, "--plot", f"{RESULTS}/{{name}}.png")),
        "imagenet1k-ipc200": Config("hello_labels.cli", (*STORAGE, "--ipc", "200"), JSON),
        "imagenet1k": Config("benchmarks.adapter_sizes", (), JSON, benchmark="adapter-sizes"),
    },
    "reproduce": {  # does this machine reproduce the recorded Fashion-MNIST figures?
        "check": Config(LABEL_SOURCES, ("--check",)),  # compares with the committed record
        "record-check": Config(LABEL_SOURCES, ("--record-check",)),  # writes reproduce-<machine>-...-check.json
    },
}
PROGRAMS = {"hello_labels.cli": "hello-labels"}  # a script with a console command of its own


def config(question: str, name: str) -> Config:
    configs = QUESTIONS[question]
    if name not in configs:
        raise KeyError(f"{question} has no config {name!r}: choose from {', '.join(configs)}")
    return configs[name]


def resolve(question: str, name: str, where: str | None = None, extra: Sequence[str] = ()) -> tuple[str, list[str]]:
    """``(script, argv)`` of a config, its result named for ``where`` (default: this machine, :func:`run_name`),
    ``extra`` arguments last."""
    c = config(question, name)
    result = "-".join((c.benchmark or question, where or run_name(), name))
    return c.script, [*c.args, *(a.format(name=result) for a in c.output), *extra]


def command(question: str, name: str, where: str | None = None, extra: Sequence[str] = ()) -> str:
    """The shell command a config stands for (``--dry-run`` prints it)."""
    script, argv = resolve(question, name, where, extra)
    return shlex.join([*PROGRAMS.get(script, f"python -m {script}").split(), *argv])


def shown(question: str, *names: str) -> str:
    """The runner's command for each config and, under it, what it runs: the commands the report prints."""
    return "\n".join(f"python -m benchmarks run {question} --config {n}\n#   = {command(question, n, ANY_MACHINE)}"
                     for n in names)


def main(argv: Sequence[str] | None = None):
    p = argparse.ArgumentParser(prog="python -m benchmarks run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("question", choices=QUESTIONS)
    p.add_argument("--config", required=True, help="; ".join(f"{q}: {', '.join(c)}" for q, c in QUESTIONS.items()))
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    args, extra = p.parse_known_args(argv)
    try:
        script, script_argv = resolve(args.question, args.config, extra=extra)
    except KeyError as e:
        p.error(e.args[0])
    if args.dry_run:
        print(command(args.question, args.config, extra=extra))
        return None
    return importlib.import_module(script).main(script_argv)
