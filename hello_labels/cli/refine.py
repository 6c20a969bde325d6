"""``refine``: optimise the synthetic images so the projector's labels match the teacher's."""
from __future__ import annotations

from ..options import add_options, options_from
from ..train.settings import RefineConfig
from . import common


def register(sub) -> None:
    p = common.add_verb(sub, "refine", "optimise the synthetic images so the projector's labels match the teacher's")
    p.add_argument("projector", help="projector directory or Hub id (ORG/NAME)")
    p.add_argument("--data", required=True, help="synthetic image folder (ImageFolder layout, PNG/JPEG)")
    common.teacher_args(p, required=True)
    p.add_argument("--out", required=True, help="new folder: refined images (same layout, names, formats) and "
                                                "refine.json; rerun the same command to resume")
    add_options(p, RefineConfig)
    p.add_argument("--patches", help="JSON {image: [{box: [top, left, h, w], source: path}]} of RDED-style patches "
                                     "and their high-resolution sources: adds the patch feature term")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    common.load_args(p)
    common.class_map_arg(p)
    common.quiet_arg(p)
    p.set_defaults(func=_refine)


def _refine(args) -> None:
    from ..train.refine import refine, report_table

    projector = common.load(args, args.projector)
    report = refine(projector, args.teacher, args.data, args.out, options_from(RefineConfig, args),
                    teacher_weights=args.teacher_weights, patches=args.patches, progress=not args.quiet,
                    device=args.device, class_map=args.class_map)
    common.show(*report_table(report).splitlines())
