"""What decides whether a CPU run repeats bit for bit, recorded beside every benchmark stage and result.

The same code and seeds give identical bits only under the same torch build (version, git commit, CUDA or CPU
wheel), the same kernels (``torch.backends.cpu.get_cpu_capability()``: ATen's vectorised kernels; oneDNN and MKL
pick theirs from the CPU model and the variables below), the same thread count (reductions split differently) and
the same variables that cap or change those choices. :func:`machine` records them; :func:`machine_difference`
names the ones that differ.
"""
from __future__ import annotations

import os
import re
from typing import List, Optional

import torch

from hello_labels.runs import cpu_model, differing_keys, flatten

# Variables that change which kernels run or how work is split; recorded whether set or not (None: unset).
ENV_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE",
            "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_CBWR", "MKL_DEBUG_CPU_TYPE", "MKL_ENABLE_INSTRUCTIONS",
            "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS")
# A record holds these; one made before they existed has only "torch" and "threads".
FIELDS = ("torch", "torch_git", "torch_cuda", "cpu_capability", "cpu", "threads", "env_vars")


def env_vars() -> dict:
    """Each of :data:`ENV_VARS` with its value here (None: unset)."""
    return {v: os.environ.get(v) for v in ENV_VARS}


def machine(threads: int) -> dict:
    """The fields of :data:`FIELDS` for this process, run at ``threads`` CPU threads."""
    return {"torch": torch.__version__, "torch_git": torch.version.git_version,
            "torch_cuda": torch.version.cuda or "cpu", "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu": cpu_model(), "threads": threads, "env_vars": env_vars()}


# Words of a CPU model that name its maker or nothing, skipped when naming the machine of a result file.
NOT_A_FAMILY = {"intel", "amd", "genuineintel", "authenticamd", "apple", "cpu", "processor", "unknown", "gen"}


def machine_name(cpu: str) -> str:
    """The CPU family a result file is named by: the first word of ``cpu`` (a record's ``cpu`` field) that is not
    its maker's, a mark or the architecture ("Intel(R) Xeon(R) Processor (x86_64)" -> "xeon", "AMD EPYC 7B13 64-Core
    Processor" -> "epyc"); "unrecorded" when none is left."""
    words = re.findall(r"[a-z0-9]+", re.sub(r"\([^)]*\)", " ", cpu.lower()))
    return next((w for w in words if w[0].isalpha() and w not in NOT_A_FAMILY), "unrecorded")


def run_name(record: Optional[dict] = None) -> str:
    """``<machine>-torch<version>`` of a machine record (default: this process's): the part of a result file's name
    ``<benchmark>-<machine>-torch<version>[-<config>]`` that says where it ran."""
    record = record or machine(torch.get_num_threads())
    return f"{machine_name(record['cpu'])}-torch{record['torch'].split('+')[0]}"


def result_name(benchmark: str, config: str = "", record: Optional[dict] = None) -> str:
    """A result file's stem: ``<benchmark>-<machine>-torch<version>[-<config>]`` (see :func:`run_name`)."""
    return "-".join(filter(None, (benchmark, run_name(record), config)))


def machine_difference(recorded: dict, here: dict) -> Optional[List[str]]:
    """``"field: recorded X, here Y"`` for each machine field that differs (``[]``: none does), or None when
    ``recorded`` predates the machine fields (it has no ``cpu_capability``)."""
    if "cpu_capability" not in recorded:
        return None
    saved, current = flatten(recorded), flatten(here)
    return [f"{k}: recorded {saved.get(k)}, here {current.get(k)}"
            for k in differing_keys(recorded, here) if k.split(".")[0] in FIELDS]
