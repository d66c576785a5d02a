"""Feature front ends: one place that turns int16 audio batches into model inputs.

Both front ends share one contract: int16 audio ``[batch, samples]`` in, float features
``[batch, frames, num_features]`` out, with frames = 1 + (samples - window) // stride
(49 x 40 for 1 s at 30 ms / 20 ms). The settings are defined once here and flow to the model
(its input size) and, later, to the firmware's ``model_settings.h``.

- ``micro``: the TFLM micro front end the micro_speech firmware runs, bit-exact
  (:mod:`kws.micro_frontend`), scaled by 10/256 as TensorFlow's speech_commands recipe does.
- ``mfcc``: torchaudio's MFCC with the same framing: 40 log-mel bands -> 40 coefficients.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torchaudio
from torch import Tensor, nn

from kws.micro_frontend import MicroFrontend, MicroFrontendConfig

FrontEndKind = Literal["micro", "mfcc"]

# micro_speech's training recipe divides the front end's uint16 output by 25.6 (= * 10/256),
# giving roughly 0..26; the firmware undoes exactly this when it quantizes features to int8.
MICRO_FEATURE_SCALE = 10.0 / 256.0


@dataclass(frozen=True)
class FeatureSettings:
    """Audio framing and feature size shared by the data, the model and the firmware."""

    frontend: FrontEndKind = "micro"
    sample_rate: int = 16000
    clip_ms: int = 1000
    window_ms: int = 30
    stride_ms: int = 20
    num_features: int = 40

    def __post_init__(self) -> None:
        if self.frontend not in ("micro", "mfcc"):
            raise ValueError(f"frontend must be 'micro' or 'mfcc', got {self.frontend!r}")
        if self.window_samples > self.clip_samples:
            raise ValueError(f"window_ms {self.window_ms} is longer than clip_ms {self.clip_ms}")
        if min(self.sample_rate, self.window_ms, self.stride_ms, self.num_features) <= 0:
            raise ValueError("sample_rate, window_ms, stride_ms and num_features must be positive")

    @property
    def clip_samples(self) -> int:
        return self.sample_rate * self.clip_ms // 1000

    @property
    def window_samples(self) -> int:
        return self.sample_rate * self.window_ms // 1000

    @property
    def stride_samples(self) -> int:
        return self.sample_rate * self.stride_ms // 1000

    @property
    def num_frames(self) -> int:
        return 1 + (self.clip_samples - self.window_samples) // self.stride_samples

    @property
    def input_shape(self) -> tuple[int, int]:
        """(frames, features) of one clip: (49, 40) for the defaults."""
        return self.num_frames, self.num_features


class MicroFeatures(nn.Module):
    """The TFLM micro front end (PCAN on, as micro_speech), output scaled to float features."""

    def __init__(self, settings: FeatureSettings):
        super().__init__()
        self.frontend = MicroFrontend(
            MicroFrontendConfig(
                sample_rate=settings.sample_rate,
                window_ms=settings.window_ms,
                stride_ms=settings.stride_ms,
                num_channels=settings.num_features,
            )
        )

    def forward(self, audio: Tensor) -> Tensor:
        return self.frontend(audio).to(torch.float32) * MICRO_FEATURE_SCALE


class MFCCFeatures(nn.Module):
    """torchaudio MFCC: power spectrum (512-point FFT, Hann window), 40 mel bands, log, DCT-II."""

    def __init__(self, settings: FeatureSettings):
        super().__init__()
        n_fft = 1 << (settings.window_samples - 1).bit_length()
        # torch.stft centres a shorter window inside the n_fft frame; padding by the difference
        # puts each window on the same samples as the micro front end's and keeps the frame count.
        extra = n_fft - settings.window_samples
        self.pad = (extra // 2, extra - extra // 2)
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=settings.sample_rate,
            n_mfcc=settings.num_features,
            log_mels=True,
            melkwargs=dict(
                n_fft=n_fft,
                win_length=settings.window_samples,
                hop_length=settings.stride_samples,
                n_mels=settings.num_features,
                f_min=20.0,
                f_max=settings.sample_rate / 2,
                center=False,
            ),
        )

    def forward(self, audio: Tensor) -> Tensor:
        wave = nn.functional.pad(audio.to(torch.float32) / 32768.0, self.pad)
        return self.mfcc(wave).transpose(-1, -2)  # [B, n_mfcc, frames] -> [B, frames, n_mfcc]


def build_frontend(settings: FeatureSettings) -> nn.Module:
    """The front end named by ``settings.frontend``."""
    return {"micro": MicroFeatures, "mfcc": MFCCFeatures}[settings.frontend](settings)
