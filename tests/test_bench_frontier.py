"""The cost/fidelity frontier's report: resolutions read from the projector names, costs from the throughput run,
students paired with the reference resolution pipeline by pipeline."""
import pytest

from benchmarks import frontier
from benchmarks.label_sources import report_rows

NAMES = {"hard labels": 0, "teacher online (RDED)": 1, "projector effnet": 2, "projector effnet@32px": 2,
         "projector effnet-small": 2}


def _run(acc: dict, seconds: dict) -> dict:
    fid = {"agreement": 0.9, "kl": 0.1, "per_class_agreement": {}}
    return {"teacher_accuracy": 0.92, "full_bytes": 100, "bytes": NAMES, "steps": 600,
            "accuracy": {n: [acc[n]] for n in NAMES}, "per_class": {n: [{}] for n in NAMES},
            "seconds_per_step": {n: [seconds[n]] for n in NAMES},
            "fidelity": {n: fid for n in NAMES if n.startswith("projector")}}


def _fast(size: int, ms: float) -> dict:
    return {"role": "fast", "base": f"EfficientNet-Lite0 @{size}", "ms_per_batch": {"median": ms}}


def test_the_frontier_pairs_each_resolution_with_the_reference_and_times_it_against_the_teacher():
    seconds = {"hard labels": 0.05, "teacher online (RDED)": 0.09, "projector effnet": 0.17,
               "projector effnet@32px": 0.08, "projector effnet-small": 0.16}
    runs = {"0": _run({"hard labels": 0.6, "teacher online (RDED)": 0.74, "projector effnet": 0.74,
                       "projector effnet@32px": 0.72, "projector effnet-small": 0.7}, seconds),
            "1": _run({"hard labels": 0.6, "teacher online (RDED)": 0.75, "projector effnet": 0.73,
                       "projector effnet@32px": 0.735, "projector effnet-small": 0.7}, seconds)}
    results = {"settings": {"effnet_size": 64}, "runs": runs, "rows": report_rows(runs)}
    cost = {"median": 0.5, "p25": 0.4, "p75": 0.6}
    throughput = {"settings": {"fashion-mnist": {
        "rows": [{"role": "teacher", "base": None, "ms_per_batch": {"median": 20.0}}, _fast(32, 10.0), _fast(64, 40.0)],
        "bases": {f"EfficientNet-Lite0 @{s}": {"cost_x_teacher": {"fast": {"best_layout": {"paired": cost}}}}
                  for s in (32, 64)}}}}

    assert frontier.sizes(results) == {"projector effnet": 64, "projector effnet@32px": 32}  # not the small one
    rows = {r["source"]: r for r in frontier.frontier(results, throughput)}
    assert list(rows) == ["projector effnet@32px", "projector effnet", "teacher online (RDED)"]
    small = rows["projector effnet@32px"]
    assert small["vs_reference"]["per_pipeline"] == pytest.approx({"0": -0.02, "1": 0.005})
    assert small["vs_reference"]["mean"] == pytest.approx(-0.0075)
    assert small["ms_per_batch"] == 10.0 and small["label_ms_per_step"] == pytest.approx(30.0)
    assert rows["projector effnet"]["vs_reference"] is None and rows["projector effnet"]["ms_per_batch"] == 40.0
    assert rows["teacher online (RDED)"]["ms_per_batch"] == 20.0 and rows["teacher online (RDED)"]["size"] is None
    assert "-2.00, +0.50 (-0.75)" in frontier.table(list(rows.values()), "projector effnet")
