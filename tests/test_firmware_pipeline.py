"""The firmware's streaming pipeline (firmware/kws_firmware/feature_provider.cpp + pipeline.cpp,
with micro_frontend.c, feature_quantize.h and recognize_commands.cc), built on the host with g++
and driven by firmware/host_test/pipeline_main.cc: a long recording pushed through a ring buffer
in irregular chunks, polled as loop() does. The int8 window at each inference must equal what
`python -m kws listen` feeds its model: kws.listen.stream_features over the whole recording, the
49-frame windows of kws.listen.windows at the same times, quantized by kws.export.quantize with
the model's input quantization. Tolerance: none. Also the board's int8 output -> softmax against
kws.listen's (tolerance 1e-6 relative: libm's exp vs numpy's)."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kws.audio import read_wav
from kws.export import quantize, write_model_settings
from kws.features import FeatureSettings
from kws.firmware_tables import write_micro_frontend_tables
from kws.listen import softmax, stream_features, windows

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
SKETCH = FIRMWARE / "kws_firmware"
CLIPS = Path("/work/shared/data/micro_speech")
GCC, GXX = shutil.which("gcc"), shutil.which("g++")
pytestmark = pytest.mark.skipif(GCC is None or GXX is None, reason="gcc/g++ not found: the pipeline test compiles the firmware sources")

INPUT_Q = (0.101868875, -128)
OUTPUT_Q = (0.14601111, 13)
LABELS = ["silence", "unknown", "yes", "no"]


def run(command: list[str]) -> None:
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(command)}\n{proc.stderr}"


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("pipeline")
    write_micro_frontend_tables(tmp)
    write_model_settings(tmp, "tests/test_firmware_pipeline.py", FeatureSettings(), LABELS, INPUT_Q, OUTPUT_Q, 10000)
    # The sketch's pure C++ sources, copied beside the generated headers so that a model_settings.h
    # copied into the sketch folder (the documented Arduino step) cannot shadow this one.
    for name in ("feature_provider.h", "feature_provider.cpp", "pipeline.h", "pipeline.cpp", "timing_stats.h"):
        shutil.copy(SKETCH / name, tmp / name)
    flags = ["-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{tmp}", f"-I{FIRMWARE}"]
    run([GCC, "-std=c99", *flags, "-c", str(FIRMWARE / "micro_frontend.c"), "-o", str(tmp / "micro_frontend.o")])
    out = tmp / "pipeline_main"
    run([GXX, "-std=c++17", *flags, str(FIRMWARE / "host_test" / "pipeline_main.cc"), str(tmp / "feature_provider.cpp"),
         str(tmp / "pipeline.cpp"), str(FIRMWARE / "recognize_commands.cc"), str(tmp / "micro_frontend.o"), "-o", str(out)])
    return out


def recording() -> np.ndarray:
    """About 3.5 s: the micro_speech clips end to end (silence, yes, no, noise, half of yes), else a
    synthetic tone over noise with bursts."""
    names = ["silence_1000ms.wav", "yes_1000ms.wav", "no_1000ms.wav", "noise_1000ms.wav"]
    if all((CLIPS / n).is_file() for n in names):
        clips = [read_wav(CLIPS / n, 16000)[0] for n in names]
        audio = np.concatenate([*clips[:3], clips[3][:8000], clips[1][:4321]])
    else:
        rng = np.random.default_rng(7)
        t = np.arange(56321) / 16000
        envelope = 200 + 5000 * (np.sin(2 * np.pi * 0.8 * t) > 0.2)
        audio = envelope * (0.5 * np.sin(2 * np.pi * 700 * t) + rng.normal(0, 0.5, len(t)))
    return np.clip(np.round(audio), -32768, 32767).astype(np.int16)


def firmware_windows(binary: Path, audio: np.ndarray, tmp: Path, stride_ms: int) -> tuple[np.ndarray, np.ndarray]:
    raw = tmp / "audio.raw"
    raw.write_bytes(audio.astype("<i2").tobytes())
    proc = subprocess.run([str(binary), str(raw), str(stride_ms)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line and line[0].isdigit()]
    assert not [line for line in proc.stdout.splitlines() if line.startswith("Heard")]  # uniform scores
    data = np.array(rows, np.int64)
    return data[:, 1:], data[:, 0]


@pytest.mark.parametrize("stride_ms", [100, 20])
def test_firmware_windows_equal_listen(binary, tmp_path, stride_ms):
    settings = FeatureSettings()
    audio = recording()
    x, times = windows(stream_features(audio, settings), settings, stride_ms)
    expected = quantize(x, *INPUT_Q, np.int8).astype(np.int64)

    got, got_times = firmware_windows(binary, audio, tmp_path, stride_ms)
    assert times[0] == 990 and np.all(np.diff(times) == stride_ms)
    np.testing.assert_array_equal(got_times, times)
    assert got.shape == expected.shape == (len(times), settings.num_frames * settings.num_features)
    diff = np.argwhere(got != expected)
    assert diff.size == 0, f"{len(diff)} int8 inputs differ, first (window, index) {diff[:5].tolist()}"
    assert len(np.unique(expected)) > 20  # a real signal, not a constant window


def test_dequantize_softmax_matches_listen(binary):
    """DequantizeSoftmax (the board's int8 output -> probabilities) against kws.listen: the
    runner's dequantization in float32, then softmax in float64."""
    rng = np.random.default_rng(3)
    q = np.concatenate([rng.integers(-128, 128, (300, len(LABELS))), [[-128] * 4, [127] * 4, [127, -128, -128, -128]]]).astype(np.int8)
    proc = subprocess.run([str(binary), "--softmax"], input="\n".join(" ".join(map(str, row)) for row in q.tolist()) + "\n",
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    got = np.array([line.split() for line in proc.stdout.splitlines()], np.float64)
    scale, zero_point = OUTPUT_Q
    expected = softmax(((q.astype(np.float32) - zero_point) * np.float32(scale)).astype(np.float64)).astype(np.float32)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
