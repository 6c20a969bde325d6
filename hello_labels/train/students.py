"""A small validation harness: train a student on the synthetic set from a label source, test it on real images.

It condenses what SRe2L's ``train_FKD.py`` and RDED's ``validation/main.py`` do (crops + flips + CutMix, KL at T
against soft labels, AdamW, cosine schedule) so the demo and the benchmarks compare label sources on equal terms:
stored labels (:class:`~hello_labels.targets.StoredTargets`), any model run online (a teacher or a projector,
:class:`~hello_labels.targets.TeacherTargets`), or hard labels (``targets=None``).
"""
from __future__ import annotations

import math
import time
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..labels.augment import apply_mix, mixed_cross_entropy, normalize
from ..labels.views import loader


def conv_net(num_classes: int, in_channels: int = 3, width: int = 64, depth: int = 3) -> nn.Module:
    """The ConvNet of dataset-distillation papers (conv-norm-relu-pool blocks, then a linear layer)."""
    layers, channels = [], in_channels
    for _ in range(depth):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.GroupNorm(width, width), nn.ReLU(),
                   nn.AvgPool2d(2)]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(width * 4, num_classes))


def train_student(student: nn.Module, images, targets=None, steps: int = 300, batch_size: int = 32,
                  lr: float = 1e-3, weight_decay: float = 0.01, temperature: float = 4.0, seed: int = 0,
                  mix_type: Optional[str] = "cutmix", device="cpu", num_workers: int = 0) -> dict:
    """Train ``student`` for ``steps`` batches of the synthetic set ``images`` (an AugmentedImages).

    ``targets``: a source of soft labels (its plans fix crops/flips/mixes: stored labels replay theirs), or None
    for hard labels under fresh crops and ``mix_type``. Returns ``{"seconds", "final_loss"}``.
    """
    from ..labels.views import stream_plans

    torch.manual_seed(seed)
    student.to(device).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    if targets is None:
        plans = stream_plans(len(images), batch_size, seed, 0, steps, mix_type=mix_type, image_size=images.size)
    else:
        plans = targets.plans(0, steps, batch_size=batch_size)
    data, batches = loader(images, plans, steps, num_workers)
    start, loss = time.perf_counter(), torch.tensor(0.0)
    for step, (views, labels, _, _) in enumerate(data):
        plan = batches.pop(step)
        views, labels = views.to(device), labels.to(device)
        mixed = apply_mix(views, plan.mix_type, *plan.mix)
        logits = student(mixed)
        if targets is None:
            loss = mixed_cross_entropy(logits, labels, plan.mix, mixed.shape[-2:])
        else:
            with torch.no_grad():
                if hasattr(targets, "probabilities"):  # label codecs that store probabilities, not logits
                    soft = targets.probabilities(plan, mixed, temperature)
                else:
                    soft = F.softmax(targets(plan, mixed).float() / temperature, dim=-1)
            loss = F.kl_div(F.log_softmax(logits / temperature, dim=-1), soft, reduction="batchmean")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    student.eval()
    return {"seconds": time.perf_counter() - start, "final_loss": loss.item()}


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: Sequence[float],
             std: Sequence[float], size: Optional[int] = None, batch_size: int = 256, device="cpu") -> float:
    """Top-1 accuracy on ``images [N, C, H, W]`` (uint8 or 0-1 floats), resized to ``size`` and normalised."""
    model.eval().to(device)
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device)
        x = x.float() / 255 if not x.is_floating_point() else x
        if x.shape[1] != len(mean):
            x = x.expand(-1, len(mean), -1, -1)
        if size and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        pred = model(normalize(x, mean, std)).argmax(-1).cpu()
        correct += int((pred == labels[start:start + batch_size]).sum())
    return correct / images.shape[0]


@torch.no_grad()
def most_confident(teacher, images: torch.Tensor, labels: torch.Tensor, num_classes: int, ipc: int, mean, std,
                   batch_size: int = 1000) -> List[torch.Tensor]:
    """Per class, the indices of the ``ipc`` uint8 ``images`` the teacher gives the highest true-class probability."""
    probs = []
    for start in range(0, len(labels), batch_size):
        x, y = normalize(images[start:start + batch_size].float() / 255, mean, std), labels[start:start + batch_size]
        probs.append(torch.softmax(teacher(x), -1)[torch.arange(len(y)), y])
    probs = torch.cat(probs)
    return [torch.nonzero(labels == c).flatten()[probs[labels == c].argsort(descending=True)[:ipc]]
            for c in range(num_classes)]
