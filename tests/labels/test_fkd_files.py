"""SRe2L label files as SRe2L writes them: archive member names, no stray entries, empty files named up front."""
import pickle
import zipfile

import numpy as np
import pytest
import sre2l_reference as ref
import torch

from hello_labels import HelloLabelsError
from hello_labels.labels.export import export_fkd, run_folder
from hello_labels.labels.fkd import FKDBatch, LabelDir, load_batch, save_batch
from hello_labels.labels.targets import load_image_labels

SIZE = 32
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# three crops inside the image: (top, left, height, width) as fractions of it, as SRe2L stores them
CROPS = torch.tensor([[0.0, 0.25, 1.0, 0.75], [0.5, 0.5, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4]])


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 5))


def export(folder, out, **kw):
    return export_fkd(tiny_model(), folder, out, epochs=kw.pop("epochs", 2), batch_size=16, input_size=SIZE,
                      mean=MEAN, std=STD, progress=False, **kw)


def test_batch_files_hold_the_archive_names_of_sre2ls_own_torch_save(tmp_path):
    batch = FKDBatch(torch.rand(3, 4), torch.tensor([True, False, True]), torch.tensor([2, 0, 1]), 0.4,
                     [1, 2, 5, 6], torch.randn(3, 5))
    save_batch(tmp_path / "ours" / "batch_7.tar", batch, fp16=True)
    (tmp_path / "theirs").mkdir()
    torch.save(FKDBatch(**{**batch.__dict__, "soft_label": batch.soft_label.half()}).to_list(),
               tmp_path / "theirs" / "batch_7.tar")  # what generate_soft_label.py does
    names = [zipfile.ZipFile(tmp_path / d / "batch_7.tar").namelist() for d in ("ours", "theirs")]
    assert names[0] == names[1] and names[0][0].startswith("batch_7/")
    assert [p.name for p in (tmp_path / "ours").iterdir()] == ["batch_7.tar"]


def test_stale_temporaries_are_cleared_and_never_reach_sre2ls_reader(toy_folder, tmp_path):
    out = tmp_path / "fkd"
    export(out=out, folder=toy_folder)
    assert sorted(p.name for p in out.iterdir()) == ["epoch_0", "epoch_1", "hello-labels.json"]
    assert not list(out.rglob(".*"))  # lock, full record and temporaries live beside the directory, not in it
    # what a kill mid-write left: an old version's temporary inside epoch_0, a new one's in the run folder
    (out / "epoch_0" / ".batch_1.tar.k_3x9q.tmp").write_bytes(b"half a file")
    (run_folder(out) / ".batch_2.tar.a_b.tmp").mkdir()
    (run_folder(out) / ".batch_2.tar.a_b.tmp" / "batch_2.tar").write_bytes(b"half")
    export(out=out, folder=toy_folder)
    assert sorted(p.name for p in (out / "epoch_0").iterdir()) == ["batch_0.tar", "batch_1.tar", "batch_2.tar"]
    assert not list(run_folder(out).glob("*.tmp"))
    assert ref.get_FKD_info(str(out)) == (3, 16, 40)  # SRe2L's reader lists the folder: 2 epochs + the record


def test_empty_label_files_are_named_before_training(toy_folder, tmp_path):
    out = tmp_path / "fkd"
    export(out=out, folder=toy_folder)
    (out / "epoch_1" / "batch_2.tar").write_bytes(b"")
    with pytest.raises(HelloLabelsError, match=r"epoch_1/batch_2.tar is empty \(0 bytes\)"):
        LabelDir.scan(out)
    with pytest.raises(HelloLabelsError, match=r"batch_2.tar is truncated or not an SRe2L batch file \(EOFError\)"):
        load_batch(out / "epoch_1" / "batch_2.tar")
    (tmp_path / "labels.pt").write_bytes(b"")
    with pytest.raises(HelloLabelsError, match=r"cannot read label file .*labels.pt \(EOFError\)"):
        load_image_labels(str(tmp_path / "labels.pt"))


def test_our_files_load_under_torchs_weights_only_default_and_sre2ls_numpy_files_still_load(tmp_path):
    numpy_bbox = [np.int64(1), np.int64(2), np.int64(5), np.int64(6)]  # as SRe2L's rand_bbox (np.clip) makes it
    batch = FKDBatch(CROPS, torch.tensor([True, False, True]), torch.tensor([2, 0, 1]), np.float64(0.4),
                     numpy_bbox, torch.randn(3, 5))
    save_batch(tmp_path / "ours.tar", batch)
    items = torch.load(tmp_path / "ours.tar", weights_only=True)  # SRe2L's torch.load(path) on torch >= 2.6
    assert items[4] == [1, 2, 5, 6] and all(type(v) is int for v in items[4]) and type(items[3]) is float
    assert items[3] == 0.4 and torch.equal(items[5], batch.soft_label)

    torch.save(batch.to_list(), tmp_path / "theirs.tar")  # SRe2L's own file: numpy scalars
    with pytest.raises(pickle.UnpicklingError):  # why SRe2L users set TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
        torch.load(tmp_path / "theirs.tar", weights_only=True)
    for name in ("ours.tar", "theirs.tar"):  # convert reads both, still weights_only (numpy scalars allow-listed)
        assert [int(v) for v in load_batch(tmp_path / name).mix_bbox] == [1, 2, 5, 6]


