"""Checks of an int8 export against the model it came from: the int8 weights of every export (sparsity,
levels per channel) and, for a QAT model exported with its own quantization (:mod:`kws.export.qat_int8`),
scales, zero points and outputs against the fake-quantized PyTorch model."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kws.compression.quantization import quantizable_layers, quantizers
from kws.export import ExportError

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _float_weight(layer: nn.Module) -> torch.Tensor:
    layer = getattr(layer, "layer", layer)  # a QuantWrapper's float layer
    return layer.weight.detach().cpu()


def weight_report(model: nn.Module, int8_tflite: bytes) -> list[dict]:
    """Per weighted op of the int8 model, in graph order, beside the model's layer (same order):
    its shape, the fraction of zero int8 weights (``sparsity``; the zero taps the export appends
    to a kernel for 'SAME' padding left out) and of zero float weights (``float_sparsity``, as
    the pruning callback counts them), and the distinct int8 levels per output channel. A zero
    weight quantizes to 0 exactly (0 / scale), so sparsity >= float_sparsity; more where a small
    weight rounds to 0. Empty where the numpy int8 reference does not cover the graph."""
    from kws.export.int8_reference import Int8Graph

    graph = Int8Graph(int8_tflite) if _reference_covers(int8_tflite) else None
    if graph is None:
        return []
    layers = list(quantizable_layers(model).items())
    weighted = [(name, op) for name, op in graph.ops if name in WEIGHTED_OPS]
    if len(weighted) != len(layers):
        return []
    report = []
    for (op_name, op), (layer_name, layer) in zip(weighted, layers):
        weight = graph.constant(op.inputs[1])
        float_weight = _float_weight(layer)
        if weight.ndim == 4:  # OHWI or 1HWC: drop the appended taps
            kh, kw = float_weight.shape[2:]
            weight = weight[:, :kh, :kw, :]
        channels = weight.shape[-1] if op_name == "DEPTHWISE_CONV_2D" else weight.shape[0]
        per_channel = np.moveaxis(weight, -1, 0) if op_name == "DEPTHWISE_CONV_2D" else weight
        per_channel = per_channel.reshape(channels, -1)
        report.append(
            {
                "layer": layer_name,
                "op": op_name,
                "shape": [int(d) for d in graph._tensor(op.inputs[1]).shape],
                "sparsity": float((weight == 0).mean()),
                "float_sparsity": float((float_weight == 0).float().mean()),
                "levels_per_channel": [int(len(np.unique(row))) for row in per_channel],
                "range": [int(weight.min()), int(weight.max())],
            }
        )
    return report


def _reference_covers(model: bytes) -> bool:
    from kws.export.int8_reference import Int8Graph

    try:
        Int8Graph(model)
        return True
    except ValueError:
        return False


def scale_check(model: nn.Module, int8_tflite: bytes) -> dict:
    """Every scale and zero point of the int8 model against QAT's (float32 compare); raises
    ExportError on any difference."""
    from kws.export.qat_int8 import INT8_OFFSET, expected_quantization
    from kws.export.tflite import parse_model

    ops, _ = expected_quantization(model)
    parsed, names = parse_model(int8_tflite)
    graph = parsed.subgraphs[0]
    weighted = [op for op, name in zip(graph.operators, names[0]) if name in WEIGHTED_OPS]
    mismatches, checked = [], 0
    for op, expected in zip(weighted, ops):
        tensors = (op.inputs[0], "input"), (op.outputs[0], "output"), (op.inputs[1], "weight"), (op.inputs[2], "bias")
        for index, key in tensors:
            q = graph.tensors[index].quantization
            got = (np.asarray(q.scale, np.float32), np.asarray(q.zeroPoint, np.int64))
            want = (np.asarray(expected[key][0], np.float32), np.asarray(expected[key][1], np.int64))
            checked += 1
            if not (np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])):
                mismatches.append(
                    f"{expected['layer']} {key}: int8 model {got[0].tolist()}/{got[1].tolist()}, "
                    f"QAT {want[0].tolist()}/{want[1].tolist()}"
                )
    # the model's input and output tensors, through RESHAPE
    for index, want in ((graph.inputs[0], ops[0]["input"]), (graph.outputs[0], ops[-1]["output"])):
        q = graph.tensors[index].quantization
        checked += 1
        if [np.float32(s) for s in q.scale] != [np.float32(s) for s in want[0]] or list(q.zeroPoint) != list(want[1]):
            mismatches.append(f"graph tensor {index}: int8 model {list(q.scale)}/{list(q.zeroPoint)}, QAT {want}")
    if mismatches:
        raise ExportError("the int8 model's quantization is not QAT's: " + "; ".join(mismatches))
    # QAT's activation grids as TFLite holds them (zero point - 128), for the record
    layers = {
        op["layer"]: {
            "input": [op["input"][0][0], op["input"][1][0]],
            "output": [op["output"][0][0], op["output"][1][0]],
            "weight_scales": [float(s) for s in op["weight"][0]],
        }
        for op in ops
    }
    return {"equal": True, "tensors_checked": checked, "zero_point_offset": INT8_OFFSET, "layers": layers}


@torch.no_grad()
def output_check(model: nn.Module, int8_tflite: bytes, features: np.ndarray, arena: int) -> dict:
    """The int8 model in tflite-micro against the fake-quantized PyTorch model on ``features``:
    top-1 agreement, the fraction of int8 outputs equal to the fake-quant logits on the output
    grid, and what the numpy int8 reference says of the rest (single rounding = one rounding of the
    exact value, as fake quantization rounds; double = tflite-micro's)."""
    from kws.export.int8_reference import Int8Graph
    from kws.export.tflite import evaluate_tflite, quantize

    fc = list(quantizers(model).values())[-1]
    scale, zero_point = float(fc.out_scale), int(fc.out_zero_point) - 128
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits = model(torch.from_numpy(features).to(device)).cpu().numpy()
    model.train(was_training)
    expected = np.round(logits / np.float32(scale)).astype(np.int64) + zero_point
    micro = evaluate_tflite(int8_tflite, features, runtime="micro", arena_size=arena)["outputs"].astype(np.int64)
    graph = Int8Graph(int8_tflite)
    in_scale, in_zero_point = graph.quantization(graph.graph.inputs[0])
    inputs = quantize(features, float(in_scale[0]), int(in_zero_point[0]), np.int8)
    single, double = (graph.run(inputs, rounding).reshape(micro.shape) for rounding in ("single", "double"))
    difference = np.abs(micro - expected)
    return {
        "clips": len(features),
        "outputs": int(micro.size),
        "top1_agreement": float((micro.argmax(1) == logits.argmax(1)).mean()),
        "outputs_equal": float((difference == 0).mean()),
        "max_difference": int(difference.max()),
        "reference_single_rounding_equal": float((single == expected).mean()),
        "micro_is_reference_double_rounding": bool(np.array_equal(micro, double)),
    }


def verify_qat(model: nn.Module, int8_tflite: bytes, features: np.ndarray, arena: int) -> dict:
    """scale_check and output_check of a QAT model's exact int8 export (report.json's ``qat_int8``)."""
    return {"scales": scale_check(model, int8_tflite), "outputs": output_check(model, int8_tflite, features, arena)}


def report_lines(report: dict) -> list[str]:
    """The printed report's lines for ``int8_weights`` and ``qat_int8``."""
    lines = []
    for w in report.get("int8_weights") or []:
        levels = w["levels_per_channel"]
        lines.append(
            f"int8 weights {w['layer']} ({w['op']} {w['shape']}): sparsity {100 * w['sparsity']:.2f}% "
            f"(float model {100 * w['float_sparsity']:.2f}%), levels {w['range']}, distinct per channel "
            f"{levels if len(levels) <= 8 else f'{min(levels)}..{max(levels)}'}"
        )
    qat = report.get("qat_int8")
    if qat:
        s, o = qat["scales"], qat["outputs"]
        lines += [
            f"QAT int8: every scale and zero point is QAT's ({s['tensors_checked']} tensors, float32 compare)",
            f"QAT int8: tflite-micro vs fake-quantized PyTorch on {o['clips']} test clips: "
            f"top-1 agreement {100 * o['top1_agreement']:.2f}%, "
            f"{100 * o['outputs_equal']:.2f}% of int8 outputs equal (others within {o['max_difference']} step)",
            f"QAT int8: numpy int8 reference with one rounding "
            f"{100 * o['reference_single_rounding_equal']:.2f}% equal; "
            + (
                "tflite-micro is its double rounding bit for bit"
                if o["micro_is_reference_double_rounding"]
                else "tflite-micro is NOT its double rounding"
            ),
        ]
    return lines
