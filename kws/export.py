"""Export a trained model for the microcontroller: ONNX, TFLite (float and full-integer int8) and
the C sources the firmware compiles, each runtime checked against PyTorch on the test split.

``python -m kws export --ckpt PATH [--out DIR] [--config conf.yaml]`` and the ``callbacks.Export``
callback both call :func:`export_model`, which builds everything in a hidden folder beside the
output folder, verifies it, and only then renames it into place: an error leaves nothing
half-written, and an earlier export is replaced only by a verified one.

The path: the float TinyConv (quantization wrappers stripped, pruning masks applied) ->
``torch.onnx.export`` (opset 17, input ``features`` [N, frames * features]) -> onnx2tf ->
float and full-integer int8 TFLite (int8 input and output), calibrated on training clips
without augmentation. The graph handed to onnx2tf is an exact rewrite of TinyConv (see
:class:`TFLiteGraph`) so that the int8 model holds only RESHAPE, CONV_2D, RESHAPE and
FULLY_CONNECTED -- no TRANSPOSE or PAD.

Artifacts: model.onnx, model_float.tflite, model_int8.tflite, model_data.cc/.h (the int8 model as
a C array), model_settings.h (features, labels and the int8 input quantization, all generated),
model_ops.h (a MicroMutableOpResolver for the model's ops) and report.json.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

# TensorFlow (through onnx2tf) is chatty; keep the console for the export's own progress.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from kws.features import MICRO_FEATURE_SCALE, FeatureSettings  # noqa: E402
from kws.models import TinyConv  # noqa: E402

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "features", "logits"
DEFAULT_CALIBRATION_CLIPS = 1000
# ONNX Runtime and TFLite float must match PyTorch to this, relative to the largest logit.
FLOAT_TOLERANCE = 1e-4
# Feature scale applied to the front end's output in training, per front end (kws.features).
FEATURE_SCALES = {"micro": MICRO_FEATURE_SCALE, "mfcc": 1.0}
# Ops the firmware should never need for these models: layout and padding glue.
UNWANTED_OPS = ("TRANSPOSE", "PAD")
# TFLM's MicroMutableOpResolver methods whose names do not follow CamelCase of the op name.
RESOLVER_METHODS = {
    "BATCH_MATMUL": "BatchMatMul", "LOG_SOFTMAX": "LogSoftmax", "L2_NORMALIZATION": "L2Normalization",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTM",
}
RUNTIMES = {
    "pytorch_float": "PyTorch float",
    "onnxruntime": "ONNX Runtime",
    "tflite_float": "TFLite float (LiteRT)",
    "pytorch_qat": "PyTorch QAT (fake quant)",
    "tflite_int8": "TFLite int8 (LiteRT)",
    "tflite_micro": "TFLite int8 (tflite-micro)",
}

ROUNDING_RUNTIMES = {"tflite_micro": "tflite-micro", "litert": "LiteRT", "litert_reference_kernels": "LiteRT reference kernels"}


class ExportError(RuntimeError):
    """An export that cannot be done; the message names the input at fault and the fix."""


Log = Callable[[str], None]


# ---------------------------------------------------------------------------------- the model
def _float_layer(layer: nn.Module) -> nn.Module:
    """The float Conv2d/Linear of a layer, a QuantWrapper's ``layer`` for a QAT-trained model."""
    from callbacks.quantization import QuantWrapper

    return layer.layer if isinstance(layer, QuantWrapper) else layer


def float_tinyconv(model: nn.Module) -> TinyConv:
    """A plain float TinyConv (CPU, eval) with ``model``'s current weights: quantization wrappers
    stripped, pruning masks applied (a parametrized ``weight`` is the masked one), channels as
    pruned."""
    if not isinstance(model, TinyConv):
        raise ExportError(f"export supports TinyConv models, got {type(model).__name__}")
    conv, fc = _float_layer(model.conv), _float_layer(model.fc)
    plain = TinyConv(model.input_shape, fc.out_features, channels=conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride[0], dropout=0.0)
    if plain.conv.padding != conv.padding or plain.conv.stride != conv.stride or plain.fc.in_features != fc.in_features:
        raise ExportError(f"the model's layers {conv} / {fc} are not TinyConv's shape rules")
    state = {"conv.weight": conv.weight, "conv.bias": conv.bias, "fc.weight": fc.weight, "fc.bias": fc.bias}
    plain.load_state_dict({k: v.detach().cpu().float() for k, v in state.items()})
    return plain.eval()


