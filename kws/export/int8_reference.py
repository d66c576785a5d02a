"""TFLite's integer arithmetic in numpy: an independent reference for the exported int8 graph.

The runtimes implement the same int8 kernels but requantize with one of two roundings, chosen when
the runtime is compiled:

- ``double``: gemmlowp's SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT (two
  roundings). tflite-micro's reference kernels;
- ``single``: one 64-bit multiply, add half, shift (``TFLITE_SINGLE_ROUNDING``). The LiteRT wheel's
  reference kernels.

and a runtime may mix them per kernel: measured on the exported TinyConv, tflite-micro uses double
rounding everywhere, LiteRT's default (XNNPACK) single everywhere, LiteRT's reference kernels double
in CONV_2D but single in FULLY_CONNECTED. A third, ``fp32``, is XNNPACK's own: the accumulator times
a float32 scale, rounded half to even; measured on the exported DS-CNN, LiteRT's default kernels
compute its CONV_2D and DEPTHWISE_CONV_2D so (on TinyConv, single rounding reproduces them). All
round the same real value, so they differ by at most one step, only where the value lies within a
rounding of a half. Running the graph here with each assignment of roundings to ops tells which one
a runtime computes, bit for bit (:func:`matching_roundings`, in :mod:`kws.export.verify`): a
one-step difference between tflite-micro and LiteRT is then the runtimes' rounding, not the export.

Covers the ops TinyConv and DS-CNN export to: RESHAPE, CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED
(int8 activations, int8 per-channel or per-tensor weights, int32 bias, NONE/RELU/RELU6 fused) and
AVERAGE_POOL_2D (no multiplier, so no rounding choice: the sum divided by the count, rounded half
away from zero, as TFLite's reference kernel and CMSIS-NN's do). Left out, irrelevant at these
models' scales: single rounding's clamp for shifts above 30, and the float32 (not double)
arithmetic some TFLite versions use for activation ranges and multipliers.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from kws.export.tflite import parse_model

ROUNDINGS = ("double", "single")  # TFLite's own kernels'
FLOAT_ROUNDING = "fp32"  # XNNPACK's: tried only for a runtime that TFLite's roundings do not explain
# Ops whose result depends on the requantization rounding; the others are exact integer arithmetic.
REQUANTIZING = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
SUPPORTED = ("RESHAPE", "AVERAGE_POOL_2D", *REQUANTIZING)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real = multiplier * 2**(shift - 31), multiplier in [2**30, 2**31)."""
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)
    multiplier = math.floor(fraction * (1 << 31) + 0.5)  # std::round: half away from zero (positive here)
    if multiplier == 1 << 31:
        multiplier //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return multiplier, shift


def _truncating_shift(x: np.ndarray, bits: int) -> np.ndarray:
    """x / 2**bits rounded toward zero, as C's integer division."""
    return np.where(x >= 0, x >> bits, -((-x) >> bits))


