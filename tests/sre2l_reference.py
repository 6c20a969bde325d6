"""Independent reference of SRe2L's FKD soft-label format, for cross-checking ``hello_labels``.

Re-implements, in our own words and without CUDA, the behaviour of VILA-Lab/SRe2L's
``relabel/generate_soft_label.py`` + ``relabel/utils_fkd.py`` (writer) and of ``validate/train_FKD.py``
with the patched ``_MapDatasetFetcher`` from ``validate/README.md`` (reader). It must never import
``hello_labels``.

Layout: ``<fkd_path>/epoch_<e>/batch_<b>.tar``, each a ``torch.save``d list
``[coords, flip_status, mix_index, mix_lam, mix_bbox, soft_label]`` (G-VBSM appends ``index``).

Conventions worth knowing (all reproduced here):

* The sampler is one ``RandomSampler`` with one generator seeded ``fkd_seed`` for the whole run. A full pass
  over it draws TWO ``randperm``s (the second, sliced to ``num_samples % n == 0`` elements, is discarded), so
  epoch ``e`` uses draw ``2 * e`` of the generator, not draw ``e``.
* Crop boxes are stored as float32 fractions ``(i/H, j/W, h/H, w/W)``; on reload they become float pixels and
  PIL's ``Image.crop`` rounds ``(j, i, j + w, i + h)`` back to integers.
* ``rand_bbox`` calls dim 2 "W" and dim 3 "H"; ``bbox = [x1, y1, x2, y2]`` slices ``images[:, :, x1:x2, y1:y2]``
  (x: dim 2 = rows, y: dim 3 = columns). Coordinates are ``numpy.int64`` scalars, ``mix_lam`` is a Python
  ``float``; files holding a bbox therefore need ``torch.load(weights_only=False)`` (or allow-listed numpy globals).
"""
import os

import numpy as np
import torch
import torchvision
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, default_collate
from torchvision import transforms
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODES = ("fkd_save", "fkd_load")

__all__ = [
    "ReferenceFKDFolder", "rand_bbox", "cutmix", "mixup", "mix_aug", "generate_soft_labels",
    "get_FKD_info", "get_img2batch_idx_list", "reference_fkd_loader",
]


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _batch_number(name):
    """Numeric key of ``batch_<n>.tar`` (SRe2L sorts numerically, so batch_10 follows batch_9)."""
    return int(name.split("_")[1].split(".tar")[0])