def same_padding_taps(size: int, kernel: int, stride: int, padding: int) -> int | None:
    """Zero taps to append to a kernel so that TensorFlow's 'SAME' padding computes exactly what
    PyTorch's symmetric ``padding`` does along one axis; None if no number of taps can.

    'SAME' pads (out - 1) * stride + kernel - size in total, the smaller half first. It matches
    when the output length agrees and its leading pad equals ``padding``: appending zero taps
    grows the total without changing the result."""
    out = (size + 2 * padding - kernel) // stride + 1
    if -(-size // stride) != out:
        return None
    for extra in range(kernel + 1):
        if (size + 2 * padding - kernel - extra) // stride + 1 != out:
            return None
        if max((out - 1) * stride + kernel + extra - size, 0) // 2 == padding:
            return extra
    return None


class TFLiteGraph(nn.Module):
    """TinyConv rewritten, exactly, into the form onnx2tf converts without layout glue.

    - The flat input is reshaped to NHWC [N, frames, features, 1] and then transposed to NCHW:
      onnx2tf recognises that transpose as its own layout change and drops it (a direct reshape
      to [N, 1, frames, features] becomes RESHAPE + TRANSPOSE).
    - TinyConv's symmetric padding is no TensorFlow padding mode, so onnx2tf would emit a PAD op.
      The kernel gets zero taps appended (:func:`same_padding_taps`) so that TensorFlow's 'SAME'
      gives the same result, and :func:`export_onnx` marks the ONNX Conv ``auto_pad=SAME_UPPER``.
    - The conv output is flattened channel-last, with the fully connected weight's columns
      permuted to match, so no transpose back to channel-major is needed before the FC layer.
    """

    def __init__(self, model: TinyConv):
        super().__init__()
        conv, fc = model.conv, model.fc
        self.frames, self.features = model.input_shape
        taps = [same_padding_taps(n, k, s, p) for n, k, s, p in zip(model.input_shape, conv.kernel_size, conv.stride, conv.padding)]
        self.same_padding = None not in taps
        weight = conv.weight.detach()
        if self.same_padding:
            weight = nn.functional.pad(weight, (0, taps[1], 0, taps[0]))  # zeros after the last row and column
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, tuple(weight.shape[2:]), stride=conv.stride, padding=conv.padding)
        self.conv.weight.data.copy_(weight)
        self.conv.bias.data.copy_(conv.bias.detach())
        channels, positions = conv.out_channels, model.conv_output_size()
        self.fc = nn.Linear(fc.in_features, fc.out_features)
        # column c * H'W' + p (channel-major) -> p * C + c (channel-last)
        self.fc.weight.data.copy_(fc.weight.detach().reshape(-1, channels, positions).transpose(1, 2).reshape(fc.weight.shape))
        self.fc.bias.data.copy_(fc.bias.detach())

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(-1, self.frames, self.features, 1).permute(0, 3, 1, 2)
        x = torch.relu(self.conv(x))
        return self.fc(x.permute(0, 2, 3, 1).reshape(-1, self.fc.in_features))


# ------------------------------------------------------------------------------- checkpoints
def load_checkpoint(path: str | Path, config: str | Path | None = None):
    """(KWSModule, SpeechCommandsDataModule) from a checkpoint: the data module from the
    checkpoint's ``datamodule_hyper_parameters``, overridden by the ``data`` section of
    ``config``. Raises :class:`ExportError` naming what is wrong."""
    from datamodules import SpeechCommandsDataModule
    from kws.checkpoints import CheckpointError, config_section, load_module, read_config

    try:
        module, checkpoint = load_module(path)
        data = {k: v for k, v in (checkpoint.get("datamodule_hyper_parameters") or {}).items() if not k.startswith("_")}
        if config is not None:
            data.update(config_section(read_config(config), "data", config))
    except CheckpointError as err:
        raise ExportError(str(err)) from err
    if not data:
        raise ExportError(f"{path} holds no data module hyperparameters; pass --config with the `data:` section it was trained with")
    try:
        datamodule = SpeechCommandsDataModule(**data)
    except (TypeError, ValueError) as err:
        raise ExportError(f"bad data settings {data}: {err}") from err
    if list(datamodule.labels) != list(module.labels) or tuple(datamodule.input_shape) != tuple(module.hparams.input_shape):
        raise ExportError(
            f"the data settings give labels {datamodule.labels} and features {datamodule.input_shape}, "
            f"the model was trained on {module.labels} and {tuple(module.hparams.input_shape)}"
        )
    return module, datamodule


