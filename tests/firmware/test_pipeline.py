"""The firmware's streaming pipeline (firmware/kws_firmware/feature_provider.cpp + pipeline.cpp,
with feature_quantize.h and recognize_commands.cc), built on the host with g++ and driven by
firmware/host_test/pipeline_main.cc: a long recording pushed through a ring buffer in irregular
chunks, polled as loop() does. The int8 window at each inference is compared with what
`python -m kws listen` feeds its model: kws.deploy.listen.stream_features over the whole recording, the
49-frame windows of kws.deploy.listen.windows at the same times, quantized by kws.export.tflite.quantize with
the model's input quantization. Built twice, once per front end, as model_settings.h picks it:

- micro (micro_frontend.c, bit-exact with kws.audio.micro_frontend): tolerance none.
- mfcc (mfcc_frontend.c, float, within ~5e-4 of torchaudio, not bit-exact): an int8 value may
  differ only where listen's feature lies within MFCC_TOLERANCE of a rounding boundary, and then
  by one step; see test_firmware_windows_match_listen for the measured counts.

Also the board's int8 output -> softmax against kws.deploy.listen.s (tolerance 1e-6 relative: libm's exp
vs numpy's)."""

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kws.audio.features import FeatureSettings
from kws.audio.wav import read_wav
from kws.deploy.listen import stream_features, windows
from kws.export.c_sources import write_model_settings
from kws.export.classifiers import softmax
from kws.export.frontend_tables import write_mfcc_frontend_tables, write_micro_frontend_tables
from kws.export.tflite import quantize
from tests.helpers import REPO

ROOT = REPO
FIRMWARE = ROOT / "firmware"
SKETCH = FIRMWARE / "kws_firmware"
CLIPS = Path("/work/shared/data/micro_speech")
GCC, GXX = shutil.which("gcc"), shutil.which("g++")
pytestmark = pytest.mark.skipif(
    GCC is None or GXX is None, reason="gcc/g++ not found: the pipeline test compiles the firmware sources"
)

INPUT_Q = (0.101868875, -128)  # micro: a real export's (micro_speech's features, 0..26)
OUTPUT_Q = (0.14601111, 13)
LABELS = ["silence", "unknown", "yes", "no"]
# Largest |C - torch| MFCC coefficient allowed here: twice tests/firmware/test_mfcc.py's worst
# measured difference (5e-4, pure tones; about 7e-5 on the micro_speech clips).
MFCC_TOLERANCE = 1e-3


def run(command: list[str]) -> None:
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(command)}\n{proc.stderr}"


def mfcc_input_q(features: np.ndarray) -> tuple[float, int]:
    """An int8 input quantization calibrated as a converter would on these features: their min..max
    over the 256 steps (float32 scale), zero point rounded and clamped. About (0.434, 67) on the
    micro_speech recording (MFCC -84.6 .. 26.1; c0 of near silence approaches sqrt(40) * log(1e-6) = -87.4)."""
    lo, hi = float(min(features.min(), 0.0)), float(max(features.max(), 0.0))
    scale = float(np.float32((hi - lo) / 255))
    return scale, int(np.clip(np.round(-128 - lo / scale), -128, 127))


@dataclasses.dataclass(frozen=True)
class Build:
    binary: Path
    settings: FeatureSettings
    input_q: tuple[float, int]


@pytest.fixture(scope="module", params=["micro", "mfcc"])
def build(request, tmp_path_factory) -> Build:
    frontend = request.param
    settings = FeatureSettings(frontend=frontend)
    tmp = tmp_path_factory.mktemp(f"pipeline_{frontend}")
    if frontend == "micro":
        write_micro_frontend_tables(tmp)
        input_q = INPUT_Q
    else:
        write_mfcc_frontend_tables(tmp, settings)
        input_q = mfcc_input_q(stream_features(recording(), settings))
    write_model_settings(tmp, "tests/firmware/test_pipeline.py", settings, LABELS, input_q, OUTPUT_Q, 10000)
    # The sketch's pure C++ sources, copied beside the generated headers so that a model_settings.h
    # copied into the sketch folder (the documented Arduino step) cannot shadow this one.
    for name in ("feature_provider.h", "feature_provider.cpp", "pipeline.h", "pipeline.cpp", "timing_stats.h"):
        shutil.copy(SKETCH / name, tmp / name)
    flags = ["-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{tmp}", f"-I{FIRMWARE}"]
    frontend_c = FIRMWARE / f"{frontend}_frontend.c"  # only the front end model_settings.h names
    run([GCC, "-std=c99", *flags, "-c", str(frontend_c), "-o", str(tmp / "frontend.o")])
    out = tmp / "pipeline_main"
    run(
        [
            GXX,
            "-std=c++17",
            *flags,
            str(FIRMWARE / "host_test" / "pipeline_main.cc"),
            str(tmp / "feature_provider.cpp"),
            str(tmp / "pipeline.cpp"),
            str(FIRMWARE / "recognize_commands.cc"),
            str(tmp / "frontend.o"),
            "-o",
            str(out),
            "-lm",
        ]
    )
    return Build(out, settings, input_q)


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


