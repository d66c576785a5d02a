"""kws.tools.bench: smoke tests only. Nothing here times anything against a target: the targets are
reported by ``make bench``, never asserted."""

import math

import pytest

from kws.tools.bench import bench_runtimes, main
from kws.tools.bench_training import RECIPE_CLIPS, RECIPE_EPOCHS, TARGET_RECIPE_S, TARGET_VS_MODEL_STEP, targets


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
        "kws": {"samples_per_s": 5000.0, "data_wait": 0.1},
        "model_step": {"samples_per_s": 10000.0},
        "tf_op_per_clip": {"samples_per_s": 1000.0},
    }
    t = targets(training)
    assert set(t) == {"vs_tf_op_per_clip", "vs_model_step", "data_wait", "recipe_s"}
    assert t["vs_tf_op_per_clip"]["measured"] == 5.0 and t["vs_tf_op_per_clip"]["met"] is False
    assert t["vs_model_step"]["measured"] == 0.5 and t["vs_model_step"]["met"] is (0.5 >= TARGET_VS_MODEL_STEP)
    assert t["data_wait"] == {"target": t["data_wait"]["target"], "measured": 0.1, "met": True}
    assert t["recipe_s"]["measured"] == RECIPE_EPOCHS * RECIPE_CLIPS / 5000.0
    assert t["recipe_s"]["met"] is (RECIPE_EPOCHS * RECIPE_CLIPS / 5000.0 < TARGET_RECIPE_S)


@pytest.mark.parametrize("flag", ["--tf_batches", "--feature_clips", "--batch_size"])
def test_bad_counts_are_refused_before_any_work(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([flag, "0"])
    assert exit_info.value.code == 2 and f"{flag} must be at least 1, got 0" in capsys.readouterr().err


def test_config_gives_the_data_module_what_fit_gives_it(tmp_path):
    """--config conf.yaml: the bench measures the pipeline `make train` runs, augmentation included."""
    from datamodules import SpeechCommandsDataModule
    from kws.tools.bench import config_data
    from tests.helpers import REPO

    data = config_data(str(REPO / "conf.yaml"))
    assert data["lead_in"]["enabled"] is True and data["augment"]["word_placement"] is True and "download" not in data
    dm = SpeechCommandsDataModule(**data)
    assert dm.uses_lead_in and dm.classes.training_unknown_percentage == data["classes"]["training_unknown_percentage"]
    (bad := tmp_path / "bad.yaml").write_text("data: [")
    with pytest.raises(SystemExit, match="bad.yaml"):
        config_data(str(bad))
