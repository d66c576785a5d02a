"""kws.int8_reference's requantization against TFLite's definitions, written out here with Python's
exact integers (gemmlowp's SaturatingRoundingDoublingHighMul + RoundingDivideByPOT, and
TFLITE_SINGLE_ROUNDING's 64-bit multiply-round-shift). The whole-graph check against tflite-micro
and LiteRT is in test_export.py."""

import numpy as np
import pytest

from kws.export.int8_reference import multiply_by_quantized_multiplier, quantize_multiplier


def gemmlowp_double(x: int, multiplier: int, shift: int) -> int:
    x = x * (1 << max(shift, 0))
    product = x * multiplier
    nudge = (1 << 30) if product >= 0 else 1 - (1 << 30)
    total = product + nudge
    high = abs(total) >> 31 if total >= 0 else -(abs(total) >> 31)  # C division: toward zero
    exponent = max(-shift, 0)
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> exponent) + (1 if (high & mask) > threshold else 0)


def single(x: int, multiplier: int, shift: int) -> int:
    total = 31 - shift
    return (x * multiplier + (1 << (total - 1))) >> total


@pytest.mark.parametrize("real", [0.5, 0.75, 1e-3, 0.0123456789, 0.999999999, 1.5, 3e-6])
def test_quantize_multiplier_represents_the_real_multiplier(real):
    multiplier, shift = quantize_multiplier(real)
    assert 2**30 <= multiplier < 2**31
    assert abs(multiplier * 2.0 ** (shift - 31) - real) <= 2.0 ** (shift - 32)
    assert quantize_multiplier(0.0) == (0, 0)


def test_roundings_match_their_definitions_and_differ_by_at_most_one():
    rng = np.random.default_rng(0)
    x = rng.integers(-(2**20), 2**20, size=4000)
    reals = rng.uniform(1e-4, 0.9, size=4000)
    pairs = [quantize_multiplier(r) for r in reals]
    multiplier, shift = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    double = multiply_by_quantized_multiplier(x, multiplier, shift, "double")
    single_rounded = multiply_by_quantized_multiplier(x, multiplier, shift, "single")
    assert double.tolist() == [gemmlowp_double(int(a), int(m), int(s)) for a, m, s in zip(x, multiplier, shift)]
    assert single_rounded.tolist() == [single(int(a), int(m), int(s)) for a, m, s in zip(x, multiplier, shift)]
    exact = np.array([int(a) * int(m) / 2.0 ** (31 - int(s)) for a, m, s in zip(x, multiplier, shift)])
    assert np.abs(single_rounded - exact).max() <= 0.5 + 1e-9  # one rounding: nearest
    assert np.abs(double - single_rounded).max() == 1 and (double != single_rounded).any()


def test_unknown_rounding_is_an_error():
    with pytest.raises(ValueError, match="rounding"):
        multiply_by_quantized_multiplier(np.array([1]), 2**30, 0, "nearest")
