"""The export folder as the deploy contract (kws.export.folder): what it must hold, how a reader
refuses an incomplete or older one, and how a new calibration is written into it. Built here
from the export's own writers with a stand-in model (no training)."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from kws.audio.settings import FeatureSettings
from kws.export import ExportError
from kws.export.folder import read_export, report_inputs, write_recognizer, write_settings
from kws.export.frontend_tables import write_frontend_tables
from kws.streams.recognize import DEFAULT_RECOGNIZER, RecognizerSettings
from tests.helpers import REPO

LABELS = ["silence", "unknown", "yes", "no"]
SETTINGS = FeatureSettings(num_features=32)


@pytest.fixture
def export(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    recognizer = {"settings": DEFAULT_RECOGNIZER.to_dict(), "calibrated_on": None}
    report = report_inputs("test.ckpt", SETTINGS, LABELS, (0.1, -128), (0.05, 3), 9000, recognizer)
    report["artifacts"] = {"model_settings.h": 0}
    write_settings(folder, report)
    write_frontend_tables(folder, SETTINGS)
    for name in ("model_int8.tflite", "model_data.cc", "model_data.h", "model_ops.h"):
        (folder / name).write_text("stand-in")
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def header_values(path) -> dict:
    pairs = re.findall(r"(?:constexpr \w+|#define) (k\w+|MF_\w+)(?: =)? ([-\d.e+f]+)", path.read_text())
    return {k: v.rstrip("f") for k, v in pairs}


def test_the_tables_are_the_models_own(export):
    """The tables header beside model_settings.h is written for the model's settings (32
    channels), and agrees with model_settings.h on everything the sketch's static_asserts check."""
    tables, settings = header_values(export / "micro_frontend_tables.h"), header_values(export / "model_settings.h")
    assert tables["MF_NUM_CHANNELS"] == settings["kFeatureSize"] == "32"
    assert tables["MF_WINDOW_SAMPLES"] == settings["kFeatureDurationSamples"] == "480"
    assert tables["MF_STRIDE_SAMPLES"] == settings["kFeatureStrideSamples"] == "320"
    assert tables["MF_SAMPLE_RATE"] == settings["kAudioSampleFrequency"] == "16000"
    default = REPO / "firmware" / "default_tables" / "micro_frontend_tables.h"
    assert (export / "micro_frontend_tables.h").read_text() != default.read_text()
    mfcc = write_frontend_tables(export / "mfcc", FeatureSettings(frontend="mfcc", num_features=20))
    assert mfcc.name == "mfcc_frontend_tables.h" and "#define MFCC_NUM_COEFFS 20\n" in mfcc.read_text()


def test_read_export_takes_everything_from_the_folder(export):
    folder = read_export(export, firmware=True)
    assert folder.labels == LABELS and folder.features == SETTINGS
    assert folder.recognizer == DEFAULT_RECOGNIZER and not folder.calibrated
    assert folder.tables == export / "micro_frontend_tables.h"
    stride = header_values(export / "model_settings.h")["kInferenceStrideMs"]
    assert int(stride) == folder.recognizer.inference_stride_ms


def test_an_incomplete_or_older_export_is_refused_with_the_fix(export, tmp_path):
    (export / "micro_frontend_tables.h").unlink()
    read_export(export)  # listen needs no tables
    with pytest.raises(ExportError, match=r"lacks micro_frontend_tables.h.*re-export it: python -m kws export"):
        read_export(export, firmware=True)
    report = json.loads((export / "report.json").read_text())
    older = {k: v for k, v in report["recognizer"]["settings"].items() if k not in ("inference_stride_ms", "ignore")}
    report["recognizer"]["settings"] = older
    (export / "report.json").write_text(json.dumps(report))
    with pytest.raises(ExportError, match=r"lack \['inference_stride_ms', 'ignore'\].*re-export"):
        read_export(export)
    with pytest.raises(ExportError, match="is not an export folder"):
        read_export(tmp_path)


def test_make_refuses_a_model_dir_without_its_tables(export):
    if shutil.which("make") is None:
        pytest.skip("no make")
    command = ["make", "-s", "-C", str(REPO / "firmware"), "model-dir", f"MODEL_DIR={export}"]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (export / "micro_frontend_tables.h").unlink()
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode != 0 and "has no micro_frontend_tables.h" in proc.stdout and "Re-export it" in proc.stdout


def test_a_new_calibration_becomes_the_exports_recognizer(export, tmp_path):
    new = RecognizerSettings(detection_threshold=0.55, average_window_ms=700, suppression_ms=1200, minimum_count=2)
    new = new.float32_threshold()
    calibration = {"settings": new.to_dict(), "max_fa_per_hour": 5.0, "calibrated_on": "the validation stream"}
    folder = write_recognizer(export, calibration, {"calibrated": {}})
    assert folder.recognizer == new and folder.calibrated
    values = header_values(export / "model_settings.h")
    assert np.float32(values["kDetectionThreshold"]) == np.float32(0.55)
    assert [int(values[k]) for k in ("kAverageWindowMs", "kSuppressionMs", "kMinimumCount")] == [700, 1200, 2]
    report = json.loads((export / "report.json").read_text())
    assert report["recognizer"] == calibration
    assert report["artifacts"]["model_settings.h"] == (export / "model_settings.h").stat().st_size
    assert sorted(p.name for p in export.iterdir() if p.name.startswith(".")) == []
    other = tmp_path / "not_an_export"
    other.mkdir()
    with pytest.raises(ExportError, match="is not an export folder"):
        write_recognizer(other, calibration, {})
    assert list(other.iterdir()) == []


def test_a_checkpoint_saved_before_the_stride_keeps_its_calibration():
    """final.ckpt files written before the settings carried their stride were calibrated at the
    stream test's one stride then, 100 ms: they load with it, and with the default ignored labels."""
    from kws.training.module import KWSModule

    module = KWSModule()
    old = {"average_window_ms": 500, "detection_threshold": 0.75, "suppression_ms": 1500, "minimum_count": 3}
    module.on_load_checkpoint({"kws_model_transforms": [], "kws_recognizer": old})
    loaded = RecognizerSettings.from_dict(module.recognizer, "the checkpoint")
    assert loaded == RecognizerSettings(0.75, 500, 1500, 3, inference_stride_ms=100, ignore=DEFAULT_RECOGNIZER.ignore)
    saved = {}
    module.on_save_checkpoint(saved)
    assert saved["kws_recognizer"]["inference_stride_ms"] == 100
