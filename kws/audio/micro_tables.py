"""The TFLM micro front end's configuration and constant tables.

Every table is computed once per configuration with the C implementation's float32/float64
rounding, so that the integer arithmetic that uses them (:mod:`kws.audio.micro_functional`) is
bit-exact with TensorFlow's ``audio_microfrontend`` op. The firmware's C front end gets the same
tables as a generated header (:mod:`kws.export.frontend_tables`): one definition of each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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

    def __post_init__(self) -> None:
        if self.window_samples < 2 or self.stride_samples < 1:
            raise ValueError(
                f"micro front end: window {self.window_ms} ms / stride {self.stride_ms} ms is too "
                f"short at {self.sample_rate} Hz"
            )
        if not 0 < self.lower_band_limit < self.upper_band_limit:
            raise ValueError("micro front end: need 0 < lower_band_limit < upper_band_limit")

    @property
    def window_samples(self) -> int:
        return self.window_ms * self.sample_rate // 1000

    @property
    def stride_samples(self) -> int:
        return self.stride_ms * self.sample_rate // 1000

    @property
    def fft_size(self) -> int:
        return 1 << max(self.window_samples - 1, 1).bit_length()

    @property
    def correction_bits(self) -> int:
        """Bits the filterbank output is scaled by for the FFT size (3 for a 512-point FFT)."""
        return self.fft_size.bit_length() - 1 - FILTERBANK_BITS // 2

    @property
    def snr_shift(self) -> int:
        """Right shift of PCAN's gain product."""
        return self.gain_bits - self.correction_bits - PCAN_SNR_BITS

    def noise_smoothing(self) -> np.ndarray:
        """Per-channel smoothing coefficients of the noise estimate, Q14 (even, odd channels)."""
        smoothing = [self.odd_smoothing if c % 2 else self.even_smoothing for c in range(self.num_channels)]
        return np.array([int(np.float32(s) * np.float32(1 << NOISE_REDUCTION_BITS)) for s in smoothing], np.int64)

    @property
    def min_signal_remaining_q14(self) -> int:
        return int(np.float32(self.min_signal_remaining) * np.float32(1 << NOISE_REDUCTION_BITS))


def hann_window_q12(size: int) -> np.ndarray:
    """The window's int16 coefficients: floor(w * 2^12 + 0.5), w computed in float32 like the C."""
    arg = np.float32(math.pi * 2.0 / size)
    i = np.arange(size, dtype=np.float64)
    w = (0.5 - 0.5 * np.cos(np.float64(arg) * (i + 0.5))).astype(np.float32)
    return np.floor(w.astype(np.float64) * (1 << WINDOW_BITS) + 0.5).astype(np.int64)


def _freq_to_mel(freq: np.ndarray | float) -> np.ndarray:
    return np.float32(1127.0 * np.log1p(np.float64(np.float32(freq)) / 700.0))


def filterbank_matrix(cfg: MicroFrontendConfig) -> tuple[np.ndarray, int, int]:
    """Integer weights ``[spectrum_size, num_channels]`` of the mel filterbank, and the first and
    one-past-last FFT bins it reads.

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
    too_high = (
        f"micro front end: upper_band_limit {cfg.upper_band_limit} Hz lies above the spectrum; "
        f"lower it below {cfg.sample_rate / 2} Hz"
    )

    weights = np.zeros((spectrum_size, n), np.int64)
    unweights = np.zeros((spectrum_size, n), np.int64)
    freq = start_index
    end_index = 0
    for chan in range(n):
        lower = mel_low if chan == 0 else centers[chan - 1]
        while _freq_to_mel(np.float32(np.float32(freq) * hz_per_bin)) <= centers[chan]:
            if freq >= spectrum_size:
                raise ValueError(too_high)
            w = np.float32(
                np.float32(centers[chan] - _freq_to_mel(np.float32(np.float32(freq) * hz_per_bin)))
                / np.float32(centers[chan] - lower)
            )
            weights[freq, chan] = math.floor(np.float64(np.float32(w * np.float32(1 << FILTERBANK_BITS))) + 0.5)
            unweights[freq, chan] = math.floor((1.0 - np.float64(w)) * (1 << FILTERBANK_BITS) + 0.5)
            freq += 1
        end_index = max(end_index, freq)
    if end_index >= spectrum_size:
        raise ValueError(too_high)
    # Output channel c (1..n-1) = weights of channel c + unweights of channel c - 1.
    return weights[:, 1:] + unweights[:, :-1], start_index, end_index


def pcan_gain_lut(cfg: MicroFrontendConfig) -> np.ndarray:
    """The piecewise-quadratic gain table of PCAN: entries [0], [1], then (y0, a1, a2, pad) per octave."""
    input_bits = cfg.smoothing_bits - cfg.correction_bits

    def gain(x: int) -> int:
        x_f = np.float32(np.float32(x) / np.float32(1 << input_bits))
        g = np.float32(
            np.float32(1 << cfg.gain_bits)
            * np.power(np.float32(x_f + np.float32(cfg.pcan_offset)), np.float32(-cfg.pcan_strength))
        )
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
        lut[base : base + 3] = [y0, wrap(a1, 16), wrap(a2, 16)]
    return lut


def log_lut() -> np.ndarray:
    """Correction table of the Q16 log2: 65536 * (log2(1 + i/128) - i/128), rounded, plus a 0 pad."""
    i = np.arange(1 << LOG_SEGMENTS_BITS | 1)
    lut = np.round((1 << LOG_SCALE_BITS) * (np.log2(1 + i / (1 << LOG_SEGMENTS_BITS)) - i / (1 << LOG_SEGMENTS_BITS)))
    return np.append(lut, 0).astype(np.int64)


def wrap(x: int, bits: int) -> int:
    """``x`` stored into a signed integer of ``bits`` bits (two's complement wrap-around)."""
    half = 1 << (bits - 1)
    return (x + half) % (1 << bits) - half


# KISS FFT (16-bit fixed point, as the C front end calls it: kiss_fftr on the windowed frame, i.e.
# a complex FFT of half size over (even, odd) sample pairs plus a real split).


def kiss_factors(n: int) -> list[tuple[int, int]]:
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


def kiss_plan(n: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Input order of the recursive decimation-in-time of an ``n``-point complex FFT and its
    stages (radix, m, fstride), deepest first."""
    factors = kiss_factors(n)
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


def twiddles_q15(phases: np.ndarray) -> np.ndarray:
    """kf_cexp in Q15: floor(0.5 + 32767 * cos/sin(phase)), as int pairs [len, 2]."""
    return np.stack([np.floor(0.5 + 32767 * np.cos(phases)), np.floor(0.5 + 32767 * np.sin(phases))], -1).astype(
        np.int64
    )


def fft_twiddles(ncfft: int) -> np.ndarray:
    """The complex FFT's twiddles exp(-2 pi i k / ncfft), Q15 [ncfft, 2]."""
    return twiddles_q15(-2 * math.pi * np.arange(ncfft) / ncfft)


def super_twiddles(ncfft: int) -> np.ndarray:
    """The real split's twiddles for k = 1 .. ncfft/2, Q15 [ncfft/2, 2] (kiss_fftr's own pi)."""
    k = np.arange(1, ncfft // 2 + 1)
    return twiddles_q15(-3.14159265358979323846264338327 * (k / ncfft + 0.5))
