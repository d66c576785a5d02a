"""The stream test: how many keywords a model hears in long recordings, and how often it is wrong.

``python -m kws stream-test --ckpt CKPT [--tflite model_int8.tflite --runtime micro]``

:mod:`kws.streams.evaluate` does the work:

1. Builds (or reuses, cached beside the corpus) a validation and a test stream
   (:mod:`kws.streams.recordings`: the split's keywords and other words at random gaps over
   its part of the background noise, at several levels, with stretches of noise alone; test
   speakers only in the test stream). Deterministic from the seeds.
2. Streams each through the front end with its state carried (:mod:`kws.streams.frontend`, as
   ``listen`` and the firmware run), the model on every window (PyTorch float, or the int8 model
   through LiteRT or tflite-micro), once.
3. Sweeps the recognizer (threshold x averaging window) on those scores
   (:mod:`kws.streams.scoring`), picks on the VALIDATION stream the recall-maximising setting
   within each false-alarm budget, and reports the TEST stream at it: keyword recall, false
   alarms per hour of non-keyword audio, detection delay.

Writes ``<out>/sweep_<split>.csv`` (every setting), ``<out>/det.png`` and ``<out>/results.json``
and prints the table. The same function (:func:`kws.streams.evaluate.stream_test`) runs at the
end of fit (``callbacks.StreamTest``, which keeps the calibrated recognizer in the checkpoint)
and in the export (which writes it into the export folder).

``--export DIR`` scores that export's int8 model (tflite-micro, as the board) with the export's
labels and features, and writes the recognizer calibrated for ``--calibrate_fa_per_hour`` into
the folder: model_settings.h and report.json's ``recognizer`` and ``stream_test``, each replaced
atomically; a folder that is not an export is refused. Rebuild the firmware afterwards.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from kws.streams.evaluate import (
    DEFAULT_BUDGETS,
    DEFAULT_CALIBRATION_FA_PER_HOUR,
    STRIDE_MS,
    data_stream_options,
    stream_test,
    table,
)


def writable_folder(out: Path) -> None:
    """Create ``out`` and write a probe file in it: a folder the results cannot go to is named
    at once, not after the whole stream test."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".probe."):
            pass
    except OSError as err:
        raise ValueError(
            f"cannot write the results to --out {out} ({err.strerror or err}); choose another --out"
        ) from err


def main(argv: list[str] | None = None) -> dict:
    from kws.export import ExportError
    from kws.export.classifiers import module_classifier, tflite_classifier
    from kws.export.folder import read_export, write_recognizer
    from kws.export.tflite import read_model
    from kws.training.checkpoints import load_checkpoint

    parser = argparse.ArgumentParser(prog="python -m kws stream-test", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ckpt",
        help="a checkpoint from `python -m kws fit`: its labels, features and data (and the "
        "float model); with --export, default: the export's source",
    )
    parser.add_argument("--tflite", help="score this int8 .tflite instead of the float model")
    parser.add_argument(
        "--export",
        help="score this export folder's int8 model (tflite-micro) and write its calibrated recognizer into the folder",
    )
    parser.add_argument(
        "--runtime",
        choices=("litert", "micro"),
        default="micro",
        help="the .tflite's runtime (micro: tflite-micro, as the board)",
    )
    parser.add_argument(
        "--data_dir", default=None, help="the corpus the streams are built from (default: the checkpoint's)"
    )
    parser.add_argument("--out", default="runs/stream_test")
    parser.add_argument(
        "--budgets",
        type=float,
        nargs="+",
        default=list(DEFAULT_BUDGETS),
        help="false alarms per hour the recognizer is calibrated for",
    )
    parser.add_argument(
        "--calibrate_fa_per_hour",
        type=float,
        default=DEFAULT_CALIBRATION_FA_PER_HOUR,
        help="the budget whose setting --export writes (added to --budgets)",
    )
    parser.add_argument(
        "--stride_ms",
        type=int,
        default=None,
        help=f"time between inferences (default: the export's recognizer's, else {STRIDE_MS})",
    )
    parser.add_argument(
        "--tolerance_ms", type=int, default=1000, help="a keyword counts when its detection comes before its end + this"
    )
    args = parser.parse_args(argv)
    if args.export and (args.tflite or args.runtime != "micro"):
        parser.error("--export scores the export's own int8 model in tflite-micro: drop --tflite / --runtime")
    try:
        # A bad --out, --tflite or export folder is refused here, before any work.
        writable_folder(Path(args.out))
        if args.tflite:
            read_model(args.tflite)
        export = read_export(args.export) if args.export else None
        ckpt = args.ckpt or (export.report["source"] if export else None)
        if not ckpt:
            parser.error("pass --ckpt (or --export, whose report.json names its checkpoint)")
        module, datamodule = load_checkpoint(ckpt)  # labels, features and data of the run
        labels, settings = list(module.labels), datamodule.features
        options = data_stream_options(datamodule)
        if args.data_dir:
            options.pop("cache_dir")  # another corpus: its own <data_dir>/.cache
        data_dir = Path(args.data_dir or datamodule.data_dir)
        stride_ms = args.stride_ms or (export.recognizer.inference_stride_ms if export else STRIDE_MS)
        if export:
            labels, settings = export.labels, export.features  # the board's: what the int8 model was exported with
            classify = tflite_classifier(export.model, "micro", export.report["tensor_arena"]["bytes"])
            name = "int8 (tflite-micro)"
        elif args.tflite:
            classify = tflite_classifier(args.tflite, args.runtime)
            name = f"int8 ({'tflite-micro' if args.runtime == 'micro' else 'LiteRT'})"
        else:
            classify, name = module_classifier(module), "float (PyTorch)"
        test = stream_test(
            classify,
            labels,
            settings,
            data_dir,
            name,
            args.calibrate_fa_per_hour,
            args.budgets,
            stride_ms,
            args.tolerance_ms,
            stream_kwargs=options,
            out=Path(args.out),
            title=f"{name}: {args.export or args.tflite or ckpt}",
        )
        print(table(test.results, name))
        print(f"Stream test: {args.out}/results.json, det.png, sweep_validation.csv, sweep_testing.csv")
        if export:
            if test.calibration is None:
                raise ExportError(
                    f"no recognizer setting is within {args.calibrate_fa_per_hour:g} false alarms/h on "
                    f"the validation stream: {export.path} is left as it was "
                    "(raise --calibrate_fa_per_hour)"
                )
            write_recognizer(export.path, test.calibration, test.summary)
            print(
                f"recognizer written into {export.path} (model_settings.h, report.json): "
                f"{json.dumps(test.calibration['settings'])}; rebuild the firmware"
            )
    except (ExportError, ValueError, OSError) as err:
        parser.exit(2, f"error: {err}\n")
    return test.results
