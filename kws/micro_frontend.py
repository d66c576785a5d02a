"""The TFLM micro front end (``tensorflow/lite/experimental/microfrontend``) in batched PyTorch.

This is the feature generator that the micro_speech firmware runs on the board. Training on
anything else means the board sees features the model never saw, so this module reproduces the
C implementation's fixed-point arithmetic step by step -- Hann window in Q12, the 16-bit
KISS FFT with its per-stage scaling and rounding, the triangular mel filterbank with 12-bit
weights, integer square root, noise reduction, PCAN gain control and the piecewise-linear log --
on whole batches at once, on any device. ``tests/test_micro_frontend.py`` checks it bit for bit
against TensorFlow's ``audio_microfrontend`` op.

The integer pipeline works on int32/int64 tensors; where the C code stores a value into a
narrower type (int16, uint32) the same wrap-around is applied, so overflow behaves as on device.
Only the per-frame noise estimate is sequential in time; every other stage is vectorised over
clips, frames and channels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

WINDOW_BITS = 12  # Q-format of the Hann window coefficients
FILTERBANK_BITS = 12  # Q-format of the mel filterbank weights
NOISE_REDUCTION_BITS = 14  # Q-format of the noise smoothing coefficients
PCAN_SNR_BITS = 12
PCAN_OUTPUT_BITS = 6
WIDE_DYNAMIC_FUNCTION_BITS = 32
LOG_SCALE_BITS = 16
LOG_SEGMENTS_BITS = 7
LOG_COEFF = 45426  # ln(2) in Q16


@dataclass(frozen=True)
class MicroFrontendConfig:
    """Parameters of the micro front end, named and defaulted as in micro_speech's firmware."""

    sample_rate: int = 16000
    window_ms: int = 30
    stride_ms: int = 20
    num_channels: int = 40
    lower_band_limit: float = 125.0
    upper_band_limit: float = 7500.0
    smoothing_bits: int = 10
    even_smoothing: float = 0.025
    odd_smoothing: float = 0.06
    min_signal_remaining: float = 0.05
    enable_pcan: bool = True
    pcan_strength: float = 0.95
    pcan_offset: float = 80.0
    gain_bits: int = 21
    enable_log: bool = True
    scale_shift: int = 6

    @property
    def window_samples(self) -> int:
        return self.window_ms * self.sample_rate // 1000

    @property
    def stride_samples(self) -> int:
        return self.stride_ms * self.sample_rate // 1000

    @property
    def fft_size(self) -> int:
        return 1 << max(self.window_samples - 1, 1).bit_length()


# ----------------------------------------------------------------------------------------------
# Constant tables, computed once per configuration with the C code's float32/float64 rounding.
# ----------------------------------------------------------------------------------------------


def hann_window_q12(size: int) -> np.ndarray:
    """The window's int16 coefficients: floor(w * 2^12 + 0.5), w computed in float32 like the C."""
    arg = np.float32(math.pi * 2.0 / size)
    i = np.arange(size, dtype=np.float64)
    w = (0.5 - 0.5 * np.cos(np.float64(arg) * (i + 0.5))).astype(np.float32)
    return np.floor(w.astype(np.float64) * (1 << WINDOW_BITS) + 0.5).astype(np.int64)


def _freq_to_mel(freq: np.ndarray | float) -> np.ndarray:
    return np.float32(1127.0 * np.log1p(np.float64(np.float32(freq)) / 700.0))


