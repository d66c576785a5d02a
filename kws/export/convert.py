"""ONNX -> TFLite through onnx2tf: the float32 model and the full-integer int8 one (int8 input and
output), calibrated on features of training clips."""

from __future__ import annotations

import contextlib
import io
import signal
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from kws.export import ExportError
from kws.export.graph import INPUT_NAME
from kws.utils.redirect import stderr_to


@contextlib.contextmanager
def noted_interrupt() -> Iterator[list]:
    """Ctrl-C noted, not only raised: onnx2tf wraps its steps in bare ``except:`` clauses that
    swallow KeyboardInterrupt (an export once ran to the end and exited 0 after Ctrl-C), so the
    caller checks the list after it returns. Off the main thread (no signals there), a no-op."""
    interrupted: list = []
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def handler(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


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
        with noted_interrupt() as interrupted, contextlib.redirect_stdout(console), stderr_to(stderr):
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
        if interrupted:  # Ctrl-C, which onnx2tf turned into an error or an exit
            raise KeyboardInterrupt("during the TFLite conversion") from err
        raise ExportError(f"onnx2tf failed ({err!r}):\n{output()}") from err
    if interrupted:  # Ctrl-C, which onnx2tf swallowed: stop now
        raise KeyboardInterrupt("during the TFLite conversion")
    stem = onnx_path.stem
    paths = out / f"{stem}_float32.tflite", out / f"{stem}_full_integer_quant.tflite"
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ExportError(f"onnx2tf wrote no {missing}:\n{output()}")
    return paths[0].read_bytes(), paths[1].read_bytes()
