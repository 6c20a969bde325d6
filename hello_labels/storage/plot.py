"""Bytes against images per class: every label source's line over IPC 1-200, from the report's own row functions.

:func:`storage_series` computes the numbers (the same :func:`~.report.label_rows`, :func:`~.report.teacher_row`
and :func:`~.report.adapter_rows` that build the table, so the plot cannot disagree with it);
:func:`plot_storage` draws them (needs matplotlib: ``pip install 'hello-labels[plot]'``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import List, Optional, Sequence

from ..errors import BadInputError, HelloLabelsError
from ..files import atomic_path
from ..model.projector import ADAPTER_DTYPES
from .measure import computed_adapter_size, named_classes, saved_adapter_size, teacher_size
from .report import adapter_rows, label_rows, teacher_row
from .setting import LabelSetting, mix_name, positive_int

IPCS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200)
# Adapter dtypes worth a line of their own; those the library cannot save are named in a note instead.
ADAPTER_PLOT_DTYPES = ("float16", "int8", "int4")


@dataclass
class Series:
    """One line: ``bytes[i]`` at ``ipcs[i]`` of its :class:`StorageSeries`. ``row`` is the name of the
    :class:`~.report.StorageRow` it repeats; ``epochs`` is None for lines that do not depend on the setting
    (teacher, adapter: flat)."""

    row: str
    bytes: List[int]
    kind: str  # "full", "topk", "pruned", "teacher" or "adapter"
    epochs: Optional[int] = None
    dtype: Optional[str] = None  # an adapter's storage dtype

    @property
    def label(self) -> str:
        return (self.row + (f" ({self.dtype})" if self.dtype else "")
                + (f", {self.epochs} epochs" if self.epochs is not None else ""))


@dataclass
class StorageSeries:
    """Lines over ``ipcs`` for ``setting`` with its images per class replaced; ``notes`` go under the figure."""

    setting: LabelSetting
    ipcs: List[int]
    lines: List[Series]
    notes: List[str] = field(default_factory=list)

    def line(self, kind: str, epochs: Optional[int] = None) -> Series:
        """The first line of ``kind`` (at ``epochs`` when given)."""
        for s in self.lines:
            if s.kind == kind and (epochs is None or s.epochs == epochs):
                return s
        raise KeyError(kind)


def storage_series(setting: LabelSetting, *, ipcs: Sequence[int] = IPCS, epochs: Sequence[int] = (),
                   top_k: Optional[int] = None, keep_ratio: float = 0.025,
                   teacher: Optional[str] = "torchvision:resnet18",
                   bases: Sequence[str] = (), projectors: Sequence[str] = (), class_names=None,
                   lora_rank: Optional[int] = None, head_rank: int = 64) -> StorageSeries:
    """Bytes of each label source at each IPC in ``ipcs`` for ``setting``'s classes, batch size, dtype and mix
    (its own epochs, or one set of label lines per value in ``epochs``). ``bases`` get one flat adapter line per
    dtype of :data:`ADAPTER_PLOT_DTYPES` the library saves; ``projectors`` one flat line at their saved dtype."""
    ipcs = sorted({positive_int("images per class", i) for i in ipcs})
    epochs = list(dict.fromkeys(positive_int("epochs", e) for e in epochs)) or [setting.epochs]
    if not ipcs:
        raise BadInputError("give at least one images-per-class value to plot")
    lines = []
    for e in epochs:
        per_ipc = [label_rows(replace(setting, images=setting.classes * i, epochs=e), top_k, keep_ratio)
                   for i in ipcs]
        tops = [[r for r in rows if r.part_of is None] for rows in per_ipc]  # full, top-k, pruned
        for j, kind in enumerate(("full", "topk", "pruned")):
            lines.append(Series(tops[0][j].name, [t[j].bytes for t in tops], kind, e))
    if teacher:
        row = teacher_row(teacher_size(teacher, setting.classes))
        lines.append(Series(row.name, [row.bytes] * len(ipcs), "teacher"))
    drawn = [d for d in ADAPTER_PLOT_DTYPES if d in ADAPTER_DTYPES]
    names = named_classes(class_names, setting.classes) if bases else None
    sizes = [computed_adapter_size(b, names, d, lora_rank, head_rank)[0] for b in bases for d in drawn]
    sizes += [saved_adapter_size(p)[0] for p in projectors]
    for size in sizes:
        row = adapter_rows(size)[0]
        lines.append(Series(row.name, [row.bytes] * len(ipcs), "adapter", dtype=size.dtype))
    missing = [d for d in ADAPTER_PLOT_DTYPES if d not in ADAPTER_DTYPES]
    notes = [f"No {'/'.join(missing)} adapter line: the library saves adapters as {', '.join(ADAPTER_DTYPES)} only."
             ] if missing and (bases or projectors) else []
    return StorageSeries(setting, ipcs, lines, notes)


def require_matplotlib():
    """``matplotlib.pyplot`` on the Agg backend, or a one-line error saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise HelloLabelsError("plotting needs matplotlib: pip install 'hello-labels[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _si_bytes(n: float) -> str:
    """Decimal units for log-axis ticks and flat-line labels (``1e9 -> '1 GB'``, ``1540482 -> '1.54 MB'``)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.3g} B"


_STYLE = {"full": ("#d62728", "o"), "topk": ("#ff7f0e", "s"), "pruned": ("#9467bd", "^"),
          "teacher": ("#2ca02c", None), "adapter": ("#1f77b4", None)}
_DASHES = ("-", "--", ":", "-.")


def plot_storage(series: StorageSeries, path, title: Optional[str] = None, mark_ipc: Optional[float] = None) -> None:
    """Write ``series`` as a PNG: bytes (log) against images per class (log); ``mark_ipc`` draws a dotted
    vertical line there (the table's setting)."""
    plt = require_matplotlib()
    from matplotlib.ticker import FuncFormatter

    # the table's own epochs get the solid line, other epochs dashed in increasing order
    epochs = sorted({s.epochs for s in series.lines if s.epochs is not None},
                    key=lambda e: (e != series.setting.epochs, e))
    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    adapters = 0
    for s in series.lines:
        color, marker = _STYLE[s.kind]
        dash = _DASHES[epochs.index(s.epochs) % len(_DASHES)] if s.epochs is not None else "-"
        if s.kind == "adapter":  # several adapters: same hue family, different dashes
            dash, adapters = _DASHES[adapters % len(_DASHES)], adapters + 1
        flat = f": {_si_bytes(s.bytes[0])}" if s.epochs is None else ""  # flat lines: say the value
        ax.plot(series.ipcs, s.bytes, color=color, ls=dash, marker=marker, ms=3.5, lw=1.6, label=s.label + flat)
    if mark_ipc is not None:
        ax.axvline(mark_ipc, color="0.5", ls=":", lw=1, label=f"IPC {mark_ipc:g} (the table's setting)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([i for i in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if series.ipcs[0] <= i <= series.ipcs[-1]])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _si_bytes(v)))
    ax.set_xlabel("images per class (IPC)")
    ax.set_ylabel("bytes")
    ax.grid(True, which="major", alpha=0.3)
    s = series.setting
    runs = "/".join(map(str, sorted(epochs)))
    ax.set_title(title or f"{s.classes:,} classes, {runs} epochs, batch {s.batch_size:,}, {s.dtype} logits, "
                          f"{mix_name(s.mix)} metadata", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, handlelength=4)
    if series.notes:  # below the axes; bbox_inches="tight" grows the figure to hold it and the legend
        fig.text(0.01, -0.01, "\n".join(series.notes), fontsize=7, va="top")
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=130, format="png", bbox_inches="tight")
    plt.close(fig)
