"""``refine``: optimise the synthetic images so the projector's labels match the teacher's."""
from __future__ import annotations

from ..train.settings import RefineConfig
from . import common


def register(sub) -> None:
    r = RefineConfig()
    p = common.add_verb(sub, "refine", "optimise the synthetic images so the projector's labels match the teacher's")
    p.add_argument("projector", help="projector directory or Hub id (ORG/NAME)")
    p.add_argument("--data", required=True, help="synthetic image folder (ImageFolder layout, PNG/JPEG)")
    common.teacher_args(p, required=True)
    p.add_argument("--out", required=True, help="new folder: refined images (same layout, names, formats) and "
                                                "refine.json; rerun the same command to resume")
    p.add_argument("--input-size", type=int, default=r.input_size, help="crop size the student sees (SRe2L: 224)")
    common.crop_args(p, r.min_scale, r.max_scale)
    p.add_argument("--steps", type=int, default=r.steps, help="optimisation steps per batch of images")
    p.add_argument("--lr", type=common.fraction, default=r.lr, help="Adam step in 0-1 pixel units (default: 1/255)")
    p.add_argument("--epsilon", type=common.fraction, default=r.epsilon, help="per-pixel budget (default: 8/255)")
    p.add_argument("--views", type=int, default=r.views, help="augmented views per image per step")
    p.add_argument("--batch-size", type=int, default=r.batch_size, help="images per batch")
    p.add_argument("--loss", choices=["kl", "mse"], default=r.loss, help="kl at -T or mse of logits")
    p.add_argument("-T", "--temperature", type=float, default=r.temperature,
                   help="temperature of the KL, optimised and reported")
    common.mix_arg(p, r.mix_type or "none", "mix applied to the views each step")
    p.add_argument("--patches", help="JSON {image: [{box: [top, left, h, w], source: path}]} of RDED-style patches "
                                     "and their high-resolution sources: adds the patch feature term")
    p.add_argument("--feature-weight", type=float, default=r.feature_weight, help="weight of the patch feature term")
    p.add_argument("--jpeg-quality", type=int, default=r.jpeg_quality, help="quality JPEG files are re-encoded at")
    p.add_argument("--seed", type=int, default=r.seed, help="seed of views and mixes")
    p.add_argument("--eval-views", type=int, default=r.eval_views, help="held-out views scored before/after")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    common.load_args(p)
    common.class_map_arg(p)
    common.quiet_arg(p)
    p.set_defaults(func=_refine)


def _refine(args) -> None:
    from ..train.refine import refine, report_table

    projector = common.load(args, args.projector)
    config = RefineConfig(steps=args.steps, lr=args.lr, epsilon=args.epsilon, views=args.views,
                          batch_size=args.batch_size, loss=args.loss, temperature=args.temperature,
                          mix_type=common.mix(args.mix_type), input_size=args.input_size,
                          min_scale=args.min_scale, max_scale=args.max_scale, feature_weight=args.feature_weight,
                          jpeg_quality=args.jpeg_quality, seed=args.seed, eval_views=args.eval_views)
    report = refine(projector, args.teacher, args.data, args.out, config, teacher_weights=args.teacher_weights,
                    patches=args.patches, progress=not args.quiet, device=args.device, class_map=args.class_map)
    common.show(*report_table(report).splitlines())
