"""Each stage of the micro front end (kws.audio.micro_functional) against its C twin in the
firmware (firmware/micro_frontend.c: MfWindow .. MfLogScale), one stage at a time, bit for bit:
the same inputs go into both, so a one-bit mismatch is found in the stage that makes it.

Inputs: the frames of real clips and of synthetic signals chosen to reach the corners (silence,
full-scale noise, a lone -32768 peak, square waves, clipping), each stage fed what the stage before
it computed; plus random noise estimates over the whole uint32 range for the stateful stages."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from kws.audio import micro_functional as F
from kws.audio.micro_frontend import MicroFrontend
from kws.audio.micro_tables import MicroFrontendConfig
from kws.audio.wav import read_wav
from kws.export.frontend_tables import write_micro_frontend_tables
from tests.helpers import MICRO_SPEECH, REPO

GCC = shutil.which("gcc")
pytestmark = pytest.mark.skipif(
    GCC is None, reason="gcc not found: the stage test compiles the firmware's C front end with it"
)
CONFIGS = {
    "default": MicroFrontendConfig(),
    "fft256_no_pcan": MicroFrontendConfig(window_ms=16, stride_ms=10, num_channels=32, enable_pcan=False),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def setup(request, tmp_path_factory):
    cfg = CONFIGS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    write_micro_frontend_tables(folder, cfg)
    binary = folder / "stages_main"
    firmware = REPO / "firmware"
    command = [
        GCC,
        "-std=c99",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        f"-I{folder}",
        f"-I{firmware}",
        str(firmware / "micro_frontend.c"),
        str(firmware / "host_test" / "stages_main.c"),
        "-o",
        str(binary),
    ]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return cfg, MicroFrontend(cfg), binary


def signals(cfg: MicroFrontendConfig) -> np.ndarray:
    """int16 frames [n, window]: real speech and noise, and the corners of the arithmetic."""
    rng = np.random.default_rng(0)
    n = 16000
    t = np.arange(n) / 16000
    clips = [read_wav(path, 16000)[0] for path in sorted(MICRO_SPEECH.glob("*.wav"))] if MICRO_SPEECH.is_dir() else []
    clips += [
        np.zeros(n),
        rng.normal(0, 3, n),
        rng.normal(0, 300, n),
        rng.normal(0, 12000, n),
        rng.uniform(-32768, 32767, n),
        32767 * np.sign(np.sin(2 * np.pi * 500 * t)),
        40000 * np.sin(2 * np.pi * 1000 * t),
        np.where(np.arange(n) % 997 == 0, -32768, 0),
    ]
    audio = np.stack([np.clip(np.round(c), -32768, 32767).astype(np.int16)[:n] for c in clips])
    frames = torch.from_numpy(audio).to(torch.int32).unfold(-1, cfg.window_samples, cfg.stride_samples)
    return frames.reshape(-1, cfg.window_samples)


def run_c(binary: Path, stage: str, frames: int, *inputs: np.ndarray) -> bytes:
    data = np.concatenate(
        [np.ascontiguousarray(x).reshape(frames, -1).view(np.uint8) for x in inputs], axis=1
    ).tobytes()
    proc = subprocess.run([str(binary), stage, str(frames)], input=data, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def split(out: bytes, frames: int, *layout: tuple[type, int]) -> list[np.ndarray]:
    """Per-frame records of the given (dtype, count) fields -> one array per field [frames, count]."""
    record = np.dtype([(f"f{i}", dtype, (count,)) for i, (dtype, count) in enumerate(layout)])
    rows = np.frombuffer(out, record, count=frames)
    return [rows[f"f{i}"].astype(np.int64) for i in range(len(layout))]


def chain(fe: MicroFrontend, frames: torch.Tensor) -> dict:
    """Every stage's input and output, by the Python stages, frame by frame from a fresh estimate."""
    cfg = fe.cfg
    fft_input, shift = F.window_and_scale(frames, fe.window, cfg.fft_size)
    re, im = F.kiss_fftr16(fft_input, fe.fft_tables)
    channels = F.filterbank(re, im, fe.filterbank, fe.start_index, fe.end_index)
    signal = F.sqrt_and_unshift(channels, shift)
    return {"fft_input": fft_input, "shift": shift, "re": re, "im": im, "channels": channels, "signal": signal}


def test_window(setup):
    cfg, fe, binary = setup
    frames = signals(cfg)
    fft_input, shift = F.window_and_scale(frames, fe.window, cfg.fft_size)
    got_input, got_shift = split(
        run_c(binary, "window", len(frames), frames.numpy().astype("<i2")),
        len(frames),
        ("<i2", cfg.fft_size),
        ("<i4", 1),
    )
    assert np.array_equal(got_input, fft_input.numpy()) and np.array_equal(got_shift, shift.numpy())


def test_fft(setup):
    cfg, fe, binary = setup
    values = chain(fe, signals(cfg))
    # the chain's inputs, plus full-range inputs no window would produce
    x = torch.cat(
        [values["fft_input"], torch.from_numpy(np.random.default_rng(1).integers(-32768, 32768, (300, cfg.fft_size)))]
    ).to(torch.int32)
    re, im = F.kiss_fftr16(x, fe.fft_tables)
    spectrum = cfg.fft_size // 2 + 1
    got_re, got_im = split(
        run_c(binary, "fft", len(x), x.numpy().astype("<i2")), len(x), ("<i2", spectrum), ("<i2", spectrum)
    )
    assert np.array_equal(got_re, re.numpy()) and np.array_equal(got_im, im.numpy())


