"""Benchmark stages are never reused stale: a cache made under other settings, another code version or another
environment is removed and recomputed, and a stage killed before ``done()`` is redone."""
import json

import torch

from benchmarks import stages
from benchmarks.machine import machine
from benchmarks.stages import Stage

ENV = {"torch": torch.__version__, "threads": 2}


def _run(work, settings, env=ENV, logs=None):
    """One stage run: returns whether it was computed (True) or reused (False)."""
    out = work / "teacher.bin"
    stage = Stage(work, "teacher", settings, [out], env, log=(logs if logs is not None else []).append)
    if stage.fresh():
        return False
    out.write_bytes(json.dumps(settings).encode())
    stage.done()
    return True


def test_a_matching_stage_is_reused_and_a_changed_one_recomputed(tmp_path):
    logs = []
    assert _run(tmp_path, {"epochs": 8}) and not _run(tmp_path, {"epochs": 8})
    assert _run(tmp_path, {"epochs": 4}, logs=logs)  # other settings
    assert (tmp_path / "teacher.bin").read_bytes() == b'{"epochs": 4}'
    assert "stale" in logs[-1] and "epochs" in logs[-1]
    assert _run(tmp_path, {"epochs": 4}, env={**ENV, "threads": 1}, logs=logs)  # another thread count
    assert "threads" in logs[-1]


def test_another_code_version_invalidates_the_cache(tmp_path, monkeypatch):
    assert _run(tmp_path, {"epochs": 8})
    monkeypatch.setattr(stages, "code_version", lambda: "0123456789abcdef")
    logs = []
    assert _run(tmp_path, {"epochs": 8}, logs=logs) and "code" in logs[-1]


def test_outputs_without_a_record_are_not_trusted(tmp_path):
    (tmp_path / "teacher.bin").write_bytes(b"from an older version")  # a cache from before records existed
    logs = []
    assert _run(tmp_path, {"epochs": 8}, logs=logs)
    assert "no record" in logs[-1] and (tmp_path / "teacher.bin").read_bytes() == b'{"epochs": 8}'


def test_a_killed_stage_is_redone(tmp_path):
    out = tmp_path / "teacher.bin"
    assert not Stage(tmp_path, "teacher", {"epochs": 8}, [out], ENV).fresh()
    out.write_bytes(b"half")  # killed before done(): no record
    assert _run(tmp_path, {"epochs": 8}) and out.read_bytes() == b'{"epochs": 8}'


def test_code_version_covers_the_library_and_the_benchmarks():
    files = {p.name for root in stages.ROOTS for p in root.rglob("*.py")}
    assert {"distill.py", "label_sources.py", "stages.py"} <= files
    assert len(stages.code_version()) == 16


def test_the_recorded_environment_holds_what_decides_the_bits():
    """A stage record (and a results JSON) holds the CPU capability, CPU model, torch build and kernel variables,
    not only the torch version and thread count: a cache made on another CPU is not taken for this one's."""
    threads, strict = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        env = stages.deterministic(threads)
    finally:  # deterministic() sets process-wide state; leave the other tests as they were
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(strict)
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and env["threads"] == threads
    assert env["torch"] == torch.__version__ and {"torch_git", "torch_cuda", "cpu", "env_vars"} <= set(env)
    assert env == machine(threads)  # the record is benchmarks.machine's, field for field
