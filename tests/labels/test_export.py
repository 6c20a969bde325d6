"""export-fkd: regenerate SRe2L label directories from an adapter; SRe2L conventions, round trip, resume."""
import pytest
import sre2l_reference as ref
import torch

from hello_labels.cli import main
from hello_labels.errors import BadInputError
from hello_labels.labels.export import export_fkd
from hello_labels.labels.fkd import LabelDir, load_batch
from hello_labels.labels.settings import ExportConfig
from hello_labels.labels.targets import StoredTargets
from hello_labels.train.distill import DistillConfig
from hello_labels.train.evaluate import collect
from hello_labels.train.jobs import augmented, distill_from_teachers

SIZE = 32


@pytest.fixture(scope="module")
def projector(tiny_projector, toy_folder, toy_teacher, tmp_path_factory):
    p, images = tiny_projector(toy_folder)
    distill_from_teachers(toy_folder, [toy_teacher[1]], tmp_path_factory.mktemp("exp") / "p", p,
                          DistillConfig(steps=40, batch_size=16, lr=3e-3, warmup_steps=5), images=images,
                          progress=False)
    return p


def test_export_follows_sre2l_conventions_and_round_trips(projector, toy_folder, tmp_path):
    out = tmp_path / "fkd"
    info = export_fkd(projector, toy_folder, out, epochs=2, batch_size=16, mix_type="cutmix", fp16=True,
                      input_size=SIZE, progress=False)
    # SRe2L counts every entry as an epoch: the epochs and the settings record that travels with them, no more
    assert sorted(p.name for p in out.iterdir()) == ["epoch_0", "epoch_1", "hello-labels.json"]
    assert ref.get_FKD_info(str(out)) == (3, 16, 40)  # batch size read from element 1, as SRe2L does
    # SRe2L's plain torch.load(path), under torch >= 2.6's weights_only=True default, reads every file
    for path in sorted(out.rglob("*.tar")):
        raw = torch.load(path, weights_only=True)
        assert type(raw[3]) is float and len(raw[4]) == 4 and all(type(v) is int for v in raw[4])
    assert len(raw) == 6 and raw[5].dtype == torch.float16 and raw[5].shape == (8, 5)
    assert raw[0].dtype == torch.float32 and raw[1].dtype == torch.bool and raw[2].dtype == torch.int64
    assert (info.epochs, info.batch_size, info.num_images, info.num_classes) == (2, 16, 40, 5)

    # our convert reader replays every stored view; the projector relabels it to the stored logits (fp16)
    images = augmented(toy_folder, SIZE)
    targets = StoredTargets(images, info)
    plans = list(targets.plans(0, info.epochs * info.batches_per_epoch))
    logits, stored, _ = collect(projector, targets, plans)
    assert torch.allclose(logits, stored, atol=2e-2, rtol=2e-3)

    # SRe2L's own reading path (load_batch_config returns elements 2:; PIL replay + mix_aug in fkd_load mode)
    agree = []
    for batch_data in ref.reference_fkd_loader(str(toy_folder), str(out), 16, 2, input_size=SIZE):
        (views, _, _, _), mix_index, mix_lam, mix_bbox, soft_label = batch_data
        mixed, _, _, _ = ref.mix_aug(views.clone(), "cutmix", "fkd_load", mix_index, mix_lam, mix_bbox)
        with torch.no_grad():
            agree.append(projector(mixed).argmax(-1) == soft_label.float().argmax(-1))
    assert torch.cat(agree).float().mean() >= 0.95


def test_export_resumes_and_writes_gvbsm_index(projector, toy_folder, tmp_path):
    out = tmp_path / "fkd"
    kw = dict(epochs=2, batch_size=16, mix_type="mixup", input_size=SIZE, gvbsm_index=True, progress=False)
    info = export_fkd(projector, toy_folder, out, **kw)
    order = info.image_batches()
    first = {p: load_batch(p) for p in sorted(out.rglob("*.tar"))}
    for p, batch in first.items():
        epoch, number = int(p.parent.name[6:]), int(p.stem[6:])
        assert batch.index.tolist() == order[epoch][number]
    # an interrupted export: the last files never got written
    victims = [out / "epoch_1" / "batch_1.tar", out / "epoch_1" / "batch_2.tar"]
    for v in victims:
        v.unlink()
    before = {p: p.stat().st_mtime_ns for p in first if p not in victims}
    export_fkd(projector, toy_folder, out, **kw)
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # finished files untouched
    for v in victims:
        again = load_batch(v)
        for a, b in zip(again.to_list(), first[v].to_list()):
            assert (a is None and b is None) or torch.equal(torch.as_tensor(a), torch.as_tensor(b))


def test_export_cli_and_refusals(projector, toy_folder, tmp_path, capsys):
    projector.save_pretrained(tmp_path / "p")
    assert main(["export-fkd", str(tmp_path / "p"), "--data", str(toy_folder), "--out", str(tmp_path / "fkd"),
                 "--epochs", "1", "--batch-size", "16", "--mix-type", "cutmix", "--fp16", "--input-size",
                 str(SIZE), "--quiet"]) == 0
    assert LabelDir.scan(tmp_path / "fkd").dtype == torch.float16
    (tmp_path / "fkd" / "notes.txt").write_text("stray")
    assert main(["export-fkd", str(tmp_path / "p"), "--data", str(toy_folder), "--out", str(tmp_path / "fkd"),
                 "--epochs", "1", "--batch-size", "16", "--input-size", str(SIZE), "--quiet"]) == 2
    assert "holds files other than epoch_<e> folders" in capsys.readouterr().err


def test_a_config_its_fields_as_keywords_and_the_old_positional_call_write_the_same_files(projector, toy_folder,
                                                                                           tmp_path):
    """ExportConfig, its fields as keywords over one, and (deprecated, for one release) the old positional order
    write the same bytes, settings record included; a call without epochs or batch size is refused."""
    export_fkd(projector, toy_folder, tmp_path / "config",
               ExportConfig(epochs=1, batch_size=16, mix_type="cutmix", input_size=SIZE, seed=3), progress=False)
    export_fkd(projector, toy_folder, tmp_path / "over", ExportConfig(epochs=1, batch_size=8, seed=3),
               batch_size=16, mix_type="cutmix", input_size=SIZE, progress=False)
    with pytest.warns(DeprecationWarning, match="pass the settings as keywords or as an ExportConfig") as caught:
        export_fkd(projector, toy_folder, tmp_path / "old", 1, 16, "cutmix", False, SIZE, 0.08, 1.0, 42, 3,
                   progress=False)
    assert caught[0].filename == __file__  # the warning points at the old-style call

    def files(folder):
        return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    written = files(tmp_path / "config")
    assert len(written) == 4 and written == files(tmp_path / "over") == files(tmp_path / "old")
    with pytest.raises(TypeError, match="multiple values for \\['batch_size'\\]"):
        export_fkd(projector, toy_folder, tmp_path / "twice", 1, 16, batch_size=8)
    with pytest.raises(BadInputError, match="epochs and batch size must be positive integers, got None and 16"):
        export_fkd(projector, toy_folder, tmp_path / "none", batch_size=16, progress=False)
    assert not (tmp_path / "none").exists() and not (tmp_path / "twice").exists()
