"""The micro front end's stages as pure functions on integer tensors, one per DSP stage of TFLM's
``microfrontend/lib`` and of the firmware's C twin (``firmware/micro_frontend.c``), so that each
stage can be checked alone. :class:`kws.audio.micro_frontend.MicroFrontend` chains them.

Values live in int32/int64 tensors; where the C code stores into a narrower type (int16, uint32)
the same wrap-around is applied, so overflow behaves as on the device. Shapes: ``[..., frames, x]``
(any leading batch dimensions). Custom code rather than torch.fft/torchaudio because the board
computes in fixed point, and training must see its exact integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from kws.audio.micro_tables import (
    LOG_COEFF,
    LOG_SCALE_BITS,
    LOG_SEGMENTS_BITS,
    NOISE_REDUCTION_BITS,
    PCAN_OUTPUT_BITS,
    PCAN_SNR_BITS,
    WINDOW_BITS,
)

MASK32 = 0xFFFFFFFF


def wrap16(x: Tensor) -> Tensor:
    """Store into int16, wrapping like the C assignment."""
    return x.to(torch.int16).to(x.dtype)


def wrap32(x: Tensor) -> Tensor:
    """Store into int32, wrapping like the C assignment."""
    return ((x + (1 << 31)) & MASK32) - (1 << 31)


def bit_length(x: Tensor) -> Tensor:
    """MostSignificantBit32/64: number of bits needed for non-negative integers (0 for 0)."""
    return torch.frexp(x.to(torch.float64)).exponent.to(x.dtype)


# ------------------------------------------------------------------------------ 1. window
def window_and_scale(frames: Tensor, window: Tensor, fft_size: int) -> tuple[Tensor, Tensor]:
    """Q12 Hann window, then each frame shifted left so its peak uses the FFT's 16 bits.

    ``frames``: int32 [..., window] samples. Returns (FFT input int32 [..., fft_size], zero
    padded; the shift [..., 1]). A full-scale -32768 peak would make the C shift -1 (undefined
    behaviour); the shift is 0 there."""
    windowed = (frames * window) >> WINDOW_BITS
    shift = (15 - bit_length(windowed.abs().amax(-1, keepdim=True))).clamp(min=0)
    out = torch.zeros(*windowed.shape[:-1], fft_size, dtype=torch.int32, device=frames.device)
    out[..., : frames.shape[-1]] = wrap16(windowed << shift)
    return out, shift


# --------------------------------------------------------------------------------- 2. FFT
@dataclass
class FftTables:
    """The plan of a 16-bit KISS ``kiss_fftr``: input order, stages (radix, m, fstride) deepest
    first, each stage's twiddles for legs 1..p-1 as int32 (re, im) [2, p - 1, m], and the real
    split's super twiddles int32 [ncfft/2, 2]."""

    ncfft: int
    order: Tensor
    stages: list[tuple[int, int, int]]
    stage_twiddles: list[Tensor]
    super_twiddles: Tensor


def _sround(x: Tensor, wrap: bool = True) -> Tensor:
    """(x + 2^14) >> 15, stored into int16 (``wrap=False`` where the result provably fits)."""
    x = (x + (1 << 14)) >> 15
    return wrap16(x) if wrap else x


def _fixdiv(re: Tensor, im: Tensor, div: int) -> tuple[Tensor, Tensor]:
    # |x * (32767 // div)| / 2^15 < 2^15 / div: always fits in int16.
    k = 32767 // div
    return _sround(re * k, False), _sround(im * k, False)


def _cmul(ar: Tensor, ai: Tensor, br: Tensor, bi: Tensor, wrap: bool = True) -> tuple[Tensor, Tensor]:
    return _sround(ar * br - ai * bi, wrap), _sround(ar * bi + ai * br, wrap)


# The butterflies work on all legs at once (few large tensor ops: the op count, not the
# arithmetic, bounds the speed on a CPU).
def _bfly2(re: Tensor, im: Tensor, tw_r: Tensor, tw_i: Tensor) -> tuple[Tensor, Tensor]:
    fr, fi = _fixdiv(re, im, 2)
    tr, ti = _cmul(fr[..., 1, :], fi[..., 1, :], tw_r[0], tw_i[0], wrap=False)  # |f1| <= 2^14
    f0r, f0i = fr[..., 0, :], fi[..., 0, :]
    return wrap16(torch.stack([f0r + tr, f0r - tr], -2)), wrap16(torch.stack([f0i + ti, f0i - ti], -2))


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
    return wrap16(out_r), wrap16(out_i)


