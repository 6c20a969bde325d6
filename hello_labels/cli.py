"""``hello-labels`` command line: parses arguments and calls the library, nothing more."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from .errors import HelloLabelsError


def _demo(args):
    from .demo import quick_demo

    quick_demo(args.out)


def _info(args):
    from .projector import LabelProjector

    projector = LabelProjector.from_pretrained(args.projector, revision=args.revision)
    print(projector)
    if args.json:
        print(json.dumps(projector.config_dict(), indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hello-labels", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="show library log messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="offline end-to-end demo on the shipped tiny base")
    p.add_argument("--out", help="output folder (default: a new temporary folder)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("info", help="load a projector (directory or Hub id) and describe it")
    p.add_argument("projector")
    p.add_argument("--revision")
    p.add_argument("--json", action="store_true", help="also print its config")
    p.set_defaults(func=_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, format="%(message)s")
    try:
        args.func(args)
    except HelloLabelsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
