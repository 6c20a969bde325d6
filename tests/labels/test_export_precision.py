"""A resumed export or refine never mixes label precisions (float32 on one machine, bf16 autocast on another)."""
import pytest

from hello_labels import HelloLabelsError
from hello_labels.labels.export import export_fkd
from hello_labels.train.refine import RefineConfig, refine


def test_resuming_at_another_label_precision_is_refused(tiny_projector, toy_folder, toy_teacher, tmp_path):
    projector, _ = tiny_projector(toy_folder)
    kw = dict(epochs=1, batch_size=16, input_size=32, progress=False, device="cpu")
    export_fkd(projector, toy_folder, tmp_path / "fkd", **kw)
    bf16 = {"autocast": "bfloat16"}  # what the default gives on a CUDA machine
    with pytest.raises(HelloLabelsError, match=r"label_dtype: 'float32' -> 'bfloat16'"):
        export_fkd(projector, toy_folder, tmp_path / "fkd", label_options=bf16, **kw)

    config = RefineConfig(steps=1, batch_size=20, views=1, input_size=32, eval_views=8)
    refine(projector, [toy_teacher[1]], toy_folder, tmp_path / "refined", config, progress=False, device="cpu")
    with pytest.raises(HelloLabelsError, match=r"label_dtype: 'float32' -> 'bfloat16'"):
        refine(projector, [toy_teacher[1]], toy_folder, tmp_path / "refined", config, progress=False, device="cpu",
               label_options=bf16)
