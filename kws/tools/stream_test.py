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
and prints the table (``callbacks.StreamTest`` logs the same to the fit's loggers and W&B).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from kws.streams.evaluate import DEFAULT_BUDGETS, data_stream_options, evaluate, table, write


def main(argv: list[str] | None = None) -> dict:
    from kws.export.classifiers import module_classifier, tflite_classifier
    from kws.training.checkpoints import load_checkpoint

    parser = argparse.ArgumentParser(prog="python -m kws stream-test", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="a checkpoint from `python -m kws fit`: its labels, features and data (and the float model)")
    parser.add_argument("--tflite", help="score this int8 .tflite instead of the float model")
    parser.add_argument("--runtime", choices=("litert", "micro"), default="micro", help="the .tflite's runtime (micro: tflite-micro, as the board)")
    parser.add_argument("--data_dir", default=None, help="the corpus the streams are built from (default: the checkpoint's)")
    parser.add_argument("--out", default="runs/stream_test")
    parser.add_argument("--budgets", type=float, nargs="+", default=list(DEFAULT_BUDGETS), help="false alarms per hour the recognizer is calibrated for")
    parser.add_argument("--stride_ms", type=int, default=100)
    parser.add_argument("--tolerance_ms", type=int, default=1000, help="a keyword counts when its detection comes before its end + this")
    args = parser.parse_args(argv)
    try:
        module, datamodule = load_checkpoint(args.ckpt)  # labels, features and data of the run
        labels, settings = list(module.labels), datamodule.features
        options = data_stream_options(datamodule)
        if args.data_dir:
            options.pop("cache_dir")  # another corpus: its own <data_dir>/.cache
        data_dir = Path(args.data_dir or datamodule.data_dir)
        if args.tflite:
            classify, name = tflite_classifier(args.tflite, args.runtime), f"int8 ({'tflite-micro' if args.runtime == 'micro' else 'LiteRT'})"
        else:
            classify, name = module_classifier(module), "float (PyTorch)"
        results = evaluate(classify, labels, settings, data_dir, args.budgets, args.stride_ms, args.tolerance_ms, stream_kwargs=options)
    except (ValueError, OSError) as err:
        parser.exit(2, f"error: {err}\n")
    write(results, Path(args.out), name, title=f"{name}: {args.ckpt}")
    print(table(results, name))
    print(f"Stream test: {args.out}/results.json, det.png, sweep_validation.csv, sweep_testing.csv")
    return results
