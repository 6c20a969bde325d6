"""``storage``: bytes of stored, top-k and pruned labels, teacher, adapter and base, every line labelled."""
from __future__ import annotations

from ..errors import HelloLabelsError
from . import common


def register(sub) -> None:
    p = common.add_verb(sub, "storage", "bytes of stored, top-k and pruned labels, teacher, adapter and base, "
                                        "every line labelled")
    g = p.add_argument_group("label setting (or --labels DIR)")
    g.add_argument("--labels", help="an existing SRe2L label directory: measure it and derive its setting")
    g.add_argument("--classes", type=int, help="number of classes (ImageNet-1K: 1000)")
    g.add_argument("--ipc", type=int, help="synthetic images per class")
    g.add_argument("--epochs", type=int, help="relabelled epochs, one crop per image each (default: 300)")
    g.add_argument("--batch-size", type=int, help="images per label file (default: 1024)")
    g.add_argument("--fp16", action="store_true", help="logits stored as fp16 (SRe2L --use-fp16; default: fp32)")
    g.add_argument("--mix-type", choices=common.MIX_NAMES, help="mix metadata stored (default: cutmix)")
    g = p.add_argument_group("alternatives")
    g.add_argument("--top-k", type=int, default=None,
                   help="k of the top-k stored labels (FKD/LPQLD; default: 10, or the class count if fewer)")
    g.add_argument("--keep-ratio", type=float, default=0.025,
                   help="fraction of label files LPLD keeps (0.025: its 40x pruning)")
    g.add_argument("--teacher", default="torchvision:resnet18",
                   help="timm:NAME / torchvision:NAME (random init, no download), a checkpoint file, or 'none'")
    g.add_argument("--base", action="append",
                   help="compute the adapter on this base from shapes; repeatable (default: RN50 unless --projector); "
                        + common.base_help(weights=False))
    g.add_argument("--projector", action="append", help="a saved projector directory or Hub id; repeatable")
    common.load_args(g, pin=False, revision=False)
    g.add_argument("--class-names", help="'imagenet' or a text file, for --base's config.json (default: "
                                         "placeholders)")
    g.add_argument("--lora-rank", type=int, default=None, help="rank of the default LoRA targets (default: 8)")
    g.add_argument("--head-rank", type=int, default=64, help="rank of the head delta (clamped to the head's shape)")
    g.add_argument("--adapter-dtype", choices=common.ADAPTER_DTYPES, default="float32",
                   help="adapter file format for --base (default: float32, as distill/convert save)")
    p.add_argument("--json", help="also write the report here (JSON)")
    p.add_argument("--plot", help="also draw bytes against images per class (1-200, log axes) as a PNG here; flat "
                                  "adapter lines at float16, int8 and int4 per --base, at its saved dtype per "
                                  "--projector (needs matplotlib: the plot extra)")
    p.add_argument("--plot-epochs", help="comma-separated epochs, one set of label lines each (default: --epochs)")
    p.set_defaults(func=_storage)


def _storage(args) -> None:
    if args.plot_epochs and not args.plot:
        raise HelloLabelsError("--plot-epochs needs --plot F.png")
    from ..files import atomic_write_json
    from ..storage import LabelSetting, storage_report
    from ..storage.plot import plot_storage, require_matplotlib, storage_series
    from ..storage.setting import positive_int

    if args.plot:
        require_matplotlib()  # before minutes of measuring

    try:
        plot_epochs = [int(e) for e in args.plot_epochs.split(",")] if args.plot_epochs else []
    except ValueError:
        raise HelloLabelsError(f"--plot-epochs must be comma-separated integers, got {args.plot_epochs!r}") from None
    plot_epochs = [positive_int("--plot-epochs: epochs", e) for e in plot_epochs]

    given = {k: v for k, v in {"epochs": args.epochs, "batch_size": args.batch_size, "mix": args.mix_type,
                               "dtype": "float16" if args.fp16 else None}.items() if v is not None}
    setting = None
    if args.labels is not None:
        if args.classes is not None or args.ipc is not None or given:
            raise HelloLabelsError("--labels DIR brings its own setting: drop --classes/--ipc/--epochs/"
                                   "--batch-size/--mix-type/--fp16")
    elif args.classes is None or args.ipc is None:
        raise HelloLabelsError("give --classes and --ipc (a label setting) or --labels DIR (an SRe2L label directory)")
    else:
        setting = LabelSetting.from_ipc(args.classes, args.ipc, **given)
    teacher = None if args.teacher == "none" else args.teacher
    bases = args.base or ([] if args.projector else ["RN50"])
    report = storage_report(setting, args.labels, top_k=args.top_k, keep_ratio=args.keep_ratio, teacher=teacher,
                            bases=bases, projectors=args.projector or [],
                            class_names=args.class_names, adapter_dtype=args.adapter_dtype, lora_rank=args.lora_rank,
                            head_rank=args.head_rank, trust_remote_code=args.trust_remote_code)
    common.show(*report.table().splitlines())
    if args.json:
        atomic_write_json(args.json, report.to_dict())
    if args.plot:
        series = storage_series(report.setting, epochs=plot_epochs, top_k=args.top_k, keep_ratio=args.keep_ratio,
                                teacher=teacher, bases=bases, projectors=args.projector or [],
                                class_names=args.class_names, lora_rank=args.lora_rank, head_rank=args.head_rank)
        plot_storage(series, args.plot, mark_ipc=report.setting.images / report.setting.classes)
