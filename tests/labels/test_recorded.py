"""Readers of exported label files (convert, eval) adopt the settings export-fkd recorded, so labels stay paired
with the crops they were computed on; a contradicting setting is refused, naming both values."""
import copy

import pytest

from hello_labels.cli import main
from hello_labels.errors import BadInputError
from hello_labels.labels.export import export_fkd
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
    from hello_labels.labels.recorded import label_settings

    _, out = exported
    assert label_settings(out, fkd_seed=None, input_size=None) == {"fkd_seed": 7, "input_size": SIZE}
    assert label_settings(out, fkd_seed=7) == {"fkd_seed": 7}
    (tmp_path / "epoch_0").mkdir()  # SRe2L's own labels: no record, SRe2L's defaults, any value accepted
    assert label_settings(tmp_path, fkd_seed=None, input_size=None) == {"fkd_seed": 42, "input_size": 224}
    assert label_settings(None, fkd_seed=3, input_size=None) == {"fkd_seed": 3, "input_size": 224}
