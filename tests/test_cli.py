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


def test_demo_quick_path_round_trips_and_reports(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "adapter:" in out and "images/s" in out
    assert (tmp_path / "projector" / "adapter.safetensors").is_file()
    assert main(["info", str(tmp_path / "projector")]) == 0
    assert "LabelProjector(" in capsys.readouterr().out


def test_cli_errors_are_one_line_with_status_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hello_labels", "info", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
