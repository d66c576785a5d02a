"""The int8 TFLite model of a QAT-trained TinyConv, exactly as quantization-aware training left it.

onnx2tf converts the float weights and calibrates its own ranges; for a model whose fake
quantization is TFLite's own scheme (:func:`check_exportable`) :func:`qat_tflite` then rewrites that
int8 flatbuffer through LiteRT's object API (``ModelT``): every tensor's scale and zero point and the
int8 weight / int32 bias buffers come from the QuantWrappers, nothing from the calibration:

- model input = the conv's input range, conv output = the FC's input range, logits = the FC's
  output range (``quantize_output``); RESHAPE keeps its input's quantization;
- QAT's asymmetric activations are integers in [0, 255] with zero point z: TFLite's int8 is the
  same grid shifted by 128 (zero point z - 128), so every value maps exactly;
- weights: the integers QAT rounded to (symmetric, zero point 0, per channel or per tensor as
  trained), laid out as :class:`kws.export.graph.TFLiteGraph` lays out the float ones; at 4 or 2
  bits they take only QAT's levels ([-7, 7], [-1, 1]) in int8 storage;
- bias: round(bias / (input scale * weight scale)), QAT's int32 grid.

The rest of the file (ops, options, shapes, metadata) is onnx2tf's. Checks of the result:
:mod:`kws.export.qat_verify`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kws.compression.quantization import QuantWrapper, fake_quantize, quantizable_layers, quantizers
from kws.export import ExportError
from kws.models import DSCNN, TinyConv

WEIGHTED_OPS = ("CONV_2D", "FULLY_CONNECTED")
PASS_THROUGH_OPS = ("RESHAPE",)  # output quantization = input quantization
INT8_OFFSET = 128  # QAT's [0, 255] activation grid -> TFLite's [-128, 127]
BIAS_LIMIT = 2**24  # integers a float32 holds exactly (the layout passes through float layers)


def check_exportable(options: dict, model: nn.Module) -> None:
    """Refuse (ValueError naming the setting and the fix) a QAT configuration whose fake-quantized
    model the int8 TFLite export could not hold exactly. ``options``: the quantizer options
    (:func:`kws.compression.quantization.check_options`)."""
    problems = option_problems(options)
    if isinstance(model, DSCNN):
        problems.append(
            "model.arch ds_cnn: its BatchNorm is folded into the convolutions at export and its average pool "
            "requantizes, so its fake-quantized graph is not what TFLite computes; use --model.arch tiny_conv "
            "or drop callbacks.QuantizationAwareTraining (the export then calibrates)"
        )
    elif not isinstance(model, TinyConv):
        problems.append(
            f"the model is a {type(model).__name__}: the exact QAT export maps TinyConv only; "
            "use --model.arch tiny_conv"
        )
    if problems:
        raise ValueError(
            "callbacks.QuantizationAwareTraining with callbacks.Export: the int8 model would not be "
            "the model QAT trains: " + "; ".join(problems)
        )


def option_problems(options: dict) -> list[str]:
    """What in the quantizer ``options`` TFLite's int8 kernels cannot compute, each with its fix."""
    problems = []
    if options["mode"] != "symmetric":
        problems.append(
            f"mode={options['mode']!r} (weights with a zero point): TFLite int8 weights are symmetric; "
            "set mode: symmetric"
        )
    if options["activation_bits"] != 8:
        problems.append(
            f"activation_bits={options['activation_bits']}: TFLite activations are int8; set activation_bits: 8"
        )
    if options["activation_mode"] != "asymmetric":
        problems.append(
            f"activation_mode={options['activation_mode']!r}: TFLite int8 activations have a zero point "
            "(a symmetric range is another grid after the ReLU); set activation_mode: asymmetric"
        )
    if options.get("layers") is not None:
        problems.append(
            f"layers={options['layers']}: every Conv2d/Linear runs in int8 on the board; set layers: null (all)"
        )
    if not options.get("quantize_output", False):
        problems.append(
            "quantize_output=false: the int8 output (the logits) needs QAT's output range; set quantize_output: true"
        )
    return problems