class ReferenceFKDFolder(torchvision.datasets.ImageFolder):
    """ImageFolder with SRe2L's ``ImageFolder_FKD_MIX`` crop/flip bookkeeping.

    ``fkd_save``: every ``__getitem__`` draws a new ``RandomResizedCrop.get_params`` box and then a flip
    (``torch.rand(1) < 0.5``), both from the global torch RNG, and returns
    ``(image, target, flip_status: bool, coords: FloatTensor[4])``.
    ``fkd_load``: crop and flip come, in call order, from the batch config loaded by ``load_batch_config``;
    the returned flip/coords are the stored entries. After the crop: ``ToTensor`` + ImageNet ``Normalize``.
    With ``return_index`` (G-VBSM) the dataset index is appended to the returned tuple.
    ``map_seed`` seeds the image->batch map in load mode (SRe2L hard-codes 42 there, whatever ``fkd_seed`` is).
    """

    def __init__(self, root, mode="fkd_save", fkd_path=None, input_size=224, min_scale=0.08, max_scale=1.0,
                 ratio=(3.0 / 4.0, 4.0 / 3.0), args_epoch=None, args_bs=None, map_seed=42, return_index=False):
        _check_mode(mode)
        super().__init__(root)
        self.mode = mode
        self.fkd_path = fkd_path
        self.size = [input_size, input_size] if isinstance(input_size, int) else list(input_size)
        self.scale = (min_scale, max_scale)
        self.ratio = ratio
        self.interpolation = InterpolationMode.BILINEAR
        self.post = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        self.return_index = return_index
        self.batch_config = None  # [coords, flip_status] of the batch being fetched
        self.batch_config_idx = 0  # position of the next image inside that batch
        self.epoch = None
        if mode == "fkd_load":
            max_epoch, batch_size, num_img = get_FKD_info(fkd_path)
            if args_epoch is not None and args_epoch > max_epoch:
                raise ValueError(f"asked for {args_epoch} epochs, only {max_epoch} stored")
            if args_bs is not None and args_bs != batch_size:
                raise ValueError(f"batch size {args_bs} differs from the stored batch size {batch_size}")
            self.img2batch_idx_list = get_img2batch_idx_list(num_img, batch_size, seed=map_seed, epochs=max_epoch)

    def _crop(self, img, coords):
        width, height = img.size
        if coords is None:  # fresh box, integer pixels; stored as float32 fractions of the source image
            i, j, h, w = transforms.RandomResizedCrop.get_params(img, self.scale, self.ratio)
            coords = torch.FloatTensor([i / height, j / width, h / height, w / width])
        else:  # back to (float) pixels exactly like SRe2L; PIL rounds the box corners
            i = coords[0].item() * height
            j = coords[1].item() * width
            h = coords[2].item() * height
            w = coords[3].item() * width
        return TF.resized_crop(img, i, j, h, w, self.size, self.interpolation), coords

    def __getitem__(self, index):
        path, target = self.samples[index]
        if self.mode == "fkd_save":
            coords, flip = None, None
        else:
            if self.batch_config is None:
                raise ValueError("no batch config loaded (call load_batch_config first)")
            coords = self.batch_config[0][self.batch_config_idx]
            flip = self.batch_config[1][self.batch_config_idx]
            self.batch_config_idx += 1
        img, coords = self._crop(self.loader(path), coords)
        if flip is None:
            flip = bool(torch.rand(1) < 0.5)
        if flip:
            img = TF.hflip(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        out = (self.post(img), target, flip, coords)
        return out + (index,) if self.return_index else out

    def set_epoch(self, epoch):
        """Select which ``epoch_<e>`` directory ``load_batch_config`` reads."""
        self.epoch = epoch

    def load_batch_config(self, img_idx):
        """Load the file of the current epoch's batch whose FIRST sampled image is ``img_idx``.

        Keeps ``[coords, flip_status]`` for the following ``__getitem__`` calls and returns the rest
        (``[mix_index, mix_lam, mix_bbox, soft_label]``, plus ``index`` for G-VBSM files).
        """
        if self.epoch is None:
            raise ValueError("set_epoch must be called before loading batch configs")
        batch_idx = self.img2batch_idx_list[self.epoch][img_idx]
        path = os.path.join(self.fkd_path, f"epoch_{self.epoch}", f"batch_{batch_idx}.tar")
        config = torch.load(path, weights_only=False)
        self.batch_config = config[:2]
        self.batch_config_idx = 0
        return config[2:]


def rand_bbox(size, lam):
    """CutMix box for a ``[B, C, d2, d3]`` size: side ``int(d * sqrt(1 - lam))``, uniform centre (``np.random``).

    Follows SRe2L's naming (``W = size[2]``, ``H = size[3]``) and returns ``(x1, y1, x2, y2)`` as
    ``numpy.int64`` clipped to ``[0, d2]`` / ``[0, d3]``; the half-sides use floor division, so odd cut sizes
    lose a pixel, and the box shrinks at the borders (``lam`` is NOT re-adjusted to the real area).
    """
    W, H = size[2], size[3]
    ratio = np.sqrt(1.0 - lam)
    half_w, half_h = int(W * ratio) // 2, int(H * ratio) // 2
    cx, cy = np.random.randint(W), np.random.randint(H)
    return (np.clip(cx - half_w, 0, W), np.clip(cy - half_h, 0, H),
            np.clip(cx + half_w, 0, W), np.clip(cy + half_h, 0, H))


def cutmix(images, mode, rand_index=None, lam=None, bbox=None, alpha=1.0):
    """Paste ``images[rand_index, :, x1:x2, y1:y2]`` into ``images`` IN PLACE.

    Save mode draws ``torch.randperm(B)`` (global CPU RNG), then ``lam = np.random.beta(alpha, alpha)``,
    then the box. Returns ``(images, rand_index.cpu(), lam, [x1, y1, x2, y2])``.
    """
    _check_mode(mode)
    if mode == "fkd_save":
        rand_index = torch.randperm(images.size(0))
        lam = np.random.beta(alpha, alpha)
        bbox = rand_bbox(images.size(), lam)
    elif rand_index is None or lam is None or bbox is None:
        raise ValueError("fkd_load cutmix needs rand_index, lam and bbox")
    x1, y1, x2, y2 = bbox
    rand_index = rand_index.to(images.device)
    images[:, :, x1:x2, y1:y2] = images[rand_index, :, x1:x2, y1:y2]
    return images, rand_index.cpu(), lam, [x1, y1, x2, y2]


def mixup(images, mode, rand_index=None, lam=None, alpha=0.8):
    """``lam * images + (1 - lam) * images[rand_index]`` (new tensor); returns ``(mixed, index, lam, None)``."""
    _check_mode(mode)
    if mode == "fkd_save":
        rand_index = torch.randperm(images.size(0))
        lam = np.random.beta(alpha, alpha)
    elif rand_index is None or lam is None:
        raise ValueError("fkd_load mixup needs rand_index and lam")
    rand_index = rand_index.to(images.device)
    mixed = lam * images + (1 - lam) * images[rand_index]
    return mixed, rand_index.cpu(), lam, None


def mix_aug(images, mix_type, mode, rand_index=None, lam=None, bbox=None, cutmix_alpha=1.0, mixup_alpha=0.8):
    """Dispatch on ``mix_type`` ('cutmix', 'mixup', anything else = none -> ``(images, None, None, None)``)."""
    if mix_type == "cutmix":
        return cutmix(images, mode, rand_index, lam, bbox, alpha=cutmix_alpha)
    if mix_type == "mixup":
        return mixup(images, mode, rand_index, lam, alpha=mixup_alpha)
    return images, None, None, None


def generate_soft_labels(data_dir, teacher, fkd_path, epochs, batch_size, mix_type=None, use_fp16=False,
                         input_size=224, min_scale=0.08, max_scale=1.0, fkd_seed=42, num_workers=0,
                         cutmix_alpha=1.0, mixup_alpha=0.8, gvbsm_index=False):
    """SRe2L's relabel loop: write ``epoch_<e>/batch_<b>.tar`` for ``e < epochs`` under ``fkd_path``.

    One ``RandomSampler`` (generator seeded ``fkd_seed``) feeds a DataLoader for all epochs; per batch:
    ``mix_aug`` (save mode), ``teacher(images)`` in eval mode without grad, ``.half()`` if ``use_fp16``, then
    ``[coords, flip_status, mix_index, mix_lam, mix_bbox, output.cpu()]`` (+ the batch's dataset indices
    as int64 when ``gvbsm_index``). Images go to the teacher's device (CPU for parameter-free teachers).
    Randomness: crops/flips and ``randperm`` use the global torch RNG, ``lam``/box use ``np.random``.
    """
    os.makedirs(fkd_path, exist_ok=True)
    dataset = ReferenceFKDFolder(data_dir, "fkd_save", input_size=input_size, min_scale=min_scale,
                                 max_scale=max_scale, return_index=gvbsm_index)
    generator = torch.Generator()
    generator.manual_seed(fkd_seed)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=RandomSampler(dataset, generator=generator),
                        num_workers=num_workers)
    device = next((p.device for p in teacher.parameters()), torch.device("cpu"))
    teacher.eval()
    for epoch in range(epochs):
        epoch_dir = os.path.join(fkd_path, f"epoch_{epoch}")
        os.makedirs(epoch_dir, exist_ok=True)
        for batch_idx, batch in enumerate(loader):
            images, _target, flip_status, coords = batch[:4]
            images, mix_index, mix_lam, mix_bbox = mix_aug(images.to(device), mix_type, "fkd_save",
                                                           cutmix_alpha=cutmix_alpha, mixup_alpha=mixup_alpha)
            with torch.no_grad():
                output = teacher(images)
            if use_fp16:
                output = output.half()
            config = [coords, flip_status, mix_index, mix_lam, mix_bbox, output.cpu()]
            if gvbsm_index:
                config.append(batch[4])
            torch.save(config, os.path.join(epoch_dir, f"batch_{batch_idx}.tar"))
    return fkd_path