# ----------------------------------------------------------------------------------- the data
@torch.no_grad()
def split_features(datamodule, split: str, clips: int | None = None, seed: int = 0, device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Flat float features [n, frames * features] and labels of a split, without augmentation
    (``datamodule.featurize``, as evaluation sees them); ``clips``: a seeded random subset."""
    if not datamodule.splits:
        datamodule.setup()
    data = datamodule.splits[split]
    index = np.arange(len(data)) if clips is None else np.sort(np.random.default_rng(seed).permutation(len(data))[:clips])
    if not len(index):
        raise ExportError(f"the {split} split has no clips")
    features, labels = [], []
    for start in range(0, len(index), datamodule.hparams.batch_size):
        audio, label = data[list(index[start:start + datamodule.hparams.batch_size])]
        features.append(datamodule.featurize(audio.to(device)).cpu())
        labels.append(label)
    return torch.cat(features).numpy().astype(np.float32), torch.cat(labels).numpy()


# ----------------------------------------------------------------------------- the conversions
@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2, where C++ code (TensorFlow, tflite-micro) logs, to ``path``."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "wb") as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def export_onnx(model: TinyConv, path: Path) -> None:
    """``model`` as ONNX (opset 17, ``features`` [N, frames * features] -> ``logits``), through
    :class:`TFLiteGraph`; checked with onnx.checker."""
    import onnx

    graph = TFLiteGraph(model).eval()
    example = torch.zeros(1, model.input_shape[0] * model.input_shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            graph, (example,), str(path), opset_version=OPSET, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}}, dynamo=False,
        )
    proto = onnx.load(str(path))
    if graph.same_padding:
        (conv,) = [node for node in proto.graph.node if node.op_type == "Conv"]
        del conv.attribute[[a.name for a in conv.attribute].index("pads")]
        conv.attribute.append(onnx.helper.make_attribute("auto_pad", "SAME_UPPER"))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"the exported ONNX graph is invalid: {err}") from err
    onnx.save(proto, str(path))


def convert_tflite(onnx_path: Path, calibration: np.ndarray, work: Path) -> tuple[bytes, bytes]:
    """(float32, full-integer int8) TFLite models from the ONNX model via onnx2tf, the int8 one
    with int8 input and output, calibrated on ``calibration`` features [n, frames * features]."""
    calibration_path = work / "calibration.npy"
    np.save(calibration_path, calibration.astype(np.float32))
    out = work / "onnx2tf"
    console, stderr = io.StringIO(), work / "onnx2tf_stderr.txt"

    def output() -> str:
        return (console.getvalue() + stderr.read_text(errors="replace"))[-3000:]

    try:
        # onnx2tf's and TensorFlow's chatter (stdout, and C++ logging on stderr) is shown only on failure
        with contextlib.redirect_stdout(console), _stderr_to(stderr):
            import onnx2tf
            import tensorflow as tf

            with contextlib.suppress(RuntimeError):  # already initialised: nothing to do
                tf.config.set_visible_devices([], "GPU")  # leave the GPU to PyTorch (TF would claim all its memory)
            onnx2tf.convert(
                input_onnx_file_path=str(onnx_path),
                output_folder_path=str(out),
                overwrite_input_shape=[f"{INPUT_NAME}:1,{calibration.shape[1]}"],  # the firmware runs batch 1
                output_integer_quantized_tflite=True,
                custom_input_op_name_np_data_path=[[INPUT_NAME, str(calibration_path), 0.0, 1.0]],  # features as they are: mean 0, std 1
                input_quant_dtype="int8",
                output_quant_dtype="int8",
                not_use_onnxsim=True,  # onnxsim is not installed; the graph needs no simplification
                non_verbose=True,
            )
    except (Exception, SystemExit) as err:  # onnx2tf exits on conversion errors
        raise ExportError(f"onnx2tf failed ({err!r}):\n{output()}") from err
    stem = onnx_path.stem
    paths = out / f"{stem}_float32.tflite", out / f"{stem}_full_integer_quant.tflite"
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ExportError(f"onnx2tf wrote no {missing}:\n{output()}")
    return paths[0].read_bytes(), paths[1].read_bytes()


# ------------------------------------------------------------------------------ TFLite models
def tflite_ops(model: bytes) -> list[str]:
    """The builtin op of every operator of the model's subgraphs, in execution order."""
    from ai_edge_litert import schema_py_generated as schema

    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    parsed = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in parsed.operatorCodes]
    return [names[codes[op.opcodeIndex]] for graph in parsed.subgraphs for op in graph.operators or []]


def tensor_quantization(details: dict) -> tuple[float, int] | None:
    """(scale, zero point) of a per-tensor quantized tensor's details, None for a float one."""
    q = details["quantization_parameters"]
    return (float(q["scales"][0]), int(q["zero_points"][0])) if len(q["scales"]) else None


def quantize(features: np.ndarray, scale: float, zero_point: int, dtype: type) -> np.ndarray:
    """TFLite's quantization: round half away from zero, add the zero point, saturate."""
    q = np.trunc(features / scale + np.copysign(0.5, features)) + zero_point
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


