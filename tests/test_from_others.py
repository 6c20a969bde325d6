"""Text and files written by others (config.json, a Hub card, export.json, a folder name) reach the terminal and the
parsers: a wrong type, a control character, deep nesting or a YAML tag or alias is one line, never a traceback, a
rewritten screen or a push of the file as it is."""
import json
import os
import subprocess
import sys

import pytest
from hub_server import hub  # noqa: F401  (fixture)

from hello_labels import HelloLabelsError, LabelProjector
from hello_labels.cli import main
from hello_labels.errors import BadInputError, CorruptFileError

BASE = "hello-labels:tiny-clip-vit"
HOSTILE = ["\x1b]0;owned\x07", "\x1b[2J", "cat\nfidelity:       99.9%", "\u202egnp.exe", "\x9b31m"]
RAW = ("\x1b", "\x07", "\r", "\x9b", "\u202e")  # none of these may reach the terminal from a file
DEEP = "[" * 200_000 + "]" * 200_000


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("others") / "p"
    LabelProjector.from_base(BASE, class_names=["cat", "dog", "car"], templates="simple", head_rank=4,
                             metadata={"dataset": "toy"}).save_pretrained(path)
    return path


def _copy(saved, tmp_path, edit=None, text=None, name="copy"):
    out = tmp_path / name
    out.mkdir()
    for file in ("adapter.safetensors", "README.md"):
        (out / file).write_bytes((saved / file).read_bytes())
    config = json.loads((saved / "config.json").read_text())
    if edit:
        edit(config)
    (out / "config.json").write_text(text if text is not None else json.dumps(config))
    return out


