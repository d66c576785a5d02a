"""Batch-wise voice and channel augmentation on the training device: more voices than the corpus has.

Test speakers are voices the model never heard. These transforms widen what it hears, each on a
whole int16 batch with tensor ops, each clip with its own random draw (``probability`` of being
changed at all):

- :func:`speed_perturb`: resample by a factor (tempo and pitch together, as Kaldi's speed
  perturbation), by linear interpolation about the clip's centre;
- :func:`random_eq`: a microphone / room response: a random band-pass (2nd-order Butterworth
  magnitudes) times a smooth random gain curve over log frequency, peak level kept;
- :func:`reverberate`: convolution with a synthetic room impulse response (exponentially
  decaying noise with a random RT60, direct path first), peak level kept.

    audio = VoiceAugment(speed=(0.85, 1.15), eq_probability=0.5, reverb_probability=0.3)(audio, generator)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def _rand(n: int, lo: float, hi: float, device, generator) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, device=device, generator=generator)


def _keep_peak(wave: Tensor, reference: Tensor) -> Tensor:
    peak = wave.abs().amax(-1, keepdim=True).clamp(min=1e-6)
    return wave * (reference.abs().amax(-1, keepdim=True) / peak)


def _to_int16(wave: Tensor) -> Tensor:
    return wave.round().clamp(-32768, 32767).to(torch.int16)


def speed_perturb(audio: Tensor, factor: Tensor) -> Tensor:
    """out[t] = audio[c + (t - c) * factor] (linear interpolation, zero outside; c the centre):
    factor > 1 speaks faster and higher."""
    batch, length = audio.shape
    x = audio.to(torch.float32)
    c = (length - 1) / 2
    pos = c + (torch.arange(length, device=audio.device, dtype=torch.float32) - c) * factor[:, None]
    lo = pos.floor()
    frac = pos - lo
    lo = lo.long()
    valid_lo = (lo >= 0) & (lo < length)
    valid_hi = (lo + 1 >= 0) & (lo + 1 < length)
    a = torch.where(valid_lo, x.gather(1, lo.clamp(0, length - 1)), 0.0)
    b = torch.where(valid_hi, x.gather(1, (lo + 1).clamp(0, length - 1)), 0.0)
    return _to_int16(a + (b - a) * frac)


def random_eq(
    audio: Tensor,
    generator: torch.Generator | None = None,
    sample_rate: int = 16000,
    highpass_hz: tuple[float, float] = (50.0, 400.0),
    lowpass_hz: tuple[float, float] = (3000.0, 8000.0),
    bands: int = 6,
    max_db: float = 6.0,
) -> Tensor:
    """A random band-pass and smooth tilt per clip (zero-phase, via FFT), peak level kept."""
    batch, length = audio.shape
    device = audio.device
    n = 1 << (length - 1).bit_length()
    freqs = torch.fft.rfftfreq(n, 1.0 / sample_rate, device=device)
    hp = torch.exp(_rand(batch, math.log(highpass_hz[0]), math.log(highpass_hz[1]), device, generator))[:, None]
    lp = torch.exp(_rand(batch, math.log(lowpass_hz[0]), math.log(lowpass_hz[1]), device, generator))[:, None]
    f = freqs.clamp(min=1.0)[None]
    gain = 1.0 / torch.sqrt((1.0 + (f / lp) ** 4) * (1.0 + (hp / f) ** 4))
    # Smooth random gains: `bands` points over log2 frequency (50 Hz .. Nyquist), linearly interpolated in dB.
    points = _rand(batch * bands, -max_db, max_db, device, generator).reshape(batch, bands)
    octave = (torch.log2(f / 50.0).clamp(min=0) / math.log2(sample_rate / 2 / 50.0) * (bands - 1)).clamp(
        max=bands - 1 - 1e-6
    )
    i = octave.floor().long().expand(batch, -1)
    w = (octave - octave.floor()).expand(batch, -1)
    db = points.gather(1, i) * (1 - w) + points.gather(1, i + 1) * w
    gain = gain * 10 ** (db / 20)
    x = audio.to(torch.float32)
    wave = torch.fft.irfft(torch.fft.rfft(x, n) * gain, n)[:, :length]
    return _to_int16(_keep_peak(wave, x))


def reverberate(
    audio: Tensor,
    rt60_s: Tensor,
    generator: torch.Generator | None = None,
    sample_rate: int = 16000,
    rir_s: float = 0.5,
    wet: tuple[float, float] = (0.3, 1.0),
) -> Tensor:
    """Convolve each clip with exponentially decaying noise (RT60 ``rt60_s`` [B]) after a unit
    direct path, scaled by a random wet level; the output keeps the clip's peak and length."""
    batch, length = audio.shape
    device = audio.device
    taps = int(rir_s * sample_rate)
    t = torch.arange(taps, device=device, dtype=torch.float32) / sample_rate
    decay = torch.exp(-6.9078 * t[None] / rt60_s[:, None])  # -60 dB at rt60
    rir = torch.randn(batch, taps, device=device, generator=generator) * decay
    rir = rir / rir.pow(2).sum(-1, keepdim=True).sqrt() * _rand(batch, *wet, device, generator)[:, None]
    rir[:, 0] = 1.0
    n = 1 << (length + taps - 1).bit_length()
    x = audio.to(torch.float32)
    wave = torch.fft.irfft(torch.fft.rfft(x, n) * torch.fft.rfft(rir, n), n)[:, :length]
    return _to_int16(_keep_peak(wave, x))


@dataclass(frozen=True)
class VoiceAugment:
    """The three transforms with their probabilities and ranges; ``__call__`` applies them to a
    batch (speed, then EQ, then reverberation), each clip drawing its own."""

    speed_probability: float = 0.0
    speed: tuple[float, float] = (0.85, 1.15)
    eq_probability: float = 0.0
    reverb_probability: float = 0.0
    rt60_s: tuple[float, float] = (0.1, 0.6)

    def __post_init__(self) -> None:
        for name in ("speed_probability", "eq_probability", "reverb_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)}")
        if not 0 < self.speed[0] <= self.speed[1] or not 0 < self.rt60_s[0] <= self.rt60_s[1]:
            raise ValueError(f"speed and rt60_s must be increasing positive ranges, got {self.speed}, {self.rt60_s}")

    @property
    def active(self) -> bool:
        return max(self.speed_probability, self.eq_probability, self.reverb_probability) > 0

    def __call__(self, audio: Tensor, generator: torch.Generator | None = None, skip: Tensor | None = None) -> Tensor:
        """``skip`` [B] bool: clips left alone (e.g. the silence class)."""
        batch, device = audio.shape[0], audio.device
        skip = torch.zeros(batch, dtype=torch.bool, device=device) if skip is None else skip
        for probability, transform in (
            (self.speed_probability, self._speed),
            (self.eq_probability, self._eq),
            (self.reverb_probability, self._reverb),
        ):
            if probability <= 0:
                continue
            use = (torch.rand(batch, device=device, generator=generator) < probability) & ~skip
            if use.any():
                audio = audio.clone()
                audio[use] = transform(audio[use], generator)
        return audio

    def _speed(self, audio: Tensor, generator) -> Tensor:
        return speed_perturb(audio, _rand(len(audio), *self.speed, audio.device, generator))

    def _eq(self, audio: Tensor, generator) -> Tensor:
        return random_eq(audio, generator)

    def _reverb(self, audio: Tensor, generator) -> Tensor:
        return reverberate(audio, _rand(len(audio), *self.rt60_s, audio.device, generator), generator)
