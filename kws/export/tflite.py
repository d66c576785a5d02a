"""Running .tflite models: the op list, TFLite's input quantization, one runner for LiteRT (default
or reference kernels) and the tflite-micro interpreter, and the tensor arena tflite-micro needs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from kws.export import ExportError
from kws.utils.redirect import stderr_to

# Every runtime an export is checked in, by its key in report.json and its printed label.
RUNTIME_LABELS = {
    "pytorch_float": "PyTorch float",
    "onnxruntime": "ONNX Runtime",
    "tflite_float": "TFLite float (LiteRT)",
    "pytorch_qat": "PyTorch QAT (fake quant)",
    "tflite_int8": "TFLite int8 (LiteRT)",
    "tflite_micro": "TFLite int8 (tflite-micro)",
}


def parse_model(model: bytes):
    """(the flatbuffer as LiteRT's object API ``ModelT``, each operator's builtin op name per
    subgraph): the one parser of .tflite files here."""
    from ai_edge_litert import schema_py_generated as schema

    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    parsed = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in parsed.operatorCodes]
    return parsed, [[names[codes[op.opcodeIndex]] for op in graph.operators or []] for graph in parsed.subgraphs]


def read_model(path: str | Path, fix: str = "export it again (python -m kws export) or copy it whole") -> bytes:
    """The bytes of the .tflite model at ``path``, checked by LiteRT's flatbuffer verifier first:
    a cut or garbage file would otherwise fail deep in a parser (struct.error) naming no file, or
    worse, inside tflite-micro, which does not verify."""
    from ai_edge_litert.interpreter import Interpreter

    path = Path(path)
    try:
        model = path.read_bytes()
    except OSError as err:
        raise ExportError(f"{path}: cannot read the model ({err.strerror or err})") from err
    try:
        Interpreter(model_content=model, num_threads=1)
        parse_model(model)
    except Exception as err:  # noqa: BLE001  whatever the flatbuffer readers raise, the file is named
        raise ExportError(f"{path}: not a valid .tflite model, cut or damaged ({err}); {fix}") from err
    return model


def tflite_ops(model: bytes) -> list[str]:
    """The builtin op of every operator of the model's subgraphs, in execution order."""
    return [op for graph in parse_model(model)[1] for op in graph]


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
            raise ExportError(
                f"the model takes {expected} input values per clip, the features have {features.shape[1]}"
            )
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


def evaluate_tflite(
    model: bytes | str | Path,
    features: np.ndarray,
    labels: np.ndarray | None = None,
    runtime: str = "litert",
    arena_size: int | None = None,
) -> dict:
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
        from kws.utils.metrics import accuracy  # torchmetrics: not needed to run a model

        result["accuracy"] = accuracy(scores, labels)
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
    with stderr_to(log):  # each failed allocation prints to stderr
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
    with stderr_to(log):
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