def _fail(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and not any(c in err for c in RAW)
    return err


# ----------------------------------------------------------------------------- metadata of the wrong types
FIDELITY = {"agreement": 0.5, "kl": 0.1, "temperature": 1.0, "views": 8}


@pytest.mark.parametrize("metadata, field", [
    ({"fidelity": {}}, r"'metadata.fidelity' lacks \['agreement', 'kl', 'temperature', 'views'\]"),
    ({"fidelity": dict(FIDELITY, agreement="high")}, r"'metadata.fidelity.agreement' must be a number, got \"high\""),
    ({"fidelity": FIDELITY, "fidelity_mixed": dict(FIDELITY, views=-1)}, r"'metadata.fidelity_mixed.views' must be"),
    ({"teacher": [{"spec": "timm:resnet18", "weight": "half"}]}, r"'metadata.teacher' must be a list of teachers"),
    ({"teacher": {"source": "label_dir", "name": "labels"}}, r"'metadata.teacher' must be"),  # lacks its counts
    ({"dataset": ["toy"]}, r"'metadata.dataset' must be a string or an object"),
    ({"datasets": 5}, r"'metadata.datasets' must be a list of Hub dataset ids"),
    ({"labels_trained": {"first_file": "x", "epochs": "3"}}, r"'metadata.labels_trained.epochs' must be"),
    ({"license": ["mit"]}, r"'metadata.license' must be a string"),
])
def test_info_names_the_metadata_field_of_the_wrong_type(saved, tmp_path, capsys, metadata, field):
    """Before: ``info`` (and the next save's card) died in a raw KeyError/ValueError/TypeError, or the projector
    loaded with metadata that broke its card on the next save."""
    path = _copy(saved, tmp_path, lambda c: c["metadata"].update(metadata))
    assert "config.json" in _fail(["info", str(path)], capsys)
    with pytest.raises(CorruptFileError, match=field):
        LabelProjector.from_pretrained(path)
    with pytest.raises(BadInputError, match=field):  # from Python too, before any save writes a card of it
        LabelProjector.from_base(BASE, class_names=["cat"], templates="simple", metadata=metadata)


def test_one_hostile_card_on_the_hub_is_skipped_with_a_warning(hub, saved, tmp_path, capsys):
    """Before: one card with ``agreement: high`` made ``hello-labels list`` fail for every user (raw ValueError);
    a base name from a card went to the terminal raw."""
    hub.add_repo("lab/good", saved)
    card = (saved / "README.md").read_text().replace("hello_labels:\n", "hello_labels:\n  fidelity: {agreement: high, "
                                                     "kl: 0.1, temperature: 1.0, views: 8}\n", 1)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "README.md").write_text(card)
    hub.add_repo("lab/bad", tmp_path / "bad")
    (tmp_path / "spoof").mkdir()  # a base name that would clear the screen
    (tmp_path / "spoof" / "README.md").write_text(card.replace("agreement: high", "agreement: 0.5").replace(
        f"name: {BASE}", 'name: "\\e[2Jx\\nlab/fake"'))
    hub.add_repo("lab/spoof", tmp_path / "spoof")
    from hello_labels.model.hub import find_projectors

    with pytest.warns(UserWarning, match=r"^skipped lab/bad: its card: 'hello_labels.fidelity.agreement' must be a "
                                         r"number, got \"high\"$") as warned:
        find_projectors()
    assert [w.category.__name__ for w in warned] == ["UnreadableCardWarning"]
    assert main(["list"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == ["warning: skipped lab/bad: its card: 'hello_labels.fidelity.agreement' must be a "
                                "number, got \"high\""]
    assert "lab/good" in out and "lab/bad" not in out and "lab/spoof" in out
    assert r"\x1b[2Jx\nlab/fake" in out and not any(c in out for c in RAW) and "\nlab/fake" not in out


# ----------------------------------------------------------------------------- control characters
def test_escape_makes_terminal_controls_visible_and_leaves_text_alone():
    from hello_labels.errors import escape

    assert escape("a\x1b[2J\r\n\t\x07\x7f\x9b\u202e\u2066\u2028\udcff") == \
        r"a\x1b[2J\r\n\t\x07\x7f\x9b\u202e\u2066\u2028\udcff"
    assert escape("Grüße, 猫, Ελληνικά, 🐈 \\x1b") == "Grüße, 猫, Ελληνικά, 🐈 \\x1b"
    assert escape(escape("\x1b\n")) == escape("\x1b\n")
    assert str(HelloLabelsError("base 'x\ny' unknown")) == r"base 'x\ny' unknown"  # one line, whatever it quotes


def test_info_and_errors_show_names_from_files_escaped(saved, tmp_path, capsys):
    """Before: class names from config.json went to the terminal raw (a title change, a cleared screen, a forged
    ``fidelity`` line, reversed text), and so did a base name in an error message (two lines)."""
    path = tmp_path / "classes"
    LabelProjector.from_base(BASE, class_names=HOSTILE, templates="simple", head_rank=4).save_pretrained(path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in RAW)
    assert r"\x1b]0;owned\x07" in out and r"cat\nfidelity:       99.9%" in out and r"\u202egnp.exe" in out
    assert not any(line.startswith("fidelity:       99.9%") for line in out.splitlines())
    bad = _copy(saved, tmp_path, lambda c: c["base"].update(name="nope\x1b[2J\nerror: all is well"), name="base")
    assert r"nope\x1b[2J\nerror: all is well" in _fail(["info", str(bad)], capsys)


def test_eval_table_escapes_class_names():
    from hello_labels.train.evaluate import FidelityReport

    report = FidelityReport(0.5, 0.1, 1.0, 4, per_class={n: 0.5 for n in HOSTILE},
                            per_class_views={n: 1 for n in HOSTILE})
    lines = report.table().splitlines()
    assert len(lines) == 2 + len(HOSTILE) and not any(c in report.table() for c in RAW)


def _cli(*argv):
    return subprocess.run([sys.executable, "-m", "hello_labels", *argv], capture_output=True, text=True,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=300)


def test_log_lines_are_one_escaped_line():
    """Before: library log lines (open_clip quotes paths and Hub ids from config.json) went to stderr raw."""
    import logging

    from hello_labels.cli import _EscapedFormatter

    record = logging.makeLogRecord({"msg": "no weights in %s", "args": ("x\x1b[2J\nerror: fine",)})
    assert _EscapedFormatter("%(message)s").format(record) == r"no weights in x\x1b[2J\nerror: fine"


@pytest.mark.slow
def test_warnings_are_one_escaped_line(saved, tmp_path):
    """Before: a warning came as Python's two lines with the folder name raw. Run as a user runs it (pytest catches
    warnings and log records itself)."""
    folder = _copy(saved, tmp_path, lambda c: c.pop("base_pin"), name="unpacked\x1b]0;owned\x07")
    run = _cli("info", str(folder))
    assert run.returncode == 0, run.stderr
    assert run.stderr.startswith("warning: ") and run.stderr.count("\n") == 1 and r"\x1b]0;owned\x07" in run.stderr
    assert not any(c in run.stderr + run.stdout for c in RAW)


@pytest.mark.slow
def test_an_unknown_pretrained_tag_is_one_escaped_line(saved, tmp_path):
    """Before: open_clip's own log line (the tag raw, then the known tags) came before our error, two lines."""
    base = {"kind": "open_clip", "name": "RN50", "pretrained": "openai\x1b[2J\rall is well"}
    run = _cli("info", str(_copy(saved, tmp_path, lambda c: c.update(base=base), name="tag")))
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr  # not open_clip's log line too
    assert r"has no pretrained tag 'openai\x1b[2J\rall is well'" in run.stderr
    assert not any(c in run.stderr for c in RAW)


# ----------------------------------------------------------------------------- deep nesting
def test_a_deeply_nested_config_is_one_line_on_load_info_and_save(saved, tmp_path, capsys):
    """Before: a raw RecursionError from json.loads on load and ``info``, and on a save into that folder."""
    text = (saved / "config.json").read_text().replace('"metadata": {', f'"metadata": {{"deep": {DEEP}, ', 1)
    path = _copy(saved, tmp_path, text=text)
    with pytest.raises(CorruptFileError, match=r"config.json: JSON nested 200002 levels deep; at most 100"):
        LabelProjector.from_pretrained(path)
    _fail(["info", str(path)], capsys)
    LabelProjector.from_pretrained(saved).save_pretrained(path)  # replaces it
    assert LabelProjector.from_pretrained(path).num_classes == 3


def test_json_depth_counts_brackets_outside_strings_only():
    from hello_labels.files import json_depth

    assert json_depth('{"a": [1, {"b": "]]]}}[[[\\"["}]}') == 3 and json_depth("7") == 0 and json_depth(DEEP) == 200_000


def test_deep_json_from_others_is_refused_in_one_line(tmp_path):
    """Before: a raw RecursionError from each of these readers."""
    from hello_labels.labels.classes import _load_map
    from hello_labels.labels.export import _record
    from hello_labels.labels.recorded import LABEL_RECORD, RECORD_FILE, recorded_settings, run_folder
    from hello_labels.train.refine import load_patches

    labels = tmp_path / "labels"
    labels.mkdir()
    record_path = run_folder(labels) / RECORD_FILE
    record_path.parent.mkdir()
    record_path.write_text(DEEP)  # export.json, beside label files from someone else
    with pytest.raises(CorruptFileError, match="export.json is unreadable .*nested 200000 levels deep; at most 100"):
        recorded_settings(labels)  # convert and eval read it
    with pytest.raises(CorruptFileError, match="export.json is damaged .*nested 200000 levels deep"):
        _record(record_path, labels, {}, 1)  # export-fkd into that folder
    record_path.unlink()
    (labels / LABEL_RECORD).write_text(DEEP)  # the record inside a copied label directory
    with pytest.raises(CorruptFileError, match="hello-labels.json is unreadable .*nested 200000 levels deep"):
        recorded_settings(labels)
    (tmp_path / "map.json").write_text(DEEP)
    with pytest.raises(CorruptFileError, match="class map .* nested 200000 levels deep"):
        _load_map(tmp_path / "map.json")
    with pytest.raises(CorruptFileError, match="patch map .* nested 200000 levels deep"):
        load_patches(tmp_path / "map.json", tmp_path)


# ----------------------------------------------------------------------------- YAML in the card
BOMB = "lol0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))


@pytest.mark.parametrize("metadata, message", [
    ("exploit: !!python/object/apply:os.system [echo owned]\n", "holds the YAML tag '!!python/object/apply:os.system'"),
    (BOMB, "holds the YAML anchor or alias &a0"),
    (f"deep: {DEEP}\n", "nests deeper than 100 levels"),
    ("key: [unclosed\n", "is not valid YAML"),
])
def test_push_refuses_a_card_whose_yaml_is_not_plain_data(hub, saved, tmp_path, capsys, metadata, message):
    """Before: a ``!!python`` tag or a deep card was a raw ConstructorError/RecursionError, an alias bomb was
    pushed as it was (to expand in whatever reads it next)."""
    folder = _copy(saved, tmp_path)
    card = (folder / "README.md").read_text()
    (folder / "README.md").write_text(card.replace("---\n", "---\n" + metadata, 1))
    err = _fail(["push", str(folder), "lab/x"], capsys)
    assert "README.md: its metadata" in err and message in err
    with pytest.raises(CorruptFileError, match="README.md: its metadata"):
        from hello_labels.model.publish import push_directory

        push_directory(folder, "lab/x")
    assert not any("/commit/" in path or path == "/api/repos/create" for _, path in hub.requests)
    assert (folder / "README.md").read_text() == card.replace("---\n", "---\n" + metadata, 1)  # left as it was


def test_our_own_cards_are_plain_data(saved):
    from hello_labels.model.card import read_card

    assert read_card((saved / "README.md").read_bytes(), "README.md").startswith("---\n")
