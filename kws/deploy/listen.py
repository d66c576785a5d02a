"""Listen to a long recording as the firmware will: streaming features, one inference every
stride, and :class:`kws.streams.recognize.RecognizeCommands` turning the scores into detections.

``python -m kws listen FILE.wav [MORE.wav ...] [--model pytorch|int8|micro] (--ckpt CKPT | --export DIR | --tflite M)``

- The recording (or several, one after another with a quiet gap) is read in 10 s blocks
  (:mod:`kws.streams.frontend`): memory stays bounded whatever its length. The front end runs over it
  with its state (noise estimate, PCAN gain)
  carried from block to block and frame to frame, as the firmware's feature provider does.
- Every inference stride (the recognizer's ``inference_stride_ms``, a multiple of the 20 ms
  frame step) the last 49 frames (1 s) go to the model: PyTorch float from a checkpoint, or an
  int8 .tflite through LiteRT (``int8``) or tflite-micro (``micro``), with the runner of
  :mod:`kws.export.tflite`.
- Scores are probabilities: softmax of the (dequantized) logits, or the outputs themselves when
  the .tflite ends in SOFTMAX (micro_speech's reference model does).
- The inference's time is the end of its window's last frame, in ms from the start of the file.
- The labels, features and recognizer settings (stride included) are the model's own: an export
  folder's report.json (:mod:`kws.export.folder`), or the checkpoint's; flags override them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from kws.audio.settings import FeatureSettings
from kws.export.classifiers import ModelClassifier, pytorch_classifier, tflite_classifier
from kws.export.folder import REPORT, ExportFolder, read_export
from kws.streams.frontend import Classifier, StreamingFeatures, WindowStream, blocks_of, stream_windows
from kws.streams.recognize import (
    DEFAULT_RECOGNIZER,
    Detection,
    RecognizeCommands,
    RecognizerSettings,
    add_recognizer_flags,
    given_flags,
)

# micro_speech's labels: what a .tflite with no report.json beside it (the reference model) uses.
MICRO_SPEECH_LABELS = ["silence", "unknown", "yes", "no"]


def stream_features(audio: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """Features [frames, num_features] of a whole int16 recording, the front end's state carried."""
    if len(audio) < settings.clip_samples:
        raise ValueError(f"the recording is {len(audio)} samples, shorter than one {settings.clip_ms} ms window")
    return StreamingFeatures(settings).push(audio)


def windows(features: np.ndarray, settings: FeatureSettings, stride_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat windows [n, frames * features], end times in ms [n]): the last ``num_frames`` frames
    every ``stride_ms``, the first window being the first full one."""
    return WindowStream(settings, stride_ms).push(features)


def listen(
    audio: np.ndarray | Iterable[np.ndarray],
    classify: Classifier | ModelClassifier,
    labels: Sequence[str],
    settings: FeatureSettings = FeatureSettings(),
    stride_ms: int = DEFAULT_RECOGNIZER.inference_stride_ms,
    recognizer: RecognizeCommands | None = None,
    log: Callable[[str], None] | None = print,
    outputs: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> list[Detection]:
    """Detections in an int16 recording (an array, or its blocks in order: any length in bounded
    memory); each is logged as ``Heard yes (0.93) @1234ms``. ``outputs(times, raw)`` receives
    every inference's raw model outputs (a :class:`ModelClassifier`'s)."""
    blocks = blocks_of(audio) if isinstance(audio, np.ndarray) else audio
    recognizer = recognizer or RecognizeCommands(labels)
    detections = []
    for x, times in stream_windows(blocks, settings, stride_ms):
        if isinstance(classify, ModelClassifier):
            raw = classify.outputs(x)
            if outputs is not None:
                outputs(times, raw)
            probabilities = classify.probabilities(raw)
        else:
            probabilities = classify(x)
        for scores, t in zip(probabilities, times):
            detection = recognizer.process(scores, int(t))
            if detection:
                detections.append(detection)
                if log:
                    log(str(detection))
    return detections


def recordings(paths: list[str], sample_rate: int, gap: int, floor_rms: float = 2.0) -> Iterator[np.ndarray]:
    """The recordings one after another, each after ``gap`` samples of a Gaussian floor (seeded),
    block by block: a night's recording never sits in memory."""
    from kws.audio.wav import wav_blocks

    rng = np.random.default_rng(0)
    for path in paths:
        if gap:
            yield np.round(rng.normal(0.0, floor_rms, gap)).astype(np.int16)
        yield from wav_blocks(
            path,
            sample_rate,
            10 * sample_rate,
            rate_fix="(listen takes the rate the model was trained on, as the board's microphone delivers it)",
        )


def export_of(tflite: str | Path) -> ExportFolder | None:
    """The export folder ``tflite`` lies in (its report.json: labels, features, recognizer), or
    None when no report.json is beside it (micro_speech's reference model)."""
    folder = Path(tflite).parent
    return read_export(folder) if (folder / REPORT).is_file() else None