class TFLiteRunner:
    """One .tflite model run clip by clip, as the firmware does, float features in (quantized with
    the model's own input scale and zero point when its input is integer). Runtimes:

    - ``litert``: LiteRT as it runs by default (XNNPACK delegate where it applies);
    - ``litert-reference``: LiteRT with TFLite's reference kernels;
    - ``micro``: the tflite-micro interpreter (``arena_size`` bytes of tensor arena), the board's
      runtime. Its int8 results can differ from LiteRT's by one step: the runtimes requantize with
      different roundings (kws.int8_reference; the report's ``int8_rounding``).
    """

    def __init__(self, model: bytes, runtime: str = "litert", arena_size: int | None = None):
        if runtime in ("litert", "litert-reference"):
            from ai_edge_litert.interpreter import Interpreter, OpResolverType

            kernels = OpResolverType.BUILTIN_REF if runtime == "litert-reference" else OpResolverType.AUTO
            self.interpreter = Interpreter(model_content=model, num_threads=1, experimental_op_resolver_type=kernels)
            self.interpreter.allocate_tensors()
            self.input, self.output = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        elif runtime == "micro":
            from tflite_micro import runtime as tflm

            self.interpreter = tflm.Interpreter.from_bytes(model, arena_size=arena_size)
            self.input, self.output = self.interpreter.get_input_details(0), self.interpreter.get_output_details(0)
        else:
            raise ValueError(f"runtime must be 'litert', 'litert-reference' or 'micro', got {runtime!r}")
        self.runtime = runtime
        self.input_quantization = tensor_quantization(self.input)
        self.output_quantization = tensor_quantization(self.output)

    def run(self, features: np.ndarray) -> np.ndarray:
        """Raw outputs [n, classes] (int8 for an int8 model) of features [n, frames * features]."""
        expected = int(np.prod(self.input["shape"]))
        if features.shape[1] != expected:
            raise ExportError(f"the model takes {expected} input values per clip, the features have {features.shape[1]}")
        x = features.astype(np.float32)
        if self.input_quantization:
            x = quantize(x, *self.input_quantization, self.input["dtype"])
        outputs = []
        for row in x:
            row = row.reshape(self.input["shape"])
            if self.runtime != "micro":
                self.interpreter.set_tensor(self.input["index"], row)
                self.interpreter.invoke()
                outputs.append(self.interpreter.get_tensor(self.output["index"]).reshape(-1))
            else:
                self.interpreter.set_input(row, 0)
                self.interpreter.invoke()
                outputs.append(np.asarray(self.interpreter.get_output(0)).reshape(-1))
        return np.stack(outputs)

    def dequantize(self, outputs: np.ndarray) -> np.ndarray:
        if not self.output_quantization:
            return outputs.astype(np.float32)
        scale, zero_point = self.output_quantization
        return (outputs.astype(np.float32) - zero_point) * scale


def evaluate_tflite(model: bytes | str | Path, features: np.ndarray, labels: np.ndarray | None = None, runtime: str = "litert", arena_size: int | None = None) -> dict:
    """Run any .tflite classifier on float features: ``outputs`` (raw), ``scores`` (dequantized),
    ``predictions`` and, with ``labels``, ``accuracy``. Integer inputs are quantized with the
    model's own input scale and zero point (e.g. micro_speech's reference model: 0.1017, -128)."""
    if not isinstance(model, bytes):
        model = Path(model).read_bytes()
    runner = TFLiteRunner(model, runtime, arena_size)
    outputs = runner.run(features)
    scores = runner.dequantize(outputs)
    result = {"outputs": outputs, "scores": scores, "predictions": scores.argmax(1)}
    if labels is not None:
        result["accuracy"] = float((result["predictions"] == labels).mean())
    return result


def tensor_arena_size(model: bytes, sample: np.ndarray, work: Path) -> dict:
    """The tflite-micro tensor arena the model needs: the smallest ``arena_size`` (to 16 bytes)
    with which the tflite-micro Python interpreter allocates and runs one clip, found by
    bisection, and the RecordingMicroAllocator's total from ``print_allocations()`` at that size.
    Measured with tflite-micro's reference kernels on this 64-bit host: a 32-bit microcontroller
    needs a little less (smaller structs), optimized kernels (CMSIS-NN) may add scratch buffers."""
    from tflite_micro import runtime as tflm

    def fits(size: int) -> bool:
        try:
            interpreter = tflm.Interpreter.from_bytes(model, arena_size=size)
            interpreter.set_input(sample, 0)
            interpreter.invoke()
            return True
        except RuntimeError:
            return False

    log = work / "tflm_stderr.txt"
    with _stderr_to(log):  # each failed allocation prints to stderr
        high = 1024
        while not fits(high):
            high *= 2
            if high > 1 << 28:
                raise ExportError("tflite-micro cannot allocate the int8 model with a 256 MB arena")
        low = 0  # does not fit
        while high - low > 16:
            middle = (low + high) // 32 * 16
            low, high = (low, middle) if fits(middle) else (middle, high)
        interpreter = tflm.Interpreter.from_bytes(model, arena_size=high)
        interpreter.set_input(sample, 0)
        interpreter.invoke()
    with _stderr_to(log):
        interpreter.print_allocations()
    recorded = re.search(r"Arena allocation total (\d+) bytes", log.read_text(errors="replace"))
    return {
        "bytes": high,
        "recorded_total_bytes": int(recorded.group(1)) if recorded else None,
        "method": "bisection over arena_size with the tflite-micro Python interpreter (allocate + one invoke), "
                  "to 16 bytes; recorded_total_bytes is RecordingMicroAllocator's total (print_allocations) at that size. "
                  "Reference kernels on a 64-bit host: a 32-bit MCU needs slightly less, optimized kernels (CMSIS-NN) "
                  "may add scratch buffers; leave a margin",
    }


