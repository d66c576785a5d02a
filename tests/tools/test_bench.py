"""kws.tools.bench: smoke tests only. Nothing here times anything against a target: the targets are
reported by ``make bench``, never asserted."""
import math

import pytest

from kws.tools.bench import bench_runtimes, main, TARGET_SEED_RECIPE_S, targets


def test_runtimes_smoke():
    """One export (ONNX, TFLite float and int8) and a few single-clip inferences per runtime."""
    result = bench_runtimes(min_run_time=0.01)
    ms = result["ms_per_inference"]
    assert list(ms) == ["pytorch_float", "onnxruntime", "tflite_float", "tflite_int8", "tflite_micro"]
    assert all(math.isfinite(v) and v > 0 for v in ms.values()), ms
    assert result["tensor_arena_bytes"] > 0 and result["model"]["bytes"]["tflite_int8"] > 0
    assert result["min_run_time_s"] == 0.01 and result["batch"] == 1


def test_targets_are_computed_not_asserted():
    training = {
        "framework": {"samples_per_s": 5000.0, "data_fraction": 0.1, "epoch_samples": 8000},
        "speedup": 4.0,
    }
    t = targets(training)
    assert set(t) == {"data_fraction", "speedup_vs_per_sample", "seed_recipe_s"}
    assert t["data_fraction"] == {"target": t["data_fraction"]["target"], "measured": 0.1, "met": True}
    assert t["speedup_vs_per_sample"]["met"] is False
    assert t["seed_recipe_s"]["measured"] == 50 * 10_500 / 5000.0
    assert t["seed_recipe_s"]["met"] is (105.0 < TARGET_SEED_RECIPE_S)
    assert "8000" in t["seed_recipe_s"]["projected_from"]


@pytest.mark.parametrize("flag", ["--baseline_batches", "--feature_clips", "--batch_size"])
def test_bad_counts_are_refused_before_any_work(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([flag, "0"])
    assert exit_info.value.code == 2 and f"{flag} must be at least 1, got 0" in capsys.readouterr().err