def _sre2l_batch(**change):
    """A valid CutMix batch of 3 as SRe2L's generate_soft_label.py stores it (numpy box), with ``change`` applied."""
    fields = dict(coords=CROPS, flip=torch.tensor([True, False, True]), mix_index=torch.tensor([2, 0, 1]), mix_lam=0.4,
                  mix_bbox=[np.int64(0), np.int64(2), np.int64(16), np.int64(6)], soft_label=torch.randn(3, 5))
    return FKDBatch(**{**fields, **change})


@pytest.mark.parametrize("change, named", [
    (dict(coords=torch.tensor([[0.0, 0.25, 1.0, 0.75], [0.6, 0.5, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4]])),
     "coords[1] = [0.6, 0.5, 0.5, 0.5] is not a crop inside the image"),
    (dict(coords=torch.tensor([[0.0, 0.25, 1.0, 0.75], [0.5, -0.1, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4]])),
     "coords[1] = [0.5, -0.1, 0.5, 0.5] is not a crop inside the image"),
    (dict(coords=torch.tensor([[0.0, 0.25, 1.0, 0.75], [0.5, 0.5, 0.5, 0.5], [0.1, 0.2, -0.3, 0.4]])),
     "coords[2] = [0.1, 0.2, -0.3, 0.4] is not a crop"),  # a reversed crop: negative height
    (dict(coords=torch.tensor([[0.0, 0.25, 1.0, 0.75], [0.5, 0.5, 0.5, 0.5], [0.1, float("nan"), 0.3, 0.4]])),
     "coords[2] = [0.1, nan, 0.3, 0.4] is not a crop"),
    (dict(mix_index=torch.tensor([2, -1, 1])), "mix_index[1] = -1 is not a position 0..2 in the batch"),
    (dict(mix_index=torch.tensor([2, 0, 3])), "mix_index[2] = 3 is not a position 0..2 in the batch"),
    (dict(mix_bbox=[np.int64(9), np.int64(2), np.int64(4), np.int64(6)]), "mix_bbox = [9, 2, 4, 6] is not a box"),
    (dict(mix_bbox=[0, 2, 16.5, 6]), "mix_bbox = [0, 2, 16.5, 6] must be [x1, y1, x2, y2] integers"),
    (dict(mix_index=None, mix_lam=None), "mix_bbox given without mix_index"),
    (dict(mix_lam=float("nan")), "mix_lam = nan is not a mixing weight in [0, 1]"),
    (dict(mix_lam=1.5), "mix_lam = 1.5 is not a mixing weight in [0, 1]"),
    (dict(soft_label=torch.tensor([[0.0] * 5, [1.0] * 5, [2.0, float("inf"), 0, 0, 0]]).half()),
     "soft_label holds NaN or infinite values (1 of 3 rows; row 2 has inf)"),
])
def test_a_label_file_with_values_outside_sre2ls_conventions_is_refused_naming_file_field_and_value(
        tmp_path, change, named):
    """Before: accepted (crops padded with black, mix_index -1 taking the last image, NaN labels trained or
    evaluated as KL nan) or raw IndexError/ValueError deep in training. SRe2L's own files pass
    (test_sre2l_reference.py loads every file SRe2L's writer makes)."""
    torch.save(_sre2l_batch().to_list(), tmp_path / "good.tar")
    load_batch(tmp_path / "good.tar")
    torch.save(_sre2l_batch(**change).to_list(), tmp_path / "batch_1.tar")
    with pytest.raises(HelloLabelsError) as err:
        load_batch(tmp_path / "batch_1.tar")
    message = str(err.value)
    assert message.startswith(f"label file {tmp_path / 'batch_1.tar'}: ") and named in message
    assert "\n" not in message


def test_per_image_label_files_with_nan_are_refused_by_the_same_check(tmp_path):
    labels = torch.randn(4, 3)
    labels[2, 1] = float("nan")
    torch.save(labels, tmp_path / "labels.pt")
    with pytest.raises(HelloLabelsError, match=r"labels.pt holds NaN or infinite values \(1 of 4 rows; row 2 has nan"):
        load_image_labels(str(tmp_path / "labels.pt"))