def mapping_problem(model: nn.Module) -> str | None:
    """Why a QAT-trained ``model`` cannot be exported exactly (None: it can), from its wrappers."""
    wrappers = quantizers(model)
    if not isinstance(model, TinyConv):
        return f"the exact QAT export maps TinyConv only, the model is a {type(model).__name__}"
    unwrapped = [name for name, layer in quantizable_layers(model).items() if not isinstance(layer, QuantWrapper)]
    if unwrapped:
        return f"layers {unwrapped} were not fake-quantized"
    for name, q in wrappers.items():
        options = {
            "mode": q.mode,
            "activation_bits": q.activation_bits,
            "activation_mode": q.activation_mode,
            "quantize_output": q.quantize_output if name == list(wrappers)[-1] else True,
        }
        problems = option_problems(options)
        if problems:
            return f"{name}: " + "; ".join(problems)
        if not bool(q.enabled) or not bool(q.observed):
            return f"{name}: fake quantization {'is off' if not bool(q.enabled) else 'never observed a range'}"
    return None


@torch.no_grad()
def layer_integers(wrapper: QuantWrapper) -> dict:
    """A wrapper's quantization as QAT computes it: the integer weights (torch layout) and biases,
    their scales, and its input (and output) scale and TFLite zero point."""
    from kws.compression.quantization import _current

    layer = wrapper.layer
    weight, bias = _current(layer, "weight").detach().float().cpu(), _current(layer, "bias")
    scale, zero_point = (t.cpu() for t in wrapper.weight_qparams())
    axis = 0 if wrapper.per_channel else None
    fq = fake_quantize(weight, scale, zero_point, wrapper.weight_bits, wrapper.mode, axis)
    shape = (-1, *[1] * (weight.dim() - 1)) if wrapper.per_channel else ()
    weight_int = torch.round(fq / scale.reshape(shape))  # exact: fq is (integer) * scale
    act_scale = wrapper.act_scale.cpu()
    bias_scale = (act_scale * scale).expand(weight.shape[0]) if wrapper.per_channel else (act_scale * scale).reshape(1)
    bias = bias.detach().float().cpu() if bias is not None else torch.zeros(weight.shape[0])
    bias_int = torch.round(bias / bias_scale)  # as fake_quantize_bias rounds
    if bias_int.abs().max() >= BIAS_LIMIT:
        raise ExportError(
            f"a bias of {wrapper} is {int(bias_int.abs().max())} steps of its scale, beyond float32's exact integers"
        )
    result = {
        "weight": weight_int,
        "weight_scale": scale.reshape(-1).float().numpy(),
        "bias": bias_int,
        "bias_scale": bias_scale.float().numpy(),
        "input": (float(act_scale), int(wrapper.act_zero_point) - INT8_OFFSET),
    }
    if wrapper.quantize_output:
        result["output"] = (float(wrapper.out_scale), int(wrapper.out_zero_point) - INT8_OFFSET)
    return result


