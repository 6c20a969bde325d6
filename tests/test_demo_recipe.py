"""benchmarks/demo_recipe.py: each candidate's name is what its committed result ran, and the demo ships a recorded
candidate."""
import json
from dataclasses import asdict

from benchmarks import report
from benchmarks.demo_recipe import CANDIDATES, candidate_settings
from hello_labels.demo.pipeline import DEFAULT_BASE, RECIPES, DemoSettings, Recipe


def _as_recorded(x) -> dict:
    return json.loads(json.dumps(asdict(x)))


def _recorded() -> list:
    found = [r for path in sorted(report.RESULTS.glob(report.DEMO_RECIPE)) for r in json.loads(path.read_text())]
    assert found
    return found


def test_each_candidate_reruns_the_recipe_and_settings_its_committed_result_recorded():
    """A candidate named after the 0.1.0 default once pointed at the current default: a rerun would have filed
    the shipped recipe's students under the old recipe's name."""
    for r in _recorded():
        recipe, overrides = CANDIDATES[r["candidate"]]
        assert _as_recorded(recipe) == {**_as_recorded(Recipe()), **r["recipe"]}, r["candidate"]
        assert overrides == r["overrides"], r["candidate"]
        if "settings" in r:  # recorded since the demo's sizes changed: the sizes a rerun would use
            assert _as_recorded(candidate_settings(r["candidate"], r["seeds"])) == r["settings"], r["candidate"]


def test_the_demo_ships_a_recipe_and_sizes_a_validation_run_recorded():
    shipped = (_as_recorded(RECIPES[DEFAULT_BASE]), DemoSettings().ipc, DemoSettings().label_epochs)
    ran = []
    for r in _recorded():
        sizes = r.get("settings") or asdict(candidate_settings(r["candidate"], r["seeds"]))
        ran.append((_as_recorded(CANDIDATES[r["candidate"]][0]), sizes["ipc"], sizes["label_epochs"]))
    assert shipped in ran
