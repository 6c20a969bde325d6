"""``info`` (a projector's card facts), ``push`` (upload a saved projector) and ``list`` (find projectors on the
Hub by their ``hello-labels`` tag)."""
from __future__ import annotations

import json

from . import common


def register(sub) -> None:
    p = common.add_verb(sub, "info", "load a projector (directory or Hub id) and show what it expects and is: input "
                                     "contract, base, classes, teacher, data, fidelity, adapter size")
    p.add_argument("projector", help="projector directory or Hub id (ORG/NAME)")
    p.add_argument("--json", action="store_true", help="also print its config.json")
    common.load_args(p)
    p.set_defaults(func=_info)

    p = common.add_verb(sub, "push", "upload a saved projector directory to a Hub repo (one commit)")
    p.add_argument("directory", help="a projector directory (config.json, adapter, README.md card)")
    p.add_argument("repo_id", metavar="ORG/NAME", help="Hub repo, created if missing")
    p.add_argument("--revision", help="branch to push to (created if missing; default: main)")
    p.add_argument("--private", action="store_true", help="create the Hub repo private")
    p.add_argument("--license", help="license id for the card's metadata (e.g. mit, apache-2.0; default: the "
                                     "card's own, from distill/convert --license)")
    p.add_argument("--commit-message", help="the Hub commit's message (default: 'Upload label projector "
                                            "(hello-labels)')")
    p.set_defaults(func=_push)

    p = common.add_verb(sub, "list", "find projectors on the Hugging Face Hub (models tagged hello-labels)")
    p.add_argument("--base", help="only projectors on this base, as --base names it (e.g. "
                                  f"{common.SHIPPED_BASES[0]}, RN50, timm:resnet50)")
    p.add_argument("--classes", type=int, help="only projectors with this many classes")
    p.add_argument("--search", help="only repos whose id contains this text")
    p.add_argument("--limit", type=int, default=50, help="show at most this many")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=_list)


def _info(args) -> None:
    projector = common.load(args, args.projector)
    from ..model.card import card_facts

    common.show(projector)
    for key, value in card_facts(projector.config, projector.adapter_facts(), projector.base_unpinned).items():
        common.show(f"{key + ':':<16}{value}")
    rows = projector.adapter.summary()
    common.show(f"{'adapter tensors':<48} {'layers':<12} {'rank':>4} {'weights':>7} {'parameters':>11}")
    for r in rows:
        common.show(f"{r['pattern'][:48]:<48} {','.join(r['layers'])[:12] or '-':<12} {r['rank']:>4} "
                    f"{r['weights']:>7} {r['parameters']:>11,}")
    total = projector.num_adapter_parameters()
    head = "head bias, logit scale" + (", prototype weights" if projector.adapter.store_head_weight else "")
    common.show(f"{head:<48} {'-':<12} {'':>4} {'':>7} {total - sum(r['parameters'] for r in rows):>11,}",
                f"{'total':<48} {'':<12} {'':>4} {sum(r['weights'] for r in rows):>7} {total:>11,}")
    if args.json:
        print(json.dumps(projector.config_dict(), indent=2))  # JSON escapes control characters itself


def _push(args) -> None:
    common.require_push(args.repo_id)
    common.push(args.directory, args.repo_id, args, commit_message=args.commit_message, license=args.license)


def _list(args) -> None:
    from ..model.hub import find_projectors

    rows = find_projectors(base=args.base, classes=args.classes, search=args.search, limit=args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        common.show("no projectors found")
        return
    common.show(f"{'repo':<40} {'base':<36} {'classes':>7} {'agreement':>9} {'adapter':>12}")
    for r in rows:
        agreement = f"{r['agreement']:.1%}" if r["agreement"] is not None else "-"
        size = f"{r['adapter_bytes']:,}" if r["adapter_bytes"] is not None else "-"
        common.show(f"{r['id'][:40]:<40} {(r['base'] or '-')[:36]:<36} {r['classes'] or '-':>7} {agreement:>9} "
                    f"{size:>12}")
