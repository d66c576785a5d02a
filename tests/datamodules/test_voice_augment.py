"""Voice and channel augmentation: identities, levels kept, only the chosen clips changed."""

import numpy as np
import pytest
import torch

from datamodules.voice_augment import VoiceAugment, random_eq, reverberate, speed_perturb


def tones(n=8, length=16000):
    t = np.arange(length) / 16000
    x = np.stack([8000 * np.sin(2 * np.pi * (300 + 200 * i) * t) * (t > 0.3) * (t < 0.7) for i in range(n)])
    return torch.from_numpy(x.astype(np.int16))


def dominant_hz(x: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(x.float()).abs()
    return float(spectrum.argmax()) * 16000 / x.shape[-1]


def test_speed_one_is_identity_and_faster_is_higher():
    x = tones()
    assert torch.equal(speed_perturb(x, torch.ones(len(x))), x)
    fast = speed_perturb(x, torch.full((len(x),), 1.2))
    assert dominant_hz(fast[0]) == pytest.approx(1.2 * dominant_hz(x[0]), rel=0.02)
    # Shorter: the tone's duration shrinks by the factor around the centre.
    on = (fast[0].abs() > 1000).nonzero().flatten()
    assert (on.max() - on.min()).item() == pytest.approx(6400 / 1.2, abs=40)


def test_eq_and_reverb_keep_the_peak_and_length():
    x = tones()
    g = torch.Generator().manual_seed(0)
    for y in (random_eq(x, g), reverberate(x, torch.full((len(x),), 0.4), g)):
        assert y.shape == x.shape and y.dtype == torch.int16
        assert torch.allclose(y.float().abs().amax(1), x.float().abs().amax(1), atol=1.0)
        assert not torch.equal(y, x)


def test_reverb_adds_a_tail():
    x = tones(2)
    y = reverberate(x, torch.full((2,), 0.5), torch.Generator().manual_seed(1))
    after = slice(int(0.72 * 16000), int(0.9 * 16000))
    assert y[:, after].float().abs().mean() > 50 * (x[:, after].float().abs().mean() + 1)


def test_augment_leaves_skipped_and_undrawn_clips_alone():
    x = tones(64)
    skip = torch.arange(64) < 16
    augment = VoiceAugment(speed_probability=0.5, eq_probability=0.5, reverb_probability=0.5)
    y = augment(x, torch.Generator().manual_seed(0), skip=skip)
    assert torch.equal(y[skip], x[skip])
    changed = (y != x).any(1)
    assert 20 < changed[~skip].sum() < 48  # about 1 - 0.5^3 of the others
    assert not VoiceAugment().active
    with pytest.raises(ValueError, match="speed_probability"):
        VoiceAugment(speed_probability=1.5)