def filterbank_matrix(cfg: MicroFrontendConfig) -> tuple[np.ndarray, int, int]:
    """Integer weights ``[spectrum_size, num_channels]`` of the mel filterbank.

    The C filterbank keeps, per FFT bin, a weight for the channel whose band it rises into and
    an "unweight" (4096 - weight) for the channel before; channel c's output is the weighted sum
    of its own bins plus the unweighted sum of channel c-1's bins. Padding and alignment in the
    C layout only add zero weights, so one dense matrix gives the same sums.
    """
    spectrum_size = cfg.fft_size // 2 + 1
    n = cfg.num_channels + 1
    mel_low = _freq_to_mel(cfg.lower_band_limit)
    mel_hi = _freq_to_mel(cfg.upper_band_limit)
    spacing = np.float32(np.float32(mel_hi - mel_low) / np.float32(n))
    centers = np.array([np.float32(mel_low + np.float32(spacing * np.float32(i + 1))) for i in range(n)], np.float32)
    hz_per_bin = np.float32(0.5 * cfg.sample_rate / (np.float32(spectrum_size) - np.float32(1)))
    start_index = int(1.5 + np.float64(np.float32(np.float32(cfg.lower_band_limit) / hz_per_bin)))

    weights = np.zeros((spectrum_size, n), np.int64)
    unweights = np.zeros((spectrum_size, n), np.int64)
    freq = start_index
    end_index = 0
    for chan in range(n):
        lower = mel_low if chan == 0 else centers[chan - 1]
        while _freq_to_mel(np.float32(np.float32(freq) * hz_per_bin)) <= centers[chan]:
            if freq >= spectrum_size:
                raise ValueError(f"micro front end: upper_band_limit {cfg.upper_band_limit} Hz lies above the spectrum; lower it below {cfg.sample_rate / 2} Hz")
            w = np.float32(np.float32(centers[chan] - _freq_to_mel(np.float32(np.float32(freq) * hz_per_bin))) / np.float32(centers[chan] - lower))
            weights[freq, chan] = math.floor(np.float64(np.float32(w * np.float32(1 << FILTERBANK_BITS))) + 0.5)
            unweights[freq, chan] = math.floor((1.0 - np.float64(w)) * (1 << FILTERBANK_BITS) + 0.5)
            freq += 1
        end_index = max(end_index, freq)
    if end_index >= spectrum_size:
        raise ValueError(f"micro front end: upper_band_limit {cfg.upper_band_limit} Hz lies above the spectrum; lower it below {cfg.sample_rate / 2} Hz")
    # Output channel c (1..n-1) = weights of channel c + unweights of channel c - 1.
    return weights[:, 1:] + unweights[:, :-1], start_index, end_index


def pcan_gain_lut(cfg: MicroFrontendConfig, input_correction_bits: int) -> np.ndarray:
    """The piecewise-quadratic gain table of PCAN: entries [0], [1], then (y0, a1, a2, pad) per octave."""
    input_bits = cfg.smoothing_bits - input_correction_bits

    def gain(x: int) -> int:
        x_f = np.float32(np.float32(x) / np.float32(1 << input_bits))
        g = np.float32(np.float32(1 << cfg.gain_bits) * np.power(np.float32(x_f + np.float32(cfg.pcan_offset)), np.float32(-cfg.pcan_strength)))
        return 0x7FFF if g > 0x7FFF else int(np.float32(g + np.float32(0.5)))

    lut = np.zeros(4 * WIDE_DYNAMIC_FUNCTION_BITS - 3 + 6, np.int64)
    lut[0], lut[1] = gain(0), gain(1)
    for interval in range(2, WIDE_DYNAMIC_FUNCTION_BITS + 1):
        x0 = 1 << (interval - 1)
        x1 = x0 + (x0 >> 1)
        x2 = x0 + (x0 - 1) if interval == WIDE_DYNAMIC_FUNCTION_BITS else 2 * x0
        y0, y1, y2 = gain(x0), gain(x1), gain(x2)
        a1 = 4 * (y1 - y0) - (y2 - y0)
        a2 = (y2 - y0) - a1
        base = 4 * interval - 6
        lut[base : base + 3] = [y0, _wrap(a1, 16), _wrap(a2, 16)]
    return lut


