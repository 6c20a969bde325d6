"""``hello-labels`` command line: parses arguments and calls the library, nothing more."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from .errors import HelloLabelsError


def _floats(text: str):
    return [float(v) for v in text.split(",")]


def _data_args(p):
    p.add_argument("--data", required=True, help="synthetic image folder (ImageFolder layout)")
    p.add_argument("--input-size", type=int, default=224, help="crop size the student sees (SRe2L: 224)")
    p.add_argument("--mean", type=_floats, default=None, help="input normalisation mean, comma-separated (ImageNet)")
    p.add_argument("--std", type=_floats, default=None, help="input normalisation std (ImageNet)")
    p.add_argument("--min-scale", type=float, default=0.08, help="RandomResizedCrop min scale (SRe2L: 0.08)")
    p.add_argument("--max-scale", type=float, default=1.0)
    _class_map_arg(p)


def _class_map_arg(p):
    p.add_argument("--class-map", help="JSON {folder: class name or index}, for folders not named after the "
                                       "projector's classes (default: match by folder name)")


def _teacher_args(p, required):
    p.add_argument("--teacher", action="append", required=required,
                   help="timm:NAME, torchvision:NAME, NAME@checkpoint or module:pkg.mod:fn; repeat to average")
    p.add_argument("--teacher-weights", type=_floats, help="comma-separated weights of the teachers")


def _load_args(p, pin=True):
    """Flags of every verb that loads a saved projector: what its files may make this process do."""
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let a custom-module base's factory named in the projector's config.json run (only for "
                        "projectors whose source you trust; factories inside hello_labels always run)")
    if pin:
        p.add_argument("--ignore-base-mismatch", action="store_true",
                       help="load even if the base weights differ from those the adapter was trained on")


def _load(args, path):
    from .model.projector import LabelProjector

    return LabelProjector.from_pretrained(path, revision=getattr(args, "revision", None),
                                          trust_remote_code=args.trust_remote_code,
                                          check_base=not args.ignore_base_mismatch)


def _projector_args(p):
    g = p.add_argument_group("projector")
    g.add_argument("--base", help="open_clip name (RN50), timm:NAME, local-dir:PATH, hf-hub:ID or module:pkg.mod:fn")
    g.add_argument("--pretrained", help="open_clip pretrained tag/file, or a timm checkpoint")
    g.add_argument("--init", help="start from an existing projector (directory or Hub id) instead of --base")
    g.add_argument("--class-names", help="'imagenet', a text file with one name per line (default: folder names)")
    g.add_argument("--templates", default=None, help="prompt templates: openai (80) or simple (7)")
    g.add_argument("--head-init", choices=["text", "prototype", "random", "zero"])
    g.add_argument("--lora-rank", type=int, default=None, help="rank of the default LoRA targets (8)")
    g.add_argument("--head-rank", type=int, default=64)
    g.add_argument("--image-size", type=int, default=None, help="resolution fed to the base (default: its own)")
    _load_args(g)


def _train_args(p):
    from .model.config import ADAPTER_DTYPES
    from .train.distill import DistillConfig

    d = DistillConfig()
    g = p.add_argument_group("training")
    g.add_argument("--out", required=True, help="output directory: the projector, train_state.pt, metrics.json")
    g.add_argument("--steps", type=int, default=d.steps)
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size (all processes)")
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    g.add_argument("--grad-clip", type=float, default=d.grad_clip)
    g.add_argument("--loss", choices=["mse", "kl"], default=d.loss, help="mse on logits (paper) or kl at T")
    g.add_argument("-T", "--temperature", type=float, default=d.temperature)
    g.add_argument("--ce-weight", type=float, default=d.ce_weight, help="λ of the paper's λ·CE(hard label)")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=d.precision)
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    g.add_argument("--eval-every", type=int, default=d.eval_every)
    g.add_argument("--eval-views", type=int, default=d.eval_views)
    g.add_argument("--workers", type=int, default=d.num_workers, help="DataLoader workers")
    g.add_argument("--save-dtype", choices=list(ADAPTER_DTYPES), default=d.save_dtype,
                   help="adapter file format: float32/float16/bfloat16, or int8 / int4 (quantized)")
    g.add_argument("--no-calibrate", action="store_true", help="skip fitting the head's scale/bias at step 0")
    g.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _publish_args(p):
    g = p.add_argument_group("publishing")
    g.add_argument("--push-to-hub", metavar="ORG/NAME", help="after the final save, upload OUT (config, adapter, "
                                                             "card, plot) to this Hub repo in one commit")
    g.add_argument("--revision", help="branch to push to (created if missing; default main)")
    g.add_argument("--private", action="store_true", help="create the Hub repo private")
    g.add_argument("--license", help="license id for the card's metadata (e.g. mit, apache-2.0; default unset)")


def _check_publishable(args, projector):
    """Before training: a repo id the Hub accepts and a base others can fetch."""
    if args.push_to_hub:
        from .model.publish import check_portable_config, check_repo_id

        check_repo_id(args.push_to_hub)
        check_portable_config(projector.config_dict(), "the projector")


def _push_run(args):
    """Upload OUT after the final save (rank 0 of a torchrun only)."""
    import os

    if args.push_to_hub and os.environ.get("RANK", "0") == "0":
        _upload(args.out, args.push_to_hub, args)


def _push(args):
    _upload(args.directory, args.repo_id, args, args.commit_message)


def _upload(directory, repo_id, args, commit_message=None):
    from .model.publish import push_directory

    info = push_directory(directory, repo_id, revision=args.revision, private=args.private or None,
                          commit_message=commit_message)
    print(f"pushed {directory} to {repo_id} ({info.commit_url})")


def _config(args):
    from .train.distill import DistillConfig

    return DistillConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         warmup_steps=args.warmup_steps, grad_clip=args.grad_clip, loss=args.loss,
                         temperature=args.temperature, ce_weight=args.ce_weight, precision=args.precision,
                         seed=args.seed, checkpoint_every=args.checkpoint_every, eval_every=args.eval_every,
                         eval_views=args.eval_views, num_workers=args.workers, save_dtype=args.save_dtype,
                         calibrate=not args.no_calibrate)


def _images(args):
    from .model.inputs import IMAGENET_MEAN, IMAGENET_STD
    from .train.jobs import augmented

    return augmented(args.data, args.input_size, args.mean or IMAGENET_MEAN, args.std or IMAGENET_STD,
                     args.min_scale, args.max_scale)


def _projector(args, images):
    from .train.jobs import make_projector

    options = {k: v for k, v in {"templates": args.templates, "head_init": args.head_init,
                                  "lora_rank": args.lora_rank, "head_rank": args.head_rank,
                                  "image_size": args.image_size}.items() if v is not None}
    return make_projector(images, args.base, args.pretrained, args.init, args.class_names, args.class_map,
                          trust_remote_code=args.trust_remote_code, check_base=not args.ignore_base_mismatch,
                          **options)


def _distill(args):
    from .train.jobs import distill_from_teachers

    images = _images(args)
    projector = _projector(args, images)
    _check_publishable(args, projector)
    mix = None if args.mix_type == "none" else args.mix_type
    summary = distill_from_teachers(args.data, args.teacher, args.out, projector, _config(args),
                                    teacher_weights=args.teacher_weights, mix_type=mix, resume=args.resume,
                                    progress=not args.quiet, images=images, class_map=args.class_map,
                                    command=_command(args), license=args.license)
    _report_run(args.out, summary)
    _push_run(args)


def _convert(args):
    from .labels.recorded import label_settings
    from .train.jobs import convert_labels

    args.__dict__.update(label_settings(args.labels, input_size=args.input_size, fkd_seed=args.fkd_seed))
    images = _images(args)
    projector = _projector(args, images)
    _check_publishable(args, projector)
    summary = convert_labels(args.data, args.labels, args.out, projector, _config(args), args.input_size,
                             args.epochs, args.fkd_seed, resume=args.resume, progress=not args.quiet,
                             class_map=args.class_map, command=_command(args), license=args.license)
    _report_run(args.out, summary)
    _push_run(args)


def _command(args) -> str:
    """The command line as typed, absolute paths cut to their names (it is published in the card)."""
    from .identity import command_line

    return command_line(args.argv)


def _report_run(out, summary):
    agree = summary.get("train_agreement")
    final = summary.get("fidelity")
    held = (f"; held-out agreement {final['agreement']:.2%}, KL@T={final['temperature']:g} {final['kl']:.4f}"
            if final and not final["in_sample"] else
            f"; in-sample agreement {final['agreement']:.2%}" if final else "")
    print(f"saved projector to {out} ({summary['steps']} steps, {summary['seconds']:.1f}s, "
          f"final loss {summary['final_loss']:.4f}, running agreement {agree:.2%}{held})")


def _eval(args):
    from .files import atomic_write_json
    from .train.evaluate import plot_per_class
    from .train.jobs import evaluate

    projector = _load(args, args.projector)
    if args.merge:
        projector.merge()
    report = evaluate(projector, args.data, teachers=args.teacher, labels=args.labels,
                      teacher_weights=args.teacher_weights, views=args.views, batch_size=args.batch_size,
                      temperature=args.temperature, input_size=args.input_size, min_scale=args.min_scale,
                      max_scale=args.max_scale, seed=args.seed, epochs=args.epochs, fkd_seed=args.fkd_seed,
                      class_map=args.class_map)
    print(report.table())
    if args.json:
        atomic_write_json(args.json, report.to_dict())
    if args.plot:
        plot_per_class(report, args.plot)


def _export_fkd(args):
    from .labels.export import export_fkd

    projector = _load(args, args.projector)
    mix = None if args.mix_type == "none" else args.mix_type
    info = export_fkd(projector, args.data, args.out, args.epochs, args.batch_size, mix, args.fp16,
                      args.input_size, args.min_scale, args.max_scale, args.fkd_seed, args.seed,
                      gvbsm_index=args.gvbsm_index, num_workers=args.workers, progress=not args.quiet,
                      class_map=args.class_map)
    print(f"wrote {info.epochs} epochs x {info.batches_per_epoch} batches of {info.num_images} images, "
          f"{info.num_classes} classes, {info.dtype} to {info.path} ({info.total_bytes():,} bytes)")


def _fraction(text: str) -> float:
    """``0.03`` or ``8/255``."""
    top, _, bottom = text.partition("/")
    return float(top) / float(bottom) if bottom else float(top)


def _refine(args):
    from .train.refine import RefineConfig, refine, report_table

    projector = _load(args, args.projector)
    config = RefineConfig(steps=args.steps, lr=args.lr, epsilon=args.epsilon, views=args.views,
                          batch_size=args.batch_size, loss=args.loss, temperature=args.temperature,
                          mix_type=None if args.mix_type == "none" else args.mix_type, input_size=args.input_size,
                          min_scale=args.min_scale, max_scale=args.max_scale, feature_weight=args.feature_weight,
                          jpeg_quality=args.jpeg_quality, seed=args.seed, eval_views=args.eval_views)
    report = refine(projector, args.teacher, args.data, args.out, config, teacher_weights=args.teacher_weights,
                    patches=args.patches, progress=not args.quiet, device=args.device, class_map=args.class_map)
    print(report_table(report))


def _demo(args):
    from .demo import DemoSettings, run_demo

    settings = DemoSettings(**{k: v for k, v in {
        "ipc": args.ipc, "label_epochs": args.epochs, "seeds": args.seeds, "input_size": args.input_size,
        "mean": tuple(args.mean) if args.mean else None, "std": tuple(args.std) if args.std else None,
        "teacher_steps": args.teacher_steps, "distill_steps": args.distill_steps}.items() if v is not None})
    run_demo(args.out, args.data, args.teacher, args.base, args.pretrained, settings)


def _info(args):
    from .model.card import card_facts

    projector = _load(args, args.projector)
    print(projector)
    for key, value in card_facts(projector).items():
        print(f"{key + ':':<16}{value}")
    rows = projector.adapter.summary()
    print(f"{'LoRA target':<48} {'layers':<12} {'rank':>4} {'weights':>7} {'parameters':>11}")
    for r in rows:
        print(f"{r['pattern'][:48]:<48} {','.join(r['layers'])[:12] or '-':<12} {r['rank']:>4} {r['weights']:>7} "
              f"{r['parameters']:>11,}")
    print(f"{'total':<48} {'':<12} {'':>4} {sum(r['weights'] for r in rows):>7} "
          f"{sum(r['parameters'] for r in rows):>11,}")
    if args.json:
        print(json.dumps(projector.config_dict(), indent=2))


def _storage(args):
    from .files import atomic_write_json
    from .storage import LabelSetting, storage_report
    from .storage.plot import plot_storage, require_matplotlib, storage_series
    from .storage.setting import positive_int

    if args.plot_epochs and not args.plot:
        raise HelloLabelsError("--plot-epochs needs --plot F.png")
    try:
        plot_epochs = [int(e) for e in args.plot_epochs.split(",")] if args.plot_epochs else []
    except ValueError:
        raise HelloLabelsError(f"--plot-epochs must be comma-separated integers, got {args.plot_epochs!r}") from None
    plot_epochs = [positive_int("--plot-epochs: epochs", e) for e in plot_epochs]
    if args.plot:
        require_matplotlib()  # before minutes of measuring

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
    print(report.table())
    if args.json:
        atomic_write_json(args.json, report.to_dict())
    if args.plot:
        series = storage_series(report.setting, epochs=plot_epochs, top_k=args.top_k, keep_ratio=args.keep_ratio,
                                teacher=teacher, bases=bases, projectors=args.projector or [],
                                class_names=args.class_names, lora_rank=args.lora_rank, head_rank=args.head_rank)
        plot_storage(series, args.plot, mark_ipc=report.setting.images / report.setting.classes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hello-labels", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="show library log messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="offline end-to-end demo: teacher, label files, projectors, students")
    p.add_argument("--out", help="output folder (default: a new temporary folder)")
    p.add_argument("--data", help="your own ImageFolder root with train/ and test/ (default: bundled Fashion-MNIST)")
    p.add_argument("--teacher", help="your own teacher spec (default: train a ConvNet on the training images)")
    p.add_argument("--base", help="your own base (default: hello-labels:efficientnet-lite0, ImageNet weights; "
                                  "hello-labels:tiny-clip-vit: the random-init tiny open_clip ViT)")
    p.add_argument("--pretrained", help="pretrained tag/file for --base")
    p.add_argument("--ipc", type=int, help="synthetic images per class (5)")
    p.add_argument("--epochs", type=int, help="epochs of stored labels and of student training (40)")
    p.add_argument("--seeds", type=int, help="students per label source (8)")
    p.add_argument("--input-size", type=int, help="crop size (28)")
    p.add_argument("--mean", type=_floats, help="input normalisation mean (Fashion-MNIST's)")
    p.add_argument("--std", type=_floats, help="input normalisation std")
    p.add_argument("--teacher-steps", type=int, help="teacher training steps (400)")
    p.add_argument("--distill-steps", type=int, help="projector training steps (default: the base's recipe, "
                                                     "RECIPES in hello_labels/demo/pipeline.py)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("distill", help="fit a projector to teacher(s) on the synthetic set (torchrun-able)")
    _data_args(p)
    _teacher_args(p, required=True)
    p.add_argument("--mix-type", choices=["cutmix", "mixup", "none"], default="cutmix")
    _projector_args(p)
    _train_args(p)
    _publish_args(p)
    p.set_defaults(func=_distill)

    p = sub.add_parser("convert", help="fit a projector to stored labels (SRe2L label directory or [N, C] file)")
    _data_args(p)
    p.add_argument("--labels", required=True, help="SRe2L label directory, or a .pt/.npy/.safetensors [N, C] file")
    p.add_argument("--epochs", type=int, help="use only the first N epochs of the label directory")
    p.add_argument("--fkd-seed", type=int, help="seed of the label files' sampler (default: as export-fkd "
                                                "recorded, else SRe2L's 42)")
    p.set_defaults(input_size=None)  # as export-fkd recorded, else 224
    _projector_args(p)
    _train_args(p)
    _publish_args(p)
    p.set_defaults(func=_convert)

    p = sub.add_parser("eval", help="agreement and KL of a projector against teacher(s) or stored labels")
    p.add_argument("projector")
    p.add_argument("--revision")
    _data_args(p)
    _teacher_args(p, required=False)
    p.add_argument("--labels", help="SRe2L label directory or [N, C] file instead of teachers")
    p.add_argument("--epochs", type=int)
    p.add_argument("--fkd-seed", type=int, help="as for convert")
    p.set_defaults(input_size=None)  # as export-fkd recorded, else 224
    p.add_argument("--views", type=int, default=512, help="held-out augmented views to compare on")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("-T", "--temperature", type=float, default=1.0, help="temperature of the reported KL")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--merge", action="store_true", help="evaluate the merged projector")
    _load_args(p)
    p.add_argument("--json", help="write the report here")
    p.add_argument("--plot", help="write a per-class agreement PNG here (needs matplotlib)")
    p.set_defaults(func=_eval)

    p = sub.add_parser("export-fkd", help="regenerate SRe2L-format label files from a projector")
    p.add_argument("projector")
    p.add_argument("--revision")
    p.add_argument("--data", required=True, help="synthetic image folder (ImageFolder layout)")
    p.add_argument("--out", required=True, help="label directory to write (epoch_<e>/batch_<b>.tar)")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True, help="the batch size the student will load with")
    p.add_argument("--mix-type", choices=["cutmix", "mixup", "none"], default="none")
    p.add_argument("--fp16", action="store_true", help="store soft labels as fp16 (SRe2L --use-fp16)")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--min-scale", type=float, default=0.08)
    p.add_argument("--max-scale", type=float, default=1.0)
    p.add_argument("--fkd-seed", type=int, default=42, help="sampler seed the student loads with (SRe2L: 42)")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops, flips and mixes")
    p.add_argument("--gvbsm-index", action="store_true", help="append G-VBSM's seventh element (image indices)")
    _load_args(p)
    _class_map_arg(p)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_export_fkd)

    from .train.refine import RefineConfig

    r = RefineConfig()
    p = sub.add_parser("refine", help="optimise the synthetic images so the projector's labels match the teacher's")
    p.add_argument("projector")
    p.add_argument("--revision")
    p.add_argument("--data", required=True, help="synthetic image folder (ImageFolder layout, PNG/JPEG)")
    _teacher_args(p, required=True)
    p.add_argument("--out", required=True, help="new folder: refined images (same layout, names, formats) and "
                                                "refine.json; rerun the same command to resume")
    p.add_argument("--input-size", type=int, default=r.input_size, help="crop size the student sees (SRe2L: 224)")
    p.add_argument("--min-scale", type=float, default=r.min_scale, help="RandomResizedCrop min scale (SRe2L: 0.08)")
    p.add_argument("--max-scale", type=float, default=r.max_scale)
    p.add_argument("--steps", type=int, default=r.steps, help="optimisation steps per batch of images")
    p.add_argument("--lr", type=_fraction, default=r.lr, help="Adam step in 0-1 pixel units (default 1/255)")
    p.add_argument("--epsilon", type=_fraction, default=r.epsilon, help="per-pixel budget (default 8/255)")
    p.add_argument("--views", type=int, default=r.views, help="augmented views per image per step")
    p.add_argument("--batch-size", type=int, default=r.batch_size, help="images per batch")
    p.add_argument("--loss", choices=["kl", "mse"], default=r.loss, help="kl at T (default) or mse of logits")
    p.add_argument("-T", "--temperature", type=float, default=r.temperature, help="of the KL, optimised and reported")
    p.add_argument("--mix-type", choices=["cutmix", "mixup", "none"], default=r.mix_type)
    p.add_argument("--patches", help="JSON {image: [{box: [top, left, h, w], source: path}]} of RDED-style patches "
                                     "and their high-resolution sources: adds the patch feature term")
    p.add_argument("--feature-weight", type=float, default=r.feature_weight, help="weight of the patch feature term")
    p.add_argument("--jpeg-quality", type=int, default=r.jpeg_quality, help="quality JPEG files are re-encoded at")
    p.add_argument("--seed", type=int, default=r.seed)
    p.add_argument("--eval-views", type=int, default=r.eval_views, help="held-out views scored before/after")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    _load_args(p)
    _class_map_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_refine)

    p = sub.add_parser("push", help="upload a saved projector directory to a Hub repo (one commit)")
    p.add_argument("directory", help="a projector directory (config.json, adapter, README.md card)")
    p.add_argument("repo_id", metavar="ORG/NAME", help="Hub repo, created if missing")
    p.add_argument("--revision", help="branch to push to (created if missing; default main)")
    p.add_argument("--private", action="store_true", help="create the Hub repo private")
    p.add_argument("--commit-message")
    p.set_defaults(func=_push)

    p = sub.add_parser("info", help="load a projector (directory or Hub id) and show its card's key facts: base, "
                                    "classes, teacher, data, fidelity, adapter size")
    p.add_argument("projector")
    p.add_argument("--revision")
    p.add_argument("--json", action="store_true", help="also print its config")
    _load_args(p)
    p.set_defaults(func=_info)

    from .labels.augment import MIX_TYPES
    from .model.projector import ADAPTER_DTYPES
    from .storage.setting import mix_name

    p = sub.add_parser("storage", help="bytes of stored, top-k and pruned labels, teacher, adapter and base, "
                                       "every line labelled")
    g = p.add_argument_group("label setting (or --labels DIR)")
    g.add_argument("--labels", help="an existing SRe2L label directory: measure it and derive its setting")
    g.add_argument("--classes", type=int, help="number of classes (ImageNet-1K: 1000)")
    g.add_argument("--ipc", type=int, help="synthetic images per class")
    g.add_argument("--epochs", type=int, help="relabelled epochs, one crop per image each (default 300)")
    g.add_argument("--batch-size", type=int, help="images per label file (default 1024)")
    g.add_argument("--fp16", action="store_true", help="logits stored as fp16 (SRe2L --use-fp16; default fp32)")
    g.add_argument("--mix-type", choices=[mix_name(m) for m in MIX_TYPES], help="mix metadata stored (default cutmix)")
    g = p.add_argument_group("alternatives")
    g.add_argument("--top-k", type=int, default=10, help="k of the top-k stored labels (FKD/LPQLD; default 10)")
    g.add_argument("--keep-ratio", type=float, default=0.025,
                   help="fraction of label files LPLD keeps (default 0.025: its 40x pruning)")
    g.add_argument("--teacher", default="torchvision:resnet18",
                   help="timm:NAME / torchvision:NAME (random init, no download), a checkpoint file, or 'none'")
    g.add_argument("--base", action="append", help="compute the adapter on this base from shapes; repeatable "
                                                   "(default RN50 unless --projector)")
    g.add_argument("--projector", action="append", help="a saved projector directory or Hub id; repeatable")
    _load_args(g, pin=False)
    g.add_argument("--class-names", help="'imagenet' or a text file, for --base's config.json (default placeholders)")
    g.add_argument("--lora-rank", type=int, default=None, help="rank of the default LoRA targets (8)")
    g.add_argument("--head-rank", type=int, default=64)
    g.add_argument("--adapter-dtype", choices=list(ADAPTER_DTYPES), default="float32",
                   help="adapter storage dtype for --base (default float32, as distill/convert save)")
    p.add_argument("--json", help="also write the report here (JSON)")
    p.add_argument("--plot", help="also draw bytes against images per class (1-200, log axes) as a PNG here; the "
                                  "adapter line is float16 (needs matplotlib)")
    p.add_argument("--plot-epochs", help="comma-separated epochs, one set of label lines each (default: --epochs)")
    p.set_defaults(func=_storage)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, format="%(message)s")
    try:
        args.func(args)
    except HelloLabelsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
