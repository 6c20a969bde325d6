"""``python -m benchmarks VERB``: ``run`` runs a benchmark by question and named config (:mod:`benchmarks.run`),
``report`` renders BENCHMARKS.md from benchmarks/results/ (:mod:`benchmarks.report`)."""
import sys

from . import report, run

VERBS = {"run": run.main, "report": report.main}

if len(sys.argv) < 2 or sys.argv[1] not in VERBS:
    sys.exit(f"usage: python -m benchmarks {{{','.join(VERBS)}}} [options]")
sys.exit(VERBS[sys.argv[1]](sys.argv[2:]))
