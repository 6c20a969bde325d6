"""Does this machine reproduce a recorded check run? Bit for bit where nothing that decides the bits differs
(:mod:`benchmarks.machine`); where something does, whether its figure falls within the recorded seeds' spread.

A record (``--record-check``) holds, per seed, the weights digest and test accuracy of a short teacher run, the
machine fields and the code version. A check run repeats the first seed here and gets a :class:`Verdict`.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import List, Sequence, Tuple

from .machine import machine_difference

SPREAD_STDS = 3  # "within the spread": inside the recorded seeds' mean +- 3 sample standard deviations


@dataclass
class Verdict:
    """Whether the check run reproduced the record, and the lines that say why."""

    ok: bool
    lines: List[str]


def recorded_seeds(record: dict) -> dict:
    """``{seed: {"weights", "accuracy"?}}`` of a record; one written before per-seed records holds seed 0's
    weights only."""
    if "seeds" in record:
        return record["seeds"]
    return {str(record.get("seed", 0)): {"weights": record["weights"]}}


def spread(values: Sequence[float]) -> Tuple[float, float]:
    """The interval counted as "within the spread" of ``values`` (two or more): mean +- SPREAD_STDS sample stds."""
    mean, std = statistics.mean(values), statistics.stdev(values)
    return mean - SPREAD_STDS * std, mean + SPREAD_STDS * std


def verdict(record: dict, here: dict) -> Verdict:
    """Compare a check run ``here`` (``seed``, ``weights``, ``accuracy``, ``env``, ``code``) with ``record``."""
    seeds = recorded_seeds(record)
    same = seeds[str(here["seed"])]["weights"] == here["weights"]
    differs = machine_difference(record["env"], here["env"])
    code = [] if record.get("code") == here["code"] else [f"code: recorded {record.get('code')}, here {here['code']}"]
    if same:
        note = "; ".join((differs or []) + code)
        return Verdict(True, ["REPRODUCED: identical teacher weights" + (f" (though {note})" if note else "")])
    if differs == []:
        cause = (f"the code changed ({code[0]}): the change is the cause; re-record with --record-check if it is "
                 "meant" if code else "same machine fields and code: this run is not deterministic here")
        return Verdict(False, [f"NOT REPRODUCED: the teacher weights differ; {cause}"])
    why = ("machine not recorded (the record predates machine fields), so a CPU difference cannot be told from a "
           "code change" if differs is None else "this machine differs from the record's: " + "; ".join(differs))
    lines = [f"NOT BIT-IDENTICAL, as expected where what decides the bits differs: {why}" +
             (f"; {code[0]}" if code else "")]
    figures = [s["accuracy"] for s in seeds.values() if "accuracy" in s]
    if len(figures) < 2:
        return Verdict(False, lines + ["cannot tell whether this machine's figures agree: the record has no spread "
                                       "(re-record with --record-check over several seeds)"])
    low, high = spread(figures)
    inside = low <= here["accuracy"] <= high
    lines.append(f"{'FIGURES WITHIN' if inside else 'FIGURES OUTSIDE'} THE RECORDED SPREAD: test accuracy "
                 f"{here['accuracy']:.2%} (seed {here['seed']}) against {', '.join(f'{a:.2%}' for a in figures)} "
                 f"over {len(figures)} recorded seeds (within: {low:.2%}..{high:.2%}, mean +- {SPREAD_STDS} std)")
    return Verdict(inside, lines)