def log_lut() -> np.ndarray:
    """Correction table of the Q16 log2: 65536 * (log2(1 + i/128) - i/128), rounded, plus a 0 pad."""
    i = np.arange(1 << LOG_SEGMENTS_BITS | 1)
    lut = np.round((1 << LOG_SCALE_BITS) * (np.log2(1 + i / (1 << LOG_SEGMENTS_BITS)) - i / (1 << LOG_SEGMENTS_BITS)))
    return np.append(lut, 0).astype(np.int64)


def _wrap(x: int, bits: int) -> int:
    half = 1 << (bits - 1)
    return (x + half) % (1 << bits) - half


# ----------------------------------------------------------------------------------------------
# KISS FFT, 16-bit fixed point (FIXED_POINT=16), as the C front end calls it: kiss_fftr on the
# windowed frame, i.e. a complex FFT of half size over (even, odd) sample pairs plus a real split.
# ----------------------------------------------------------------------------------------------


def _kiss_factors(n: int) -> list[tuple[int, int]]:
    """kf_factor: radix-4 first, then 2, then odd primes; (radix, remaining length) per stage."""
    factors, p, floor_sqrt = [], 4, math.floor(math.sqrt(n))
    while n > 1:
        while n % p:
            p = {4: 2, 2: 3}.get(p, p + 2)
            if p > floor_sqrt:
                p = n
        n //= p
        factors.append((p, n))
    return factors