# ------------------------------------------------------------------------------ verification
def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))


@torch.no_grad()
def verify(module, float_model: TinyConv, onnx_path: Path, float_tflite: bytes, int8_tflite: bytes, features: np.ndarray, labels: np.ndarray, arena: int) -> dict:
    """Every runtime on the test features: accuracy, and the checks an export must pass (ONNX
    Runtime and TFLite float equal PyTorch to FLOAT_TOLERANCE; the int8 model has int8 input and
    output). Agreement figures are reported, not enforced."""
    import onnxruntime as ort

    from callbacks.quantization import quantizers

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

    reference = logits["pytorch_float"]
    differences = {name: _relative_error(logits[name], reference) for name in ("onnxruntime", "tflite_float")}
    for name, error in differences.items():
        if not error <= FLOAT_TOLERANCE:
            raise ExportError(f"{RUNTIMES[name]} differs from PyTorch by {error:.2e} of the largest logit (tolerance {FLOAT_TOLERANCE:g})")
    if litert["outputs"].dtype != np.int8:
        raise ExportError(f"the int8 model's output is {litert['outputs'].dtype}, not int8")
    predictions = {name: value.argmax(1) for name, value in logits.items()}
    return {
        "test_clips": len(labels),
        "accuracy": {name: float((predictions[name] == labels).mean()) for name in RUNTIMES if name in predictions},
        "max_relative_difference_from_pytorch": differences,
        "int8_top1_agreement_with_pytorch": float((predictions["tflite_int8"] == predictions["pytorch_float"]).mean()),
        "tflite_micro_vs_litert_int8": compare_int8(micro, litert),
        "tflite_micro_vs_litert_reference_kernels_int8": compare_int8(micro, reference_kernels),
        "int8_rounding": int8_rounding(int8_tflite, features, {"tflite_micro": micro, "litert": litert, "litert_reference_kernels": reference_kernels}),
    }


def int8_rounding(model: bytes, features: np.ndarray, runs: dict[str, dict]) -> dict:
    """Which requantization rounding each runtime computed, per op type, found by running the
    graph in numpy (kws.int8_reference) with every assignment and comparing bit for bit: explains
    any one-step differences between the runtimes. Per runtime and op type: the roundings that
    reproduce it ("double", "single" or both when no value told them apart), None if none does."""
    from kws.int8_reference import Int8Graph, matching_roundings

    try:
        graph = Int8Graph(model)
    except ValueError as error:
        return {"checked": False, "why": str(error)}
    scale, zero_point = graph.quantization(graph.graph.inputs[0])
    inputs = quantize(features, float(scale[0]), int(zero_point[0]), np.int8)
    return {"checked": True, **matching_roundings(graph, inputs, {name: run["outputs"] for name, run in runs.items()})}


def compare_int8(a: dict, b: dict) -> dict:
    """How far two runs' raw int8 outputs (:func:`evaluate_tflite`) are from identical."""
    difference = np.abs(a["outputs"].astype(np.int32) - b["outputs"].astype(np.int32))
    return {
        "identical": bool(not difference.any()), "outputs_differing": int((difference > 0).sum()), "outputs": int(difference.size),
        "max_difference": int(difference.max()), "top1_agreement": float((a["predictions"] == b["predictions"]).mean()),
    }


# ------------------------------------------------------------------------------- C sources
GENERATED = "// Generated by `python -m kws export` from {source}.\n// Do not edit: export again instead.\n"


def _c_float(value: float) -> str:
    return np.format_float_positional(np.float32(value), trim="0") + "f"


def write_model_data(model: bytes, folder: Path, source: str) -> None:
    """model_data.h/.cc: the int8 model as a 16-byte aligned C array (TFLM reads it in place)."""
    (folder / "model_data.h").write_text(
        GENERATED.format(source=source)
        + "#ifndef KWS_MODEL_DATA_H_\n#define KWS_MODEL_DATA_H_\n\n"
        + "extern const unsigned char g_model[];\nextern const unsigned int g_model_len;\n\n#endif  // KWS_MODEL_DATA_H_\n"
    )
    rows = (", ".join(f"0x{b:02x}" for b in model[i:i + 12]) for i in range(0, len(model), 12))
    (folder / "model_data.cc").write_text(
        GENERATED.format(source=source)
        + '#include "model_data.h"\n\n'
        + "alignas(16) const unsigned char g_model[] = {\n    " + ",\n    ".join(rows) + "\n};\n"
        + f"const unsigned int g_model_len = {len(model)};\n"
    )


