"""Self-checks of the independent SRe2L reference (``tests/sre2l_reference.py``): writer and reader agree."""
import os
from pathlib import Path

import numpy as np
import pytest
import sre2l_reference as ref
import torch
from PIL import Image

from hello_labels.labels.fkd import load_batch

N_CLASSES, PER_CLASS, IMG_W, IMG_H = 3, 4, 40, 48
N_IMG, BS, EPOCHS, SIZE = N_CLASSES * PER_CLASS, 5, 2, 16
N_BATCHES = -(-N_IMG // BS)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgfolder")
    rng = np.random.default_rng(0)
    for c in range(N_CLASSES):
        (root / f"class_{c}").mkdir()
        for k in range(PER_CLASS):
            pixels = rng.integers(0, 256, size=(IMG_H, IMG_W, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class_{c}" / f"img_{k}.png")
    return str(root)


class RecordingTeacher(torch.nn.Module):
    """Tiny seeded classifier that remembers every input batch it sees."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(123)
        self.net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 3))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.net(x)


def _generate(image_dir, out, mix_type, use_fp16, seed=0, **kw):
    torch.manual_seed(seed)
    np.random.seed(seed)
    teacher = RecordingTeacher()
    ref.generate_soft_labels(image_dir, teacher, str(out), EPOCHS, BS, mix_type=mix_type, use_fp16=use_fp16,
                             input_size=SIZE, **kw)
    return teacher


def _load(path):
    return torch.load(path, weights_only=False)


def _replay_and_check(image_dir, fkd, teacher, mix_type, atol):
    """Replay through the reference loader and compare against the teacher's recorded inputs and the files."""
    n = 0
    for k, batch_data in enumerate(ref.reference_fkd_loader(image_dir, fkd, BS, EPOCHS, input_size=SIZE)):
        epoch, b = divmod(k, N_BATCHES)
        images, target, flip_status, coords_status = batch_data[0]
        mix_index, mix_lam, mix_bbox, soft_label = batch_data[1:5]
        stored = _load(os.path.join(fkd, f"epoch_{epoch}", f"batch_{b}.tar"))
        # batch b of epoch e is file epoch_e/batch_b, and flip/coords are the stored ones
        assert torch.equal(coords_status, stored[0]) and torch.equal(flip_status, stored[1])
        assert torch.equal(soft_label, stored[5])
        assert images.shape == (len(target), 3, SIZE, SIZE) and target.dtype == torch.int64
        mixed, _, _, _ = ref.mix_aug(images.clone(), mix_type, "fkd_load", mix_index, mix_lam, mix_bbox)
        # exact pixel replay: the float crop boxes round back to the saved integer boxes
        assert torch.equal(mixed, teacher.seen[k])
        with torch.no_grad():
            out = teacher.net(mixed)
        torch.testing.assert_close(out.to(soft_label.dtype).float(), soft_label.float(), atol=atol, rtol=atol)
        n += 1
    assert n == EPOCHS * N_BATCHES


@pytest.fixture(scope="module")
def cutmix_run(image_dir, tmp_path_factory):
    fkd = tmp_path_factory.mktemp("fkd_cutmix") / "labels"
    teacher = _generate(image_dir, fkd, "cutmix", True)
    return str(fkd), teacher


def test_layout_and_element_types(cutmix_run):
    fkd, _ = cutmix_run
    assert sorted(os.listdir(fkd)) == [f"epoch_{e}" for e in range(EPOCHS)]
    sizes = [BS] * (N_IMG // BS) + [N_IMG % BS]
    for e in range(EPOCHS):
        assert sorted(os.listdir(os.path.join(fkd, f"epoch_{e}"))) == [f"batch_{b}.tar" for b in range(N_BATCHES)]
        for b, bsz in enumerate(sizes):
            cfg = _load(os.path.join(fkd, f"epoch_{e}", f"batch_{b}.tar"))
            assert isinstance(cfg, list) and len(cfg) == 6
            coords, flip, index, lam, bbox, soft = cfg
            assert coords.dtype == torch.float32 and coords.shape == (bsz, 4)
            assert ((coords >= 0) & (coords <= 1)).all()
            assert (coords[:, 0] + coords[:, 2] <= 1 + 1e-6).all() and (coords[:, 1] + coords[:, 3] <= 1 + 1e-6).all()
            pixels = coords.double() * torch.tensor([IMG_H, IMG_W, IMG_H, IMG_W], dtype=torch.float64)
            assert torch.allclose(pixels, pixels.round(), atol=1e-4)  # integer boxes / (H, W, H, W)
            assert flip.dtype == torch.bool and flip.shape == (bsz,)
            assert index.dtype == torch.int64 and sorted(index.tolist()) == list(range(bsz))
            assert type(lam) is float and 0.0 <= lam <= 1.0
            assert isinstance(bbox, list) and len(bbox) == 4
            assert all(isinstance(v, np.integer) for v in bbox)
            assert 0 <= bbox[0] <= bbox[2] <= SIZE and 0 <= bbox[1] <= bbox[3] <= SIZE
            assert soft.dtype == torch.float16 and soft.shape == (bsz, N_CLASSES)
            load_batch(os.path.join(fkd, f"epoch_{e}", f"batch_{b}.tar"))  # SRe2L's files pass our checks


def test_get_fkd_info(cutmix_run):
    fkd, _ = cutmix_run
    assert ref.get_FKD_info(fkd) == (EPOCHS, BS, N_IMG)


def test_cutmix_fp16_replay(image_dir, cutmix_run):
    fkd, teacher = cutmix_run
    _replay_and_check(image_dir, fkd, teacher, "cutmix", atol=2e-3)


@pytest.mark.parametrize("mix_type", ["mixup", None])
def test_mixup_and_plain_replay(image_dir, tmp_path, mix_type):
    fkd = str(tmp_path / "labels")
    teacher = _generate(image_dir, fkd, mix_type, False, seed=1)
    cfg = _load(os.path.join(fkd, "epoch_1", "batch_0.tar"))
    assert cfg[5].dtype == torch.float32 and cfg[4] is None
    if mix_type is None:
        assert cfg[2] is None and cfg[3] is None
    else:
        assert cfg[2].dtype == torch.int64 and type(cfg[3]) is float
    _replay_and_check(image_dir, fkd, teacher, mix_type, atol=1e-6)
    for path in sorted(Path(fkd).rglob("batch_*.tar")):
        load_batch(path)  # SRe2L's files pass our checks


def test_gvbsm_index_matches_batch_map(image_dir, tmp_path):
    fkd = str(tmp_path / "labels")
    _generate(image_dir, fkd, "cutmix", True, seed=2, gvbsm_index=True)
    maps = ref.get_img2batch_idx_list(N_IMG, BS, seed=42, epochs=EPOCHS)
    for e in range(EPOCHS):
        seen = []
        for b in range(N_BATCHES):
            cfg = _load(os.path.join(fkd, f"epoch_{e}", f"batch_{b}.tar"))
            assert len(cfg) == 7
            index = cfg[6]
            assert index.dtype == torch.int64 and index.shape == cfg[1].shape
            assert maps[e][index[0].item()] == b
            seen += index.tolist()
        assert sorted(seen) == list(range(N_IMG))
    assert ref.get_FKD_info(fkd) == (EPOCHS, BS, N_IMG)
    samples = ref.ReferenceFKDFolder(image_dir).samples
    for batch_data in ref.reference_fkd_loader(image_dir, fkd, BS, EPOCHS, input_size=SIZE):
        assert len(batch_data) == 6
        target, index = batch_data[0][1], batch_data[5]
        assert target.tolist() == [samples[i][1] for i in index.tolist()]


def test_sampler_draws_two_permutations_per_epoch():
    g = torch.Generator()
    g.manual_seed(42)
    perms = [torch.randperm(N_IMG, generator=g).tolist() for _ in range(2 * EPOCHS)]
    maps = ref.get_img2batch_idx_list(N_IMG, BS, seed=42, epochs=EPOCHS)
    for e in range(EPOCHS):
        perm = perms[2 * e]  # the odd draws are the discarded zero-length tails
        assert maps[e] == {perm[s]: s // BS for s in range(0, N_IMG, BS)}
    assert maps[1] != {perms[1][s]: s // BS for s in range(0, N_IMG, BS)}


def test_cutmix_box_indexes_dims_2_and_3():
    np.random.seed(3)
    torch.manual_seed(3)
    images = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 2, 6, 10).clone()
    mixed, index, lam, (x1, y1, x2, y2) = ref.cutmix(images.clone(), "fkd_save", alpha=1.0)
    assert 0 <= x1 <= x2 <= 6 and 0 <= y1 <= y2 <= 10
    expected = images.clone()
    expected[:, :, x1:x2, y1:y2] = images[index][:, :, x1:x2, y1:y2]
    assert torch.equal(mixed, expected)
    again, _, _, _ = ref.cutmix(images.clone(), "fkd_load", index, lam, [x1, y1, x2, y2])
    assert torch.equal(again, mixed)
    with pytest.raises(ValueError):
        ref.cutmix(images, "fkd_load")


def test_stored_crop_box_rounds_back_to_integer_pixels(image_dir):
    """float32(5/6) * 6 = 4.99999988: PIL's crop rounds it to 5 (truncating would shift the box by a pixel)."""
    ds = ref.ReferenceFKDFolder(image_dir, input_size=4)
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(6, 10, 3), dtype=np.uint8))
    coords = torch.FloatTensor([5 / 6, 3 / 10, 1 / 6, 7 / 10])
    assert coords[0].item() * 6 < 5
    crop, same = ds._crop(img, coords)
    assert same is coords
    expected = ref.TF.resized_crop(img, 5, 3, 1, 7, [4, 4], ref.InterpolationMode.BILINEAR)
    assert np.array_equal(np.asarray(crop), np.asarray(expected))
    truncated = ref.TF.resized_crop(img, 4, 3, 1, 7, [4, 4], ref.InterpolationMode.BILINEAR)
    assert not np.array_equal(np.asarray(crop), np.asarray(truncated))