def _kiss_plan(n: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Input order of the recursive decimation-in-time and its stages (radix, m, fstride), deepest first."""
    factors = _kiss_factors(n)
    if any(p not in (2, 4) for p, _ in factors):
        raise ValueError(f"micro front end: FFT size {2 * n} needs radix {factors}; only powers of two are supported")
    order = np.zeros(n, np.int64)

    def work(out: int, f: int, fstride: int, depth: int) -> None:
        p, m = factors[depth]
        for j in range(p):
            if m == 1:
                order[out + j] = f + j * fstride
            else:
                work(out + j * m, f + j * fstride, fstride * p, depth + 1)

    work(0, 0, 1, 0)
    stages, fstride = [], 1
    for p, m in factors:
        stages.append((p, m, fstride))
        fstride *= p
    return order, stages[::-1]


def _twiddles(n: int, phases: np.ndarray) -> np.ndarray:
    """kf_cexp in Q15: floor(0.5 + 32767 * cos/sin(phase)), as int pairs [len, 2]."""
    return np.stack([np.floor(0.5 + 32767 * np.cos(phases)), np.floor(0.5 + 32767 * np.sin(phases))], -1).astype(np.int64)


def _wrap16(x: Tensor) -> Tensor:
    """Store into int16, wrapping like the C assignment."""
    return x.to(torch.int16).to(x.dtype)


def _sround(x: Tensor, wrap: bool = True) -> Tensor:
    """(x + 2^14) >> 15, stored into int16 (``wrap=False`` where the result provably fits)."""
    x = (x + (1 << 14)) >> 15
    return _wrap16(x) if wrap else x


def _fixdiv(re: Tensor, im: Tensor, div: int) -> tuple[Tensor, Tensor]:
    # |x * (32767 // div)| / 2^15 < 2^15 / div: always fits in int16.
    k = 32767 // div
    return _sround(re * k, False), _sround(im * k, False)


def _cmul(ar: Tensor, ai: Tensor, br: Tensor, bi: Tensor, wrap: bool = True) -> tuple[Tensor, Tensor]:
    return _sround(ar * br - ai * bi, wrap), _sround(ar * bi + ai * br, wrap)


class _KissFftr16(nn.Module):
    """kiss_fftr (forward, 16-bit fixed point) over the last dimension of an int tensor."""

    def __init__(self, nfft: int):
        super().__init__()
        ncfft = nfft // 2
        order, self.stages = _kiss_plan(ncfft)
        self.ncfft = ncfft
        self.register_buffer("order", torch.from_numpy(order), persistent=False)
        tw = _twiddles(ncfft, -2 * math.pi * np.arange(ncfft) / ncfft)
        self.register_buffer("twiddles", torch.from_numpy(tw).to(torch.int32), persistent=False)
        k = np.arange(1, ncfft // 2 + 1)
        super_tw = _twiddles(ncfft, -3.14159265358979323846264338327 * (k / ncfft + 0.5))
        self.register_buffer("super_twiddles", torch.from_numpy(super_tw).to(torch.int32), persistent=False)
        # Each stage's twiddles for butterfly legs 1..p-1, as (re, im) [p - 1, m].
        for i, (p, m, fstride) in enumerate(self.stages):
            index = (np.arange(1, p)[:, None] * fstride * np.arange(m)[None]) % ncfft
            self.register_buffer(f"stage{i}_twiddles", torch.from_numpy(tw[index]).to(torch.int32).movedim(-1, 0).contiguous(), persistent=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: int32 [..., nfft] real samples -> (re, im) int32 [..., nfft/2 + 1]."""
        pairs = x.reshape(*x.shape[:-1], -1, 2).index_select(-2, self.order)
        re, im = pairs[..., 0], pairs[..., 1]
        shape = re.shape[:-1]
        for i, (p, m, _) in enumerate(self.stages):
            re = re.reshape(*shape, -1, p, m)
            im = im.reshape(*shape, -1, p, m)
            tw_r, tw_i = getattr(self, f"stage{i}_twiddles")
            re, im = (self._bfly4 if p == 4 else self._bfly2)(re, im, tw_r, tw_i)
        re, im = re.reshape(*shape, -1), im.reshape(*shape, -1)
        return self._split_real(re, im)

    # The butterflies work on all legs at once (few large tensor ops: the op count, not the
    # arithmetic, bounds the speed on a CPU).
    @staticmethod
    def _bfly2(re: Tensor, im: Tensor, tw_r: Tensor, tw_i: Tensor) -> tuple[Tensor, Tensor]:
        fr, fi = _fixdiv(re, im, 2)
        tr, ti = _cmul(fr[..., 1, :], fi[..., 1, :], tw_r[0], tw_i[0], wrap=False)  # |f1| <= 2^14
        f0r, f0i = fr[..., 0, :], fi[..., 0, :]
        out_r = torch.stack([f0r + tr, f0r - tr], -2)
        out_i = torch.stack([f0i + ti, f0i - ti], -2)
        return _wrap16(out_r), _wrap16(out_i)

    @staticmethod
    def _bfly4(re: Tensor, im: Tensor, tw_r: Tensor, tw_i: Tensor) -> tuple[Tensor, Tensor]:
        fr, fi = _fixdiv(re, im, 4)
        # After the divide by 4, |f| <= 2^13, so the twiddle products fit in int16 unwrapped.
        sr, si = _cmul(fr[..., 1:, :], fi[..., 1:, :], tw_r, tw_i, wrap=False)  # legs 1, 2, 3
        # The C code stores every sum into int16; wrapping is modular, so one wrap per output
        # equals wrapping each intermediate sum.
        f0r, f0i = fr[..., 0, :], fi[..., 0, :]
        s5r, s5i = f0r - sr[..., 1, :], f0i - si[..., 1, :]
        f0r, f0i = f0r + sr[..., 1, :], f0i + si[..., 1, :]
        s3r, s3i = sr[..., 0, :] + sr[..., 2, :], si[..., 0, :] + si[..., 2, :]
        s4r, s4i = sr[..., 0, :] - sr[..., 2, :], si[..., 0, :] - si[..., 2, :]
        out_r = torch.stack([f0r + s3r, s5r + s4i, f0r - s3r, s5r - s4i], -2)
        out_i = torch.stack([f0i + s3i, s5i - s4r, f0i - s3i, s5i + s4r], -2)
        return _wrap16(out_r), _wrap16(out_i)

    def _split_real(self, re: Tensor, im: Tensor) -> tuple[Tensor, Tensor]:
        """The kiss_fftr post-pass that turns the half-size complex FFT into the real spectrum."""
        n = self.ncfft
        dc_r, dc_i = _fixdiv(re[..., :1], im[..., :1], 2)
        k = torch.arange(1, n // 2 + 1, device=re.device)
        fpk_r, fpk_i = _fixdiv(re[..., k], im[..., k], 2)
        fpnk_r, fpnk_i = _fixdiv(re[..., n - k], _wrap16(-im[..., n - k]), 2)
        f1r, f1i = _wrap16(fpk_r + fpnk_r), _wrap16(fpk_i + fpnk_i)
        f2r, f2i = _wrap16(fpk_r - fpnk_r), _wrap16(fpk_i - fpnk_i)
        twr, twi = _cmul(f2r, f2i, self.super_twiddles[:, 0], self.super_twiddles[:, 1])
        lo_r, lo_i = _wrap16((f1r + twr) >> 1), _wrap16((f1i + twi) >> 1)  # bins k
        hi_r, hi_i = _wrap16((f1r - twr) >> 1), _wrap16((twi - f1i) >> 1)  # bins n - k
        zero = torch.zeros_like(dc_r)
        # Bin n/2 is written twice in the C loop; the second (the n - k) write wins.
        out_r = torch.cat([_wrap16(dc_r + dc_i), lo_r[..., :-1], hi_r.flip(-1), _wrap16(dc_r - dc_i)], -1)
        out_i = torch.cat([zero, lo_i[..., :-1], hi_i.flip(-1), zero], -1)
        return out_r, out_i


# ----------------------------------------------------------------------------------------------
# The front end
# ----------------------------------------------------------------------------------------------


def _bit_length(x: Tensor) -> Tensor:
    """MostSignificantBit32/64: number of bits needed for non-negative integers (0 for 0)."""
    return torch.frexp(x.to(torch.float64)).exponent.to(x.dtype)


CPU_CHUNK_CLIPS = 25  # clips per pass on a CPU (see MicroFrontend.forward)


class MicroFrontend(nn.Module):
    """Batched, bit-exact TFLM micro front end.

    Input: int16 (or integer-valued) audio ``[batch, samples]``. Output: the front end's uint16
    values as int64 ``[batch, frames, num_channels]``, frames = 1 + (samples - window) // stride.
    Every clip starts from a fresh front-end state, as the TensorFlow op does per call.

    Example::

        fe = MicroFrontend(MicroFrontendConfig())
        values = fe(torch.from_numpy(int16_audio)[None])  # [1, 49, 40]
    """

    def __init__(self, cfg: MicroFrontendConfig = MicroFrontendConfig()):
        super().__init__()
        if cfg.window_samples < 2 or cfg.stride_samples < 1:
            raise ValueError(f"micro front end: window {cfg.window_ms} ms / stride {cfg.stride_ms} ms is too short at {cfg.sample_rate} Hz")
        if not 0 < cfg.lower_band_limit < cfg.upper_band_limit:
            raise ValueError("micro front end: need 0 < lower_band_limit < upper_band_limit")
        self.cfg = cfg
        self.register_buffer("window", torch.from_numpy(hann_window_q12(cfg.window_samples)).to(torch.int32), persistent=False)
        self.fft = _KissFftr16(cfg.fft_size)
        weights, self.start_index, self.end_index = filterbank_matrix(cfg)
        # float64 holds the integer sums exactly (they stay below 2^53), and matmul is fast.
        self.register_buffer("filterbank", torch.from_numpy(weights).to(torch.float64), persistent=False)
        smoothing = [cfg.odd_smoothing if c % 2 else cfg.even_smoothing for c in range(cfg.num_channels)]
        self.register_buffer("smoothing", torch.tensor([int(np.float32(s) * np.float32(1 << NOISE_REDUCTION_BITS)) for s in smoothing]), persistent=False)
        self.min_signal_remaining = int(np.float32(cfg.min_signal_remaining) * np.float32(1 << NOISE_REDUCTION_BITS))
        # Bits the filterbank output is scaled by for the FFT size (3 for a 512-point FFT).
        self.correction_bits = cfg.fft_size.bit_length() - 1 - FILTERBANK_BITS // 2
        self.snr_shift = cfg.gain_bits - self.correction_bits - PCAN_SNR_BITS
        self.register_buffer("gain_lut", torch.from_numpy(pcan_gain_lut(cfg, self.correction_bits)), persistent=False)
        self.register_buffer("log_lut", torch.from_numpy(log_lut()), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        return 1 + (num_samples - self.cfg.window_samples) // self.cfg.stride_samples

    def forward(self, audio: Tensor) -> Tensor:
        cfg = self.cfg
        if audio.dim() != 2 or audio.shape[-1] < cfg.window_samples:
            raise ValueError(f"micro front end: expected int16 audio [batch, samples >= {cfg.window_samples}], got {tuple(audio.shape)}")
        if audio.device.type == "cpu" and len(audio) > CPU_CHUNK_CLIPS:
            # Dozens of element-wise passes per FFT stage: on a CPU they run faster when each
            # pass's tensors stay in cache (1,750 vs 1,350 clips/s for batches of 100, measured
            # while writing this; `make bench` reports the front end's speed).
            return torch.cat([self._features(chunk) for chunk in audio.split(CPU_CHUNK_CLIPS)])
        return self._features(audio)

    def _features(self, audio: Tensor) -> Tensor:
        cfg = self.cfg
        frames = audio.to(torch.int32).unfold(-1, cfg.window_samples, cfg.stride_samples)  # [B, F, W]
        windowed = (frames * self.window) >> WINDOW_BITS
        # Scale each frame up so its peak uses the FFT's 16 bits.
        # (A full-scale -32768 peak would make the C shift -1, undefined behaviour; we use 0.)
        shift = (15 - _bit_length(windowed.abs().amax(-1, keepdim=True))).clamp(min=0)
        fft_in = torch.zeros(*windowed.shape[:-1], cfg.fft_size, dtype=torch.int32, device=audio.device)
        fft_in[..., : cfg.window_samples] = _wrap16(windowed << shift)
        re, im = self.fft(fft_in)
        re, im = re.to(torch.int64), im.to(torch.int64)
        energy = re * re + im * im
        energy[..., : self.start_index] = 0
        energy[..., self.end_index :] = 0
        channels = (energy.to(torch.float64) @ self.filterbank).to(torch.int64)
        signal = self._sqrt(channels) >> shift.to(torch.int64)
        signal = self._noise_reduction_and_pcan(signal)
        return self._log(signal)

    @staticmethod
    def _sqrt(x: Tensor) -> Tensor:
        """Sqrt64: integer square root rounded to nearest, saturating like the C (16 bits below 2^32)."""
        r = torch.sqrt(x.to(torch.float64)).floor().to(torch.int64)
        r = r - (r * r > x).to(torch.int64)
        r = r + ((r + 1) * (r + 1) <= x).to(torch.int64)
        cap = torch.where(x < (1 << 32), 0xFFFF, 0xFFFFFFFF)
        return r + ((x - r * r > r) & (r != cap)).to(torch.int64)

    def _noise_reduction_and_pcan(self, signal: Tensor) -> Tensor:
        """Per-channel noise estimate (a running average over frames) subtracted, then PCAN."""
        bits, mask32 = self.cfg.smoothing_bits, 0xFFFFFFFF
        smoothing = self.smoothing
        # Only the estimate is recursive over frames: run that recursion alone, then the rest
        # on all frames at once.
        s_up = (signal << bits) & mask32
        incoming = s_up * smoothing
        keep = (1 << NOISE_REDUCTION_BITS) - smoothing
        estimate = torch.zeros_like(signal[:, 0])
        estimates = []
        for t in range(signal.shape[1]):
            estimate = ((incoming[:, t] + estimate * keep) >> NOISE_REDUCTION_BITS) & mask32
            estimates.append(estimate)
        estimates = torch.stack(estimates, 1)
        floor = ((signal * self.min_signal_remaining) >> NOISE_REDUCTION_BITS) & mask32
        reduced = torch.maximum((s_up - torch.minimum(estimates, s_up)) >> bits, floor)
        if self.cfg.enable_pcan:
            gain = self._wide_dynamic_function(estimates)
            reduced = self._pcan_shrink(((reduced * gain) >> self.snr_shift) & mask32)
        return reduced

    def _wide_dynamic_function(self, x: Tensor) -> Tensor:
        """PCAN gain for a noise estimate: piecewise-quadratic interpolation per octave."""
        lut = self.gain_lut
        interval = _bit_length(x)
        base = (4 * interval - 6).clamp(min=0)
        frac = torch.where(interval < 11, x << (11 - interval).clamp(min=0), x >> (interval - 11).clamp(min=0)) & 0x3FF
        result = (lut[base + 2] * frac) >> 5
        result = _wrap32(result + lut[base + 1] * 32)
        result = _wrap32(result * frac)
        result = ((result + (1 << 14)) >> 15) + lut[base]
        small = lut[x.clamp(max=2)]
        gain = torch.where(x <= 2, small, _wrap16(result))
        return gain & 0xFFFFFFFF  # int16 -> uint32

    @staticmethod
    def _pcan_shrink(x: Tensor) -> Tensor:
        small = (x * x) >> (2 + 2 * PCAN_SNR_BITS - PCAN_OUTPUT_BITS)
        large = (x >> (PCAN_SNR_BITS - PCAN_OUTPUT_BITS)) - (1 << PCAN_OUTPUT_BITS)
        return torch.where(x < (2 << PCAN_SNR_BITS), small, large)

    def _log(self, signal: Tensor) -> Tensor:
        """LogScaleApply: Q16 log2 via a 128-segment table, times ln 2, scaled by 2^scale_shift."""
        if not self.cfg.enable_log:
            return signal.clamp(max=0xFFFF)
        x = (signal << self.correction_bits) & 0xFFFFFFFF if self.correction_bits >= 0 else signal >> -self.correction_bits
        integer = (_bit_length(x) - 1).clamp(min=0)
        frac = x - (torch.ones_like(x) << integer)
        frac = torch.where(integer < LOG_SCALE_BITS, frac << (LOG_SCALE_BITS - integer).clamp(min=0), frac >> (integer - LOG_SCALE_BITS).clamp(min=0))
        base_seg = frac >> (LOG_SCALE_BITS - LOG_SEGMENTS_BITS)
        seg_unit = (1 << LOG_SCALE_BITS) >> LOG_SEGMENTS_BITS
        c0, c1 = self.log_lut[base_seg], self.log_lut[base_seg + 1]
        rel = ((c1 - c0) * (frac - seg_unit * base_seg)) >> LOG_SCALE_BITS
        log2 = ((integer << LOG_SCALE_BITS) + frac + c0 + rel) & 0xFFFFFFFF
        half = 1 << (LOG_SCALE_BITS - 1)
        loge = (LOG_COEFF * log2 + half) >> LOG_SCALE_BITS
        scaled = (((loge << self.cfg.scale_shift) & 0xFFFFFFFF) + half) >> LOG_SCALE_BITS
        return torch.where(x > 1, scaled, torch.zeros_like(scaled)).clamp(max=0xFFFF)


def _wrap32(x: Tensor) -> Tensor:
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