def tflite_layout(model: TinyConv, layers: dict[str, dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(int8 weight in TFLite's layout, int32 bias) per layer: the integers pass through the exact
    float rewrite onnx2tf was given (kws.export.graph.TFLiteGraph: zero taps, channel-last FC)."""
    from kws.export.graph import TFLiteGraph, float_tinyconv

    integers = float_tinyconv(model)
    for name in ("conv", "fc"):
        layer = integers.get_submodule(name)
        layer.weight.data.copy_(layers[name]["weight"].reshape(layer.weight.shape))
        layer.bias.data.copy_(layers[name]["bias"])
    graph = TFLiteGraph(integers)
    conv_weight = graph.conv.weight.detach().permute(0, 2, 3, 1)  # OIHW -> OHWI
    return {
        "conv": (conv_weight.numpy().astype(np.int8), graph.conv.bias.detach().numpy().astype(np.int32)),
        "fc": (graph.fc.weight.detach().numpy().astype(np.int8), graph.fc.bias.detach().numpy().astype(np.int32)),
    }


def expected_quantization(model: TinyConv) -> tuple[list[dict], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per weighted op in graph order (conv, fc): its tensors' (scales, zero points) as QAT
    computed them; and the integer weights and biases in TFLite's layout."""
    wrappers = quantizers(model)
    layers = {name: layer_integers(wrappers[name]) for name in ("conv", "fc")}
    ops = []
    for name, following in (("conv", "fc"), ("fc", None)):
        q = layers[name]
        output = layers[following]["input"] if following else q["output"]
        ops.append(
            {
                "layer": name,
                "input": ([q["input"][0]], [q["input"][1]]),
                "output": ([output[0]], [output[1]]),
                "weight": (list(q["weight_scale"]), [0] * len(q["weight_scale"])),
                "bias": (list(q["bias_scale"]), [0] * len(q["bias_scale"])),
            }
        )
    return ops, tflite_layout(model, layers)


def _set_quantization(tensor, scales, zero_points, schema) -> None:
    q = schema.QuantizationParametersT()
    q.scale = [float(np.float32(s)) for s in scales]
    q.zeroPoint = [int(z) for z in zero_points]
    q.quantizedDimension = 0
    tensor.quantization = q


def qat_tflite(model: nn.Module, int8_tflite: bytes) -> bytes:
    """onnx2tf's int8 TinyConv with every quantization parameter and constant replaced by the
    QAT-trained model's (see the module's docstring); raises ExportError where the graph is not
    the expected RESHAPE, CONV_2D, RESHAPE, FULLY_CONNECTED or a shape differs."""
    from ai_edge_litert import schema_py_generated as schema

    from kws.export.tflite import parse_model

    problem = mapping_problem(model)
    if problem:
        raise ExportError(f"the QAT model cannot be exported exactly: {problem}")
    ops, constants = expected_quantization(model)
    parsed, names = parse_model(int8_tflite)
    graph = parsed.subgraphs[0]
    weighted = [op for op, name in zip(graph.operators, names[0]) if name in WEIGHTED_OPS]
    expected_ops = ["RESHAPE", "CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    if len(parsed.subgraphs) != 1 or names[0] != expected_ops or len(weighted) != len(ops):
        raise ExportError(f"the int8 graph is {names}, not TinyConv's RESHAPE, CONV_2D, RESHAPE, FULLY_CONNECTED")
    assigned: dict[int, tuple[list, list]] = {}
    for op, expected in zip(weighted, ops):
        data, weight, bias = list(op.inputs)
        for index, key in ((data, "input"), (op.outputs[0], "output"), (weight, "weight"), (bias, "bias")):
            if assigned.get(index, expected[key]) != expected[key]:
                raise ExportError(
                    f"tensor {index} of the int8 graph would take two quantizations: "
                    f"{assigned[index]} and {expected[key]}"
                )
            assigned[index] = expected[key]
        values, biases = constants[expected["layer"]]
        for index, array in ((weight, values), (bias, biases)):
            tensor = graph.tensors[index]
            if list(tensor.shape) != list(array.shape):
                raise ExportError(
                    f"{expected['layer']}: the int8 tensor {tensor.name!r} is {list(tensor.shape)}, "
                    f"QAT's {list(array.shape)}"
                )
            parsed.buffers[tensor.buffer].data = np.frombuffer(array.tobytes(), dtype=np.uint8)
    # RESHAPE: the same values, so the same quantization, in both directions (model input, FC input)
    for op, name in zip(graph.operators, names[0]):
        if name in PASS_THROUGH_OPS:
            source, target = op.inputs[0], op.outputs[0]
            known = assigned.get(source) or assigned.get(target)
            assigned.setdefault(source, known)
            assigned.setdefault(target, known)
    for index, (scales, zero_points) in assigned.items():
        _set_quantization(graph.tensors[index], scales, zero_points, schema)
    return serialize(parsed)


def _aligned_builder(size: int):
    """A flatbuffers.Builder whose byte vectors (the buffers) start on 16 bytes: tflite-micro reads
    int32 biases in place."""
    import flatbuffers

    class Builder(flatbuffers.Builder):
        def StartVector(self, elemSize, numElems, alignment):  # noqa: N802 (flatbuffers' name)
            return super().StartVector(elemSize, numElems, 16 if elemSize == 1 and numElems >= 16 else alignment)

    return Builder(size)


def serialize(parsed) -> bytes:
    """A ModelT as .tflite bytes (file identifier TFL3)."""
    builder = _aligned_builder(1024)
    builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def qat_int8_model(model: nn.Module, int8_tflite: bytes) -> tuple[bytes, str | None]:
    """(the int8 model to ship, None) with QAT's own quantization when ``model`` maps exactly;
    (onnx2tf's calibrated model unchanged, why not) otherwise."""
    problem = mapping_problem(model)
    return (int8_tflite, problem) if problem else (qat_tflite(model, int8_tflite), None)
