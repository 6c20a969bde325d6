"""``distill`` (fit a projector to teachers) and ``convert`` (fit one to stored labels): one set of projector,
training and publishing flags, declared once."""
from __future__ import annotations

import argparse

from ..errors import BadInputError
from ..model.settings import ProjectorConfig
from ..options import add_options, changed_flags, flag_values, options_from
from ..train.settings import DistillConfig
from . import common

PROJECTOR_DEFAULTS = {"head_init": None}  # None: as the base has a text tower or not


def register(sub) -> None:
    p = common.add_verb(sub, "distill", "fit a projector to teacher(s) on the synthetic set (torchrun-able)")
    common.data_args(p)
    common.teacher_args(p, required=True)
    common.mix_arg(p, "cutmix", "mix the views are trained with (SRe2L: cutmix)")
    _projector_args(p)
    _train_args(p)
    _publish_args(p)
    p.set_defaults(func=_distill)

    p = common.add_verb(sub, "convert", "fit a projector to stored labels (SRe2L label directory or [N, C] file)")
    common.data_args(p, labels="required")
    _projector_args(p)
    _train_args(p, helps={"steps": "optimiser steps, one stored batch file each (default: one pass over every "
                                    "stored file, at least 300 views of each image and 1000 steps; 1000 for a "
                                    "per-image label file)"}, defaults={"steps": None})
    _publish_args(p)
    p.set_defaults(func=_convert)


def _projector_args(p) -> None:
    """The projector flags: what it is built from, then one per flagged :class:`ProjectorConfig` field."""
    g = p.add_argument_group("projector")
    g.add_argument("--base", help=common.base_help())
    g.add_argument("--pretrained", help="open_clip pretrained tag or weights file for --base (e.g. openai), or a "
                                        "timm checkpoint file")
    g.add_argument("--base-pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="timm:NAME bases: load timm's pretrained weights or build a random encoder (the library's "
                        "pretrained=True/False; default: the library's default)")
    g.add_argument("--init", help="start from an existing projector (directory or Hub id) instead of --base")
    g.add_argument("--class-names", help="'imagenet', or a text file with one name per line (default: folder names)")
    add_options(g, ProjectorConfig, defaults=PROJECTOR_DEFAULTS)
    g.add_argument("--lora-rank", type=int, default=None, help="rank of the default LoRA targets (default: 8)")
    common.load_args(g, revision=False)


def _train_args(p, **per_verb) -> None:
    """The training flags: one per :class:`DistillConfig` field (``per_verb``: :func:`add_options`'s ``helps`` /
    ``defaults``), and where the run goes."""
    g = p.add_argument_group("training")
    g.add_argument("--out", required=True, help="output directory: the projector, train_state.pt, metrics.json")
    add_options(g, DistillConfig, **per_verb)
    g.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt")
    common.quiet_arg(g)


def _publish_args(p) -> None:
    g = p.add_argument_group("publishing")
    g.add_argument("--push-to-hub", metavar="ORG/NAME", help="after the final save, upload OUT (config, adapter, "
                                                             "card; its fidelity plot with matplotlib) to this Hub "
                                                             "repo in one commit")
    g.add_argument("--revision", help="branch to push to (created if missing; default: main)")
    g.add_argument("--private", action="store_true", help="create the Hub repo private")
    g.add_argument("--license", help="license id for the card's metadata (e.g. mit, apache-2.0; default: unset)")


def _images(args, input_size: int):
    """The synthetic set, opened once: the projector is built from it and the job trains on it."""
    from ..constants import IMAGENET_MEAN, IMAGENET_STD
    from ..train.jobs import augmented

    return augmented(args.data, input_size, args.mean or IMAGENET_MEAN, args.std or IMAGENET_STD, args.min_scale,
                     args.max_scale)


def _pretrained(args):
    """The library's ``pretrained`` argument: a tag or file (--pretrained), else True/False (--base-pretrained)."""
    if args.pretrained is not None and args.base_pretrained is not None:
        raise BadInputError("give --pretrained TAG/FILE or --[no-]base-pretrained, not both")
    return args.pretrained if args.pretrained is not None else args.base_pretrained


