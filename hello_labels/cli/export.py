"""``export-fkd``: SRe2L-format label files regenerated from a projector."""
from __future__ import annotations

from . import common


def register(sub) -> None:
    p = common.add_verb(sub, "export-fkd", "regenerate SRe2L-format label files from a projector")
    p.add_argument("projector", help="projector directory or Hub id (ORG/NAME)")
    p.add_argument("--data", required=True, help="synthetic image folder (ImageFolder layout)")
    p.add_argument("--out", required=True, help="label directory to write (epoch_<e>/batch_<b>.tar)")
    p.add_argument("--epochs", type=int, required=True, help="epochs of label files (one crop per image each)")
    p.add_argument("--batch-size", type=int, required=True, help="the batch size the student will load with")
    common.mix_arg(p, "none", "mix stored with each batch, as the student's loader expects")
    p.add_argument("--fp16", action="store_true", help="store soft labels as fp16 (SRe2L --use-fp16)")
    p.add_argument("--input-size", type=int, default=224, help="crop size the student sees (SRe2L: 224)")
    common.crop_args(p)
    p.add_argument("--fkd-seed", type=int, default=42, help="sampler seed the student loads with (SRe2L: 42)")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops, flips and mixes")
    p.add_argument("--gvbsm-index", action="store_true", help="append G-VBSM's seventh element (image indices)")
    common.load_args(p)
    common.class_map_arg(p)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    common.quiet_arg(p)
    p.set_defaults(func=_export_fkd)


def _export_fkd(args) -> None:
    from ..labels.export import export_fkd

    projector = common.load(args, args.projector)
    info = export_fkd(projector, args.data, args.out, args.epochs, args.batch_size, common.mix(args.mix_type),
                      args.fp16, args.input_size, args.min_scale, args.max_scale, args.fkd_seed, args.seed,
                      gvbsm_index=args.gvbsm_index, num_workers=args.workers, progress=not args.quiet,
                      class_map=args.class_map)
    common.show(f"wrote {info.epochs} epochs x {info.batches_per_epoch} batches of {info.num_images} images, "
                f"{info.num_classes} classes, {info.dtype} to {info.path} ({info.total_bytes():,} bytes)")