@contextlib.contextmanager
def staged_file(path: Path) -> Iterator:
    """A text file written beside ``path`` and renamed onto it when the block succeeds: a full
    disk or an error never leaves a cut file, nor destroys the one there before. Write errors
    name ``path``."""
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(staged, "w") as sink:
            yield sink
        os.replace(staged, path)
    except OSError as err:
        raise ValueError(
            f"cannot write --outputs {path} ({err.strerror or err}): it is left as it was; free some "
            "space or choose another --outputs"
        ) from err
    finally:
        staged.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> list[Detection]:
    from kws.audio.wav import wav_info
    from kws.export import ExportError

    parser = argparse.ArgumentParser(
        prog="python -m kws listen",
        description=(
            "Detect keywords in a long 16 kHz recording as the firmware would: streaming features, "
            "an inference every stride, averaged and suppressed detections."
        ),
    )
    parser.add_argument(
        "wav",
        nargs="+",
        help="the recording (16-bit PCM WAV, mono); several are played one after another, --gap_s apart",
    )
    parser.add_argument(
        "--gap_s",
        type=float,
        default=1.5,
        help="with several recordings: the quiet before each (a faint noise floor, as a microphone's)",
    )
    parser.add_argument(
        "--model",
        choices=("pytorch", "int8", "micro"),
        default=None,
        help="pytorch (default; micro with --export): the checkpoint's float model; int8: the .tflite "
        "through LiteRT; micro: through tflite-micro",
    )
    parser.add_argument(
        "--ckpt",
        help="a checkpoint from `python -m kws fit` (the model for --model pytorch; labels and features otherwise)",
    )
    parser.add_argument(
        "--export",
        help="an export folder (`python -m kws export`): its model_int8.tflite, labels, features and recognizer",
    )
    parser.add_argument(
        "--tflite",
        help="the int8 model (model_int8.tflite); labels and features from --ckpt, else "
        "its export folder's report.json, else micro_speech's",
    )
    parser.add_argument("--labels", nargs="+", help="class names in output order (overrides the above)")
    recognizer = parser.add_argument_group(
        "the recognizer and its stride (default: the model's -- its export folder's "
        "report.json, or the checkpoint's -- else micro_speech's)"
    )
    add_recognizer_flags(recognizer)
    parser.add_argument(
        "--arena_size", type=int, default=None, help="tflite-micro tensor arena bytes (default: the runtime's)"
    )
    parser.add_argument(
        "--outputs",
        default=None,
        help=(
            "write every inference's time (ms) and raw model outputs (int8 for an int8 model), a line each, "
            "to this file: what the firmware simulation writes"
        ),
    )
    args = parser.parse_args(argv)

    try:
        labels, settings, classify = MICRO_SPEECH_LABELS, FeatureSettings(), None
        base, calibrated = DEFAULT_RECOGNIZER, False  # the model's own when it has them
        if args.export:
            if args.tflite or args.model == "pytorch":
                parser.error("--export runs the export's int8 model: pass --model int8 or micro, and no --tflite")
            args.tflite = str(read_export(args.export).model)
        args.model = args.model or ("micro" if args.export else "pytorch")
        if args.model == "pytorch":
            if not args.ckpt:
                parser.error("--model pytorch needs --ckpt")
            classify, labels, settings = pytorch_classifier(args.ckpt)
            if classify.recognizer:
                base = RecognizerSettings.from_dict(classify.recognizer, f"{args.ckpt} (kws_recognizer)")
                calibrated = True
        else:
            if not args.tflite:
                parser.error(f"--model {args.model} needs --tflite or --export")
            export = export_of(args.tflite)
            if args.ckpt:
                _, labels, settings = pytorch_classifier(args.ckpt)
            elif export:
                labels, settings = export.labels, export.features
            if export:
                base, calibrated = export.recognizer, export.calibrated
            classify = tflite_classifier(args.tflite, "litert" if args.model == "int8" else "micro", args.arena_size)
        labels = args.labels or labels
        if args.gap_s < 0:
            parser.error(f"--gap_s must be >= 0, got {args.gap_s}")
        gap = int(args.gap_s * settings.sample_rate) if len(args.wav) > 1 else 0
        frames = sum(wav_info(path).frames + gap for path in args.wav)
        if frames < settings.clip_samples:
            raise ValueError(
                f"{', '.join(args.wav)}: the recording is {frames} samples, "
                f"shorter than one {settings.clip_ms} ms window"
            )
        blocks = recordings(args.wav, settings.sample_rate, gap)
        given = given_flags(args)
        options = dataclasses.replace(base, **given)
        shown = {k: v for k, v in options.to_dict().items() if k != "ignore"}
        origin = ("calibrated for the model" if calibrated else "defaults") + (", overridden" if given else "")
        print(f"recognizer: {', '.join(f'{k} {v:g}' for k, v in shown.items())} ({origin})", file=sys.stderr)
        if calibrated and options.inference_stride_ms != base.inference_stride_ms:
            # minimum_count and the averaging window count inferences: at another stride they mean other things.
            print(
                f"warning: the recognizer was calibrated at --stride_ms {base.inference_stride_ms}; at "
                f"{options.inference_stride_ms} its settings may hear more or less: pass --threshold / "
                "--average_window_ms / --minimum_count for this stride",
                file=sys.stderr,
            )
        recognizer = RecognizeCommands.from_settings(labels, options)
        if not args.outputs:
            return listen(blocks, classify, labels, settings, options.inference_stride_ms, recognizer)
        with staged_file(Path(args.outputs)) as sink:

            def write(times, raw):
                sink.writelines(f"{t} {' '.join(str(v) for v in row)}\n" for t, row in zip(times, raw.tolist()))

            return listen(blocks, classify, labels, settings, options.inference_stride_ms, recognizer, outputs=write)
    except (ExportError, ValueError, OSError) as err:  # ValueError: also the checkpoint's and the audio's errors
        parser.exit(2, f"error: {err}\n")
