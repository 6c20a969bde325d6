"""The demo's paired comparisons: t quantiles, t-intervals over seeds, and only the ordering an interval supports."""
import pytest

from hello_labels.demo.paired import describe, ordering, paired_differences, sample_std, t_interval, t_quantile


@pytest.mark.parametrize("df, table", [(1, 12.706), (3, 3.182), (5, 2.571), (7, 2.365), (30, 2.042)])
def test_t_quantiles_match_the_published_table(df, table):
    assert t_quantile(0.975, df) == pytest.approx(table, abs=2e-3)


def test_t_interval_of_a_known_sample():
    mean, low, high = t_interval([1.0, 2.0, 3.0, 4.0])  # mean 2.5, sd 1.291, se 0.6455, t(0.975, 3) 3.182
    assert mean == 2.5 and low == pytest.approx(2.5 - 3.182 * 0.6455, abs=3e-3)
    assert high == pytest.approx(2.5 + 3.182 * 0.6455, abs=3e-3)
    with pytest.raises(ValueError):
        t_interval([1.0])


def test_an_ordering_only_where_the_interval_excludes_zero():
    assert (ordering(0.001, 0.02), ordering(-0.02, -0.001), ordering(-0.01, 0.02)) == ("above", "below",
                                                                                        "unresolved")
    accs = {"p": [0.66, 0.64, 0.70, 0.62], "s": [0.65, 0.66, 0.66, 0.64], "h": [0.60, 0.59, 0.63, 0.58]}
    close, clear = paired_differences(accs, [("p", "s"), ("p", "h")])
    assert close["per_seed"] == pytest.approx([0.01, -0.02, 0.04, -0.02]) and close["ordering"] == "unresolved"
    assert clear["ordering"] == "above" and clear["interval"][0] > 0
    assert describe(close).endswith("over 4 seeds: no ordering supported")
    assert describe(clear) == "p − h: +5.5 points, 95% CI [+3.4, +7.6] over 4 seeds: p above h"
    single = paired_differences({"p": [0.6], "h": [0.5]}, [("p", "h")])[0]
    assert single["interval"] is None and single["ordering"] == "unresolved"


def test_the_demo_table_spread_is_the_sample_std_over_seeds():
    from hello_labels.demo import pipeline

    assert sample_std([0.80, 0.82, 0.84, 0.86]) == pytest.approx(0.0258199, abs=1e-6)  # n - 1; n gives 0.0223607
    assert sample_std([0.8]) == 0.0
    rows = [{"labels": "stored labels (SRe2L)", "label_bytes": 100, "agreement": None, "student_accs": [0.8, 0.9],
             "student_acc_mean": 0.85, "student_acc_std": sample_std([0.8, 0.9]), "label_seconds": 0.0,
             "student_seconds": 1.0}]
    settings = pipeline.DemoSettings()
    table = pipeline._table(rows, settings, 100)
    assert "sample std (n−1)" in table and "85.0% ± 7.1%" in table  # population std would print 5.0%
