"""The firmware's C MFCC front end (firmware/mfcc_frontend.c), built with the host's gcc against an
mfcc_frontend_tables.h written by kws.export.frontend_tables, against build_frontend(FeatureSettings(
frontend="mfcc")) (torchaudio's MFCC).

Tolerance: atol 2e-3 on the coefficients (rtol 1e-4), the same as tests/audio/test_features.py allows
between torchaudio and the hand computation: both sides are float32 but the FFTs differ (radix-2
here, pocketfft/MKL in torch), and log(mel + 1e-6) amplifies relative rounding in near-silent bands.
Each clip runs both window by window (ProcessWindow) and as a whole clip (ProcessClip)."""

import glob
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from kws.audio.features import FeatureSettings, build_frontend
from kws.audio.wav import read_wav
from kws.export.frontend_tables import write_mfcc_frontend_tables
from tests.helpers import REPO

FIRMWARE = REPO / "firmware"
GCC = shutil.which("gcc")
CLIPS = sorted(glob.glob("/work/shared/data/micro_speech/*.wav"))
ATOL, RTOL = 2e-3, 1e-4
pytestmark = pytest.mark.skipif(
    GCC is None, reason="gcc not found: the firmware MFCC test compiles the C sources with it"
)

MAIN = r"""
#include <stdio.h>
#include <string.h>
#include "mfcc_frontend.h"

static int16_t samples[16000 * 8];

int main(int argc, char** argv) {
  static MfccFrontendState state;
  static float out[(16000 * 8 / MFCC_STRIDE_SAMPLES + 1) * MFCC_NUM_COEFFS];
  const int clip = argc > 1 && strcmp(argv[1], "--clip") == 0;
  size_t n = fread(samples, sizeof(int16_t), sizeof(samples) / sizeof(samples[0]), stdin);
  size_t frames, t, j;
  if (clip) {
    frames = MfccFrontendProcessClip(&state, samples, n, out);
  } else {
    frames = 0;
    for (t = 0; t + MFCC_WINDOW_SAMPLES <= n; t += MFCC_STRIDE_SAMPLES) {
      MfccFrontendProcessWindow(&state, samples + t, out + frames * MFCC_NUM_COEFFS);
      ++frames;
    }
  }
  for (t = 0; t < frames; ++t) {
    for (j = 0; j < MFCC_NUM_COEFFS; ++j) printf(j ? " %.9g" : "%.9g", (double)out[t * MFCC_NUM_COEFFS + j]);
    printf("\n");
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("mfcc")
    write_mfcc_frontend_tables(tmp)
    (tmp / "mfcc_main.c").write_text(MAIN)
    binary = tmp / "mfcc_main"
    command = [
        GCC,
        "-std=c99",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        f"-I{tmp}",
        f"-I{FIRMWARE}",
        str(FIRMWARE / "mfcc_frontend.c"),
        str(tmp / "mfcc_main.c"),
        "-o",
        str(binary),
        "-lm",
    ]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(command)}\n{proc.stderr}"
    return binary


def c_features(binary: Path, audio: np.ndarray, clip: bool) -> np.ndarray:
    proc = subprocess.run(
        [str(binary), *(["--clip"] if clip else [])],
        input=audio.astype("<i2").tobytes(),
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    if not lines:
        return np.zeros((0, 0))
    return np.array([line.split() for line in lines], np.float64).reshape(len(lines), -1)


def check(binary: Path, audio: np.ndarray) -> float:
    audio = np.asarray(audio, np.int16)
    expected = build_frontend(FeatureSettings(frontend="mfcc"))(torch.from_numpy(audio)[None])[0].double().numpy()
    worst = 0.0
    for clip in (False, True):
        got = c_features(binary, audio, clip)
        assert got.shape == expected.shape, (clip, got.shape, expected.shape)
        np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL, err_msg="clip" if clip else "streaming")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def synthetic_clips(n: int = 16000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4321)
    t = np.arange(n) / 16000
    return {
        "zeros": np.zeros(n),
        "quiet_noise": rng.normal(0, 30, n),
        "loud_noise": np.clip(rng.normal(0, 20000, n), -32768, 32767),
        "tone_1k": 10000 * np.sin(2 * np.pi * 1000 * t),
        "sweep": 12000 * np.sin(2 * np.pi * (100 + 3900 * t) * t),
        "full_scale_square": np.where(np.sin(2 * np.pi * 440 * t) >= 0, 32767, -32768),
        "impulses": np.where(np.arange(n) % 997 == 0, 30000, 0),
        "odd_length_2s": rng.normal(0, 3000, 2 * n + 123),
    }


@pytest.mark.parametrize("name", list(synthetic_clips()))
def test_c_mfcc_matches_torchaudio_synthetic(binary, name):
    worst = check(binary, np.round(synthetic_clips()[name]))
    print(f"{name}: max |C - torch| = {worst:.3g}")


@pytest.mark.skipif(not CLIPS, reason="micro_speech reference clips not found")
@pytest.mark.parametrize("path", CLIPS, ids=[Path(p).stem for p in CLIPS])
def test_c_mfcc_matches_torchaudio_real_clips(binary, path):
    audio, rate = read_wav(path, 16000)
    worst = check(binary, audio)
    print(f"{Path(path).stem}: max |C - torch| = {worst:.3g}")


def test_short_clip_gives_no_frames(binary):
    assert c_features(binary, np.zeros(479, np.int16), clip=True).shape[0] == 0