def _double_rounding(x: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    product = (x << left) * multiplier
    high = _truncating_shift(
        product + np.where(product >= 0, 1 << 30, 1 - (1 << 30)), 31
    )  # SaturatingRoundingDoublingHighMul
    mask = (np.int64(1) << right) - 1
    threshold = (mask >> 1) + (high < 0)
    return (high >> right) + ((high & mask) > threshold)  # RoundingDivideByPOT


def _single_rounding(x: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    total = 31 - shift
    return (x * multiplier + (np.int64(1) << (total - 1))) >> total


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier, shift, rounding: str) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier on int32 accumulators (int64 array), per element or
    broadcast over the last axis (per channel)."""
    x = np.asarray(x, dtype=np.int64)
    multiplier, shift = np.asarray(multiplier, dtype=np.int64), np.asarray(shift, dtype=np.int64)
    if rounding == "double":
        return _double_rounding(x, multiplier, shift)
    if rounding == "single":
        return _single_rounding(x, multiplier, shift)
    raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")


class Int8Graph:
    """A parsed full-integer .tflite model that runs in numpy with either rounding."""

    def __init__(self, model: bytes):
        from ai_edge_litert import schema_py_generated as schema

        self.schema = schema
        parsed, op_names = parse_model(model)
        if len(parsed.subgraphs) != 1:
            raise ValueError(f"expected one subgraph, the model has {len(parsed.subgraphs)}")
        self.graph = parsed.subgraphs[0]
        self.buffers = parsed.buffers
        self.ops = list(zip(op_names[0], self.graph.operators))
        unsupported = sorted({name for name, _ in self.ops} - set(SUPPORTED))
        if unsupported:
            raise ValueError(f"the numpy int8 reference does not implement {', '.join(unsupported)}")

    # ------------------------------------------------------------------ tensors
    def _tensor(self, index: int):
        return self.graph.tensors[index]

    def constant(self, index: int) -> np.ndarray:
        tensor = self._tensor(index)
        dtype = {self.schema.TensorType.INT8: np.int8, self.schema.TensorType.INT32: np.int32}[tensor.type]
        data = np.asarray(self.buffers[tensor.buffer].data, dtype=np.uint8).tobytes()
        return np.frombuffer(data, dtype=dtype).reshape(tensor.shape).astype(np.int64)

    def quantization(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        q = self._tensor(index).quantization
        return np.asarray(q.scale, dtype=np.float64), np.asarray(q.zeroPoint, dtype=np.int64)

    def _activation_range(self, output: int, fused: int) -> tuple[int, int]:
        """TFLite's CalculateActivationRangeQuantized for an int8 output."""
        scale, zero_point = self.quantization(output)
        low, high = -128, 127
        functions = self.schema.ActivationFunctionType
        quantized = lambda real: int(zero_point[0]) + round_half_away(real / float(scale[0]))  # noqa: E731
        if fused == functions.RELU:
            low = max(low, quantized(0.0))
        elif fused == functions.RELU6:
            low, high = max(low, quantized(0.0)), min(high, quantized(6.0))
        elif fused != functions.NONE:
            raise ValueError(f"fused activation {fused} is not implemented")
        return low, high

    def _requantize(
        self, accumulator: np.ndarray, input_index: int, filter_index: int, output: int, fused: int, rounding: str
    ) -> np.ndarray:
        input_scale, _ = self.quantization(input_index)
        filter_scale, _ = self.quantization(filter_index)
        output_scale, output_zero_point = self.quantization(output)
        if rounding == FLOAT_ROUNDING:  # XNNPACK: float32 scale = input * filter / output, lrintf
            scale = np.float32(input_scale[0]) * filter_scale.astype(np.float32) / np.float32(output_scale[0])
            result = np.rint(accumulator.astype(np.float32) * scale).astype(np.int64) + output_zero_point[0]
            return np.clip(result, *self._activation_range(output, fused))
        # float32 scales widened to double before multiplying, as the runtimes do
        pairs = [quantize_multiplier(float(input_scale[0]) * float(s) / float(output_scale[0])) for s in filter_scale]
        multiplier, shift = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        result = multiply_by_quantized_multiplier(accumulator, multiplier, shift, rounding) + output_zero_point[0]
        return np.clip(result, *self._activation_range(output, fused))

    # ------------------------------------------------------------------ ops
    def _tap_sum(self, options, x: np.ndarray, kh: int, kw: int, term) -> np.ndarray:
        """Sum over the kernel's taps (i, j) of ``term(i, j, inputs under tap (i, j))`` for a
        CONV_2D, DEPTHWISE_CONV_2D or pooling op with ``options`` (stride, SAME/VALID padding):
        one strided slice per tap, no [n, H, W, C, kh, kw] patch array. Points outside the image
        are zeros (centred inputs: no contribution, as the kernels skip them)."""
        n, height, width, _ = x.shape
        sh, sw = options.strideH, options.strideW
        if options.padding == self.schema.Padding.SAME:
            out_h, out_w = -(-height // sh), -(-width // sw)
            pad_h = max((out_h - 1) * sh + kh - height, 0)
            pad_w = max((out_w - 1) * sw + kw - width, 0)
        else:
            out_h, out_w = (height - kh) // sh + 1, (width - kw) // sw + 1
            pad_h = pad_w = 0
        padded = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
        total = 0
        for i in range(kh):
            for j in range(kw):
                total = total + term(
                    i, j, padded[:, i : i + (out_h - 1) * sh + 1 : sh, j : j + (out_w - 1) * sw + 1 : sw]
                )
        return total

    def _conv(self, op, x: np.ndarray, rounding: str, depthwise: bool = False) -> np.ndarray:
        options = op.builtinOptions
        if options.dilationHFactor != 1 or options.dilationWFactor != 1:
            raise ValueError("dilated convolutions are not implemented")
        input_index, filter_index, bias_index = op.inputs[:3]
        # CONV_2D: [out_channels, kh, kw, in_channels]; DEPTHWISE_CONV_2D: [1, kh, kw, out_channels].
        # Sums of int8 products in float64 (BLAS): exact below 2**53, far above any int32 accumulator.
        weights = self.constant(filter_index).astype(np.float64)
        _, input_zero_point = self.quantization(input_index)
        centred = (x - input_zero_point[0]).astype(np.float64)
        if depthwise:
            multiplier = options.depthMultiplier  # output channel c * multiplier + m reads input channel c
            term = lambda i, j, tap: (np.repeat(tap, multiplier, axis=3) if multiplier != 1 else tap) * weights[0, i, j]  # noqa: E731
        else:
            term = lambda i, j, tap: tap @ weights[:, i, j, :].T  # noqa: E731
        accumulator = np.rint(self._tap_sum(options, centred, weights.shape[1], weights.shape[2], term)).astype(
            np.int64
        )
        if bias_index >= 0:
            accumulator = accumulator + self.constant(bias_index)
        return self._requantize(
            accumulator, input_index, filter_index, op.outputs[0], options.fusedActivationFunction, rounding
        )

    def _average_pool(self, op, x: np.ndarray) -> np.ndarray:
        """TFLite's int8 AveragePool: input and output share scale and zero point; the sum of the
        window's points inside the image over their count, rounded half away from zero (C's
        truncating division of sum +- count / 2), then the fused activation's clamp."""
        options = op.builtinOptions
        (in_scale, in_zero), (out_scale, out_zero) = self.quantization(op.inputs[0]), self.quantization(op.outputs[0])
        if not (np.array_equal(in_scale, out_scale) and np.array_equal(in_zero, out_zero)):
            raise ValueError("AVERAGE_POOL_2D with different input and output quantization is not implemented")
        kh, kw = options.filterHeight, options.filterWidth
        total = self._tap_sum(options, x, kh, kw, lambda i, j, tap: tap)
        inside = self._tap_sum(options, np.ones_like(x[:1]), kh, kw, lambda i, j, tap: tap)
        average = _truncating_divide(np.where(total > 0, total + inside // 2, total - inside // 2), inside)
        return np.clip(average, *self._activation_range(op.outputs[0], options.fusedActivationFunction))

    def _fully_connected(self, op, x: np.ndarray, rounding: str) -> np.ndarray:
        options = op.builtinOptions
        input_index, filter_index, bias_index = op.inputs[:3]
        weights = self.constant(filter_index)  # [units, depth]
        _, input_zero_point = self.quantization(input_index)
        _, filter_zero_point = self.quantization(filter_index)
        rows = x.reshape(-1, weights.shape[1]) - input_zero_point[0]
        accumulator = rows @ (weights - filter_zero_point[0]).T
        if bias_index >= 0:
            accumulator = accumulator + self.constant(bias_index)
        return self._requantize(
            accumulator, input_index, filter_index, op.outputs[0], options.fusedActivationFunction, rounding
        )

    @property
    def requantizing_ops(self) -> list[str]:
        """The op types that requantize (whose results depend on the rounding), in graph order."""
        return list(dict.fromkeys(name for name, _ in self.ops if name in REQUANTIZING))

    def run(self, inputs: np.ndarray, rounding: str | dict[str, str]) -> np.ndarray:
        """int8 outputs of a batch of int8 inputs [n, ...] (each example shaped as the model's
        input); ``rounding``: one for every op, or per op type ({"CONV_2D": "double", ...})."""
        per_op = rounding if isinstance(rounding, dict) else dict.fromkeys(self.requantizing_ops, rounding)
        return self.run_many(inputs, [per_op])[0]

    def run_many(self, inputs: np.ndarray, assignments: list[dict[str, str]]) -> list[np.ndarray]:
        """:meth:`run` for each assignment of roundings to op types, every op computed once per
        distinct assignment of the op types met so far (the assignments share their prefixes)."""
        for assignment in assignments:
            for op, value in assignment.items():
                if value not in (*ROUNDINGS, FLOAT_ROUNDING):
                    raise ValueError(f"rounding must be one of {(*ROUNDINGS, FLOAT_ROUNDING)}, got {value!r}")
            missing = set(self.requantizing_ops) - set(assignment)
            if missing:
                raise ValueError(f"no rounding given for {sorted(missing)}")
        last_read = {t: k for k, (_, op) in enumerate(self.ops) for t in op.inputs}
        n, seen = len(inputs), []
        states = {(): {self.graph.inputs[0]: np.asarray(inputs, dtype=np.int64)}}  # prefix of modes -> live tensors
        for k, (name, op) in enumerate(self.ops):
            if name in REQUANTIZING and name not in seen:
                seen.append(name)
                states = {
                    key: dict(states[key[:-1]]) for key in dict.fromkeys(tuple(a[t] for t in seen) for a in assignments)
                }
            for key, values in states.items():
                values[op.outputs[0]] = self._op(
                    name, op, values[op.inputs[0]], n, key[seen.index(name)] if name in REQUANTIZING else None
                )
                for t in [t for t in values if last_read.get(t, -1) <= k and t != self.graph.outputs[0]]:
                    del values[t]  # read by no later op
        return [
            states[tuple(a[t] for t in seen)][self.graph.outputs[0]].reshape(n, -1).astype(np.int8) for a in assignments
        ]

    def _op(self, name: str, op, x: np.ndarray, n: int, rounding: str | None) -> np.ndarray:
        shape = [n, *self._tensor(op.outputs[0]).shape[1:]]
        if name == "RESHAPE":
            return x.reshape(shape)
        x_shape = [n, *self._tensor(op.inputs[0]).shape[1:]]
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            return self._conv(op, x.reshape(x_shape), rounding, depthwise=name == "DEPTHWISE_CONV_2D")
        if name == "AVERAGE_POOL_2D":
            return self._average_pool(op, x.reshape(x_shape))
        return self._fully_connected(op, x, rounding).reshape(shape)


def _truncating_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b rounded toward zero, as C's integer division (b > 0)."""
    return np.sign(a) * (np.abs(a) // b)


def round_half_away(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def matching_roundings(
    graph: Int8Graph, inputs: np.ndarray, outputs: dict[str, np.ndarray]
) -> dict[str, dict[str, list[str]] | None]:
    """For each runtime's raw int8 outputs (name -> [n, classes]) of ``inputs``: per op type, the
    roundings with which the numpy run equals them bit for bit (several, where no value of that op
    fell where they differ), or None when no assignment matches. TFLite's two roundings are tried
    first; XNNPACK's ``fp32`` joins them only for a runtime they do not explain."""
    ops = graph.requantizing_ops
    found = dict.fromkeys(outputs)
    for modes in (ROUNDINGS, (*ROUNDINGS, FLOAT_ROUNDING)):
        unexplained = [name for name, result in found.items() if result is None]
        if not unexplained:
            break
        assignments = [dict(zip(ops, choice)) for choice in itertools.product(modes, repeat=len(ops))]
        expected = graph.run_many(inputs, assignments)
        for name in unexplained:
            got = np.asarray(outputs[name])
            matches = [a for a, e in zip(assignments, expected) if np.array_equal(e, got.reshape(e.shape))]
            found[name] = {op: sorted({a[op] for a in matches}) for op in ops} if matches else None
    return found
