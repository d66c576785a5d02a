"""Listen to a long recording as the firmware will: streaming features, one inference every
stride, and :class:`kws.streams.recognize.RecognizeCommands` turning the scores into detections.

``python -m kws listen FILE.wav [MORE.wav ...] --model {pytorch,int8,micro} (--ckpt CKPT | --tflite MODEL)``

- The recording (or several, one after another with a quiet gap) is read in 10 s blocks
  (:mod:`kws.streams.frontend`): memory stays bounded whatever its length. The front end runs over it with its state (noise estimate, PCAN gain)
  carried from block to block and frame to frame, as the firmware's feature provider does.
- Every ``stride_ms`` (a multiple of the 20 ms frame step) the last 49 frames (1 s) go to the
  model: PyTorch float from a checkpoint, or an int8 .tflite through LiteRT (``int8``) or
  tflite-micro (``micro``), with the runner of :mod:`kws.export.tflite`.
- Scores are probabilities: softmax of the (dequantized) logits, or the outputs themselves when
  the .tflite ends in SOFTMAX (micro_speech's reference model does).
- The inference's time is the end of its window's last frame, in ms from the start of the file.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from kws.audio.settings import FeatureSettings
from kws.export.classifiers import ModelClassifier, pytorch_classifier, tflite_classifier
from kws.streams.frontend import Classifier, StreamingFeatures, WindowStream, blocks_of, stream_windows
from kws.streams.recognize import CALIBRATION_STRIDE_MS, RECOGNIZER_DEFAULTS, Detection, RecognizeCommands

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
    stride_ms: int = 100,
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
        yield from wav_blocks(path, sample_rate, 10 * sample_rate, rate_fix="(listen takes the rate the model was trained on, as the board's microphone delivers it)")


def tflite_settings(path: str | Path) -> tuple[list[str], FeatureSettings, dict | None] | None:
    """Labels, features and calibrated recognizer settings from the ``report.json`` that
    ``python -m kws export`` wrote beside the model."""
    report = Path(path).parent / "report.json"
    if not report.is_file():
        return None
    data = json.loads(report.read_text())
    fields = {f.name for f in dataclasses.fields(FeatureSettings)}
    recognizer = (data.get("recognizer") or {}).get("settings")
    return list(data["labels"]), FeatureSettings(**{k: v for k, v in data["features"].items() if k in fields}), recognizer


def main(argv: list[str] | None = None) -> list[Detection]:
    from kws.audio.wav import wav_info
    from kws.export import ExportError

    parser = argparse.ArgumentParser(prog="python -m kws listen", description="Detect keywords in a long 16 kHz recording as the firmware would: streaming features, an inference every stride, averaged and suppressed detections.")
    parser.add_argument("wav", nargs="+", help="the recording (16-bit PCM WAV, mono); several are played one after another, --gap_s apart")
    parser.add_argument("--gap_s", type=float, default=1.5, help="with several recordings: the quiet before each (a faint noise floor, as a microphone's)")
    parser.add_argument("--model", choices=("pytorch", "int8", "micro"), default="pytorch", help="pytorch: the checkpoint's float model; int8: the .tflite through LiteRT; micro: through tflite-micro")
    parser.add_argument("--ckpt", help="a checkpoint from `python -m kws fit` (the model for --model pytorch; labels and features otherwise)")
    parser.add_argument("--tflite", help="the int8 model (model_int8.tflite); labels and features from --ckpt, else report.json beside it, else micro_speech's")
    parser.add_argument("--labels", nargs="+", help="class names in output order (overrides the above)")
    parser.add_argument("--stride_ms", type=int, default=100, help="time between inferences, a multiple of the 20 ms frame step")
    recognizer = parser.add_argument_group("the recognizer (default: the settings calibrated for the model -- report.json beside --tflite, or the checkpoint's -- else RecognizeCommands' defaults)")
    recognizer.add_argument("--threshold", type=float, default=None, help="minimum averaged probability of a detection")
    recognizer.add_argument("--average_window_ms", type=int, default=None)
    recognizer.add_argument("--suppression_ms", type=int, default=None)
    recognizer.add_argument("--minimum_count", type=int, default=None)
    parser.add_argument("--arena_size", type=int, default=None, help="tflite-micro tensor arena bytes (default: the runtime's)")
    parser.add_argument("--outputs", default=None, help="write every inference's time (ms) and raw model outputs (int8 for an int8 model), a line each, to this file: what the firmware simulation writes")
    args = parser.parse_args(argv)

    try:
        labels, settings, classify, calibrated = MICRO_SPEECH_LABELS, FeatureSettings(), None, None
        if args.model == "pytorch":
            if not args.ckpt:
                parser.error("--model pytorch needs --ckpt")
            classify, labels, settings = pytorch_classifier(args.ckpt)
            calibrated = classify.recognizer
        else:
            if not args.tflite:
                parser.error(f"--model {args.model} needs --tflite")
            found = tflite_settings(args.tflite)
            if args.ckpt:
                _, labels, settings = pytorch_classifier(args.ckpt)
            elif found:
                labels, settings, _ = found
            calibrated = found[2] if found else None
            classify = tflite_classifier(args.tflite, "litert" if args.model == "int8" else "micro", args.arena_size)
        labels = args.labels or labels
        if args.gap_s < 0:
            parser.error(f"--gap_s must be >= 0, got {args.gap_s}")
        gap = int(args.gap_s * settings.sample_rate) if len(args.wav) > 1 else 0
        frames = sum(wav_info(path).frames + gap for path in args.wav)
        if frames < settings.clip_samples:
            raise ValueError(f"{', '.join(args.wav)}: the recording is {frames} samples, shorter than one {settings.clip_ms} ms window")
        blocks = recordings(args.wav, settings.sample_rate, gap)
        given = {k: getattr(args, k if k != "detection_threshold" else "threshold") for k in RECOGNIZER_DEFAULTS}
        options = {**RECOGNIZER_DEFAULTS, **(calibrated or {}), **{k: v for k, v in given.items() if v is not None}}
        print(f"recognizer: {', '.join(f'{k} {v:g}' for k, v in options.items())} ({'calibrated for the model' if calibrated else 'defaults'}"
              f"{', overridden' if any(v is not None for v in given.values()) else ''})", file=sys.stderr)
        if calibrated and args.stride_ms != CALIBRATION_STRIDE_MS:
            # minimum_count and the averaging window count inferences: at another stride they mean other things.
            print(f"warning: the recognizer was calibrated at --stride_ms {CALIBRATION_STRIDE_MS}; at {args.stride_ms} its settings may hear "
                  "more or less: pass --threshold / --average_window_ms / --minimum_count for this stride", file=sys.stderr)
        recognizer = RecognizeCommands(labels, **options)
        with open(args.outputs, "w") if args.outputs else contextlib.nullcontext() as sink:
            write = (lambda times, raw: sink.writelines(f"{t} {' '.join(str(v) for v in row)}\n" for t, row in zip(times, raw.tolist()))) if sink else None
            return listen(blocks, classify, labels, settings, args.stride_ms, recognizer, outputs=write)
    except (ExportError, ValueError, OSError) as err:  # ValueError: also the checkpoint's and the audio's errors
        parser.exit(2, f"error: {err}\n")
