"""The re-conversion summary: students paired seed by seed with the labels they came from, a student a row lacks
taken from a results JSON, and a pipeline without them reported as incomplete rather than skipped."""
from benchmarks.reconvert import paired_summary


def _row(seed, accuracy, source, hard, pipeline=0):
    row = {"pipeline": pipeline, "epochs": 10, "accuracy": accuracy,
           "cached": {"converted effnet, 10 epochs": 0.5, "stored labels, first 10 epochs": source,
                      "hard labels": hard}}
    return row if seed is None else row | {"seed": seed}


def test_students_are_paired_seed_by_seed_and_missing_ones_come_from_the_results_or_are_named():
    rows = [_row(None, 0.77, 0.78, 0.70), _row(1, 0.76, None, 0.71), _row(2, 0.79, 0.78, 0.72),
            _row(0, 0.75, None, None, pipeline=1)]
    runs = {"0": {"accuracy": {"stored labels, first 10 epochs": [0.0, 0.775]}}}
    before = repr(rows)
    lines = paired_summary(rows, runs).splitlines()
    assert repr(rows) == before  # filled from the results in its own copies, not in the rows read from a file
    assert lines[0] == ("pipeline 0, 10 epochs, student seeds [0, 1, 2]: - stored labels, first 10 epochs -1.00, "
                        "-1.50, +1.00 (mean -0.50 ± 1.32); - hard labels +7.00, +5.00, +7.00 (mean +6.33 ± 1.15)")
    assert "stored labels, first 10 epochs: its students are missing" in lines[1]