def _split_real(re: Tensor, im: Tensor, super_twiddles: Tensor) -> tuple[Tensor, Tensor]:
    """The kiss_fftr post-pass that turns the half-size complex FFT into the real spectrum."""
    n = re.shape[-1]
    dc_r, dc_i = _fixdiv(re[..., :1], im[..., :1], 2)
    k = torch.arange(1, n // 2 + 1, device=re.device)
    fpk_r, fpk_i = _fixdiv(re[..., k], im[..., k], 2)
    fpnk_r, fpnk_i = _fixdiv(re[..., n - k], wrap16(-im[..., n - k]), 2)
    f1r, f1i = wrap16(fpk_r + fpnk_r), wrap16(fpk_i + fpnk_i)
    f2r, f2i = wrap16(fpk_r - fpnk_r), wrap16(fpk_i - fpnk_i)
    twr, twi = _cmul(f2r, f2i, super_twiddles[:, 0], super_twiddles[:, 1])
    lo_r, lo_i = wrap16((f1r + twr) >> 1), wrap16((f1i + twi) >> 1)  # bins k
    hi_r, hi_i = wrap16((f1r - twr) >> 1), wrap16((twi - f1i) >> 1)  # bins n - k
    zero = torch.zeros_like(dc_r)
    # Bin n/2 is written twice in the C loop; the second (the n - k) write wins.
    out_r = torch.cat([wrap16(dc_r + dc_i), lo_r[..., :-1], hi_r.flip(-1), wrap16(dc_r - dc_i)], -1)
    out_i = torch.cat([zero, lo_i[..., :-1], hi_i.flip(-1), zero], -1)
    return out_r, out_i


def kiss_fftr16(x: Tensor, tables: FftTables) -> tuple[Tensor, Tensor]:
    """kiss_fftr (forward, 16-bit fixed point): int32 [..., 2 * ncfft] real samples -> (re, im)
    int32 [..., ncfft + 1]."""
    pairs = x.reshape(*x.shape[:-1], -1, 2).index_select(-2, tables.order)
    re, im = pairs[..., 0], pairs[..., 1]
    shape = re.shape[:-1]
    for (p, m, _), (tw_r, tw_i) in zip(tables.stages, tables.stage_twiddles):
        re, im = re.reshape(*shape, -1, p, m), im.reshape(*shape, -1, p, m)
        re, im = (_bfly4 if p == 4 else _bfly2)(re, im, tw_r, tw_i)
    return _split_real(re.reshape(*shape, -1), im.reshape(*shape, -1), tables.super_twiddles)


# ------------------------------------------------------------------------ 3. filterbank
def filterbank(re: Tensor, im: Tensor, weights: Tensor, start: int, end: int) -> Tensor:
    """Energy re^2 + im^2 of bins [start, end), summed per channel with the 12-bit mel weights
    (``weights``: float64 [spectrum, channels]; float64 holds the integer sums exactly, below
    2^53, and a matmul is fast). Returns the 64-bit channel sums as int64 [..., channels]."""
    re, im = re.to(torch.int64), im.to(torch.int64)
    energy = re * re + im * im
    energy[..., :start] = 0
    energy[..., end:] = 0
    return (energy.to(torch.float64) @ weights).to(torch.int64)


# ------------------------------------------------------------------------------ 4. sqrt
def sqrt_and_unshift(channels: Tensor, shift: Tensor) -> Tensor:
    """Sqrt64: integer square root rounded to nearest, saturating like the C (16 bits below
    2^32), then shifted back by the window stage's scale-up ``shift``."""
    r = torch.sqrt(channels.to(torch.float64)).floor().to(torch.int64)
    r = r - (r * r > channels).to(torch.int64)
    r = r + ((r + 1) * (r + 1) <= channels).to(torch.int64)
    cap = torch.where(channels < (1 << 32), 0xFFFF, 0xFFFFFFFF)
    rounded = r + ((channels - r * r > r) & (r != cap)).to(torch.int64)
    return rounded >> shift.to(torch.int64)


# ------------------------------------------------------------------- 5. noise reduction
def noise_reduction(
    signal: Tensor, smoothing: Tensor, min_signal_remaining: int, smoothing_bits: int, estimate: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Subtract a per-channel running noise estimate, down to a floor of the signal.

    ``signal``: int64 [B, frames, channels]; ``estimate``: the state, int64 [B, channels] noise
    estimate before the first frame (None: zeros, a fresh start). Returns (the reduced signal,
    the estimate after every frame [B, frames, channels]: its last frame is the state to carry on).
    Only the estimate is recursive over frames: that recursion runs alone, the rest on all frames
    at once."""
    s_up = (signal << smoothing_bits) & MASK32
    incoming = s_up * smoothing
    keep = (1 << NOISE_REDUCTION_BITS) - smoothing
    estimate = torch.zeros_like(signal[:, 0]) if estimate is None else estimate.to(signal)
    estimates = []
    for t in range(signal.shape[1]):
        estimate = ((incoming[:, t] + estimate * keep) >> NOISE_REDUCTION_BITS) & MASK32
        estimates.append(estimate)
    estimates = torch.stack(estimates, 1)
    floor = ((signal * min_signal_remaining) >> NOISE_REDUCTION_BITS) & MASK32
    reduced = torch.maximum((s_up - torch.minimum(estimates, s_up)) >> smoothing_bits, floor)
    return reduced, estimates


# --------------------------------------------------------------------------------- 6. PCAN
def _wide_dynamic_function(x: Tensor, lut: Tensor) -> Tensor:
    """PCAN gain for a noise estimate: piecewise-quadratic interpolation per octave."""
    interval = bit_length(x)
    base = (4 * interval - 6).clamp(min=0)
    frac = torch.where(interval < 11, x << (11 - interval).clamp(min=0), x >> (interval - 11).clamp(min=0)) & 0x3FF
    result = (lut[base + 2] * frac) >> 5
    result = wrap32(result + lut[base + 1] * 32)
    result = wrap32(result * frac)
    result = ((result + (1 << 14)) >> 15) + lut[base]
    gain = torch.where(x <= 2, lut[x.clamp(max=2)], wrap16(result))
    return gain & MASK32  # int16 -> uint32


def pcan_gain_control(reduced: Tensor, estimates: Tensor, gain_lut: Tensor, snr_shift: int) -> Tensor:
    """Per-channel automatic gain from the noise estimate, then PCAN's shrink: quadratic below
    2^(SNR_BITS+1), linear above."""
    x = ((reduced * _wide_dynamic_function(estimates, gain_lut)) >> snr_shift) & MASK32
    small = (x * x) >> (2 + 2 * PCAN_SNR_BITS - PCAN_OUTPUT_BITS)
    large = (x >> (PCAN_SNR_BITS - PCAN_OUTPUT_BITS)) - (1 << PCAN_OUTPUT_BITS)
    return torch.where(x < (2 << PCAN_SNR_BITS), small, large)


# ---------------------------------------------------------------------------------- 7. log
def log_scale(signal: Tensor, lut: Tensor, correction_bits: int, scale_shift: int) -> Tensor:
    """LogScaleApply: Q16 log2 via a 128-segment table, times ln 2, scaled by 2^scale_shift,
    saturated to uint16."""
    x = (signal << correction_bits) & MASK32 if correction_bits >= 0 else signal >> -correction_bits
    integer = (bit_length(x) - 1).clamp(min=0)
    frac = x - (torch.ones_like(x) << integer)
    frac = torch.where(
        integer < LOG_SCALE_BITS,
        frac << (LOG_SCALE_BITS - integer).clamp(min=0),
        frac >> (integer - LOG_SCALE_BITS).clamp(min=0),
    )
    base_seg = frac >> (LOG_SCALE_BITS - LOG_SEGMENTS_BITS)
    seg_unit = (1 << LOG_SCALE_BITS) >> LOG_SEGMENTS_BITS
    c0, c1 = lut[base_seg], lut[base_seg + 1]
    rel = ((c1 - c0) * (frac - seg_unit * base_seg)) >> LOG_SCALE_BITS
    log2 = ((integer << LOG_SCALE_BITS) + frac + c0 + rel) & MASK32
    half = 1 << (LOG_SCALE_BITS - 1)
    loge = (LOG_COEFF * log2 + half) >> LOG_SCALE_BITS
    scaled = (((loge << scale_shift) & MASK32) + half) >> LOG_SCALE_BITS
    return torch.where(x > 1, scaled, torch.zeros_like(scaled)).clamp(max=0xFFFF)