def test_filterbank(setup):
    cfg, fe, binary = setup
    values = chain(fe, signals(cfg))
    rng = np.random.default_rng(2)
    spectrum = cfg.fft_size // 2 + 1
    re = torch.cat([values["re"], torch.from_numpy(rng.integers(-32768, 32768, (300, spectrum)))])
    im = torch.cat([values["im"], torch.from_numpy(rng.integers(-32768, 32768, (300, spectrum)))])
    expected = F.filterbank(re, im, fe.filterbank, fe.start_index, fe.end_index)
    (got,) = split(
        run_c(binary, "fbank", len(re), re.numpy().astype("<i2"), im.numpy().astype("<i2")),
        len(re),
        ("<u8", cfg.num_channels),
    )
    assert np.array_equal(got, expected.numpy())


def test_sqrt_and_shift(setup):
    cfg, fe, binary = setup
    values = chain(fe, signals(cfg))
    rng = np.random.default_rng(3)
    extra = np.concatenate(
        [rng.integers(0, 2**32, (200, cfg.num_channels)), rng.integers(0, 2**47, (200, cfg.num_channels))]
    )
    squares = (
        np.arange(1, 1 + 400 * cfg.num_channels, dtype=np.int64) ** 2 + rng.integers(-1, 2, 400 * cfg.num_channels)
    ).reshape(400, -1)
    channels = torch.cat([values["channels"], torch.from_numpy(np.concatenate([extra, np.clip(squares, 0, None)]))])
    shift = torch.cat(
        [values["shift"], torch.from_numpy(rng.integers(0, 16, (len(channels) - len(values["shift"]), 1)))]
    ).to(torch.int32)
    expected = F.sqrt_and_unshift(channels, shift)
    (got,) = split(
        run_c(binary, "sqrt", len(channels), channels.numpy().astype("<u8"), shift.numpy().astype("<i4")),
        len(channels),
        ("<u4", cfg.num_channels),
    )
    assert np.array_equal(got, expected.numpy())


@pytest.fixture
def states(setup):
    """(noise estimates, signals) per frame: the chain's signals with estimates from fresh to any uint32."""
    cfg, fe, _ = setup
    signal = chain(fe, signals(cfg))["signal"]
    rng = np.random.default_rng(4)
    estimate = np.concatenate(
        [np.zeros((len(signal) // 3, cfg.num_channels)), rng.integers(0, 2**20, (len(signal) // 3, cfg.num_channels))]
    )
    estimate = np.concatenate([estimate, rng.integers(0, 2**32, (len(signal) - len(estimate), cfg.num_channels))])
    return torch.from_numpy(estimate.astype(np.int64)), signal


def test_noise_reduction(setup, states):
    cfg, fe, binary = setup
    estimate, signal = states
    reduced, estimates = F.noise_reduction(
        signal[:, None], fe.smoothing, cfg.min_signal_remaining_q14, cfg.smoothing_bits, estimate
    )
    got_estimate, got_reduced = split(
        run_c(binary, "noise", len(signal), estimate.numpy().astype("<u4"), signal.numpy().astype("<u4")),
        len(signal),
        ("<u4", cfg.num_channels),
        ("<u4", cfg.num_channels),
    )
    assert np.array_equal(got_estimate, estimates[:, 0].numpy()) and np.array_equal(got_reduced, reduced[:, 0].numpy())


def test_pcan(setup, states):
    cfg, fe, binary = setup
    estimate, signal = states
    expected = F.pcan_gain_control(signal, estimate, fe.gain_lut, cfg.snr_shift) if cfg.enable_pcan else signal
    (got,) = split(
        run_c(binary, "pcan", len(signal), estimate.numpy().astype("<u4"), signal.numpy().astype("<u4")),
        len(signal),
        ("<u4", cfg.num_channels),
    )
    assert np.array_equal(got, expected.numpy())


def test_log_scale(setup):
    cfg, fe, binary = setup
    rng = np.random.default_rng(5)
    signal = torch.from_numpy(
        np.concatenate([np.arange(0, 4000), rng.integers(0, 2**32, 20000), 2 ** np.arange(32)]).astype(np.int64)
    )
    signal = torch.cat([signal, signal[: (-len(signal)) % cfg.num_channels]]).reshape(-1, cfg.num_channels)
    expected = F.log_scale(signal, fe.log_lut, cfg.correction_bits, cfg.scale_shift)
    (got,) = split(
        run_c(binary, "log", len(signal), signal.numpy().astype("<u4")), len(signal), ("<u2", cfg.num_channels)
    )
    assert np.array_equal(got, expected.numpy())


def test_the_stages_chained_are_the_front_end(setup):
    """The stage functions, chained frame by frame, give MicroFrontend's output (so the stage
    tests above test the front end, not something beside it)."""
    cfg, fe, _ = setup
    audio = torch.from_numpy(np.random.default_rng(6).normal(0, 2000, (3, 16000)).astype(np.int16))
    frames = audio.to(torch.int32).unfold(-1, cfg.window_samples, cfg.stride_samples)
    values = chain(fe, frames)
    reduced, estimates = F.noise_reduction(
        values["signal"], fe.smoothing, cfg.min_signal_remaining_q14, cfg.smoothing_bits
    )
    if cfg.enable_pcan:
        reduced = F.pcan_gain_control(reduced, estimates, fe.gain_lut, cfg.snr_shift)
    assert torch.equal(F.log_scale(reduced, fe.log_lut, cfg.correction_bits, cfg.scale_shift), fe(audio))
