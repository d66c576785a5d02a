"""Export: PyTorch -> ONNX -> TFLite float/int8 -> the firmware's C sources, verified in every
runtime. One module per step (graph, convert, tflite, verify, c_sources, report), chained by
:mod:`kws.export.pipeline`; ``int8_reference`` is TFLite's integer arithmetic in numpy,
``frontend_tables`` the C front ends' generated tables and ``folder`` the export folder, the one
deploy contract its readers (firmware, listen, firmware-sim, stream-test) go through."""


class ExportError(RuntimeError):
    """An export that cannot be done; the message names the input at fault and the fix."""