def near_rounding_boundary(features: np.ndarray, scale: float, tolerance: float) -> np.ndarray:
    """Where a feature moved by up to ``tolerance`` could quantize to another int8: within
    ``tolerance`` of a half-integer multiple of ``scale``."""
    q = np.abs(features.astype(np.float64) / scale)
    return np.abs(q - np.floor(q) - 0.5) * scale <= tolerance


@pytest.mark.parametrize("stride_ms", [100, 20])
def test_firmware_windows_match_listen(build, tmp_path, stride_ms):
    """micro: every int8 input equal. mfcc: the C front end is float like torch but not bit-exact,
    so exact int8 equality is not guaranteed. The bound comes from the data, not a guessed rate:
    a value may differ only where listen's feature lies within MFCC_TOLERANCE of a rounding
    boundary (those positions are found on the recording itself), and then by exactly one step;
    and at most 0.1% of the values may differ. Measured on the micro_speech recording (188 frames,
    calibrated input quantization (0.43414694, 67)): C vs torch coefficients differ by at most
    6.7e-5, 2 of the 7520 frame values lie within that of a rounding boundary (36 within
    MFCC_TOLERANCE), and 0 int8 inputs differ, of 54880 (stride 100, 246 within MFCC_TOLERANCE of
    a boundary) and of 274400 (stride 20, 1242)."""
    settings = build.settings
    audio = recording()
    x, times = windows(stream_features(audio, settings), settings, stride_ms)
    expected = quantize(x, *build.input_q, np.int8).astype(np.int64)

    got, got_times = firmware_windows(build.binary, audio, tmp_path, stride_ms)
    assert times[0] == 990 and np.all(np.diff(times) == stride_ms)
    np.testing.assert_array_equal(got_times, times)
    assert got.shape == expected.shape == (len(times), settings.num_frames * settings.num_features)
    assert len(np.unique(expected)) > 20  # a real signal, not a constant window
    diff = np.argwhere(got != expected)
    if settings.frontend == "micro":
        assert diff.size == 0, f"{len(diff)} int8 inputs differ, first (window, index) {diff[:5].tolist()}"
        return
    # mfcc
    assert np.mean((expected == -128) | (expected == 127)) < 0.01  # the scale covers the features
    near = near_rounding_boundary(x, build.input_q[0], MFCC_TOLERANCE)
    steps = np.abs(got - expected)
    print(
        f"mfcc stride {stride_ms}: {len(diff)} of {expected.size} int8 inputs differ (max {steps.max()} step), "
        f"{near.sum()} within {MFCC_TOLERANCE} of a rounding boundary"
    )
    assert steps.max() <= 1, f"int8 inputs differ by up to {steps.max()} steps"
    off = diff[~near[got != expected]]
    assert off.size == 0, (
        f"{len(off)} differing inputs are not near a rounding boundary, first (window, index) {off[:5].tolist()}"
    )
    assert len(diff) <= 0.001 * expected.size, f"{len(diff)} of {expected.size} int8 inputs differ"


def test_dequantize_softmax_matches_listen(build):
    """DequantizeSoftmax (the board's int8 output -> probabilities) against kws.deploy.listen: the
    runner's dequantization in float32, then softmax in float64."""
    rng = np.random.default_rng(3)
    q = np.concatenate(
        [rng.integers(-128, 128, (300, len(LABELS))), [[-128] * 4, [127] * 4, [127, -128, -128, -128]]]
    ).astype(np.int8)
    proc = subprocess.run(
        [str(build.binary), "--softmax"],
        input="\n".join(" ".join(map(str, row)) for row in q.tolist()) + "\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    got = np.array([line.split() for line in proc.stdout.splitlines()], np.float64)
    scale, zero_point = OUTPUT_Q
    expected = softmax(((q.astype(np.float32) - zero_point) * np.float32(scale)).astype(np.float64)).astype(np.float32)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


def test_frontend_must_be_named(tmp_path):
    """A model_settings.h naming no front end stops the build with a clear #error."""
    write_model_settings(
        tmp_path, "tests/firmware/test_pipeline.py", FeatureSettings(), LABELS, INPUT_Q, OUTPUT_Q, 10000
    )
    settings = tmp_path / "model_settings.h"
    settings.write_text(settings.read_text().replace("#define KWS_FRONTEND_MICRO 1\n", ""))
    shutil.copy(SKETCH / "feature_provider.h", tmp_path / "feature_provider.h")
    proc = subprocess.run(
        [GXX, "-std=c++17", "-fsyntax-only", f"-I{tmp_path}", f"-I{FIRMWARE}", "-x", "c++", "-"],
        input='#include "feature_provider.h"\n',
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "defines neither KWS_FRONTEND_MICRO nor KWS_FRONTEND_MFCC" in proc.stderr, (
        proc.stderr
    )