def write_model_settings(folder: Path, source: str, settings: FeatureSettings, labels: Sequence[str], input_q: tuple[float, int], output_q: tuple[float, int], arena: int) -> None:
    """model_settings.h: the feature front end, the labels and the int8 model's quantization, so
    that the firmware's feature-to-int8 conversion and the model share one definition."""
    silence, unknown = (labels.index(name) if name in labels else -1 for name in ("silence", "unknown"))
    label_list = ", ".join(json.dumps(label) for label in labels)
    text = f"""{GENERATED.format(source=source)}#ifndef KWS_MODEL_SETTINGS_H_
#define KWS_MODEL_SETTINGS_H_

// Feature front end the model was trained on: "micro" (TFLM micro front end) or "mfcc".
#define KWS_FRONTEND_{settings.frontend.upper()} 1
constexpr char kFrontEnd[] = "{settings.frontend}";

// Audio framing (kws.features.FeatureSettings).
constexpr int kAudioSampleFrequency = {settings.sample_rate};
constexpr int kClipDurationMs = {settings.clip_ms};
constexpr int kClipSamples = {settings.clip_samples};
constexpr int kFeatureDurationMs = {settings.window_ms};
constexpr int kFeatureDurationSamples = {settings.window_samples};
constexpr int kFeatureStrideMs = {settings.stride_ms};
constexpr int kFeatureStrideSamples = {settings.stride_samples};
constexpr int kFeatureSize = {settings.num_features};  // channels per frame
constexpr int kFeatureCount = {settings.num_frames};  // frames per clip
constexpr int kFeatureElementCount = kFeatureSize * kFeatureCount;

// Model input: feature = front end output * kFeatureScale (as in training), then
// int8 = clamp(round(feature / kInputScale) + kInputZeroPoint, -128, 127).
constexpr float kFeatureScale = {_c_float(FEATURE_SCALES[settings.frontend])};
constexpr float kInputScale = {_c_float(input_q[0])};
constexpr int kInputZeroPoint = {input_q[1]};
// Model output: int8 logits; logit = (int8 - kOutputZeroPoint) * kOutputScale.
constexpr float kOutputScale = {_c_float(output_q[0])};
constexpr int kOutputZeroPoint = {output_q[1]};

constexpr int kCategoryCount = {len(labels)};
constexpr const char* kCategoryLabels[kCategoryCount] = {{{label_list}}};
constexpr int kSilenceIndex = {silence};
constexpr int kUnknownIndex = {unknown};

// Smallest tflite-micro tensor arena that ran the model on the export host, reference kernels;
// add a margin for optimized kernels' scratch buffers (see report.json).
constexpr int kTensorArenaSize = {arena};

#endif  // KWS_MODEL_SETTINGS_H_
"""
    (folder / "model_settings.h").write_text(text)


def resolver_method(op: str) -> str:
    """TFLM's MicroMutableOpResolver method for a builtin op: CONV_2D -> AddConv2D."""
    return "Add" + RESOLVER_METHODS.get(op, "".join(part.upper() if part[0].isdigit() else part.capitalize() for part in op.lower().split("_")))


def write_model_ops(ops: Sequence[str], folder: Path, source: str) -> None:
    """model_ops.h: a MicroMutableOpResolver registering exactly the model's ops."""
    distinct = list(dict.fromkeys(ops))
    adds = "\n".join(f"  TF_LITE_ENSURE_STATUS(resolver.{resolver_method(op)}());  // {op}" for op in distinct)
    (folder / "model_ops.h").write_text(
        f"""{GENERATED.format(source=source)}#ifndef KWS_MODEL_OPS_H_
#define KWS_MODEL_OPS_H_

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

constexpr int kNumberOfOps = {len(distinct)};
using ModelOpResolver = tflite::MicroMutableOpResolver<kNumberOfOps>;

// Registers the ops of the int8 model: {", ".join(ops)}.
inline TfLiteStatus RegisterModelOps(ModelOpResolver& resolver) {{
{adds}
  return kTfLiteOk;
}}

#endif  // KWS_MODEL_OPS_H_
"""
    )