def _head_init(args, pretrained):
    """--head-init, else prototype for a base without a text tower (said on stderr), else the library's default."""
    if args.head_init or args.init or not args.base:
        return args.head_init
    from ..model.bases import default_head, parse_base

    if default_head(parse_base(args.base, pretrained)):
        return None  # the library's default for this kind of base (a text head for CLIP bases)
    common.note(f"{args.base} has no text tower: the head starts from class prototypes of the synthetic images "
                f"(--head-init prototype; --head-init random or zero to change)")
    return "prototype"


def _projector(args, images):
    from ..train.jobs import make_projector

    pretrained = _pretrained(args)
    if args.init:  # the saved projector's settings: a projector flag beside it would be dropped without a word
        ignored = changed_flags(ProjectorConfig, args, defaults=PROJECTOR_DEFAULTS) + [
            flag for flag, value in (("--base", args.base), ("--pretrained", args.pretrained),
                                     ("--base-pretrained", args.base_pretrained), ("--class-names", args.class_names),
                                     ("--lora-rank", args.lora_rank)) if value is not None]
        if ignored:
            raise BadInputError(f"--init starts from the saved projector {args.init}: {', '.join(ignored)} would have "
                                f"no effect; drop {'it' if len(ignored) == 1 else 'them'} or start from --base")
        return make_projector(images, init=args.init, class_map=args.class_map,
                              trust_remote_code=args.trust_remote_code, check_base=not args.ignore_base_mismatch)
    given = {**flag_values(ProjectorConfig, args), "head_init": _head_init(args, pretrained),
             "lora_rank": args.lora_rank}
    options = {k: v for k, v in given.items() if v is not None}
    return make_projector(images, args.base, pretrained, args.init, args.class_names, args.class_map,
                          trust_remote_code=args.trust_remote_code, check_base=not args.ignore_base_mismatch,
                          **options)


def _before_work(args) -> None:
    """What must hold before minutes of training: the push can happen (repo id, Hub, login)."""
    if args.push_to_hub:
        common.require_push(args.push_to_hub, login=common.is_rank0())


def _check_portable(args, projector) -> None:
    if args.push_to_hub:
        from ..model.publish import check_portable_config

        check_portable_config(projector.config_dict(), "the projector")


def _push_run(args) -> None:
    """Upload OUT after the final save (rank 0 of a torchrun only)."""
    if args.push_to_hub and common.is_rank0():
        common.push(args.out, args.push_to_hub, args)


def _distill(args) -> None:
    from ..train.jobs import distill_from_teachers

    _before_work(args)
    images = _images(args, args.input_size)
    projector = _projector(args, images)
    _check_portable(args, projector)
    summary = distill_from_teachers(args.data, args.teacher, args.out, projector, options_from(DistillConfig, args),
                                    teacher_weights=args.teacher_weights, mix_type=common.mix(args.mix_type),
                                    resume=args.resume, progress=not args.quiet, images=images,
                                    class_map=args.class_map, command=common.command(args), license=args.license)
    _report(args.out, summary)
    _push_run(args)


def _convert(args) -> None:
    from ..labels.recorded import label_settings
    from ..train.jobs import convert_labels

    _before_work(args)
    # the crop size and sampler seed the label files were written with, before the images are opened at that size
    settings = label_settings(args.labels, input_size=args.input_size, fkd_seed=args.fkd_seed)
    images = _images(args, settings["input_size"])
    projector = _projector(args, images)
    _check_portable(args, projector)
    summary = convert_labels(args.data, args.labels, args.out, projector, options_from(DistillConfig, args),
                             settings["input_size"], args.epochs, settings["fkd_seed"], resume=args.resume,
                             progress=not args.quiet, images=images, class_map=args.class_map,
                             command=common.command(args), license=args.license)
    _report(args.out, summary)
    _push_run(args)


def _report(out, summary) -> None:
    agree = summary.get("train_agreement")
    final = summary.get("fidelity")
    held = (f"; held-out agreement {final['agreement']:.2%}, KL@T={final['temperature']:g} {final['kl']:.4f}"
            if final and not final["in_sample"] else
            f"; in-sample agreement {final['agreement']:.2%}" if final else "")
    if mixed := summary.get("fidelity_mixed"):
        held += f"; on {mixed['mix_type']}-mixed held-out views {mixed['agreement']:.2%}, KL {mixed['kl']:.4f}"
    common.show(f"saved projector to {out} ({summary['steps']} steps, {summary['seconds']:.1f}s, "
                f"final loss {summary['final_loss']:.4f}, running agreement {agree:.2%}{held})")
