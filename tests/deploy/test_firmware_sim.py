"""firmware-sim is never silent: a bad export folder or recording is named before anything is
built, a board that computes something else than the host fails the run, and any recording
listen takes reaches the board (as 16-bit PCM). No toolchain needed: everything here fails, or is
stopped, before QEMU runs."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from kws.audio.settings import FeatureSettings
from kws.audio.wav import read_wav, write_wav
from kws.export.folder import report_inputs, write_settings
from kws.export.frontend_tables import write_frontend_tables
from kws.streams.recognize import DEFAULT_RECOGNIZER
from tests.test_promises import kws, one_clear_error

LABELS = ["silence", "unknown", "yes", "no"]


@pytest.fixture
def export(tmp_path, micro_speech_dir):
    """An export folder from the export's own writers, micro_speech's model as its int8 model."""
    folder = tmp_path / "export"
    folder.mkdir()
    recognizer = {"settings": DEFAULT_RECOGNIZER.to_dict(), "calibrated_on": None}
    report = report_inputs("test.ckpt", FeatureSettings(), LABELS, (0.1, -128), (0.05, 3), 9000, recognizer)
    write_settings(folder, report)
    write_frontend_tables(folder, FeatureSettings())
    shutil.copy(micro_speech_dir / "micro_speech_quantized.tflite", folder / "model_int8.tflite")
    for name in ("model_data.cc", "model_data.h", "model_ops.h"):
        (folder / name).write_text("stand-in")
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def speech(seconds: float, rate: int = 16000) -> np.ndarray:
    return (3000 * np.sin(np.arange(int(seconds * rate)) / 5)).astype(np.int16)


def firmware_sim(export, recording, cwd):
    return kws("firmware-sim", "--export", str(export), "--recording", str(recording), "--no_clips", cwd=cwd)


def test_a_truncated_recording_is_named(export, tmp_path):
    path = tmp_path / "cut.wav"
    write_wav(path, speech(3), 16000)
    path.write_bytes(path.read_bytes()[: 44 + 2 * 16000])
    one_clear_error(firmware_sim(export, path, tmp_path), str(path), "truncated")


def test_a_cut_model_is_named_with_the_fix(export, tmp_path):
    model = export / "model_int8.tflite"
    model.write_bytes(model.read_bytes()[:5000])
    write_wav(tmp_path / "rec.wav", speech(2), 16000)
    proc = firmware_sim(export, tmp_path / "rec.wav", tmp_path)
    assert proc.returncode == 2
    one_clear_error(proc, str(model), "re-export it")


def test_a_damaged_settings_header_is_named_before_the_build(export, tmp_path):
    (export / "model_settings.h").write_text("#include <garbage>\nconstexpr int kFeatureSize = ;\n")
    write_wav(tmp_path / "rec.wav", speech(2), 16000)
    proc = firmware_sim(export, tmp_path / "rec.wav", tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) <= 3, proc.stderr  # no compiler output
    one_clear_error(proc, str(export / "model_settings.h"), "re-export it")


def test_an_edited_input_scale_is_named_before_the_build(export, tmp_path):
    header = export / "model_settings.h"
    header.write_text(header.read_text().replace("kInputScale = 0.1f", "kInputScale = 0.2f"))
    write_wav(tmp_path / "rec.wav", speech(2), 16000)
    one_clear_error(firmware_sim(export, tmp_path / "rec.wav", tmp_path), "kInputScale 0.2f", "re-export it")


def test_a_wrong_rate_says_what_this_tool_can_do(export, tmp_path):
    write_wav(tmp_path / "44k.wav", speech(2, 44100), 44100)
    error = one_clear_error(firmware_sim(export, tmp_path / "44k.wav", tmp_path), "44100 Hz", "16000 Hz", "sox")
    assert "data.resample" not in error


def test_a_recording_shorter_than_one_window_is_named(export, tmp_path):
    write_wav(tmp_path / "short.wav", speech(0.1), 16000)
    one_clear_error(
        firmware_sim(export, tmp_path / "short.wav", tmp_path),
        str(tmp_path / "short.wav"),
        "shorter than one 1000 ms window",
        "at least 1000 ms",
    )


@pytest.mark.parametrize("subtype", ["PCM_U8", "FLOAT"])
def test_the_board_hears_what_listen_takes(export, tmp_path, monkeypatch, subtype):
    """8-bit and float WAVs reach the board as the 16-bit PCM its simulator reads."""
    from kws.deploy import firmware_sim

    path = tmp_path / f"{subtype}.wav"
    sf.write(path, speech(2) / 32768.0, 16000, subtype=subtype)
    handed = {}

    def make(target, **variables):
        handed.update(info=sf.info(variables["RECORDING"]), samples=read_wav(variables["RECORDING"])[0])
        raise RuntimeError("stopped before QEMU")

    monkeypatch.setattr(firmware_sim, "make", make)
    with pytest.raises(SystemExit):
        firmware_sim.main(["--export", str(export), "--recording", str(path), "--no_clips", "--kernels", "reference"])
    assert handed["info"].subtype == "PCM_16" and handed["info"].samplerate == 16000
    assert np.array_equal(handed["samples"], read_wav(path, 16000)[0])


def test_outputs_that_differ_fail_the_run(export, tmp_path, monkeypatch, capsys):
    from kws.deploy import firmware_sim

    stream = {
        "inferences": 164,
        "times_identical": True,
        "identical": False,
        "outputs": 164,
        "differing": 121,
        "max_difference": 3,
        "detections": 0,
        "detections_identical": True,
    }
    monkeypatch.setattr(firmware_sim, "simulate", lambda *a, **k: {"kernels": {"reference": {"stream": stream}}})
    write_wav(tmp_path / "rec.wav", speech(2), 16000)
    with pytest.raises(SystemExit) as info:
        firmware_sim.main(["--export", str(export), "--recording", str(tmp_path / "rec.wav"), "--no_clips"])
    assert info.value.code == 1
    error = capsys.readouterr().err
    assert error.startswith("error:") and "reference" in error and str(export / "report.json") in error
    assert json.loads((export / "report.json").read_text())["firmware"]["kernels"]["reference"]["stream"] == stream
