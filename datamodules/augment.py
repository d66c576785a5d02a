"""Batch-wise training augmentation on the training device: time shift and background noise.

Both follow TensorFlow's speech_commands recipe (input_data.py), but act on a whole int16 batch
at once with tensor ops, so no per-clip Python runs in the training loop.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def time_shift(audio: Tensor, max_shift: int, generator: torch.Generator | None = None) -> Tensor:
    """Shift each clip by a uniform random number of samples in [-max_shift, max_shift], zero-filled."""
    if max_shift <= 0:
        return audio
    shift = torch.randint(-max_shift, max_shift + 1, (audio.shape[0],), device=audio.device, generator=generator)
    return shift_by(audio, shift)


def shift_by(audio: Tensor, shift: Tensor) -> Tensor:
    """Each clip [B, S] shifted by its own ``shift`` [B] samples: out[t] = audio[t - shift], zero outside."""
    length = audio.shape[1]
    src = torch.arange(length, device=audio.device) - shift[:, None]
    valid = (src >= 0) & (src < length)
    shifted = audio.gather(1, src.clamp(0, length - 1))
    return torch.where(valid, shifted, torch.zeros_like(shifted))


def to_int16(wave: Tensor) -> Tensor:
    """[-1, 1] float -> int16, clamped, truncating like the recipe's cast(x * 32768, int16)."""
    return (wave * 32768.0).trunc().clamp(-32768, 32767).to(torch.int16)


class BackgroundNoise(nn.Module):
    """A bank of background recordings from which random 1 s crops are mixed into clips.

    Args:
        recordings: int16 1-D tensors, each at least ``clip_samples`` long.
        clip_samples: samples per clip.
    """

    def __init__(self, recordings: list[Tensor], clip_samples: int):
        super().__init__()
        if not recordings:
            raise ValueError("BackgroundNoise needs at least one recording")
        short = [i for i, r in enumerate(recordings) if len(r) < clip_samples]
        if short:
            raise ValueError(f"background recordings {short} are shorter than one clip ({clip_samples} samples)")
        lengths = torch.tensor([len(r) for r in recordings])
        self.clip_samples = clip_samples
        self.register_buffer("bank", torch.cat(recordings).to(torch.int16), persistent=False)
        self.register_buffer("offsets", torch.cumsum(lengths, 0) - lengths, persistent=False)
        self.register_buffer("max_start", lengths - clip_samples, persistent=False)

    def crops(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """``batch`` random crops ``[batch, clip_samples]`` as float in [-1, 1)."""
        device = self.bank.device
        which = torch.randint(len(self.offsets), (batch,), device=device, generator=generator)
        start = (torch.rand(batch, device=device, generator=generator) * (self.max_start[which] + 1)).long()
        index = (self.offsets[which] + start)[:, None] + torch.arange(self.clip_samples, device=device)
        return self.bank[index].to(torch.float32) / 32768.0

    def mix(self, audio: Tensor, volume: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """int16 clips + volume * noise crop, clamped back to int16. ``volume``: [batch]."""
        noise = self.crops(audio.shape[0], generator)
        wave = audio.to(torch.float32) / 32768.0 + volume[:, None] * noise
        return to_int16(wave.clamp(-1.0, 1.0))


def noise_volumes(
    is_silence: Tensor, frequency: float, max_volume: float, generator: torch.Generator | None = None
) -> Tensor:
    """Per-clip noise volume: U(0, 1) for silence; U(0, max_volume) with probability ``frequency``
    for the other clips, else 0 (the recipe's background_frequency / background_volume)."""
    device = is_silence.device
    n = is_silence.shape[0]
    speech = torch.rand(n, device=device, generator=generator) * max_volume
    speech = speech * (torch.rand(n, device=device, generator=generator) < frequency)
    silence = torch.rand(n, device=device, generator=generator)
    return torch.where(is_silence, silence, speech)
