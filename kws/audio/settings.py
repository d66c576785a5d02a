"""Audio framing and feature size: the one definition shared by the data, the model and the
firmware (written into the exported ``model_settings.h``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    def feature_scale(self) -> float:
        """The factor training applies to the front end's output (the firmware applies it too)."""
        return MICRO_FEATURE_SCALE if self.frontend == "micro" else 1.0

    def micro_config(self):
        """The micro front end's configuration for this framing (defaults elsewhere, as micro_speech)."""
        from kws.audio.micro_tables import MicroFrontendConfig

        return MicroFrontendConfig(
            sample_rate=self.sample_rate,
            window_ms=self.window_ms,
            stride_ms=self.stride_ms,
            num_channels=self.num_features,
        )

    @property
    def input_shape(self) -> tuple[int, int]:
        """(frames, features) of one clip: (49, 40) for the defaults."""
        return self.num_frames, self.num_features
