"""The firmware's C micro front end (firmware/micro_frontend.c), built with the host's gcc against
a micro_frontend_tables.h written by kws.export.frontend_tables, against the Python reference
MicroFrontend. Tolerance: none -- bit-exact, on the micro_speech reference clips and on synthetic
signals, both streamed window by window (odd-sized reads, caller-managed hop) and as a whole clip."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from kws.audio.micro_frontend import MicroFrontend
from kws.audio.micro_tables import MicroFrontendConfig
from kws.audio.wav import read_wav
from kws.export.frontend_tables import write_micro_frontend_tables
from tests.helpers import REPO

FIRMWARE = REPO / "firmware"
GCC = shutil.which("gcc")
pytestmark = pytest.mark.skipif(
    GCC is None, reason="gcc not found: the firmware front-end test compiles the C sources with it"
)

# Default config, and ones that take the other code paths: a radix-2 FFT stage (256-point FFT),
# no PCAN / no log.
CONFIGS = {
    "default": MicroFrontendConfig(),
    "fft256_radix2": MicroFrontendConfig(window_ms=16, stride_ms=10, num_channels=32),
    "no_pcan_no_log": MicroFrontendConfig(enable_pcan=False, enable_log=False),
}


def build(tmp: Path, cfg: MicroFrontendConfig) -> Path:
    write_micro_frontend_tables(tmp, cfg)
    binary = tmp / "frontend_main"
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
        str(FIRMWARE / "micro_frontend.c"),
        str(FIRMWARE / "host_test" / "frontend_main.c"),
        "-o",
        str(binary),
    ]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(command)}\n{proc.stderr}"
    return binary


@pytest.fixture(scope="module")
def binaries(tmp_path_factory) -> dict:
    return {name: build(tmp_path_factory.mktemp(name), cfg) for name, cfg in CONFIGS.items()}


# How the C code is driven: frame by frame as the board does (odd-sized reads), a whole clip, the
# batched multi-clip path training runs (lock-step lanes), and the stage functions chained.
MODES = {"streaming": [], "clip": ["--clip"], "batch": ["--batch"], "stages": ["--stages"]}


def c_features(binary: Path, audio: np.ndarray, mode: str) -> np.ndarray:
    proc = subprocess.run(
        [str(binary), "-", *MODES[mode]], input=audio.astype("<i2").tobytes(), capture_output=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [line for line in proc.stdout.decode().splitlines() if not line.startswith("noise")]
    if not lines:
        return np.zeros((0, 0), np.int64)
    return np.array([line.split() for line in lines], np.int64).reshape(len(lines), -1)


def check(binary: Path, cfg: MicroFrontendConfig, audio: np.ndarray) -> None:
    audio = np.asarray(audio, np.int16)
    expected = MicroFrontend(cfg)(torch.from_numpy(audio)[None])[0].numpy()
    assert expected.shape[0] >= 1
    for mode in MODES:
        got = c_features(binary, audio, mode)
        assert got.shape == expected.shape, (mode, got.shape, expected.shape)
        diff = np.argwhere(got != expected)
        assert diff.size == 0, f"{mode}: {len(diff)} values differ, first (frame, channel) {diff[:5].tolist()}"


def synthetic_clips(n: int = 16000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    t = np.arange(3 * n) / 16000
    sweep = np.sin(2 * np.pi * (100 + 3900 * t[:n]) * t[:n])
    # 3 s: silence, speech-like bursts over a slowly rising noise floor -- the noise estimate and
    # PCAN gain must carry over 149 frames.
    envelope = (np.sin(2 * np.pi * 1.5 * t) > 0.3) * 6000 + 50 + 400 * t
    recording = np.concatenate([np.zeros(4000), (rng.normal(0, 1, 3 * n - 4000) * envelope[4000:])])
    return {
        "zeros": np.zeros(n),
        "quiet_noise": rng.normal(0, 30, n),
        "loud_noise": np.clip(rng.normal(0, 20000, n), -32768, 32767),
        "full_scale_square": np.where(np.sin(2 * np.pi * 440 * t[:n]) >= 0, 32767, -32768),
        "sweep": sweep * 12000,
        "impulses": np.where(np.arange(n) % 997 == 0, 30000, 0),
        "recording_3s": np.clip(recording, -32768, 32767),
        "one_window": rng.normal(0, 3000, 480),
        "odd_length": rng.normal(0, 3000, 16000 + 333),
    }


SYNTHETIC = synthetic_clips()


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_default(binaries, name):
    check(binaries["default"], CONFIGS["default"], SYNTHETIC[name].astype(np.int16))


@pytest.mark.parametrize("config", ["fft256_radix2", "no_pcan_no_log"])
def test_other_configs(binaries, config):
    for name in ("quiet_noise", "loud_noise", "full_scale_square", "sweep", "recording_3s"):
        check(binaries[config], CONFIGS[config], SYNTHETIC[name].astype(np.int16))


@pytest.mark.parametrize("word", ["yes", "no", "noise", "silence"])
def test_reference_clips(binaries, micro_speech_dir, word):
    audio, rate = read_wav(micro_speech_dir / f"{word}_1000ms.wav")
    assert rate == 16000
    check(binaries["default"], CONFIGS["default"], audio)


def test_reference_clips_streamed_back_to_back(binaries, micro_speech_dir):
    """A 4 s recording of the four clips in a row: one state across all of them."""
    audio = np.concatenate(
        [read_wav(micro_speech_dir / f"{w}_1000ms.wav")[0] for w in ("silence", "yes", "noise", "no")]
    )
    check(binaries["default"], CONFIGS["default"], audio)


def test_shorter_than_a_window_gives_no_frames(binaries):
    for mode in MODES:
        assert c_features(binaries["default"], np.ones(479, np.int16), mode).shape[0] == 0


def test_tables_header_is_self_contained(tmp_path):
    """The header compiles on its own and its arrays stay out of other translation units."""
    header = write_micro_frontend_tables(tmp_path)
    text = header.read_text()
    assert "#define MF_WINDOW_SAMPLES 480" in text and "#define MF_NUM_CHANNELS 40" in text
    source = tmp_path / "t.c"
    source.write_text('#include "micro_frontend.h"\nint main(void) { return MF_NUM_CHANNELS == 40 ? 0 : 1; }\n')
    proc = subprocess.run(
        [
            GCC,
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{tmp_path}",
            f"-I{FIRMWARE}",
            str(source),
            "-o",
            str(tmp_path / "t"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_the_committed_default_tables_are_the_generated_ones(tmp_path):
    """firmware/default_tables/micro_frontend_tables.h (what setup.py compiles into the training
    library) is what kws.export.frontend_tables writes for the default config."""
    write_micro_frontend_tables(tmp_path)
    committed = (FIRMWARE / "default_tables" / "micro_frontend_tables.h").read_text()
    assert committed == (tmp_path / "micro_frontend_tables.h").read_text(), (
        "regenerate it: python -c 'from kws.export.frontend_tables import write_micro_frontend_tables as w; "
        'w("firmware/default_tables")\''
    )
