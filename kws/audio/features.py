"""Feature front ends: one place that turns int16 audio batches into model inputs.

Both front ends share one contract: int16 audio ``[batch, samples]`` in, float features
``[batch, frames, num_features]`` out, with frames = 1 + (samples - window) // stride
(49 x 40 for 1 s at 30 ms / 20 ms), framed by :class:`kws.audio.settings.FeatureSettings`.

- ``micro``: the TFLM micro front end the micro_speech firmware runs, bit-exact
  (:mod:`kws.audio.micro_frontend`), scaled by 10/256 as TensorFlow's speech_commands recipe does.
- ``mfcc``: torchaudio's MFCC with the same framing (:mod:`kws.audio.mfcc`).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from kws.audio.mfcc import MFCCFeatures
from kws.audio.micro_frontend import MicroFrontend
from kws.audio.micro_tables import MicroFrontendConfig
from kws.audio.settings import MICRO_FEATURE_SCALE, FeatureSettings

__all__ = ["FeatureSettings", "MICRO_FEATURE_SCALE", "MFCCFeatures", "MicroFeatures", "build_frontend"]


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


def build_frontend(settings: FeatureSettings) -> nn.Module:
    """The front end named by ``settings.frontend``."""
    return {"micro": MicroFeatures, "mfcc": MFCCFeatures}[settings.frontend](settings)
