"""Listen to a long recording as the firmware will: streaming features, one inference every
stride, and :class:`kws.deploy.recognize.RecognizeCommands` turning the scores into detections.

``python -m kws listen FILE.wav --model {pytorch,int8,micro} (--ckpt CKPT | --tflite MODEL)``

- The recording is read in 10 s blocks (:mod:`kws.deploy.stream`): memory stays bounded
  whatever its length. The front end runs over it with its state (noise estimate, PCAN gain)
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
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from kws.audio.settings import FeatureSettings
from kws.deploy.recognize import Detection, RecognizeCommands
from kws.deploy.stream import Classifier, StreamingFeatures, WindowStream, blocks_of, stream_windows

# micro_speech's labels: what a .tflite with no report.json beside it (the reference model) uses.
MICRO_SPEECH_LABELS = ["silence", "unknown", "yes", "no"]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


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


# ------------------------------------------------------------------------------- the models
class ModelClassifier:
    """A model as listen runs it: its raw outputs for a batch of windows (int8 for an int8
    .tflite, logits for PyTorch), and the class probabilities the recognizer averages."""

    def __init__(self, outputs: Callable[[np.ndarray], np.ndarray], probabilities: Callable[[np.ndarray], np.ndarray]):
        self.outputs, self.probabilities = outputs, probabilities

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.probabilities(self.outputs(x))


def pytorch_classifier(ckpt: str | Path) -> tuple[ModelClassifier, list[str], FeatureSettings]:
    """The checkpoint's float model, its labels and the features it was trained on."""
    import torch

    from kws.training.checkpoints import load_checkpoint

    module, datamodule = load_checkpoint(ckpt)
    model = module.eval()

    @torch.no_grad()
    def logits(x: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(x)).numpy()

    return ModelClassifier(logits, lambda raw: softmax(raw.astype(np.float64))), list(module.labels), datamodule.features


def tflite_classifier(path: str | Path, runtime: str = "litert", arena_size: int | None = None) -> ModelClassifier:
    from kws.export.tflite import TFLiteRunner, tflite_ops

    model = Path(path).read_bytes()
    runner = TFLiteRunner(model, runtime=runtime, arena_size=arena_size)
    has_softmax = tflite_ops(model)[-1:] == ["SOFTMAX"]

    def probabilities(raw: np.ndarray) -> np.ndarray:
        scores = runner.dequantize(raw).astype(np.float64)
        return scores if has_softmax else softmax(scores)

    return ModelClassifier(runner.run, probabilities)


def tflite_settings(path: str | Path) -> tuple[list[str], FeatureSettings] | None:
    """Labels and features from the ``report.json`` that ``python -m kws export`` wrote beside the model."""
    report = Path(path).parent / "report.json"
    if not report.is_file():
        return None
    data = json.loads(report.read_text())
    fields = {f.name for f in dataclasses.fields(FeatureSettings)}
    return list(data["labels"]), FeatureSettings(**{k: v for k, v in data["features"].items() if k in fields})


def main(argv: list[str] | None = None) -> list[Detection]:
    from kws.audio.wav import wav_blocks, wav_info
    from kws.export import ExportError

    parser = argparse.ArgumentParser(prog="python -m kws listen", description="Detect keywords in a long 16 kHz recording as the firmware would: streaming features, an inference every stride, averaged and suppressed detections.")
    parser.add_argument("wav", help="the recording (16-bit PCM WAV, mono)")
    parser.add_argument("--model", choices=("pytorch", "int8", "micro"), default="pytorch", help="pytorch: the checkpoint's float model; int8: the .tflite through LiteRT; micro: through tflite-micro")
    parser.add_argument("--ckpt", help="a checkpoint from `python -m kws fit` (the model for --model pytorch; labels and features otherwise)")
    parser.add_argument("--tflite", help="the int8 model (model_int8.tflite); labels and features from --ckpt, else report.json beside it, else micro_speech's")
    parser.add_argument("--labels", nargs="+", help="class names in output order (overrides the above)")
    parser.add_argument("--stride_ms", type=int, default=100, help="time between inferences, a multiple of the 20 ms frame step")
    parser.add_argument("--threshold", type=float, default=0.8, help="minimum averaged probability of a detection")
    parser.add_argument("--average_window_ms", type=int, default=1000)
    parser.add_argument("--suppression_ms", type=int, default=1500)
    parser.add_argument("--minimum_count", type=int, default=3)
    parser.add_argument("--arena_size", type=int, default=None, help="tflite-micro tensor arena bytes (default: the runtime's)")
    parser.add_argument("--outputs", default=None, help="write every inference's time (ms) and raw model outputs (int8 for an int8 model), a line each, to this file: what the firmware simulation writes")
    args = parser.parse_args(argv)

    try:
        labels, settings, classify = MICRO_SPEECH_LABELS, FeatureSettings(), None
        if args.model == "pytorch":
            if not args.ckpt:
                parser.error("--model pytorch needs --ckpt")
            classify, labels, settings = pytorch_classifier(args.ckpt)
        else:
            if not args.tflite:
                parser.error(f"--model {args.model} needs --tflite")
            if args.ckpt:
                _, labels, settings = pytorch_classifier(args.ckpt)
            elif found := tflite_settings(args.tflite):
                labels, settings = found
            classify = tflite_classifier(args.tflite, "litert" if args.model == "int8" else "micro", args.arena_size)
        labels = args.labels or labels
        info = wav_info(args.wav)
        if info.frames < settings.clip_samples:
            raise ValueError(f"{args.wav}: the recording is {info.frames} samples, shorter than one {settings.clip_ms} ms window")
        # Read block by block: a night's recording never sits in memory.
        blocks = wav_blocks(args.wav, settings.sample_rate, 10 * settings.sample_rate, rate_fix="(listen takes the rate the model was trained on, as the board's microphone delivers it)")
        recognizer = RecognizeCommands(labels, args.average_window_ms, args.threshold, args.suppression_ms, args.minimum_count)
        with open(args.outputs, "w") if args.outputs else contextlib.nullcontext() as sink:
            write = (lambda times, raw: sink.writelines(f"{t} {' '.join(str(v) for v in row)}\n" for t, row in zip(times, raw.tolist()))) if sink else None
            return listen(blocks, classify, labels, settings, args.stride_ms, recognizer, outputs=write)
    except (ExportError, ValueError, OSError) as err:  # ValueError: also the checkpoint's and the audio's errors
        parser.exit(2, f"error: {err}\n")
