"""Front-end contract and the MFCC front end against torchaudio used directly."""

import numpy as np
import pytest
import torch
import torchaudio

from kws.audio.features import MICRO_FEATURE_SCALE, FeatureSettings, build_frontend
from kws.audio.micro_frontend import MicroFrontend
from kws.audio.micro_tables import MicroFrontendConfig


def clips(n=3, samples=16000):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, samples, generator=g) * 3000).clamp(-32768, 32767).to(torch.int16)


@pytest.mark.parametrize("kind", ["micro", "mfcc"])
def test_output_contract(kind):
    settings = FeatureSettings(frontend=kind)
    out = build_frontend(settings)(clips())
    assert out.shape == (3, 49, 40) and out.dtype == torch.float32
    assert settings.input_shape == (49, 40)


def test_mfcc_equals_torchaudio_directly():
    audio = clips()
    ours = build_frontend(FeatureSettings(frontend="mfcc"))(audio)
    # Built from torchaudio's own pieces: Hann-windowed frames of samples [320 t, 320 t + 480)
    # (the micro front end's frames), 512-point power spectrum, mel filterbank, log, DCT-II.
    wave = audio.float() / 32768
    frames = wave.unfold(-1, 480, 320) * torch.hann_window(480, periodic=True)
    power = torch.fft.rfft(frames, n=512).abs() ** 2
    fb = torchaudio.functional.melscale_fbanks(257, 20.0, 8000.0, 40, 16000)
    ref = (torch.log(power @ fb + 1e-6)) @ torchaudio.functional.create_dct(40, 40, "ortho")
    assert ref.shape == ours.shape == (3, 49, 40)
    torch.testing.assert_close(ours, ref, atol=2e-3, rtol=1e-4)


def test_micro_features_are_scaled_frontend_values():
    audio = clips()
    values = MicroFrontend(MicroFrontendConfig())(audio)
    features = build_frontend(FeatureSettings(frontend="micro"))(audio)
    torch.testing.assert_close(features, values.float() * MICRO_FEATURE_SCALE)
    assert np.isclose(MICRO_FEATURE_SCALE, 1 / 25.6)


def test_bad_settings():
    with pytest.raises(ValueError, match="frontend"):
        FeatureSettings(frontend="fbank")
    with pytest.raises(ValueError, match="longer than clip"):
        FeatureSettings(window_ms=2000)
