"""``demo``: the whole pipeline offline on bundled Fashion-MNIST images."""
from __future__ import annotations

from . import common


def register(sub) -> None:
    p = common.add_verb(sub, "demo", "offline end-to-end demo: teacher, label files, projectors, students")
    p.add_argument("--out", help="output folder (default: a new temporary folder)")
    p.add_argument("--data", help="your own ImageFolder root with train/ and test/ (default: bundled Fashion-MNIST)")
    p.add_argument("--teacher", help="your own teacher spec (default: train a ConvNet on the training images)")
    p.add_argument("--base", help="your own base (default: hello-labels:efficientnet-lite0, ImageNet weights; "
                                  "hello-labels:tiny-clip-vit: the random-init tiny open_clip ViT)")
    p.add_argument("--pretrained", help="pretrained tag/file for --base")
    p.add_argument("--ipc", type=int, help="synthetic images per class (default: 5)")
    p.add_argument("--epochs", type=int, help="epochs of stored labels and of student training (default: 40)")
    p.add_argument("--seeds", type=int, help="students per label source (default: 8)")
    p.add_argument("--input-size", type=int, help="crop size (default: 28)")
    p.add_argument("--mean", type=common.floats, help="input normalisation mean (default: Fashion-MNIST's)")
    p.add_argument("--std", type=common.floats, help="input normalisation std (default: Fashion-MNIST's)")
    p.add_argument("--teacher-steps", type=int, help="teacher training steps (default: 400)")
    p.add_argument("--distill-steps", type=int, help="projector training steps (default: the base's recipe, "
                                                     "RECIPES in hello_labels/demo/pipeline.py)")
    common.quiet_arg(p)
    p.set_defaults(func=_demo)


def _demo(args) -> None:
    from ..demo import DemoSettings, run_demo

    settings = DemoSettings(**{k: v for k, v in {
        "ipc": args.ipc, "label_epochs": args.epochs, "seeds": args.seeds, "input_size": args.input_size,
        "mean": tuple(args.mean) if args.mean else None, "std": tuple(args.std) if args.std else None,
        "teacher_steps": args.teacher_steps, "distill_steps": args.distill_steps}.items() if v is not None})
    run_demo(args.out, args.data, args.teacher, args.base, args.pretrained, settings, progress=not args.quiet,
             echo=lambda text: common.show(*text.splitlines()))
