"""The benchmark's student cache: a student is recomputed when the projector (or refined images) it learned from
was re-made, and kept when this run merely leaves its source out."""
import torch

from benchmarks.label_sources import source_digests, stale_students
from hello_labels.labels.views import TensorImages


def _images(value: int) -> TensorImages:
    return TensorImages(torch.full((2, 1, 4, 4), value, dtype=torch.uint8), [0, 1])


def test_a_projector_this_run_leaves_out_keeps_its_students_and_a_re_distilled_one_loses_them():
    old, new = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = source_digests({"projector a": old, "projector b": old}, {})
    cache = {"projector a|0": {"projector": before["projector a"]},
             "projector b|0": {"projector": before["projector b"]}, "full stored labels|0": {"projector": None}}
    # this run loads projector a only (--only): b's student stays; a's is current
    assert stale_students(cache, source_digests({"projector a": old}, {})) == []
    # a re-distilled: its student alone is recomputed; the stored-label student never is
    assert stale_students(cache, source_digests({"projector a": new}, {})) == ["projector a|0"]


def test_students_on_refined_images_go_stale_with_the_projector_or_the_images():
    projector = torch.nn.Linear(2, 2)
    digests = source_digests({"projector a": projector}, {"projector a": _images(1)})
    cache = {"projector a, refined images|0": {"projector": digests["projector a, refined images"]}}
    assert stale_students(cache, digests) == []
    assert stale_students(cache, source_digests({"projector a": projector}, {"projector a": _images(2)})) == \
        ["projector a, refined images|0"]
    assert stale_students(cache, source_digests({"projector a": torch.nn.Linear(2, 2)}, {"projector a": _images(1)})) \
        == ["projector a, refined images|0"]
