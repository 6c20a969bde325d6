"""The documented diffs apply to the upstream files they name. Needs upstream checkouts (no network in CI):
``HELLO_LABELS_RDED_CHECKOUT=/path/to/RDED``, ``HELLO_LABELS_SRE2L_CHECKOUT=/path/to/SRe2L``,
``HELLO_LABELS_LPLD_CHECKOUT``, ``HELLO_LABELS_GVBSM_CHECKOUT``, ``HELLO_LABELS_EDC_CHECKOUT``; skipped otherwise.
``tests/test_sre2l_family.py`` runs the patched LPLD, G-VBSM and EDC scripts."""
import os
import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


GVBSM_BRANCHES = ["gvbsm_cifar10_train_FKD.diff", "gvbsm_cifar100_train_FKD.diff", "gvbsm_tiny_imagenet_train_FKD.diff"]
DIFFS = [("HELLO_LABELS_RDED_CHECKOUT", "rded_validation.diff"),
         ("HELLO_LABELS_SRE2L_CHECKOUT", "sre2l_train_FKD.diff"),
         ("HELLO_LABELS_LPLD_CHECKOUT", "lpld_train_FKD_label_pruning_batch.diff"),
         *[("HELLO_LABELS_GVBSM_CHECKOUT", d) for d in GVBSM_BRANCHES + ["gvbsm_imagenet1k_train_FKD_parallel.diff"]],
         # EDC's CIFAR and Tiny-ImageNet scripts are G-VBSM's, byte for byte: the same diffs apply
         *[("HELLO_LABELS_EDC_CHECKOUT", d) for d in GVBSM_BRANCHES + ["edc_imagenet1k_train_FKD_parallel.diff",
                                                                       "edc_imagenet10_train_FKD_parallel.diff"]]]


@pytest.mark.upstream
@pytest.mark.parametrize("variable, diff", DIFFS)
def test_documented_diff_applies_to_upstream(variable, diff):
    checkout = os.environ.get(variable)
    if not checkout:
        pytest.skip(f"set {variable} to an upstream checkout")
    result = subprocess.run(["git", "apply", "--check", str(EXAMPLES / diff)], cwd=checkout, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("diff", sorted({d for _, d in DIFFS} - {"rded_validation.diff"}))
def test_sre2l_family_diffs_stay_small_and_wrap_the_training_loader(diff):
    lines = (EXAMPLES / diff).read_text().splitlines()
    added = [line for line in lines if line.startswith("+") and not line.startswith("+++")]
    removed = [line for line in lines if line.startswith("-") and not line.startswith("---")]
    assert len(added) <= 7 and len(removed) < len(added)
    assert sum("sre2l.ProjectorLabels(args.projector, args," in line for line in added) == 1