# ---------------------------------------------------------------------------------- the report
def format_report(report: dict) -> str:
    """The console summary: artifact sizes, ops, arena and every runtime's test accuracy."""
    lines = [f"Export of {report['source']} -> {report['out_dir']}", "", f"| {'artifact':<20} | {'bytes':>8} |", f"|{'-' * 22}|{'-' * 9}:|"]
    lines += [f"| {name:<20} | {size:>8,} |" for name, size in report["artifacts"].items()]
    q = report["int8"]
    lines += [
        "",
        f"int8 ops: {', '.join(report['ops'])}",
        f"int8 input: scale {q['input_scale']:.8g}, zero point {q['input_zero_point']}",
        f"tflite-micro tensor arena: {report['tensor_arena']['bytes']:,} bytes (smallest that runs, by bisection)",
        "",
        f"| {'runtime':<28} | {'test accuracy':>13} |",
        f"|{'-' * 30}|{'-' * 14}:|",
    ]
    lines += [f"| {RUNTIMES[name]:<28} | {100 * acc:>12.2f}% |" for name, acc in report["accuracy"].items()]
    lines += [f"| {Path(name).name:<28} | {100 * acc:>12.2f}% |" for name, acc in report["compared"].items()]
    lines += [
        "",
        f"{report['test_clips']} test clips; int8 top-1 agreement with PyTorch: {100 * report['int8_top1_agreement_with_pytorch']:.2f}%",
    ]
    for key, what in (("tflite_micro_vs_litert_int8", "LiteRT"), ("tflite_micro_vs_litert_reference_kernels_int8", "LiteRT's reference kernels")):
        c = report[key]
        lines.append(
            f"tflite-micro vs {what}: int8 outputs identical" if c["identical"] else
            f"tflite-micro vs {what}: {c['outputs_differing']} of {c['outputs']} int8 outputs differ (by at most {c['max_difference']}), top-1 agreement {100 * c['top1_agreement']:.2f}%"
        )
    rounding = report["int8_rounding"]
    if rounding["checked"]:
        for name in ROUNDING_RUNTIMES:
            found = rounding[name]
            lines.append(f"numpy int8 reference: {ROUNDING_RUNTIMES[name]} = " + (
                ", ".join(f"{op} {' or '.join(modes)} rounding" for op, modes in found.items()) + " (bit for bit)" if found else "no rounding assignment matches"))
        lines.append("  (\"double or single\": no output of that op fell where the two roundings differ)")
    else:
        lines.append(f"numpy int8 reference: not checked ({rounding['why']})")
    lines += [f"Note: {note}" for note in report["notes"]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- the export
@contextlib.contextmanager
def staging_folder(out_dir: Path) -> Iterator[Path]:
    """A hidden folder beside ``out_dir`` to build in; on success it replaces ``out_dir``, on any
    error it is removed (an existing ``out_dir`` is left as it was)."""
    if out_dir.exists() and not (out_dir.is_dir() and (not any(out_dir.iterdir()) or (out_dir / "report.json").is_file())):
        raise ExportError(f"{out_dir} exists and is not an earlier export (no report.json); choose another --out")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.partial")
        staging.mkdir()
    except OSError as err:
        raise ExportError(f"cannot write the export to {out_dir}: {err}") from err
    try:
        yield staging
        old = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.old")
        if out_dir.exists():
            out_dir.rename(old)
        try:
            staging.rename(out_dir)
        except OSError:
            if old.exists():
                old.rename(out_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def _step(log: Log, what: str) -> Iterator[None]:
    log(f"[export] {what} ...")
    start = time.perf_counter()
    yield
    log(f"[export] {what}: {time.perf_counter() - start:.1f} s")


def export_model(
    module,
    datamodule,
    out_dir: str | Path,
    source: str,
    calibration_clips: int = DEFAULT_CALIBRATION_CLIPS,
    compare: Sequence[str | Path] = (),
    log: Log = print,
) -> dict:
    """Export ``module`` (a KWSModule) into ``out_dir`` atomically and return the report.

    ``datamodule`` gives the feature settings, the calibration clips (``calibration_clips``
    training clips, no augmentation) and the test split every runtime is measured on;
    ``compare``: other .tflite classifiers to evaluate on the same test features (same labels).
    """
    from callbacks.quantization import quantizers

    out_dir = Path(out_dir)
    if calibration_clips < 1:
        raise ExportError(f"calibration_clips must be >= 1, got {calibration_clips}")
    missing = [str(path) for path in compare if not Path(path).is_file()]
    if missing:
        raise ExportError(f"no .tflite model to compare at {missing}")
    float_model = float_tinyconv(module.model)
    settings: FeatureSettings = datamodule.features
    labels = list(module.labels)
    with staging_folder(out_dir) as folder, tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        device = next(module.parameters()).device
        with _step(log, f"features of {calibration_clips} training clips (calibration) and the test split"):
            calibration, _ = split_features(datamodule, "training", clips=calibration_clips, device=device)
            test_x, test_y = split_features(datamodule, "testing", device=device)
        with _step(log, "ONNX export"):
            export_onnx(float_model, folder / "model.onnx")
        with _step(log, "TFLite float and int8 conversion (onnx2tf)"):
            float_tflite, int8_tflite = convert_tflite(folder / "model.onnx", calibration, work)
            (folder / "model_float.tflite").write_bytes(float_tflite)
            (folder / "model_int8.tflite").write_bytes(int8_tflite)
        with _step(log, "tflite-micro tensor arena"):
            int8 = TFLiteRunner(int8_tflite, "litert-reference")
            if int8.input_quantization is None or int8.output_quantization is None:
                raise ExportError("the int8 model's input or output is not quantized")
            arena = tensor_arena_size(int8_tflite, quantize(test_x[:1], *int8.input_quantization, int8.input["dtype"]), work)
        with _step(log, f"evaluation of every runtime on {len(test_y)} test clips"):
            results = verify(module, float_model, folder / "model.onnx", float_tflite, int8_tflite, test_x, test_y, arena["bytes"])
            compared = {}
            for path in compare:
                other = evaluate_tflite(path, test_x, test_y)
                if other["scores"].shape[1] != len(labels):
                    raise ExportError(f"{path} has {other['scores'].shape[1]} outputs, the labels are {labels}")
                compared[str(path)] = other["accuracy"]
        ops = tflite_ops(int8_tflite)
        write_model_data(int8_tflite, folder, source)
        write_model_settings(folder, source, settings, labels, int8.input_quantization, int8.output_quantization, arena["bytes"])
        write_model_ops(ops, folder, source)

        notes = []
        unwanted = sorted(set(ops) & set(UNWANTED_OPS))
        if unwanted:
            notes.append(f"the int8 graph holds {unwanted}: onnx2tf could not map this model's padding/layout directly")
        qat = quantizers(module.model)
        if qat:
            notes.append(
                "QAT-trained model: onnx2tf cannot take the learned activation ranges or fake-quantized weights, so the float "
                f"weights (QuantWrapper.layer) were exported and the int8 model re-quantized by calibration on {calibration_clips} "
                "training clips; compare pytorch_qat with tflite_int8 for the gap"
            )
        report = {
            "source": source,
            "out_dir": str(out_dir),
            "labels": labels,
            "features": {**dataclasses.asdict(settings), "frames": settings.num_frames, "feature_scale": FEATURE_SCALES[settings.frontend]},
            "calibration": {"split": "training", "clips": len(calibration), "augmentation": False},
            "artifacts": {},
            "ops": ops,
            "float_ops": tflite_ops(float_tflite),
            "int8": {
                "input_scale": int8.input_quantization[0], "input_zero_point": int8.input_quantization[1],
                "output_scale": int8.output_quantization[0], "output_zero_point": int8.output_quantization[1],
            },
            "tensor_arena": arena,
            **results,
            "compared": compared,
            "qat_input_ranges": {name: [float(q.act_min), float(q.act_max)] for name, q in qat.items()},
            "notes": notes,
        }
        names = ["model.onnx", "model_float.tflite", "model_int8.tflite", "model_data.cc", "model_data.h", "model_settings.h", "model_ops.h"]
        report["artifacts"] = {name: (folder / name).stat().st_size for name in names}
        (folder / "report.json").write_text(json.dumps(report, indent=2))
    log(format_report(report))
    return report


def export_checkpoint(ckpt: str | Path, out_dir: str | Path | None = None, config: str | Path | None = None, **kwargs) -> dict:
    """Load a checkpoint (and its data) and export it; ``out_dir`` defaults to
    ``<run folder>/export_<checkpoint name>``."""
    from datamodules.speech_commands import DataError

    ckpt = Path(ckpt)
    if out_dir is None:
        run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
        out_dir = run / f"export_{ckpt.stem}"
    module, datamodule = load_checkpoint(ckpt, config)
    module.eval()
    try:
        datamodule.setup()  # not prepare_data: export reads the data the model was trained on, never generates or downloads it
    except DataError as err:
        raise ExportError(f"{err}\n(export needs the data the checkpoint was trained on: point --config's data.data_dir at it)") from err
    return export_model(module, datamodule, out_dir, source=str(ckpt), **kwargs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m kws export",
        description="Export a checkpoint to ONNX, TFLite float/int8 and the firmware's C sources, verifying every runtime on the test split.",
    )
    parser.add_argument("--ckpt", required=True, help="a checkpoint saved by `python -m kws fit`")
    parser.add_argument("--out", default=None, help="output folder (default: <run folder>/export_<checkpoint name>); replaced only by a verified export")
    parser.add_argument("--config", default=None, help="a fit config whose `data:` section overrides the checkpoint's data settings (e.g. data_dir)")
    parser.add_argument("--calibration_clips", type=int, default=DEFAULT_CALIBRATION_CLIPS, help="training clips that calibrate the int8 model")
    parser.add_argument("--compare", action="append", default=[], metavar="TFLITE", help="another .tflite classifier to evaluate on the same test clips (repeatable)")
    args = parser.parse_args(argv)
    try:
        export_checkpoint(args.ckpt, args.out, args.config, calibration_clips=args.calibration_clips, compare=args.compare)
    except ExportError as err:
        parser.exit(2, f"error: {err}\n")
