"""Benchmark stages cached on disk and never reused stale.

Each stage's outputs sit beside ``<name>.stage.json``, a record of what made them: the code version (a digest of
every ``.py`` file of ``hello_labels`` and ``benchmarks``), the stage's settings and the machine fields that decide
its bits (:mod:`benchmarks.machine`: torch build, CPU capability and model, thread count, kernel variables). A
stage whose record is missing or differs is computed again: its old outputs are removed first and the log says
what changed. The record is written only once the stage has finished, so a killed stage is redone
(stages that checkpoint themselves, such as distillation, resume only under a matching record).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch

import hello_labels
from hello_labels.files import atomic_write_json
from hello_labels.runs import settings_difference

from .machine import machine

ROOTS = (Path(hello_labels.__file__).parent, Path(__file__).parent)


@lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 (16 hex digits) of the path and bytes of every ``.py`` file under ``hello_labels`` and ``benchmarks``."""
    h = hashlib.sha256()
    for root in ROOTS:
        for path in sorted(root.rglob("*.py")):
            h.update(f"{root.name}/{path.relative_to(root).as_posix()}\0".encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def deterministic(threads: int) -> dict:
    """Make this process's torch computations repeatable (fixed thread count, deterministic kernels); returns the
    environment a stage record holds (:func:`benchmarks.machine.machine`)."""
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    return machine(threads)


class Stage:
    """``Stage(work, name, settings, outputs, env)``: ``fresh()`` says whether ``outputs`` were made by this code
    under these settings (removing them when not); ``done()`` records that they were."""

    def __init__(self, work: Path, name: str, settings: dict, outputs: Iterable[Path], env: dict,
                 log: Optional[Callable] = print):
        self.record_path = Path(work) / f"{name}.stage.json"
        self.name, self.outputs, self.log = name, [Path(p) for p in outputs], log
        self.record = json.loads(json.dumps({"code": code_version(), "settings": settings, "env": env}))

    def fresh(self) -> bool:
        saved = json.loads(self.record_path.read_text()) if self.record_path.is_file() else None
        present = [p for p in self.outputs if p.exists()]
        if saved == self.record and len(present) == len(self.outputs):
            return True
        if present:
            why = "no record of the code and settings that made them" if saved is None else \
                settings_difference(saved, self.record) or "outputs incomplete"
            self.log(f"stage {self.name}: cached outputs are stale ({why}); recomputing")
            for path in present:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.record_path.unlink(missing_ok=True)
        return False

    def done(self) -> None:
        atomic_write_json(self.record_path, self.record)
