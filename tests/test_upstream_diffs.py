"""The documented diffs apply to the upstream files they name. Needs upstream checkouts (no network in CI):
``HELLO_LABELS_RDED_CHECKOUT=/path/to/RDED`` and ``HELLO_LABELS_SRE2L_CHECKOUT=/path/to/SRe2L``; skipped otherwise."""
import os
import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("variable, diff", [("HELLO_LABELS_RDED_CHECKOUT", "rded_validation.diff"),
                                            ("HELLO_LABELS_SRE2L_CHECKOUT", "sre2l_train_FKD.diff")])
def test_documented_diff_applies_to_upstream(variable, diff):
    checkout = os.environ.get(variable)
    if not checkout:
        pytest.skip(f"set {variable} to an upstream checkout")
    result = subprocess.run(["git", "apply", "--check", str(EXAMPLES / diff)], cwd=checkout, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
