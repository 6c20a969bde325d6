"""``export-fkd``: SRe2L-format label files regenerated from a projector."""
from __future__ import annotations

from ..labels.settings import ExportConfig
from ..options import add_options, options_from
from . import common


def register(sub) -> None:
    p = common.add_verb(sub, "export-fkd", "regenerate SRe2L-format label files from a projector")
    p.add_argument("projector", help="projector directory or Hub id (ORG/NAME)")
    p.add_argument("--data", required=True, help="synthetic image folder (ImageFolder layout)")
    p.add_argument("--out", required=True, help="label directory to write (epoch_<e>/batch_<b>.tar)")
    add_options(p, ExportConfig)
    common.load_args(p)
    common.class_map_arg(p)
    common.quiet_arg(p)
    p.set_defaults(func=_export_fkd)


def _export_fkd(args) -> None:
    from ..labels.export import export_fkd

    projector = common.load(args, args.projector)
    info = export_fkd(projector, args.data, args.out, options_from(ExportConfig, args), progress=not args.quiet,
                      class_map=args.class_map)
    common.show(f"wrote {info.epochs} epochs x {info.batches_per_epoch} batches of {info.num_images} images, "
                f"{info.num_classes} classes, {info.dtype} to {info.path} ({info.total_bytes():,} bytes)")
