"""The PyTorch micro front end against TensorFlow's audio_microfrontend op (the reference the
micro_speech firmware's C front end is built from). Tolerance: none -- bit-exact."""

import numpy as np
import pytest
import torch

from kws.audio.micro_frontend import MicroFrontend
from kws.audio.micro_tables import MicroFrontendConfig, hann_window_q12, log_lut
from kws.audio.wav import read_wav

tf = pytest.importorskip("tensorflow")
from tensorflow.lite.experimental.microfrontend.python.ops import audio_microfrontend_op  # noqa: E402


def reference(audio: np.ndarray, cfg: MicroFrontendConfig) -> np.ndarray:
    return (
        audio_microfrontend_op.audio_microfrontend(
            tf.constant(audio, tf.int16),
            sample_rate=cfg.sample_rate,
            window_size=cfg.window_ms,
            window_step=cfg.stride_ms,
            num_channels=cfg.num_channels,
            enable_pcan=cfg.enable_pcan,
            enable_log=cfg.enable_log,
            out_scale=1,
            out_type=tf.uint16,
        )
        .numpy()
        .astype(np.int64)
    )


def synthetic_clips(n_samples: int = 16000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    t = np.arange(n_samples) / 16000
    sweep = np.sin(2 * np.pi * (100 + 3900 * t) * t)
    return {
        "zeros": np.zeros(n_samples, np.int16),
        "quiet_noise": rng.normal(0, 30, n_samples).astype(np.int16),
        "loud_noise": np.clip(rng.normal(0, 20000, n_samples), -32768, 32767).astype(np.int16),
        "full_scale_square": np.where(np.sin(2 * np.pi * 440 * t) >= 0, 32767, -32767).astype(np.int16),
        "sweep": (sweep * 12000).astype(np.int16),
        "impulses": np.where(np.arange(n_samples) % 997 == 0, 30000, 0).astype(np.int16),
        "burst_after_silence": np.concatenate(
            [np.zeros(n_samples // 2), rng.normal(0, 5000, n_samples - n_samples // 2)]
        ).astype(np.int16),
    }


@pytest.fixture(scope="module")
def frontend():
    return MicroFrontend(MicroFrontendConfig())


@pytest.mark.parametrize("name", ["yes", "no", "noise", "silence"])
def test_real_clips_bit_exact(micro_speech_dir, frontend, name):
    audio, rate = read_wav(micro_speech_dir / f"{name}_1000ms.wav")
    assert rate == 16000
    ours = frontend(torch.from_numpy(audio)[None])[0].numpy()
    ref = reference(audio, frontend.cfg)
    assert ours.shape == ref.shape == (49, 40)
    np.testing.assert_array_equal(ours, ref)
    assert ref.max() > 300  # real speech and noise light up the features


@pytest.mark.parametrize("name", list(synthetic_clips()))
def test_synthetic_signals_bit_exact(frontend, name):
    audio = synthetic_clips()[name]
    np.testing.assert_array_equal(frontend(torch.from_numpy(audio)[None])[0].numpy(), reference(audio, frontend.cfg))


@pytest.mark.parametrize(
    "cfg",
    [
        MicroFrontendConfig(enable_pcan=False),
        MicroFrontendConfig(enable_log=False),
        MicroFrontendConfig(enable_pcan=False, enable_log=False),
        MicroFrontendConfig(num_channels=32, window_ms=25, stride_ms=10),
        MicroFrontendConfig(num_channels=64),
    ],
    ids=["no_pcan", "no_log", "raw_filterbank", "32ch_25ms_10ms", "64ch"],
)
def test_other_settings_bit_exact(cfg):
    fe = MicroFrontend(cfg)
    for audio in list(synthetic_clips().values())[1:5]:
        np.testing.assert_array_equal(fe(torch.from_numpy(audio)[None])[0].numpy(), reference(audio, cfg))


def test_batch_equals_one_by_one_and_lengths(frontend):
    clips = synthetic_clips(20000)
    batch = torch.from_numpy(np.stack(list(clips.values())))
    out = frontend(batch)
    assert out.shape == (len(clips), 1 + (20000 - 480) // 320, 40)
    for i, audio in enumerate(clips.values()):
        np.testing.assert_array_equal(out[i].numpy(), reference(audio, frontend.cfg))


def test_large_batch_in_cpu_chunks_equals_the_reference(frontend):
    """More clips than one CPU chunk (MicroFrontend processes CPU batches in chunks): the chunked
    result equals TensorFlow's op clip by clip, including a last, partial chunk."""
    from kws.audio.micro_frontend import CPU_CHUNK_CLIPS

    clips = list(synthetic_clips(16000).values())
    rng = np.random.default_rng(1)
    batch = np.stack(
        [clips[i % len(clips)] // (1 + i % 3) + rng.integers(-50, 50, 16000) for i in range(2 * CPU_CHUNK_CLIPS + 3)]
    ).astype(np.int16)
    out = frontend(torch.from_numpy(batch))
    for i in range(len(batch)):
        np.testing.assert_array_equal(out[i].numpy(), reference(batch[i], frontend.cfg))


def test_tables():
    window = hann_window_q12(480)
    assert window.min() >= 0 and window.max() == 4096 and window[0] == window[-1]
    lut = log_lut()
    assert lut[0] == 0 and lut[128] == 0 and lut.max() < 5700  # log2(1+x) - x peaks near 0.086


def test_rejects_bad_input(frontend):
    with pytest.raises(ValueError, match="expected int16 audio"):
        frontend(torch.zeros(100, dtype=torch.int16)[None])
    with pytest.raises(ValueError, match="upper_band_limit"):
        MicroFrontend(MicroFrontendConfig(upper_band_limit=9000.0))
