"""ONNX -> TFLite through onnx2tf: the float32 model and the full-integer int8 one (int8 input and
output), calibrated on features of training clips."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from kws.export import ExportError
from kws.export.graph import INPUT_NAME
from kws.utils.redirect import stderr_to


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
        with contextlib.redirect_stdout(console), stderr_to(stderr):
            import onnx2tf
            import tensorflow as tf

            with contextlib.suppress(RuntimeError):  # already initialised: nothing to do
                tf.config.set_visible_devices([], "GPU")  # leave the GPU to PyTorch (TF would claim all its memory)
            onnx2tf.convert(
                input_onnx_file_path=str(onnx_path),
                output_folder_path=str(out),
                overwrite_input_shape=[f"{INPUT_NAME}:1,{calibration.shape[1]}"],  # the firmware runs batch 1
                output_integer_quantized_tflite=True,
                custom_input_op_name_np_data_path=[
                    [INPUT_NAME, str(calibration_path), 0.0, 1.0]
                ],  # features as they are: mean 0, std 1
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
