"""``hello-labels`` command line: one module per verb (or group of verbs), each parsing its flags and calling the
library, nothing more; :mod:`.common` holds what several verbs share. Parsing imports no torch, so ``--help`` and
``--version`` answer at once.

Text read from files reaches the terminal escaped (:func:`hello_labels.errors.escape`): results through
:func:`.common.show`, errors by ``HelloLabelsError`` itself, and warning and log lines here, each as one line."""
from __future__ import annotations

import argparse
import logging
import sys
import warnings

from ..errors import HelloLabelsError, escape
from ..version import __version__
from . import demo, evaluate, export, hub, refine, storage, train

DESCRIPTION = """\
Replace gigabytes of stored soft labels with a tiny label projector (HeLlO, arXiv 2408.08201): a LoRA adapter
on a public image encoder that reproduces a teacher's soft labels online, for dataset-distillation students.

  distill     fit a projector to teacher(s) on your synthetic images
  convert     fit one to labels you already stored (SRe2L label files)
  eval        measure its agreement with the teacher or the labels
  info, push  show a projector's input contract and facts; publish it on the Hugging Face Hub
  list        find published projectors
  export-fkd  write SRe2L label files back from a projector
  refine      adjust the synthetic images to the projector
  storage     compare bytes of stored labels, teachers and adapters
  demo        all of it offline on bundled Fashion-MNIST images"""

VERBS = (demo, train, evaluate, export, refine, hub, storage)  # each registers its verbs, in help order


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hello-labels", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="`hello-labels VERB --help` lists a verb's flags.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the library's log messages")
    parser.add_argument("--version", action="version", version=f"hello-labels {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    for module in VERBS:
        module.register(sub)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv, argparse.Namespace(argv=argv))  # the command line, for the card
    handler = logging.StreamHandler()
    handler.setFormatter(_EscapedFormatter("%(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, handlers=[handler])
    with warnings.catch_warnings():
        warnings.showwarning = _warning_line
        try:
            args.func(args)
        except HelloLabelsError as err:
            print(f"error: {err}", file=sys.stderr)  # escaped by HelloLabelsError itself
            return 2
    return 0


class _EscapedFormatter(logging.Formatter):
    """Log lines as one line each, control characters escaped."""

    def format(self, record) -> str:
        return escape(super().format(record))


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one ``warning: ...`` line (not Python's two lines with the source), escaped."""
    print(f"warning: {escape(str(message))}", file=sys.stderr if file is None else file)


__all__ = ["main", "build_parser"]
