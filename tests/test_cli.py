import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hello_labels.cli import main
from hello_labels.demo.pipeline import DEFAULT_BASE, RECIPES

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    """.ci/run runs each part of the README's test command, in order, and ruff before the tests."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(pip install .*?)\s+#", readme, flags=re.M)
    assert len(commands) == 2, commands
    ci, at = (ROOT / ".ci" / "run").read_text(), 0
    for part in commands[1].split(" && "):
        assert ci.find(part, at) >= 0, part
        at = ci.find(part, at) + len(part)
    assert 0 < ci.find("ruff check .") < ci.find("python -m pytest")


@pytest.mark.slow
@pytest.mark.demo
def test_demo_fast_path_runs_the_whole_pipeline(tmp_path, capsys):
    from hello_labels import LabelProjector
    from hello_labels.labels.fkd import LabelDir

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--ipc", "2", "--epochs", "3", "--seeds", "2", "--teacher-steps", "20",
                 "--distill-steps", "20"]) == 0
    captured = capsys.readouterr()
    text = captured.out
    stages = 6 + 6 * 2 + 1  # teacher .. fidelity, one step per student (6 label sources x 2 seeds), ImageNet-1K
    assert "demo: students on hard labels" in captured.err and f"{stages}/{stages}" in captured.err  # on stderr
    for row in ("stored labels (SRe2L)", "pruned labels (LPLD)", "projector, distilled", "projector, from labels",
                "teacher online (RDED)", "hard labels"):
        assert row in text
    # every student kept; paired differences per seed, with the t-interval and the ordering it supports printed
    result = json.loads((out / "demo.json").read_text())
    accs = {r["labels"]: r["student_accs"] for r in result["rows"]}
    assert all(len(a) == 2 for a in accs.values()) and result["test_images"] == 2000
    for d in result["paired"]:
        assert d["per_seed"] == [x - y for x, y in zip(accs[d["a"]], accs[d["b"]])]
        low, high = d["interval"]
        assert low <= d["mean"] <= high and d["ordering"] == ("above" if low > 0 else "below" if high < 0
                                                              else "unresolved")
        assert f"{d['a']} − {d['b']}: {d['mean'] * 100:+.1f} points, 95% CI [{low * 100:+.1f}" in text
    labels = LabelDir.scan(out / "labels")
    assert (labels.epochs, labels.num_images, labels.num_classes) == (3, 20, 10)
    assert f"{labels.total_bytes():,}" in text
    # pruned labels: whole stored files, as many as the distilled adapter's bytes hold (nearest whole file)
    rows = {r["labels"]: r for r in result["rows"]}
    adapter = (out / "projector" / "adapter.safetensors").stat().st_size
    per_file = labels.total_bytes() / labels.total_files
    kept = result["pruned_files"]
    assert len(kept) == min(labels.total_files, max(1, round(adapter / per_file)))
    assert rows["pruned labels (LPLD)"]["label_bytes"] == sum(
        (out / "labels" / f"epoch_{f // labels.batches_per_epoch}" / f"batch_{f % labels.batches_per_epoch}.tar")
        .stat().st_size for f in kept)
    assert {(d["a"], d["b"]) for d in result["paired"]} >= {("projector, distilled", "pruned labels (LPLD)"),
                                                            ("projector, from labels", "pruned labels (LPLD)")}
    # the run ends with the stored labels and this adapter at ImageNet-1K scale, from the storage accounting
    from hello_labels.storage import LabelSetting, full_label_rows, measure_framing

    imagenet = LabelSetting.from_ipc(1000, 10, dtype="float16")
    stored_bytes = full_label_rows(imagenet, measure_framing(imagenet, "full"))[0].bytes
    last = text.strip().splitlines()[-2:]
    assert last[0].startswith("ImageNet-1K, stored labels") and f"{stored_bytes:,} bytes" in last[0]
    adapter_1k = result["imagenet_1k"]["rows"][1]["bytes"]
    dtype = RECIPES[DEFAULT_BASE].adapter_dtype
    assert last[1].startswith(f"ImageNet-1K, this demo's adapter ({dtype}, 1,000 classes")
    assert f"{adapter_1k:,}" in last[1]
    assert adapter < adapter_1k < stored_bytes / 1000
    for name in ("projector", "projector-from-labels"):
        projector = LabelProjector.from_pretrained(out / name)
        assert projector.config.adapter_dtype == dtype and projector.num_classes == 10  # the recipe's format
        for published in ("config.json", "README.md"):  # identities (teacher, data), never the demo's folders
            assert str(tmp_path) not in (out / name / published).read_text(), (name, published)
        assert projector.config.base["name"] == "hello-labels:efficientnet-lite0"  # the default base
    assert len(list((out / "synthetic").rglob("*.png"))) == 20
    assert main(["info", str(out / "projector")]) == 0

    # the worked example in examples/ runs every command on these artefacts
    env = dict(os.environ, DEMO=str(out), RUNS=str(tmp_path / "runs"), STEPS="4")
    proc = subprocess.run(["bash", str(ROOT / "examples" / "pipeline.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for made in ("distilled/adapter.safetensors", "converted/adapter.safetensors", "distilled/fidelity.json",
                 "fkd-from-projector/epoch_4/batch_1.tar", "synthetic-refined/refine.json"):
        assert (tmp_path / "runs" / made).is_file(), made
    assert "full stored labels" in proc.stdout and "agreement" in proc.stdout


def test_cli_errors_are_one_line_with_status_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hello_labels", "info", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
