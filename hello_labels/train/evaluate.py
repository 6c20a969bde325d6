"""Fidelity of a projector to its teacher (or to stored labels): top-1 agreement, mean KL at T, per class."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from ..errors import escape
from ..labels.augment import apply_mix
from ..labels.targets import Targets
from ..labels.views import BatchPlan, loader


def kl_at(student_logits: torch.Tensor, target_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample ``KL(softmax(t/T) || softmax(s/T))`` ``[B]`` (no T^2 factor)."""
    log_p = F.log_softmax(target_logits / temperature, dim=-1)
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def discrepancy(logits: torch.Tensor, target_logits: torch.Tensor, loss: str = "kl",
                temperature: float = 1.0) -> torch.Tensor:
    """Scalar ``T²·mean KL(target || logits)`` at T, or the MSE of the logits ``[B, C]``."""
    if loss == "mse":
        return F.mse_loss(logits, target_logits)
    return kl_at(logits, target_logits, temperature).mean() * temperature ** 2


@dataclass
class FidelityReport:
    """``agreement``: fraction of views where projector and target top-1 classes agree; ``kl``: mean KL at T;
    ``per_class*``: the same (and the view count) per image class; ``in_sample``: the views are ones the projector
    was trained on (stored labels), so the figure measures fit, not generalisation."""

    agreement: float
    kl: float
    temperature: float
    views: int
    per_class: Dict[str, float] = field(default_factory=dict)
    per_class_views: Dict[str, int] = field(default_factory=dict)
    per_class_kl: Dict[str, float] = field(default_factory=dict)
    in_sample: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """The report as aligned lines; class names escaped (:func:`hello_labels.errors.escape`), one line each."""
        kind = "in-sample (trained-on) views" if self.in_sample else "held-out views"
        lines = [f"{kind} {self.views}   agreement {self.agreement:.2%}   KL@T={self.temperature:g} {self.kl:.4f}",
                 f"{'class':<24} {'views':>6} {'agreement':>10}"]
        for name, value in self.per_class.items():
            lines.append(f"{escape(name)[:24]:<24} {self.per_class_views[name]:>6} {value:>10.2%}")
        return "\n".join(lines)


@torch.no_grad()
def collect(projector, targets: Targets, plans: List[BatchPlan], num_workers: int = 0, device=None):
    """Projector logits, target logits and image classes over the views of ``plans``: three ``[N, ...]``.
    The projector's logits come from its engine (:meth:`LabelProjector.for_labels`, merged or not; built for this
    call and not kept), as the shims and ``export-fkd`` make them."""
    device = device or projector.device
    labeller = projector.for_labels()
    data, batches = loader(targets.images, iter(plans), len(plans), num_workers)
    out = ([], [], [])
    for number, (images, labels, _, _) in enumerate(data):
        plan = batches.pop(plans[number].step)
        mixed = apply_mix(images.to(device), plan.mix_type, *plan.mix)
        out[0].append(labeller(mixed).float().cpu())
        out[1].append(targets(plan, mixed).float().cpu())
        out[2].append(labels)
    return tuple(torch.cat(o) for o in out)


def fidelity(projector, targets: Targets, plans: List, class_names: Optional[List[str]] = None,
             temperature: float = 1.0,
             num_workers: int = 0, device=None, in_sample: bool = False) -> FidelityReport:
    """Compare ``projector`` with ``targets`` on the views of ``plans`` (see :mod:`hello_labels.targets`);
    ``in_sample`` marks views the projector was trained on.

    Per-class agreement groups views by the image's own class (its ImageFolder label)."""
    logits, target, cls_t = collect(projector, targets, plans, num_workers, device)
    agree_t = (logits.argmax(-1) == target.argmax(-1)).float()
    kl_t = kl_at(logits, target, temperature)
    names = class_names or [str(i) for i in range(int(cls_t.max()) + 1)]
    per_class, per_views, per_kl = {}, {}, {}
    for c in sorted(set(cls_t.tolist())):
        mask = cls_t == c
        name = names[c] if c < len(names) else str(c)
        per_class[name], per_views[name] = float(agree_t[mask].mean()), int(mask.sum())
        per_kl[name] = float(kl_t[mask].mean())
    return FidelityReport(float(agree_t.mean()), float(kl_t.mean()), temperature, int(agree_t.numel()),
                          per_class, per_views, per_kl, in_sample)


def plot_per_class(report: FidelityReport, path: str) -> None:
    """Bar chart of per-class agreement (needs matplotlib: ``pip install hello-labels[plot]``)."""
    from ..files import atomic_path
    from ..model.card import agreement_plot

    with atomic_path(path, suffix=".png") as tmp:
        agreement_plot(report.per_class, report.agreement, str(tmp))
