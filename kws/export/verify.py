"""Checking an export: every runtime on the test features, the float ones against PyTorch, the int8
ones against each other and against the numpy integer reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from kws.compression.quantization import quantizers
from kws.export import ExportError
from kws.export.graph import INPUT_NAME, OUTPUT_NAME
from kws.export.tflite import RUNTIME_LABELS, evaluate_tflite, quantize
from kws.utils.metrics import accuracy

# ONNX Runtime and TFLite float must match PyTorch to this, relative to the largest logit.
FLOAT_TOLERANCE = 1e-4


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))


@torch.no_grad()
def verify(
    module,
    float_model: nn.Module,
    onnx_path: Path,
    float_tflite: bytes,
    int8_tflite: bytes,
    features: np.ndarray,
    labels: np.ndarray,
    arena: int,
) -> dict:
    """Every runtime on the test features: accuracy, and the checks an export must pass (ONNX
    Runtime and TFLite float equal PyTorch to FLOAT_TOLERANCE; the int8 model has int8 input and
    output). Agreement figures are reported, not enforced."""
    logits, litert, reference_kernels, micro = runtime_outputs(
        module, float_model, onnx_path, float_tflite, int8_tflite, features, arena
    )

    reference = logits["pytorch_float"]
    differences = {name: _relative_error(logits[name], reference) for name in ("onnxruntime", "tflite_float")}
    for name, error in differences.items():
        if not error <= FLOAT_TOLERANCE:
            raise ExportError(
                f"{RUNTIME_LABELS[name]} differs from PyTorch by {error:.2e} of the largest logit "
                f"(tolerance {FLOAT_TOLERANCE:g})"
            )
    if litert["outputs"].dtype != np.int8:
        raise ExportError(f"the int8 model's output is {litert['outputs'].dtype}, not int8")
    return {
        "test_clips": len(labels),
        "accuracy": {name: accuracy(logits[name], labels) for name in RUNTIME_LABELS if name in logits},
        "max_relative_difference_from_pytorch": differences,
        "int8_top1_agreement_with_pytorch": accuracy(logits["tflite_int8"], logits["pytorch_float"]),
        "tflite_micro_vs_litert_int8": compare_int8(micro, litert),
        "tflite_micro_vs_litert_reference_kernels_int8": compare_int8(micro, reference_kernels),
        "int8_rounding": int8_rounding(
            int8_tflite,
            features,
            {"tflite_micro": micro, "litert": litert, "litert_reference_kernels": reference_kernels},
        ),
    }


@torch.no_grad()
def runtime_outputs(
    module,
    float_model: nn.Module,
    onnx_path: Path,
    float_tflite: bytes,
    int8_tflite: bytes,
    features: np.ndarray,
    arena: int,
):
    """(logits or dequantized scores per runtime name, LiteRT int8 run, LiteRT reference-kernel
    run, tflite-micro run) of every runtime on ``features``."""
    import onnxruntime as ort

    logits = {"pytorch_float": float_model(torch.from_numpy(features)).numpy()}
    if quantizers(module.model):
        was_training = module.model.training
        module.model.eval()
        device = next(module.model.parameters()).device
        logits["pytorch_qat"] = module.model(torch.from_numpy(features).to(device)).cpu().numpy()
        module.model.train(was_training)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits["onnxruntime"] = session.run([OUTPUT_NAME], {INPUT_NAME: features})[0]
    logits["tflite_float"] = evaluate_tflite(float_tflite, features)["scores"]
    litert = evaluate_tflite(int8_tflite, features, runtime="litert")
    reference_kernels = evaluate_tflite(int8_tflite, features, runtime="litert-reference")
    micro = evaluate_tflite(int8_tflite, features, runtime="micro", arena_size=arena)
    logits["tflite_int8"], logits["tflite_micro"] = litert["scores"], micro["scores"]
    return logits, litert, reference_kernels, micro


def runtime_accuracies(
    module,
    float_model: nn.Module,
    onnx_path: Path,
    float_tflite: bytes,
    int8_tflite: bytes,
    features: np.ndarray,
    labels: np.ndarray,
    arena: int,
) -> dict[str, float]:
    """Every runtime's accuracy on ``features`` (e.g. the test clips featurized another way)."""
    logits = runtime_outputs(module, float_model, onnx_path, float_tflite, int8_tflite, features, arena)[0]
    return {name: accuracy(logits[name], labels) for name in RUNTIME_LABELS if name in logits}


def int8_rounding(model: bytes, features: np.ndarray, runs: dict[str, dict]) -> dict:
    """Which requantization rounding each runtime computed, per op type, found by running the
    graph in numpy (kws.int8_reference) with every assignment and comparing bit for bit: explains
    any one-step differences between the runtimes. Per runtime and op type: the roundings that
    reproduce it ("double", "single" or both when no value told them apart), None if none does."""
    from kws.export.int8_reference import Int8Graph, matching_roundings

    try:  # a graph with an op (or an op option) the reference does not implement is reported, not fatal
        graph = Int8Graph(model)
        scale, zero_point = graph.quantization(graph.graph.inputs[0])
        inputs = quantize(features, float(scale[0]), int(zero_point[0]), np.int8)
        return {
            "checked": True,
            **matching_roundings(graph, inputs, {name: run["outputs"] for name, run in runs.items()}),
        }
    except ValueError as error:
        return {"checked": False, "why": str(error)}


def compare_int8(a: dict, b: dict) -> dict:
    """How far two runs' raw int8 outputs (:func:`evaluate_tflite`) are from identical."""
    difference = np.abs(a["outputs"].astype(np.int32) - b["outputs"].astype(np.int32))
    return {
        "identical": bool(not difference.any()),
        "outputs_differing": int((difference > 0).sum()),
        "outputs": int(difference.size),
        "max_difference": int(difference.max()),
        "top1_agreement": accuracy(a["scores"], b["scores"]),
    }
