"""Export a trained model for the microcontroller: ONNX, TFLite (float and full-integer int8) and
the C sources the firmware compiles, each runtime checked against PyTorch on the test split.

``python -m kws export --ckpt PATH [--out DIR] [--config conf.yaml]`` and the ``callbacks.Export``
callback both call :func:`export_model`, which builds everything in a hidden folder beside the
output folder, verifies it, and only then moves its files into place: an error leaves nothing
half-written, an earlier export is replaced only by a verified one, and files of the user's in
the output folder are never touched.

The path: the float model, TinyConv or DS-CNN (quantization wrappers stripped, pruning masks
applied, DS-CNN's BatchNorm folded into its convolutions) ->
``torch.onnx.export`` (opset 17, input ``features`` [N, frames * features]) -> onnx2tf ->
float and full-integer int8 TFLite (int8 input and output), calibrated on training clips
without augmentation. The graph handed to onnx2tf is an exact rewrite of the model (see
:func:`kws.export.graph.tflite_graph`) so that the int8 model holds only RESHAPE, CONV_2D, RESHAPE and
FULLY_CONNECTED (TinyConv), or RESHAPE, CONV_2D, DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, RESHAPE and
FULLY_CONNECTED (DS-CNN) -- no TRANSPOSE or PAD.

Artifacts: model.onnx, model_float.tflite, model_int8.tflite, model_data.cc/.h (the int8 model as
a C array), model_settings.h (features, labels, the int8 quantization, the recognizer and its
inference stride, all generated), model_ops.h (a MicroMutableOpResolver for the model's ops),
``<frontend>_frontend_tables.h`` (the C front end's tables for the model's own feature settings)
and report.json. The folder is the whole deploy contract: the firmware build, firmware-sim,
listen and the Arduino library read it and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, Sequence

# TensorFlow (through onnx2tf) is chatty; keep the console for the export's own progress.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from datamodules.layout import DataError  # noqa: E402
from kws.audio.settings import FeatureSettings  # noqa: E402
from kws.compression.quantization import quantizers  # noqa: E402
from kws.export import ExportError  # noqa: E402
from kws.export.arduino import write_arduino_library  # noqa: E402
from kws.export.c_sources import HEADER_NAMES, tables_header, write_model_data, write_model_ops  # noqa: E402
from kws.export.convert import convert_tflite  # noqa: E402
from kws.export.folder import REPORT, report_inputs, write_settings  # noqa: E402
from kws.export.frontend_tables import write_frontend_tables  # noqa: E402
from kws.export.graph import export_onnx, plain_float_model  # noqa: E402
from kws.export.qat_int8 import qat_int8_model  # noqa: E402
from kws.export.qat_verify import verify_qat, weight_report  # noqa: E402
from kws.export.report import format_report  # noqa: E402
from kws.export.tflite import TFLiteRunner, evaluate_tflite, quantize, tensor_arena_size, tflite_ops  # noqa: E402
from kws.export.verify import runtime_accuracies, verify  # noqa: E402
from kws.streams.evaluate import DEFAULT_CALIBRATION_FA_PER_HOUR, data_stream_options  # noqa: E402
from kws.streams.recognize import DEFAULT_RECOGNIZER  # noqa: E402
from kws.training.checkpoints import CheckpointError, load_checkpoint  # noqa: E402

DEFAULT_CALIBRATION_CLIPS = 1000
# Ops the firmware should never need for these models: layout and padding glue.
UNWANTED_OPS = ("TRANSPOSE", "PAD")

Log = Callable[[str], None]


ARTIFACTS = (
    "model.onnx",
    "model_float.tflite",
    "model_int8.tflite",
    "model_data.cc",
    "model_data.h",
    "model_settings.h",
    "model_ops.h",
)
# Besides ARTIFACTS, an export holds one of these: the tables of its model's front end.
FRONTEND_TABLES = tuple(HEADER_NAMES.values())


def artifacts(frontend: str) -> tuple[str, ...]:
    """The files of an export of a model with this front end (report.json aside)."""
    return (*ARTIFACTS, tables_header(frontend))


@contextlib.contextmanager
def staging_folder(out_dir: Path) -> Iterator[Path]:
    """A hidden folder beside ``out_dir`` to build in. On success its files replace the export's
    own files in ``out_dir`` (the artifacts, then report.json, which marks a complete export);
    nothing else in ``out_dir`` is touched -- a build folder or notes the user keeps there stay.
    On any error the staging folder is removed and ``out_dir`` is left as it was. A non-empty
    ``out_dir`` that holds no earlier export (no report.json) is refused."""
    if out_dir.exists() and not (out_dir.is_dir() and (not any(out_dir.iterdir()) or (out_dir / REPORT).is_file())):
        raise ExportError(f"{out_dir} exists and is not an earlier export (no {REPORT}); choose another --out")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.partial")
        staging.mkdir()
    except OSError as err:
        raise ExportError(f"cannot write the export to {out_dir}: {err}") from err
    try:
        yield staging
        out_dir.mkdir(exist_ok=True)
        # The old report goes first: an export interrupted while its files are replaced has none.
        (out_dir / REPORT).unlink(missing_ok=True)
        for name in FRONTEND_TABLES:  # another front end's tables, of an earlier export, would mislead
            if not (staging / name).is_file():
                (out_dir / name).unlink(missing_ok=True)
        for name in (*ARTIFACTS, *(t for t in FRONTEND_TABLES if (staging / t).is_file()), REPORT):
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
    recognizer_fa_per_hour: float | None = DEFAULT_CALIBRATION_FA_PER_HOUR,
) -> dict:
    """Export ``module`` (a KWSModule) into ``out_dir`` atomically and return the report.

    ``datamodule`` gives the feature settings, the calibration clips (``calibration_clips``
    training clips, no augmentation) and the test split every runtime is measured on;
    ``recognizer_fa_per_hour``: the int8 model (tflite-micro) is streamed through the validation
    and test recordings of the data (:func:`kws.streams.evaluate.stream_test`), and the recognizer
    settings with the best keyword recall on validation within that many false alarms per hour go
    into model_settings.h and report.json (None: micro_speech's defaults, no stream test);
    ``compare``: other .tflite classifiers to evaluate on the same test features (same labels).
    """
    out_dir = Path(out_dir)
    if calibration_clips < 1:
        raise ExportError(f"calibration_clips must be >= 1, got {calibration_clips}")
    missing = [str(path) for path in compare if not Path(path).is_file()]
    if missing:
        raise ExportError(f"no .tflite model to compare at {missing}")
    float_model = plain_float_model(module.model)
    settings: FeatureSettings = datamodule.features
    labels = list(module.labels)
    with staging_folder(out_dir) as folder, tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        device = next(module.parameters()).device
        with _step(log, f"features of {calibration_clips} training clips (calibration) and the test split"):
            try:
                calibration, _ = datamodule.split_features("training", clips=calibration_clips, device=device)
                test_x, test_y = datamodule.split_features("testing", device=device)
                # the test clips both ways: after their lead-in (test_x, the board's view) and fresh
                views = datamodule.eval_views
                fresh = datamodule.split_features("testing", device=device, view="fresh") if len(views) > 1 else None
            except DataError as err:
                raise ExportError(str(err)) from err
        with _step(log, "ONNX export"):
            export_onnx(float_model, folder / "model.onnx")
        with _step(log, "TFLite float and int8 conversion (onnx2tf)"):
            float_tflite, int8_tflite = convert_tflite(folder / "model.onnx", calibration, work)
            qat = quantizers(module.model)
            qat_problem = None
            if qat:  # QAT's own scales and integers replace the calibration's (kws.export.qat_int8)
                int8_tflite, qat_problem = qat_int8_model(module.model, int8_tflite)
            (folder / "model_float.tflite").write_bytes(float_tflite)
            (folder / "model_int8.tflite").write_bytes(int8_tflite)
        with _step(log, "tflite-micro tensor arena"):
            int8 = TFLiteRunner(int8_tflite, "litert-reference")
            if int8.input_quantization is None or int8.output_quantization is None:
                raise ExportError("the int8 model's input or output is not quantized")
            arena = tensor_arena_size(
                int8_tflite, quantize(test_x[:1], *int8.input_quantization, int8.input["dtype"]), work
            )
        with _step(log, f"evaluation of every runtime on {len(test_y)} test clips"):
            results = verify(
                module, float_model, folder / "model.onnx", float_tflite, int8_tflite, test_x, test_y, arena["bytes"]
            )
            results["accuracy_views"] = {views[0]: results["accuracy"]}
            results["int8_weights"] = weight_report(module.model, int8_tflite)
            if qat and qat_problem is None:
                results["qat_int8"] = verify_qat(module.model, int8_tflite, test_x, arena["bytes"])
            if fresh is not None:
                results["accuracy_views"]["fresh"] = runtime_accuracies(
                    module, float_model, folder / "model.onnx", float_tflite, int8_tflite, *fresh, arena["bytes"]
                )
            compared = {}  # path -> {view: accuracy}
            for path in compare:
                other = evaluate_tflite(path, test_x, test_y)
                if other["scores"].shape[1] != len(labels):
                    raise ExportError(f"{path} has {other['scores'].shape[1]} outputs, the labels are {labels}")
                compared[str(path)] = {views[0]: other["accuracy"]}
                if fresh is not None:
                    compared[str(path)]["fresh"] = evaluate_tflite(path, *fresh)["accuracy"]
        recognizer, stream_test = {"settings": DEFAULT_RECOGNIZER.to_dict(), "calibrated_on": None}, None
        if recognizer_fa_per_hour is not None:
            with _step(log, "stream test of the int8 model (tflite-micro) and the recognizer's calibration"):
                try:
                    calibrated, stream_test = calibrate_int8(
                        int8_tflite,
                        labels,
                        settings,
                        datamodule.data_dir,
                        recognizer_fa_per_hour,
                        arena["bytes"],
                        log,
                        data_stream_options(datamodule),
                    )
                    recognizer = calibrated or recognizer
                except (ValueError, OSError) as err:
                    raise ExportError(
                        f"the stream test of the int8 model (the recognizer's calibration) failed: {err}"
                    ) from err
        ops = tflite_ops(int8_tflite)
        write_model_data(int8_tflite, folder, source)
        inputs = report_inputs(
            source, settings, labels, int8.input_quantization, int8.output_quantization, arena["bytes"], recognizer
        )
        write_settings(folder, inputs)
        write_model_ops(ops, folder, source, int8=int8.input["dtype"] == np.int8)
        write_frontend_tables(folder, settings)

        notes = []
        unwanted = sorted(set(ops) & set(UNWANTED_OPS))
        if unwanted:
            notes.append(f"the int8 graph holds {unwanted}: onnx2tf could not map this model's padding/layout directly")
        if qat and qat_problem is None:
            notes.append(
                "QAT-trained model: the int8 model holds QAT's own scales, zero points and integer weights "
                "(kws.export.qat_int8), not the calibration's; see qat_int8 for the checks"
            )
        elif qat:
            notes.append(
                f"QAT-trained model that TFLite int8 cannot hold exactly ({qat_problem}): the float weights "
                f"(QuantWrapper.layer) were exported and the int8 model re-quantized by calibration on "
                f"{calibration_clips} training clips; compare pytorch_qat with tflite_int8 for the gap"
            )
        report = {
            "source": source,
            "out_dir": str(out_dir),
            "labels": labels,
            "features": inputs["features"],
            "calibration": {"split": "training", "clips": len(calibration), "augmentation": False},
            "artifacts": {},
            "ops": ops,
            "float_ops": tflite_ops(float_tflite),
            "int8": inputs["int8"],
            "tensor_arena": arena,
            **results,
            "compared": compared,
            "recognizer": recognizer,
            "stream_test": stream_test,
            "qat_input_ranges": {name: [float(q.act_min), float(q.act_max)] for name, q in qat.items()},
            "notes": notes,
        }
        report["artifacts"] = {name: (folder / name).stat().st_size for name in artifacts(settings.frontend)}
        (folder / REPORT).write_text(json.dumps(report, indent=2))
    log(format_report(report))
    # The verified folder as an Arduino library (arduino/<name>/ and its .zip), from the folder's files.
    try:
        write_arduino_library(out_dir, log=log)
    except OSError as err:
        raise ExportError(
            f"{out_dir} holds the new, verified export, but its Arduino library could not be written "
            f"({err.strerror or err}); free some space and run: python -m kws arduino-library "
            f"--export {out_dir}"
        ) from err
    return report


def calibrate_int8(
    model: bytes,
    labels: list[str],
    settings: FeatureSettings,
    data_dir: Path,
    max_fa_per_hour: float,
    arena: int,
    log: Log,
    stream_kwargs: dict | None = None,
) -> tuple[dict | None, dict]:
    """(the recognizer calibrated on the validation stream for ``max_fa_per_hour`` or None,
    the stream test's numbers on both streams at every budget), the int8 model running in
    tflite-micro as on the board: the stream test of callbacks.StreamTest and stream-test."""
    from kws.export.classifiers import tflite_classifier
    from kws.streams.evaluate import stream_test

    test = stream_test(
        tflite_classifier(model, "micro", arena),
        labels,
        settings,
        data_dir,
        "int8 (tflite-micro)",
        max_fa_per_hour,
        stream_kwargs=stream_kwargs,
        log=lambda line: log(f"[export] {line}"),
    )
    return test.calibration, test.summary


def default_out(ckpt: Path) -> Path:
    """``<run folder>/export_<checkpoint name>``."""
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run / f"export_{ckpt.stem}"


def export_checkpoint(
    ckpt: str | Path, out_dir: str | Path | None = None, config: str | Path | None = None, **kwargs
) -> dict:
    """Load a checkpoint (and its data) and export it; ``out_dir`` defaults to
    ``<run folder>/export_<checkpoint name>``."""
    ckpt = Path(ckpt)
    out_dir = default_out(ckpt) if out_dir is None else out_dir
    try:
        module, datamodule = load_checkpoint(ckpt, config)
    except CheckpointError as err:
        raise ExportError(str(err)) from err
    module.eval()
    try:
        # not prepare_data: export reads the data the model was trained on, never generates or downloads it
        datamodule.setup()
    except DataError as err:
        raise ExportError(
            f"{err}\n(export needs the data the checkpoint was trained on: point --config's data.data_dir at it)"
        ) from err
    return export_model(module, datamodule, out_dir, source=str(ckpt), **kwargs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m kws export",
        description=(
            "Export a checkpoint to ONNX, TFLite float/int8 and the firmware's C sources, "
            "verifying every runtime on the test split."
        ),
    )
    parser.add_argument("--ckpt", required=True, help="a checkpoint saved by `python -m kws fit`")
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: <run folder>/export_<checkpoint name>); replaced only by a verified export",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="a fit config whose `data:` section overrides the checkpoint's data settings (e.g. data_dir)",
    )
    parser.add_argument(
        "--calibration_clips",
        type=int,
        default=DEFAULT_CALIBRATION_CLIPS,
        help="training clips that calibrate the int8 model",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="TFLITE",
        help="another .tflite classifier to evaluate on the same test clips (repeatable)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else default_out(Path(args.ckpt))
    try:
        export_checkpoint(args.ckpt, out, args.config, calibration_clips=args.calibration_clips, compare=args.compare)
    except ExportError as err:
        parser.exit(2, f"error: {err}\n")
    except OSError as err:  # a full disk, most often: the staging folder kept the earlier export whole
        where = f" ({err.filename})" if err.filename else ""
        parser.exit(
            2,
            f"error: the export to {out} failed: {err.strerror or err}{where}; {out} is left as it was: "
            "free some space (or choose another --out) and export again\n",
        )
    except KeyboardInterrupt:
        if os.environ.get("KWS_DEBUG"):
            import traceback

            traceback.print_exc()
        parser.exit(130, f"error: export interrupted: {out} is left as it was\n")
