import json
import os
import re
import subprocess
import sys
from pathlib import Path

from hello_labels.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(pip install .*?)\s+#", readme, flags=re.M)
    assert len(commands) == 2, commands
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_demo_fast_path_runs_the_whole_pipeline(tmp_path, capsys):
    from hello_labels import LabelProjector
    from hello_labels.labels.fkd import LabelDir

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--ipc", "2", "--epochs", "3", "--seeds", "2", "--teacher-steps", "20",
                 "--distill-steps", "20"]) == 0
    captured = capsys.readouterr()
    text = captured.out
    stages = 6 + 5 * 2  # teacher .. fidelity, then one step per student: 5 label sources x 2 seeds
    assert "demo: students on hard labels" in captured.err and f"{stages}/{stages}" in captured.err  # on stderr
    for row in ("stored labels (SRe2L)", "projector, distilled", "projector, from labels", "teacher online (RDED)",
                "hard labels"):
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
    for name in ("projector", "projector-from-labels"):
        projector = LabelProjector.from_pretrained(out / name)
        assert projector.config.adapter_dtype == "int8" and projector.num_classes == 10  # the recipe's format
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
