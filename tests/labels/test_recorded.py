"""Readers of exported label files (convert, eval) adopt the settings export-fkd recorded, so labels stay paired
with the crops they were computed on; a contradicting setting is refused, naming both values."""
import copy
import json
import shutil
import warnings

import pytest
import torch

from hello_labels.cli import main
from hello_labels.errors import BadInputError, CorruptFileError
from hello_labels.labels.export import export_fkd, run_folder
from hello_labels.labels.recorded import label_settings
from hello_labels.train.distill import DistillConfig
from hello_labels.train.jobs import convert_labels, evaluate

SIZE = 32


@pytest.fixture(scope="module")
def exported(tiny_projector, toy_folder, tmp_path_factory):
    """A projector and the labels it exported at fkd_seed 7, 32 px, cutmix (none of them the readers' defaults)."""
    projector, _ = tiny_projector(toy_folder)
    out = tmp_path_factory.mktemp("rec") / "fkd"
    export_fkd(projector, toy_folder, out, epochs=1, batch_size=16, mix_type="cutmix", input_size=SIZE,
               fkd_seed=7, progress=False)
    return projector, out


@pytest.mark.slow
def test_eval_reads_exported_labels_with_the_recorded_seed(exported, toy_folder):
    """The exporting projector against its own labels: identical views give KL 0, unless the labels are read in
    the default seed-42 order (other images under each label)."""
    projector, out = exported
    for given in ({"input_size": SIZE}, {}):  # the seed alone left out, then every setting
        report = evaluate(projector, toy_folder, labels=out, views=48, **given)
        assert report.agreement == 1.0 and report.kl < 1e-4, (given, report.agreement, report.kl)


