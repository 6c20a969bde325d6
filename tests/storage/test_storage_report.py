"""Storage report: rows, units, and the ``storage`` command's table, JSON and errors."""
import json

import pytest

from hello_labels.cli import main
from hello_labels.errors import HelloLabelsError
from hello_labels.storage import REFERENCE, StorageRow, human_bytes, pruned_row


def test_pruned_scales_with_keep_ratio():
    full, files = 6_000_000_000, 3000
    assert pruned_row(full, files, 1.0).bytes == full
    assert pruned_row(full, files, 0.5).bytes == full // 2
    assert pruned_row(full, files, 0.2).bytes == 2 * pruned_row(full, files, 0.1).bytes
    assert pruned_row(full, files, 0.025).bytes == full // 40 and "75 of 3,000" in pruned_row(full, files, 0.025).note
    for bad in (0, -0.1, 1.5):
        with pytest.raises(HelloLabelsError, match="keep ratio"):
            pruned_row(full, files, bad)


def test_human_units():
    assert human_bytes(6_085_017_600) == "5.67 GiB" and human_bytes(812) == "812 B"
    assert human_bytes(75_120_000) == "71.6 MiB"


def test_row_is_a_plain_dataclass():
    row = StorageRow("x", 1, "y")
    assert (row.name, row.bytes, row.note, row.part_of, row.counted) == ("x", 1, "y", None, True)


def test_cli_prints_every_line_labelled_and_writes_json(tmp_path, tiny_vit_dir, capsys):
    out = tmp_path / "report.json"
    assert main(["storage", "--classes", "5", "--ipc", "4", "--epochs", "3", "--batch-size", "8", "--fp16",
                 "--top-k", "2", "--keep-ratio", "0.5", "--teacher", "timm:test_resnet",
                 "--base", f"local-dir:{tiny_vit_dir}", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    names = [r["name"] for r in data["rows"]]
    assert REFERENCE in names and "top-k labels (FKD/LPQLD, k=2)" in names and "pruned labels (LPLD, keep 0.5)" in names
    assert any(n.startswith("teacher for online labels (RDED)") for n in names)
    assert any(n.startswith("adapter (HeLlO)") for n in names)
    assert any(n.startswith("base model (public, NOT counted)") for n in names)
    for row in data["rows"]:
        assert row["name"] and row["note"] and isinstance(row["bytes"], int) and row["bytes"] >= 0
        assert f"{row['bytes']:,}" in text and row["name"] in text and row["note"] in text
        assert row["ratio_to_full_labels"] == pytest.approx(row["bytes"] / data["rows"][0]["bytes"])
    assert data["setting"]["dtype"] == "float16" and data["setting"]["files"] == 9
    assert "5 classes x 4 images/class" in text and "NOT counted" in text


@pytest.mark.parametrize("argv, message", [
    (["--classes", "0", "--ipc", "10"], "classes must be a positive integer"),
    (["--classes", "1000", "--ipc", "-5"], "images per class must be a positive integer"),
    (["--classes", "10", "--ipc", "2", "--epochs", "0"], "epochs must be a positive integer"),
    (["--classes", "10", "--ipc", "2", "--batch-size", "-1"], "batch size must be a positive integer"),
    (["--classes", "10", "--ipc", "2", "--top-k", "0"], "top-k must be a positive integer"),
    (["--classes", "10", "--ipc", "2", "--keep-ratio", "0"], "keep ratio"),
    (["--classes", "10"], "give --classes and --ipc"),
    (["--labels", "/nonexistent/labels"], "label directory not found"),
    (["--labels", "/nonexistent/labels", "--classes", "3"], "brings its own setting"),
    (["--classes", "10", "--ipc", "2", "--projector", "/nonexistent/projector"], "projector directory not found"),
])
def test_cli_bad_input_is_one_line_error_status_2(argv, message, capsys):
    assert main(["storage", "--teacher", "none", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and message in err
