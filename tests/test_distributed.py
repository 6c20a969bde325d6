"""The process group ``DistEnv.setup`` creates under ``torchrun`` is destroyed at exit, before the interpreter's
teardown (left to it, gloo's threads now and then abort a finished process with SIGABRT)."""
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.torchrun, pytest.mark.slow]

SCRIPT = """
import atexit
import torch.distributed as dist
from hello_labels.distributed import DistEnv, on_main

# registered before setup, so it runs after whatever setup registers (atexit runs last-registered first)
atexit.register(lambda: print(f"rank {dist.get_rank() if dist.is_initialized() else '-'}: "
                              f"group alive at exit {dist.is_initialized()}", flush=True))
env = DistEnv.setup("cpu")
assert dist.is_initialized() and env.world_size == 2
assert on_main(env, lambda: "from rank 0") == "from rank 0"
"""


def test_the_process_group_setup_creates_is_destroyed_at_exit(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("group alive at exit False") == 2, done.stdout
