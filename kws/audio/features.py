"""Feature front ends: one place that turns int16 audio batches into model inputs.

Both front ends share one contract: int16 audio ``[batch, samples]`` in, float features
``[batch, frames, num_features]`` out, with frames = 1 + (samples - window) // stride
(49 x 40 for 1 s at 30 ms / 20 ms), framed by :class:`kws.audio.settings.FeatureSettings`;
``forward_with_state(audio, state)`` also carries the front end's state from one piece of a
stream to the next (the micro front end's noise estimate; the MFCC has none: ``None``).

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
        try:
            self.frontend = MicroFrontend(settings.micro_config())
        except ValueError:  # name the user's options, not the front end's internals
            raise ValueError(
                f"the micro front end cannot run at sample_rate {settings.sample_rate} Hz with a "
                f"{settings.window_ms} ms window and "
                f"{settings.num_features} features: its mel filterbank spans {MicroFrontendConfig.lower_band_limit:g}-"
                f"{MicroFrontendConfig.upper_band_limit:g} Hz, above half the sample rate; "
                "micro_speech uses 16000 Hz (data.resample: true "
                "converts clips at other rates), or use data.features.frontend: mfcc"
            ) from None

    def forward(self, audio: Tensor, state: Tensor | None = None) -> Tensor:
        return self.forward_with_state(audio, state)[0]

    def forward_with_state(self, audio: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(features, the front end's state after them): see :class:`MicroFrontend`."""
        values, state = self.frontend.forward_with_state(audio, state)
        return values.to(torch.float32) * MICRO_FEATURE_SCALE, state


def build_frontend(settings: FeatureSettings) -> nn.Module:
    """The front end named by ``settings.frontend``."""
    return {"micro": MicroFeatures, "mfcc": MFCCFeatures}[settings.frontend](settings)