def get_FKD_info(fkd_path):
    """``(max_epoch, batch_size, num_img)`` of a label directory.

    ``max_epoch`` counts EVERY entry of ``fkd_path`` (stray files count too); the batch size is the length
    of element 1 (flip_status) of epoch_0's numerically-first batch file; ``num_img`` adds the last batch.
    (SRe2L builds the epoch_0 path as ``fkd_path + 'epoch_0'``, so it needs a trailing slash; we join.)
    """
    max_epoch = len(os.listdir(fkd_path))
    epoch0 = os.path.join(fkd_path, "epoch_0")
    names = sorted(os.listdir(epoch0), key=_batch_number)
    batch_size = torch.load(os.path.join(epoch0, names[0]), weights_only=False)[1].size(0)
    last_size = torch.load(os.path.join(epoch0, names[-1]), weights_only=False)[1].size(0)
    return max_epoch, batch_size, batch_size * (len(names) - 1) + last_size


def get_img2batch_idx_list(num_img, batch_size, seed=42, epochs=300):
    """Per epoch, ``{first image index of batch b: b}`` for a ``BatchSampler(RandomSampler)`` over ``num_img``.

    A single generator seeded ``seed`` serves all epochs, replaying the relabel run's batch order.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    batches = BatchSampler(RandomSampler(range(num_img), generator=generator), batch_size, drop_last=False)
    return [{idxs[0]: b for b, idxs in enumerate(batches)} for _ in range(epochs)]


def _fetch(dataset, indices):
    """The patched ``_MapDatasetFetcher.fetch`` in ``fkd_load`` mode (config first, then the images)."""
    mix_index, mix_lam, mix_bbox, soft_label, *extra = dataset.load_batch_config(indices[0])
    data = default_collate([dataset[i] for i in indices])
    # SRe2L calls mix_index.cpu() unconditionally, which crashes on label sets written without mixing.
    mix_index = None if mix_index is None else mix_index.cpu()
    return (data, mix_index, mix_lam, mix_bbox, soft_label.cpu(), *extra)


def reference_fkd_loader(data_dir, fkd_path, batch_size, epochs, input_size=224, fkd_seed=42):
    """Yield, for each epoch < ``epochs`` and each batch, what train_FKD's loop receives as ``batch_data``.

    ``batch_data[0] = [images, target, flip_status, coords_status]`` (collated) and
    ``batch_data[1:] = (mix_index, mix_lam, mix_bbox, soft_label)`` (+ ``index`` for G-VBSM files).
    The sampler's generator (seeded ``fkd_seed``) runs on across epochs, so batch ``b`` of epoch ``e``
    is the one written to ``epoch_<e>/batch_<b>.tar``. Single-process: the images are not mixed yet.
    """
    dataset = ReferenceFKDFolder(data_dir, "fkd_load", fkd_path=fkd_path, input_size=input_size,
                                 args_epoch=epochs, args_bs=batch_size, map_seed=fkd_seed)
    generator = torch.Generator()
    generator.manual_seed(fkd_seed)
    batches = BatchSampler(RandomSampler(dataset, generator=generator), batch_size, drop_last=False)
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        for indices in batches:
            yield _fetch(dataset, indices)
