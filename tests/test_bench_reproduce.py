"""``fashion_mnist_bench --check`` across machines: records hold what decides bit-identity, the check names what
differs, and where bits cannot match it answers whether this machine's figure is within the recorded spread."""
import json
from argparse import Namespace

import pytest
import torch

from benchmarks import label_sources as bench
from benchmarks import stages
from benchmarks.datasets import FASHION_MNIST_CLASSES as CLASSES
from benchmarks.datasets import open_dataset
from benchmarks.machine import ENV_VARS, cpu_model, machine, machine_difference
from benchmarks.reproduce import spread, verdict

STEPS = 2


@pytest.fixture(scope="module")
def data():
    """Tiny stand-ins for the train and test splits (uint8 images, labels of the ten classes)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (256, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.arange(256) % len(CLASSES)
    return (images, labels), (images[:64], labels[:64])


@pytest.fixture(scope="module")
def runs(data):
    """Check runs of seeds 0 and 1 on this machine, seed 0 twice."""
    train, test = data
    return [bench.check_run(train, test, STEPS, seed, open_dataset("fashion-mnist")) for seed in (0, 1, 0)]


def _here(run, env=None, code="c0de"):
    return {"seed": 0, **run, "env": env or machine(torch.get_num_threads()), "code": code}


def _record(seeds: dict, env=None, code="c0de"):
    return {"stage": "teacher", "steps": STEPS, "seeds": {str(k): v for k, v in seeds.items()},
            "env": env or machine(torch.get_num_threads()), "code": code}


def test_machine_records_what_decides_the_bits(tmp_path, monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    here = machine(3)
    assert here["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and here["threads"] == 3
    assert (here["torch"], here["torch_git"]) == (torch.__version__, torch.version.git_version)
    assert here["torch_cuda"] == (torch.version.cuda or "cpu")
    assert set(here["env_vars"]) == set(ENV_VARS) and here["env_vars"]["ATEN_CPU_CAPABILITY"] == "default"
    assert here["env_vars"]["OPENBLAS_CORETYPE"] is None
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t: avx512f\n")
    assert cpu_model(cpuinfo).startswith("Some CPU 9000 (")


def test_machine_difference_names_each_field_or_says_not_recorded():
    here = machine(2)
    assert machine_difference(json.loads(json.dumps(here)), here) == []  # through JSON, as a record is read
    other = {**here, "cpu_capability": "AMX", "env_vars": {**here["env_vars"], "ONEDNN_MAX_CPU_ISA": "AVX2"}}
    assert machine_difference(other, here) == [
        f"cpu_capability: recorded AMX, here {here['cpu_capability']}",
        f"env_vars.ONEDNN_MAX_CPU_ISA: recorded AVX2, here {here['env_vars']['ONEDNN_MAX_CPU_ISA']}"]
    assert machine_difference({"torch": here["torch"], "threads": 2}, here) is None  # an old record


def test_a_stage_made_on_another_cpu_is_recomputed_and_the_log_says_why(tmp_path):
    out, logs = tmp_path / "teacher.bin", []
    env = machine(1)
    stage = stages.Stage(tmp_path, "teacher", {"epochs": 1}, [out], {**env, "cpu_capability": "AMX"})
    assert not stage.fresh()
    out.write_bytes(b"made elsewhere")
    stage.done()
    assert not stages.Stage(tmp_path, "teacher", {"epochs": 1}, [out], env, log=logs.append).fresh()
    assert not out.exists() and "cpu_capability" in logs[-1]


@pytest.mark.slow
def test_same_machine_repeats_the_bits(runs):
    first, other, again = runs
    assert first == again and first["weights"] != other["weights"]
    result = verdict(_record({0: first, 1: other}), _here(again))
    assert result.ok and result.lines == ["REPRODUCED: identical teacher weights"]


@pytest.mark.slow
def test_same_machine_other_bits_blames_the_code_or_nondeterminism(runs):
    first, other, _ = runs
    result = verdict(_record({0: other, 1: first}), _here(first))  # seed 0's recorded weights are not these
    assert not result.ok and "not deterministic here" in result.lines[0]
    result = verdict(_record({0: other, 1: first}, code="01d"), _here(first))
    assert not result.ok and "code changed" in result.lines[0] and "recorded 01d, here c0de" in result.lines[0]


@pytest.mark.slow
def test_another_machine_is_judged_by_the_recorded_spread(runs):
    first, other, _ = runs
    here = machine(torch.get_num_threads())
    elsewhere = {**here, "cpu_capability": "AMX", "cpu": "Other CPU (x86_64)"}
    a = first["accuracy"]

    def record(accuracies):
        seeds = {i: {"weights": other["weights"], "accuracy": x} for i, x in enumerate(accuracies)}
        return _record(seeds, env=elsewhere)

    near = verdict(record([a - 0.01, a + 0.01, a + 0.02]), _here(first))
    assert near.ok and near.lines[0].startswith("NOT BIT-IDENTICAL")
    assert f"cpu_capability: recorded AMX, here {here['cpu_capability']}" in near.lines[0]
    assert "cpu: recorded Other CPU (x86_64)" in near.lines[0]
    assert near.lines[1].startswith("FIGURES WITHIN THE RECORDED SPREAD") and f"{a:.2%}" in near.lines[1]
    far = verdict(record([a + 0.20, a + 0.21, a + 0.22]), _here(first))
    assert not far.ok and far.lines[1].startswith("FIGURES OUTSIDE THE RECORDED SPREAD")
    low, high = spread([a + 0.20, a + 0.21, a + 0.22])
    assert low == pytest.approx(a + 0.21 - 3 * 0.01) and high == pytest.approx(a + 0.21 + 3 * 0.01)


@pytest.mark.slow
def test_an_old_record_says_machine_not_recorded(runs):
    first, other, _ = runs
    old = {"stage": "teacher", "steps": STEPS, "seed": 0, "weights": other["weights"],
           "env": {"torch": torch.__version__, "threads": torch.get_num_threads()}, "code": "c0de"}
    result = verdict(old, _here(first))
    assert not result.ok and "machine not recorded" in result.lines[0] and "no spread" in result.lines[1]
    old["weights"] = first["weights"]
    assert verdict(old, _here(first)).ok  # same bits: nothing to explain


@pytest.mark.slow
def test_record_then_check_from_the_command_path(data, tmp_path, capsys):
    train, test = data
    path, env = tmp_path / "check.json", machine(torch.get_num_threads())
    args = Namespace(record_check=True, check_seeds=[0, 1], check_steps=STEPS, data=open_dataset("fashion-mnist"))
    bench.check(args, path, train, test, env)
    record = json.loads(path.read_text())
    assert set(record["seeds"]) == {"0", "1"} and record["env"] == json.loads(json.dumps(env))
    assert record["code"] == stages.code_version()
    checking = Namespace(**{**vars(args), "record_check": False})
    bench.check(checking, path, train, test, env)
    assert "REPRODUCED: identical teacher weights" in capsys.readouterr().out

    # as if recorded on another CPU: seed 0's accuracy here is one of the two recorded, so within their spread
    record["env"]["cpu_capability"] = "AMX"
    record["seeds"]["0"]["weights"] = "0" * 16
    path.write_text(json.dumps(record))
    bench.check(checking, path, train, test, env)
    out = capsys.readouterr().out
    assert "NOT BIT-IDENTICAL" in out and "cpu_capability: recorded AMX" in out
    assert "FIGURES WITHIN THE RECORDED SPREAD" in out
    with pytest.raises(SystemExit, match="pass --check-steps 2"):
        bench.check(Namespace(**{**vars(checking), "check_steps": 3}), path, train, test, env)
