"""What decides whether a CPU run repeats bit for bit, recorded beside every benchmark stage and result.

The same code and seeds give identical bits only under the same torch build (version, git commit, CUDA or CPU
wheel), the same kernels (``torch.backends.cpu.get_cpu_capability()``: ATen's vectorised kernels; oneDNN and MKL
pick theirs from the CPU model and the variables below), the same thread count (reductions split differently) and
the same variables that cap or change those choices. :func:`machine` records them; :func:`machine_difference`
names the ones that differ.
"""
from __future__ import annotations

import os
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


def machine_difference(recorded: dict, here: dict) -> Optional[List[str]]:
    """``"field: recorded X, here Y"`` for each machine field that differs (``[]``: none does), or None when
    ``recorded`` predates the machine fields (it has no ``cpu_capability``)."""
    if "cpu_capability" not in recorded:
        return None
    saved, current = flatten(recorded), flatten(here)
    return [f"{k}: recorded {saved.get(k)}, here {current.get(k)}"
            for k in differing_keys(recorded, here) if k.split(".")[0] in FIELDS]
