"""``python -m benchmarks VERB``: ``report`` renders BENCHMARKS.md from benchmarks/results/ (see
:mod:`benchmarks.report`)."""
import sys

from . import report

VERBS = {"report": report.main}

if len(sys.argv) < 2 or sys.argv[1] not in VERBS:
    sys.exit(f"usage: python -m benchmarks {{{','.join(VERBS)}}} [options]")
VERBS[sys.argv[1]](sys.argv[2:])