def test_convert_trains_on_the_recorded_pairing_and_refuses_a_contradiction(exported, toy_folder, tmp_path,
                                                                         capsys):
    projector, out = exported
    # lr 0: the converted projector is the exporter, so its fidelity on the replayed labels is exact if paired
    config = DistillConfig(steps=1, lr=0.0, warmup_steps=0, calibrate=False, eval_views=32, batch_size=16)
    summary = convert_labels(toy_folder, out, tmp_path / "p", copy.deepcopy(projector), config, progress=False)
    assert summary["fidelity"]["kl"] < 1e-4, summary["fidelity"]
    with pytest.raises(BadInputError, match=r"fkd_seed 7 .* fkd_seed 42 was given"):
        convert_labels(toy_folder, out, tmp_path / "q", copy.deepcopy(projector), config, fkd_seed=42,
                       progress=False)
    with pytest.raises(BadInputError, match=r"input_size 32 .* input_size 224 was given"):
        evaluate(projector, toy_folder, labels=out, views=16, input_size=224)
    assert not (tmp_path / "q").exists()
    code = main(["eval", str(tmp_path / "p"), "--data", str(toy_folder), "--labels", str(out), "--fkd-seed", "42",
                 "--views", "16"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "fkd_seed 7" in err and "fkd_seed 42" in err, err


def test_label_settings_without_a_record_are_sre2ls(exported, tmp_path):
    _, out = exported
    assert label_settings(out, fkd_seed=None, input_size=None) == {"fkd_seed": 7, "input_size": SIZE}
    assert label_settings(out, fkd_seed=7) == {"fkd_seed": 7}
    (tmp_path / "epoch_0").mkdir()  # SRe2L's own labels: no record, SRe2L's defaults, any value accepted
    with pytest.warns(UserWarning, match="carries no record of its export"):
        assert label_settings(tmp_path, fkd_seed=None, input_size=None) == {"fkd_seed": 42, "input_size": 224}
    assert label_settings(None, fkd_seed=3, input_size=None) == {"fkd_seed": 3, "input_size": 224}


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def copied(exported, tmp_path):
    """The exported label directory copied alone, as one copies labels to a training machine (no sidecar)."""
    projector, out = exported
    shutil.copytree(out, tmp_path / "copy")
    return projector, tmp_path / "copy"


def test_a_copied_label_directory_keeps_its_settings_without_the_run_folder(copied, toy_folder, capsys):
    """Before: the copy was read in the seed-42 order at 224 px, silently: other images under each label."""
    projector, labels = copied
    for given in ({"input_size": SIZE}, {}):  # the seed alone left out (silently wrong before), then both
        report = evaluate(projector, toy_folder, labels=labels, views=48, **given)
        assert report.agreement == 1.0 and report.kl < 1e-4, (given, report.agreement, report.kl)
    with pytest.raises(BadInputError, match=r"fkd_seed 7 \(.*copy/hello-labels.json\) but fkd_seed 42 was given"):
        evaluate(projector, toy_folder, labels=labels, views=16, fkd_seed=42)


def test_labels_without_any_record_are_read_with_sre2ls_settings_and_one_warning_line(copied, toy_folder, tmp_path,
                                                                                  capsys):
    """Before: silently, no line at all. SRe2L's own label directories carry no record."""
    projector, labels = copied
    (labels / "hello-labels.json").unlink(missing_ok=True)
    projector.save_pretrained(tmp_path / "p")
    eval_argv = ["eval", tmp_path / "p", "--data", toy_folder, "--labels", labels, "--views", 16]
    code, err = _cli(capsys, *eval_argv, "--input-size", SIZE)
    assert code == 0 and len(err) == 1, err
    assert err[0].startswith(f"warning: label directory {labels} carries no record of its export") and (
        "--fkd-seed 42 (the sampler order: which image each label row belongs to)" in err[0]), err
    assert "--input-size" not in err[0]  # given, so not assumed
    assert _cli(capsys, *eval_argv, "--input-size", SIZE, "--fkd-seed", 7) == (0, [])  # nothing assumed
    convert_argv = ["convert", "--data", toy_folder, "--labels", labels, "--init", tmp_path / "p", "--steps", 3,
                    "--batch-size", 16, "--no-calibrate", "--eval-views", 0, "--quiet", "--input-size", SIZE]
    code, err = _cli(capsys, *convert_argv, "--out", tmp_path / "c")  # the CLI and the job both resolve: one line
    assert code == 0 and len(err) == 1 and "--fkd-seed 42" in err[0], err
    code, err = _cli(capsys, *eval_argv)  # both assumed: 224 px contradicts the CutMix boxes, refused after the line
    assert code == 2 and len(err) == 2 and "--input-size 224 (the size of the crops and CutMix boxes)" in err[0]
    assert err[1].startswith("error: no cutmix box"), err


def test_a_directory_exported_before_the_inside_record_still_adopts_its_run_folders(exported, toy_folder, tmp_path):
    projector, out = exported
    shutil.copytree(out, tmp_path / "fkd")
    shutil.copytree(run_folder(out), run_folder(tmp_path / "fkd"))
    (tmp_path / "fkd" / "hello-labels.json").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a record: nothing assumed, no warning
        assert label_settings(tmp_path / "fkd", fkd_seed=None, input_size=None) == {"fkd_seed": 7, "input_size": SIZE}
    record = json.loads((run_folder(tmp_path / "fkd") / "export.json").read_text())
    record["settings"]["fkd_seed"] = 3
    (run_folder(tmp_path / "fkd") / "export.json").write_text(json.dumps(record))
    shutil.copy(out / "hello-labels.json", tmp_path / "fkd")
    with pytest.raises(CorruptFileError, match=r"hello-labels.json records fkd_seed 7 but .*export.json records 3"):
        label_settings(tmp_path / "fkd", fkd_seed=None)


@pytest.mark.parametrize("name, value, shown", [("fkd_seed", "42", '"42"'), ("fkd_seed", 7.5, "7.5"),
                                                ("fkd_seed", True, "true"), ("fkd_seed", 2 ** 70, str(2 ** 70)),
                                                ("input_size", [32], "[32]"), ("input_size", 0, "0")])
def test_a_record_holding_a_setting_of_the_wrong_type_is_one_line(copied, toy_folder, tmp_path, capsys, name, value,
                                                                   shown):
    """Before: a raw TypeError/RuntimeError from torch.manual_seed or the crop size, far from the file."""
    projector, labels = copied
    (labels / "hello-labels.json").unlink(missing_ok=True)
    record = run_folder(labels) / "export.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"settings": {"fkd_seed": 7, "input_size": SIZE, name: value}}))
    projector.save_pretrained(tmp_path / "p")
    code, err = _cli(capsys, "eval", tmp_path / "p", "--data", toy_folder, "--labels", labels, "--views", 16)
    assert code == 2 and len(err) == 1, err
    assert err[0] == f"error: settings record {record}: {name} must be an integer in " + (
        f"[{-2 ** 63}, {2 ** 64})" if name == "fkd_seed" else f"[1, {2 ** 31})") + f", got {shown}", err


def test_non_finite_stored_labels_are_refused_by_eval_and_convert_alike(copied, toy_folder, tmp_path, capsys):
    """Before: eval reported "KL nan" and an agreement with rc 0; convert refused only in calibration (and
    with --no-calibrate trained on them)."""
    projector, labels = copied
    path = labels / "epoch_0" / "batch_0.tar"
    items = torch.load(path, weights_only=True)
    items[5][3, 2] = float("nan")
    torch.save(items, path)
    projector.save_pretrained(tmp_path / "p")
    code, err = _cli(capsys, "eval", tmp_path / "p", "--data", toy_folder, "--labels", labels, "--views", 48,
                     "--fkd-seed", 7, "--input-size", SIZE)
    assert code == 2 and err == [f"error: label file {path}: soft_label holds NaN or infinite values (1 of 16 rows; "
                                 f"row 3 has nan)"], err
    config = DistillConfig(steps=1, calibrate=False, eval_views=0, batch_size=16)
    with pytest.raises(CorruptFileError, match=r"batch_0.tar: soft_label holds NaN or infinite values"):
        convert_labels(toy_folder, labels, tmp_path / "c", copy.deepcopy(projector), config, input_size=SIZE,
                       fkd_seed=7, progress=False)
