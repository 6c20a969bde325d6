"""Paired comparisons of label sources: per student seed, the difference of two sources' student accuracies, its
mean and a t-interval over seeds, and the ordering that interval supports (none when it holds 0).

Students of one seed share their initialisation, and the online sources (projectors, teacher, hard labels) also
their crops and mixes, so a per-seed difference cancels what the seed does to both."""
from __future__ import annotations

from functools import lru_cache
from math import lgamma, log, pi
from typing import Dict, List, Sequence, Tuple

import numpy as np


@lru_cache(maxsize=None)  # one numeric integration per (p, df): the demo asks for the same one per pair
def t_quantile(p: float, df: int) -> float:
    """Student's t quantile for ``0.5 <= p < 0.9995`` and ``df >= 1``, by integrating the density (scipy is not a
    dependency); accurate to about 1e-3."""
    if not (0.5 <= p < 0.9995 and df >= 1):
        raise ValueError(f"t quantile needs 0.5 <= p < 0.9995 and df >= 1, got p={p}, df={df}")
    x = np.linspace(0.0, 700.0, 1_400_001)
    log_density = lgamma((df + 1) / 2) - lgamma(df / 2) - 0.5 * log(df * pi) - (df + 1) / 2 * np.log1p(x * x / df)
    density = np.exp(log_density)
    cdf = 0.5 + np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(x))])
    return float(np.interp(p, cdf, x))


def t_interval(values: Sequence[float], level: float = 0.95) -> Tuple[float, float, float]:
    """``(mean, low, high)``: the two-sided ``level`` t-interval of the mean of ``values`` (at least 2)."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        raise ValueError("a t-interval needs at least 2 values")
    mean = float(values.mean())
    half = t_quantile(0.5 + level / 2, values.size - 1) * sample_std(values) / values.size ** 0.5
    return mean, mean - half, mean + half


def sample_std(values: Sequence[float]) -> float:
    """The sample standard deviation (dividing by n - 1) of ``values``; 0 for a single value."""
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1)) if values.size > 1 else 0.0


def ordering(low: float, high: float) -> str:
    """What an interval of ``a - b`` supports: ``"above"`` (all > 0), ``"below"`` (all < 0) or ``"unresolved"``."""
    return "above" if low > 0 else "below" if high < 0 else "unresolved"


def paired_differences(accuracies: Dict[str, List[float]], pairs: Sequence[Tuple[str, str]],
                       level: float = 0.95) -> List[dict]:
    """For each ``(a, b)`` in ``pairs``: per-seed ``accuracies[a][k] - accuracies[b][k]``, their mean, the
    ``level`` t-interval over seeds and :func:`ordering` (interval None and ``"unresolved"`` with one seed)."""
    result = []
    for a, b in pairs:
        diffs = [x - y for x, y in zip(accuracies[a], accuracies[b])]
        if len(diffs) >= 2:
            mean, low, high = t_interval(diffs, level)
            interval, verdict = [low, high], ordering(low, high)
        else:
            mean, interval, verdict = float(np.mean(diffs)), None, "unresolved"
        result.append({"a": a, "b": b, "per_seed": diffs, "mean": mean, "interval": interval, "level": level,
                       "ordering": verdict})
    return result


def describe(d: dict, digits: int = 1) -> str:
    """One line: ``a − b: +1.2 points, 95% CI [+0.3, +2.1] over 6 seeds: a above b`` (or ``no ordering``), in
    points to ``digits`` decimals."""
    seeds = len(d["per_seed"])
    ci = (f", {d['level']:.0%} CI [{d['interval'][0] * 100:+.{digits}f}, {d['interval'][1] * 100:+.{digits}f}]"
          if d["interval"] else "")
    verdict = {"above": f"{d['a']} above {d['b']}", "below": f"{d['a']} below {d['b']}",
               "unresolved": "no ordering supported"}[d["ordering"]]
    return f"{d['a']} − {d['b']}: {d['mean'] * 100:+.{digits}f} points{ci} over {seeds} seeds: {verdict}"
