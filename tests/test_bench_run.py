"""``python -m benchmarks run QUESTION --config NAME``: every named config is a command its script's own parser
accepts (parsed only, nothing run), and every result is named ``<benchmark>-<machine>-torch<version>[-<config>]``,
so a run on another machine or torch never replaces or takes the name of a committed file."""
import argparse
import importlib
from argparse import Namespace

import pytest
import torch

from benchmarks import label_sources as bench
from benchmarks import machine, report, run
from benchmarks.datasets import from_tensors, open_dataset

CONFIGS = [(q, n) for q, configs in run.QUESTIONS.items() for n in configs]
EPYC = "AMD EPYC 7B13 64-Core Processor (x86_64)"  # the machine of the committed label-source files


class Parsed(Exception):
    """Raised with the namespace in place of running the script."""


@pytest.fixture
def parse_only(monkeypatch):
    original = argparse.ArgumentParser.parse_args

    def parse(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse)


def parsed(question, name, where="xeon-torch9.9"):
    script, argv = run.resolve(question, name, where)
    with pytest.raises(Parsed) as out:
        importlib.import_module(script).main(argv)
    return out.value.args[0]


@pytest.mark.parametrize("question,name", CONFIGS)
def test_each_config_is_a_command_its_scripts_parser_accepts_naming_its_result_by_machine(parse_only, question, name):
    args = parsed(question, name)
    outputs = [str(v) for v in vars(args).values() if "xeon-torch9.9" in str(v)]
    if run.QUESTIONS[question][name].output:
        assert outputs and all(f"-xeon-torch9.9-{name}" in o for o in outputs)
    else:  # reproduce: the script names its record itself
        assert question == "reproduce" and not outputs


def test_configs_hold_the_arguments_of_the_committed_runs(parse_only):
    ipc50 = parsed("label-sources", "fashion-mnist-ipc50")
    assert (ipc50.ipc, ipc50.student_epochs, ipc50.distill_steps, ipc50.effnet_size) == (50, 100, 600, 64)
    assert ipc50.pipeline_seeds == [0, 1, 2] and ipc50.name == "label-sources-xeon-torch9.9-fashion-mnist-ipc50"
    mnist = parsed("label-sources", "mnist-ipc10-p0")
    assert mnist.adapter_dtypes == [] and mnist.only == ["full stored labels", "teacher online (RDED)",
                                                         "projector effnet"]
    assert parsed("reproduce", "check").check and parsed("reproduce", "record-check").record_check
    storage = parsed("storage", "imagenet1k-ipc200")
    assert (storage.classes, storage.ipc, storage.fp16, storage.plot) == (1000, 200, True, None)


def test_a_config_its_script_does_not_accept_fails_the_parse(parse_only, monkeypatch):
    monkeypatch.setitem(run.QUESTIONS["throughput"], "bad", run.Config("benchmarks.throughput", ("--no-such-flag",)))
    with pytest.raises(SystemExit):
        parsed("throughput", "bad")


def test_dry_run_prints_the_command_named_for_this_machine_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run.main(["storage", "--config", "imagenet1k-ipc200", "--dry-run", "--top-k", "5"])
    line = capsys.readouterr().out.strip()
    assert line.startswith("hello-labels storage --classes 1000 ") and "--ipc 200" in line
    assert line.endswith(f"--json benchmarks/results/storage-{machine.run_name()}-imagenet1k-ipc200.json --top-k 5")
    assert not any(tmp_path.iterdir())


def test_arguments_after_the_config_go_to_the_script_and_a_later_value_wins(parse_only):
    script, argv = run.resolve("label-sources", "fashion-mnist-ipc10", "xeon-torch9.9", ["--pipeline-seeds", "1"])
    with pytest.raises(Parsed) as out:
        importlib.import_module(script).main(argv)
    assert out.value.args[0].pipeline_seeds == [1]


def test_an_unknown_question_or_config_is_refused_naming_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_:
        run.main(["storage", "--config", "imagenet", "--dry-run"])
    assert exit_.value.code == 2
    assert "storage has no config 'imagenet': choose from imagenet1k-ipc10" in capsys.readouterr().err


def test_every_config_is_the_command_shown_for_a_committed_result():
    pages = report.PAGE.read_text() + "".join(p.read_text() for p in (report.ROOT / "docs").glob("*.md"))
    for question, name in CONFIGS:
        assert f"python -m benchmarks run {question} --config {name}" in pages


@pytest.mark.parametrize("cpu,family", [
    ("Intel(R) Xeon(R) Processor (x86_64)", "xeon"), (EPYC, "epyc"), ("unknown (x86_64)", "unrecorded"),
    ("11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz (x86_64)", "core"), ("Apple M2 Pro (arm64)", "m2")])
def test_the_machine_in_a_result_name_is_the_cpu_family(cpu, family):
    assert machine.machine_name(cpu) == family


def _on(monkeypatch, cpu, version):
    monkeypatch.setattr(machine, "cpu_model", lambda: cpu)
    monkeypatch.setattr(torch, "__version__", version)


def test_label_sources_names_a_new_run_by_machine_and_torch_so_a_committed_file_is_not_replaced(monkeypatch):
    args = Namespace(ipc=10, data=open_dataset("fashion-mnist"))
    _on(monkeypatch, "Intel(R) Xeon(R) Processor (x86_64)", "2.15.0+cpu")
    assert bench.results_stem(args) == "label-sources-xeon-torch2.15.0-fashion-mnist-ipc10"
    _on(monkeypatch, EPYC, "2.14.1+cu130")  # where the committed file was made, its name
    assert (report.RESULTS / f"{bench.results_stem(args)}.json").is_file()


def test_record_check_names_its_record_by_machine_and_check_reads_the_one_recorded(tmp_path, monkeypatch):
    fashion = open_dataset("fashion-mnist")
    here = {"cpu": "Intel(R) Xeon(R) Processor (x86_64)", "torch": "2.15.0+cpu"}
    assert bench.new_check_record(tmp_path, fashion, here).name == "reproduce-xeon-torch2.15.0-fashion-mnist-check.json"
    assert bench.check_record(tmp_path, fashion).name == bench.FASHION_MNIST_CHECK  # the committed record
    assert bench.new_check_record(report.RESULTS, fashion, {"cpu": EPYC, "torch": "2.14.1+cu130"}).is_file()

    tiny = from_tensors("tiny", (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.long)),
                        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.long)))
    recorded = bench.new_check_record(tmp_path, tiny, {"cpu": EPYC, "torch": "2.14.1"})
    recorded.write_text("{}")
    _on(monkeypatch, "Intel(R) Xeon(R) Processor (x86_64)", "2.15.0+cpu")
    assert bench.check_record(tmp_path, tiny) == recorded  # made elsewhere, found here
    bench.new_check_record(tmp_path, tiny, here).write_text("{}")
    with pytest.raises(SystemExit, match="several check records of tiny"):
        bench.check_record(tmp_path, tiny)
