"""What several verbs share: the help formatter, argument types, the flag groups declared once, loading a
projector, and the check that must pass before any work that ends in a push (Hub reachable, logged in).

Nothing here imports torch at parse time: the parsers, ``--help`` and ``--version`` run without it; each verb
imports the library when it runs."""
from __future__ import annotations

import argparse
import sys

from ..constants import ADAPTER_DTYPES, HEAD_INITS, MIX_NAMES, SHIPPED_BASES  # noqa: F401  (choices of the verbs)
from ..errors import escape
from ..options import NONE


def base_help(weights: bool = True) -> str:
    """Help of ``--base``; ``weights``: the verb has ``--pretrained`` and ``--base-pretrained`` to choose weights."""
    open_clip = "an open_clip name (RN50, ViT-B-32; its weights via --pretrained TAG)" if weights else \
        "an open_clip name (RN50, ViT-B-32)"
    timm = "timm:NAME (timm's weights: see --base-pretrained)" if weights else "timm:NAME"
    return (f"the base encoder: {' or '.join(SHIPPED_BASES)} (shipped with the package), {open_clip}, {timm}, "
            "local-dir:PATH or hf-hub:ORG/NAME (open_clip folders), or module:pkg.mod:fn (your encoder)")


class Formatter(argparse.HelpFormatter):
    """Shows a flag's default after its help when it has one (not for None, False or a default the help states)."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=32, width=min(110, max(60, _columns())))

    def _split_lines(self, text, width):
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)  # keep hello-labels:NAME whole

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default is argparse.SUPPRESS  # 0 is set
        if "%(default)" not in text and "default" not in text and action.option_strings and not unset:
            text += " (default: %(default)s)"
        return text


def _columns() -> int:
    import shutil

    return shutil.get_terminal_size((100, 20)).columns


def verbose_flag(p) -> None:
    """``-v`` after the verb too; SUPPRESS keeps a ``-v`` given before the verb."""
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show the library's log messages")


def add_verb(sub, name: str, help: str, description: str = None):
    p = sub.add_parser(name, help=help, description=description or help[:1].upper() + help[1:] + ".",
                       formatter_class=Formatter)
    verbose_flag(p)
    return p


# ----------------------------------------------------------------------------- argument types
def floats(text: str):
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def mix(value: str):
    """The library's spelling of ``--mix-type``: None for ``none``."""
    return None if value == NONE else value


# ----------------------------------------------------------------------------- flag groups
def data_args(p, labels: bool = False) -> None:
    """The synthetic set and its augmentation (distill, convert, eval). ``labels``: the verb reads stored labels,
    whose crop size and sampler seed default to what ``export-fkd`` recorded with them."""
    p.add_argument("--data", required=True, help="synthetic image folder (ImageFolder layout: one folder per class)")
    if labels:
        p.add_argument("--labels", required=labels == "required",
                       help="SRe2L label directory, or a .pt/.npy/.safetensors [N, C] file")
        p.add_argument("--epochs", type=int, help="use only the first N epochs of the label directory (default: all)")
        p.add_argument("--fkd-seed", type=int, help="seed of the label files' sampler (default: as export-fkd "
                                                    "recorded with the labels, else SRe2L's 42)")
    p.add_argument("--input-size", type=int, default=None if labels else 224,
                   help="crop size the student sees (default: as export-fkd recorded with the labels, else 224)"
                   if labels else "crop size the student sees (SRe2L: 224)")
    p.add_argument("--mean", type=floats, default=None,
                   help="input normalisation mean the student uses, comma-separated (default: ImageNet's)")
    p.add_argument("--std", type=floats, default=None, help="input normalisation std (default: ImageNet's)")
    crop_args(p)
    class_map_arg(p)


def crop_args(p, min_scale: float = 0.08, max_scale: float = 1.0) -> None:
    p.add_argument("--min-scale", type=float, default=min_scale, help="RandomResizedCrop min scale (SRe2L: 0.08)")
    p.add_argument("--max-scale", type=float, default=max_scale, help="RandomResizedCrop max scale")


def class_map_arg(p) -> None:
    p.add_argument("--class-map", help="JSON {folder: class name or index}, for folders not named after the "
                                       "projector's classes (default: match by folder name)")


def teacher_args(p, required: bool) -> None:
    p.add_argument("--teacher", action="append", required=required,
                   help="timm:NAME, torchvision:NAME, NAME@checkpoint or module:pkg.mod:fn; repeat to average")
    p.add_argument("--teacher-weights", type=floats, help="comma-separated weights of the teachers (default: equal)")


def load_args(p, pin: bool = True, revision: bool = True) -> None:
    """Flags of every verb that loads a saved projector: which revision, and what its files may make us do."""
    if revision:
        p.add_argument("--revision", help="Hub branch, tag or commit of the projector (default: main)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let a custom-module base's factory named in the projector's config.json run (only for "
                        "projectors whose source you trust)")
    if pin:
        p.add_argument("--ignore-base-mismatch", action="store_true",
                       help="load even if the base weights differ from those the adapter was trained on")


def mix_arg(p, default: str, what: str) -> None:
    p.add_argument("--mix-type", choices=MIX_NAMES, default=default, help=what)


def quiet_arg(p) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def load(args, path):
    """The projector at ``path`` (folder or Hub id) as the load flags say. Its config.json is resolved first,
    before torch is imported: a wrong path, or a Hub id offline, fails in about a second."""
    from ..model.hub import resolve_file

    resolve_file(str(path), "config.json", revision=getattr(args, "revision", None))  # cached for the load
    from ..model.projector import LabelProjector

    return LabelProjector.from_pretrained(path, revision=getattr(args, "revision", None),
                                          trust_remote_code=args.trust_remote_code,
                                          check_base=not getattr(args, "ignore_base_mismatch", False))


# ----------------------------------------------------------------------------- checks before any work
def require_push(repo_id: str, login: bool = True) -> None:
    """A repo id the Hub accepts and (``login``: the process that will push) the Hub reachable and a login, before
    any work that ends in a push."""
    from ..model.hub import check_can_push
    from ..model.publish import check_repo_id

    check_repo_id(repo_id)
    if login:
        check_can_push()


def command(args) -> str:
    """The command line as typed, absolute paths cut to their names (it is published in the card)."""
    from ..identity import command_line

    return command_line(args.argv)


def show(*lines) -> None:
    """Print a verb's result, each argument one line: text from files (class names, card facts, Hub ids) cannot
    act on the terminal or forge a line, since its control characters, line breaks included, are escaped
    (:func:`hello_labels.errors.escape`)."""
    for line in lines:
        print(escape(line))


def note(text: str) -> None:
    """A line for the user that is not the verb's result (stderr, so results stay pipeable), escaped as
    :func:`show`'s."""
    print(f"note: {escape(text)}", file=sys.stderr)


def is_rank0() -> bool:
    """Rank 0 of a ``torchrun`` (or no torchrun): the process that logs in and pushes."""
    import os

    return os.environ.get("RANK", "0") == "0"


def push(directory, repo_id: str, args, **kwargs) -> None:
    """Upload a saved projector directory in one commit (``push``, ``--push-to-hub``) and say where it went."""
    from ..model.publish import push_directory

    info = push_directory(directory, repo_id, revision=args.revision, private=args.private or None, **kwargs)
    show(f"pushed {directory} to {repo_id} ({info.commit_url})")
