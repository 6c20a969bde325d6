"""``eval``: agreement and KL of a projector against teachers or stored labels, on held-out views."""
from __future__ import annotations

from . import common


def register(sub) -> None:
    p = common.add_verb(sub, "eval", "agreement and KL of a projector against teacher(s) or stored labels")
    p.add_argument("projector", help="projector directory or Hub id (ORG/NAME)")
    common.data_args(p, labels=True)
    common.teacher_args(p, required=False)
    p.add_argument("--views", type=int, default=512, help="held-out augmented views to compare on")
    p.add_argument("--batch-size", type=int, default=64, help="views per forward pass")
    p.add_argument("-T", "--temperature", type=float, default=1.0, help="temperature of the reported KL")
    p.add_argument("--seed", type=int, default=0, help="seed of the views")
    common.mix_arg(p, "none", "with --teacher: mix the views as the students' batches are (CutMix: the views "
                              "students learn from; whole batches); stored labels replay their own")
    p.add_argument("--merge", action="store_true", help="evaluate the merged projector")
    common.load_args(p)
    p.add_argument("--json", help="write the report here (JSON)")
    p.add_argument("--plot", help="write a per-class agreement PNG here (needs matplotlib)")
    p.set_defaults(func=_eval)


def _eval(args) -> None:
    from ..storage.plot import require_matplotlib

    if args.plot:
        require_matplotlib()  # before the evaluation, not after it
    from ..files import atomic_write_json
    from ..train.evaluate import plot_per_class
    from ..train.jobs import evaluate

    projector = common.load(args, args.projector)
    if args.merge:
        projector.merge()
    report = evaluate(projector, args.data, teachers=args.teacher, labels=args.labels,
                      teacher_weights=args.teacher_weights, views=args.views, batch_size=args.batch_size,
                      temperature=args.temperature, input_size=args.input_size, min_scale=args.min_scale,
                      max_scale=args.max_scale, seed=args.seed, epochs=args.epochs, fkd_seed=args.fkd_seed,
                      class_map=args.class_map, mix_type=common.mix(args.mix_type))
    common.show(*report.table().splitlines())
    if args.json:
        atomic_write_json(args.json, report.to_dict())
    if args.plot:
        plot_per_class(report, args.plot)
