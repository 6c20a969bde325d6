"""benchmarks/demo_recipe.py: each candidate's name is what its committed result ran."""
import json
from dataclasses import asdict

from benchmarks import report
from benchmarks.demo_recipe import CANDIDATES
from hello_labels.demo.pipeline import Recipe


def _as_recorded(recipe) -> dict:
    return json.loads(json.dumps(asdict(recipe)))


def test_each_candidate_reruns_the_recipe_and_settings_its_committed_result_recorded():
    """A candidate named after the 0.1.0 default once pointed at the current default: a rerun would have filed
    the shipped recipe's students under the old recipe's name."""
    recorded = [r for path in sorted(report.RESULTS.glob(report.DEMO_RECIPE))
                for r in json.loads(path.read_text())]
    assert recorded
    for r in recorded:
        recipe, overrides = CANDIDATES[r["candidate"]]
        assert _as_recorded(recipe) == {**_as_recorded(Recipe()), **r["recipe"]}, r["candidate"]
        assert overrides == r["overrides"], r["candidate"]
