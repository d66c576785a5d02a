"""The TFLM micro front end (``tensorflow/lite/experimental/microfrontend``) as a batched PyTorch
module: the feature generator that the micro_speech firmware runs on the board.

Training on anything else means the board sees features the model never saw, so the module
chains the fixed-point stages of :mod:`kws.audio.micro_functional` -- Q12 Hann window, 16-bit
KISS FFT, 12-bit mel filterbank, integer square root, noise reduction, PCAN gain control, Q16 log
-- on whole batches at once, on any device. ``tests/audio`` checks it bit for bit against
TensorFlow's ``audio_microfrontend`` op, and each stage against its C twin in the firmware.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from kws.audio import micro_frontend_c
from kws.audio import micro_functional as F
from kws.audio.micro_tables import (
    MicroFrontendConfig,
    fft_twiddles,
    filterbank_matrix,
    hann_window_q12,
    kiss_plan,
    log_lut,
    pcan_gain_lut,
    super_twiddles,
)

CPU_CHUNK_CLIPS = 25  # clips per pass on a CPU (see MicroFrontend.forward)


class MicroFrontend(nn.Module):
    """Batched, bit-exact TFLM micro front end.

    Input: int16 (or integer-valued) audio ``[batch, samples]``. Output: the front end's uint16
    values as int64 ``[batch, frames, num_channels]``, frames = 1 + (samples - window) // stride.

    The front end's only state is the per-channel noise estimate (which also sets PCAN's gain).
    ``forward(audio)`` starts every clip from a fresh state, as TensorFlow's op does per call;
    ``forward(audio, state)`` continues from ``state`` (int64 ``[batch, num_channels]``), and
    :meth:`forward_with_state` also returns the state after the last frame -- so audio fed in
    pieces gives the features of feeding it at once, as the board's stream does.

    On CPU tensors the same arithmetic runs as the firmware's own C code when the installed
    library was built for this configuration (:mod:`kws.audio.micro_frontend_c`, ~30x faster),
    else as PyTorch; ``backend`` forces one ("torch", "c") instead of choosing ("auto").

    Example::

        fe = MicroFrontend(MicroFrontendConfig())
        values = fe(torch.from_numpy(int16_audio)[None])  # [1, 49, 40]
        first, state = fe.forward_with_state(audio[:, :16000])
        rest, state = fe.forward_with_state(audio[:, 15680:], state)  # continues the stream
    """

    def __init__(
        self, cfg: MicroFrontendConfig = MicroFrontendConfig(), backend: Literal["auto", "torch", "c"] = "auto"
    ):
        super().__init__()
        if backend not in ("auto", "torch", "c"):
            raise ValueError(f"backend must be auto, torch or c, got {backend!r}")
        if backend == "c" and not micro_frontend_c.matches(cfg):
            raise ValueError(
                "the C micro front end library is "
                f"{'not built' if micro_frontend_c.build_info() is None else 'built for another configuration'}: "
                "it runs the default front end only, installed with a C compiler (make install)"
            )
        self.cfg, self.backend = cfg, backend
        self.register_buffer(
            "window", torch.from_numpy(hann_window_q12(cfg.window_samples)).to(torch.int32), persistent=False
        )
        ncfft = cfg.fft_size // 2
        order, self.stages = kiss_plan(ncfft)
        twiddles = fft_twiddles(ncfft)
        self.register_buffer("fft_order", torch.from_numpy(order), persistent=False)
        self.register_buffer(
            "super_twiddles", torch.from_numpy(super_twiddles(ncfft)).to(torch.int32), persistent=False
        )
        # Each stage's twiddles for butterfly legs 1..p-1, as (re, im) [2, p - 1, m].
        for i, (p, m, fstride) in enumerate(self.stages):
            index = (np.arange(1, p)[:, None] * fstride * np.arange(m)[None]) % ncfft
            self.register_buffer(
                f"stage{i}_twiddles",
                torch.from_numpy(twiddles[index]).to(torch.int32).movedim(-1, 0).contiguous(),
                persistent=False,
            )
        weights, self.start_index, self.end_index = filterbank_matrix(cfg)
        self.register_buffer("filterbank", torch.from_numpy(weights).to(torch.float64), persistent=False)
        self.register_buffer("smoothing", torch.from_numpy(cfg.noise_smoothing()), persistent=False)
        self.register_buffer("gain_lut", torch.from_numpy(pcan_gain_lut(cfg)), persistent=False)
        self.register_buffer("log_lut", torch.from_numpy(log_lut()), persistent=False)

    @property
    def fft_tables(self) -> F.FftTables:
        stage_twiddles = [getattr(self, f"stage{i}_twiddles") for i in range(len(self.stages))]
        return F.FftTables(self.cfg.fft_size // 2, self.fft_order, self.stages, stage_twiddles, self.super_twiddles)

    def num_frames(self, num_samples: int) -> int:
        return 1 + (num_samples - self.cfg.window_samples) // self.cfg.stride_samples

    def forward(self, audio: Tensor, state: Tensor | None = None) -> Tensor:
        return self.forward_with_state(audio, state)[0]

    def forward_with_state(self, audio: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(values [batch, frames, channels], the noise estimate after the last frame [batch,
        channels]) of ``audio``, starting from ``state`` (None: a fresh start)."""
        cfg = self.cfg
        if audio.dim() != 2 or audio.shape[-1] < cfg.window_samples:
            raise ValueError(
                "micro front end: expected int16 audio [batch, samples >= "
                f"{cfg.window_samples}], got {tuple(audio.shape)}"
            )
        if state is not None and tuple(state.shape) != (audio.shape[0], cfg.num_channels):
            raise ValueError(
                f"micro front end: state must be [batch, {cfg.num_channels}] noise estimates, got {tuple(state.shape)}"
            )
        if audio.device.type == "cpu" and self._use_c():
            values, estimates = micro_frontend_c.process_batch(
                audio.numpy(), None if state is None else state.numpy(), torch.get_num_threads()
            )
            return torch.from_numpy(values).to(torch.int64), torch.from_numpy(estimates).to(torch.int64)
        if audio.device.type == "cpu" and len(audio) > CPU_CHUNK_CLIPS:
            # Dozens of element-wise passes per FFT stage: on a CPU they run faster when each
            # pass's tensors stay in cache (1,750 vs 1,350 clips/s for batches of 100, measured
            # while writing this; `make bench` reports the front end's speed).
            states = state.split(CPU_CHUNK_CLIPS) if state is not None else [None] * -(-len(audio) // CPU_CHUNK_CLIPS)
            parts = [self._features(chunk, s) for chunk, s in zip(audio.split(CPU_CHUNK_CLIPS), states)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return self._features(audio, state)

    def _use_c(self) -> bool:
        if self.backend == "torch":
            return False
        if self.backend == "c":
            return True
        return _c_library_agrees(self.cfg)

    def _features(self, audio: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        cfg = self.cfg
        frames = audio.to(torch.int32).unfold(-1, cfg.window_samples, cfg.stride_samples)  # [B, F, W]
        fft_input, shift = F.window_and_scale(frames, self.window, cfg.fft_size)
        re, im = F.kiss_fftr16(fft_input, self.fft_tables)
        channels = F.filterbank(re, im, self.filterbank, self.start_index, self.end_index)
        signal = F.sqrt_and_unshift(channels, shift)
        signal, estimates = F.noise_reduction(
            signal, self.smoothing, cfg.min_signal_remaining_q14, cfg.smoothing_bits, state
        )
        if cfg.enable_pcan:
            signal = F.pcan_gain_control(signal, estimates, self.gain_lut, cfg.snr_shift)
        values = (
            signal.clamp(max=0xFFFF)
            if not cfg.enable_log
            else F.log_scale(signal, self.log_lut, cfg.correction_bits, cfg.scale_shift)
        )
        return values, estimates[:, -1]


def _c_library_agrees(cfg: MicroFrontendConfig) -> bool:
    """Whether the C library runs ``cfg`` (checked against the reference on a probe, once)."""
    if micro_frontend_c.usable(cfg):
        return True
    if cfg == MicroFrontendConfig() and not _warned:
        _warned.append(True)
        warnings.warn(
            "the C micro front end library is "
            + (
                "not built (no C compiler at install time?)"
                if micro_frontend_c.build_info() is None
                else "built from other tables than this kws"
            )
            + ": the front end runs the PyTorch port, about 30x slower on CPUs; "
            "reinstall with `make install` to build it",
            stacklevel=4,
        )
    return False


_warned: list[bool] = []
