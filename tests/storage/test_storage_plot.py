"""``storage --plot``: the series are the report's own rows at each IPC, and the PNG is written."""
import sys

import pytest

from hello_labels.cli import main
from hello_labels.model.config import ADAPTER_DTYPES
from hello_labels.storage import REFERENCE, LabelSetting, storage_report
from hello_labels.storage.plot import ADAPTER_PLOT_DTYPES, plot_storage, storage_series

SETTING = LabelSetting.from_ipc(5, 1, epochs=3, batch_size=8, dtype="float16")
OPTIONS = dict(top_k=2, keep_ratio=0.5)


def test_series_are_the_report_rows_at_each_ipc(tmp_path, tiny_vit_dir):
    base = f"local-dir:{tiny_vit_dir}"
    series = storage_series(SETTING, ipcs=[3, 1, 2], epochs=[2, 3], teacher="timm:test_resnet", bases=[base],
                            **OPTIONS)
    assert series.ipcs == [1, 2, 3] and {s.epochs for s in series.lines} == {2, 3, None}
    for epochs in (2, 3):
        for i, ipc in enumerate(series.ipcs):
            report = storage_report(LabelSetting.from_ipc(5, ipc, epochs=epochs, batch_size=8, dtype="float16"),
                                    teacher=None, **OPTIONS)
            top = [r for r in report.rows if r.part_of is None]
            assert [series.line(kind, epochs).bytes[i] for kind in ("full", "topk", "pruned")] == [
                r.bytes for r in top]
            assert series.line("full", epochs).row == REFERENCE
    # flat lines: the teacher and the fp16 adapter rows of a report with the same teacher and base
    report = storage_report(SETTING, teacher="timm:test_resnet", bases=[base], adapter_dtype="float16", **OPTIONS)
    for kind in ("teacher", "adapter"):
        line = series.line(kind)
        assert line.bytes == [report.row(line.row).bytes] * 3
    drawn = [s.dtype for s in series.lines if s.kind == "adapter"]
    assert drawn == [d for d in ADAPTER_PLOT_DTYPES if d in ADAPTER_DTYPES] and drawn == list(ADAPTER_PLOT_DTYPES)
    assert ("int8" in " ".join(series.notes)) == ("int8" not in ADAPTER_DTYPES)

    plot_storage(series, tmp_path / "storage.png", mark_ipc=2)
    assert (tmp_path / "storage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_writes_the_plot(tmp_path, capsys):
    out = tmp_path / "plot.png"
    assert main(["storage", "--classes", "5", "--ipc", "2", "--epochs", "3", "--batch-size", "8", "--fp16",
                 "--top-k", "2", "--teacher", "none", "--projector", str(_saved_projector(tmp_path)),
                 "--plot", str(out), "--plot-epochs", "1,3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and REFERENCE in capsys.readouterr().out


def _saved_projector(tmp_path):
    """A saved projector on the shipped tiny config (reading its files builds no base)."""
    from hello_labels import LabelProjector

    path = tmp_path / "projector"
    LabelProjector.from_base("hello-labels:tiny-clip-vit", class_names=[f"c{i}" for i in range(5)],
                             head_init="zero").save_pretrained(path)
    return path


@pytest.mark.parametrize("argv, message", [
    (["--plot-epochs", "100"], "--plot-epochs needs --plot"),
    (["--plot", "x.png", "--plot-epochs", "100,x"], "--plot-epochs must be comma-separated integers"),
    (["--plot", "x.png", "--plot-epochs", "0"], "epochs must be a positive integer"),
])
def test_cli_plot_bad_input_is_one_line_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["storage", "--classes", "5", "--ipc", "1", "--top-k", "2", "--teacher", "none", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and message in err


def test_missing_matplotlib_is_one_line_error_before_any_work(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert main(["storage", "--classes", "5", "--ipc", "1", "--top-k", "2", "--teacher", "none",
                 "--plot", str(tmp_path / "x.png")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip().count("\n") == 0
    assert "matplotlib" in captured.err and "hello-labels[plot]" in captured.err


def test_plot_help_names_every_adapter_line_drawn():
    """``storage --help`` says which adapter lines ``--plot`` draws: the dtypes ``storage_series`` draws per base."""
    from hello_labels.cli import build_parser

    storage = build_parser()._subparsers._group_actions[0].choices["storage"]
    plot = next(a for a in storage._actions if "--plot" in a.option_strings)
    assert all(d in plot.help for d in ADAPTER_PLOT_DTYPES), plot.help
