"""The MFCC front end: torchaudio's MFCC with the micro front end's framing."""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

from kws.audio.settings import FeatureSettings


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

    def forward_with_state(self, audio: Tensor, state: None = None) -> tuple[Tensor, None]:
        """The MFCC of each frame depends on that frame's samples only: no state to carry."""
        return self(audio), None
