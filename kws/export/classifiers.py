"""The models a stream can be scored with, as one interface: a batch of flat feature windows in,
the model's raw outputs (int8 for an int8 .tflite, logits for PyTorch) and the class
probabilities the recognizer averages out. Used by listen, the stream test, the export's
recognizer calibration and the firmware check."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from kws.audio.settings import FeatureSettings


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class ModelClassifier:
    """A model as listen runs it: its raw outputs for a batch of windows (int8 for an int8
    .tflite, logits for PyTorch), and the class probabilities the recognizer averages."""

    def __init__(self, outputs: Callable[[np.ndarray], np.ndarray], probabilities: Callable[[np.ndarray], np.ndarray]):
        self.outputs, self.probabilities = outputs, probabilities
        self.recognizer: dict | None = None  # the recognizer settings calibrated for this model

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.probabilities(self.outputs(x))


def pytorch_classifier(ckpt: str | Path) -> tuple[ModelClassifier, list[str], FeatureSettings]:
    """The checkpoint's float model, its labels and the features it was trained on (and, as the
    classifier's ``recognizer``, the recognizer settings calibrated for it, if any)."""
    from kws.training.checkpoints import load_checkpoint

    module, datamodule = load_checkpoint(ckpt)
    return module_classifier(module), list(module.labels), datamodule.features


def module_classifier(module) -> ModelClassifier:
    """A loaded KWSModule's float model on the CPU (``recognizer``: its calibrated settings, if any)."""
    import torch

    model = module.eval()

    @torch.no_grad()
    def logits(x: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(x)).numpy()

    classifier = ModelClassifier(logits, lambda raw: softmax(raw.astype(np.float64)))
    classifier.recognizer = module.recognizer
    return classifier


def tflite_classifier(
    model: bytes | str | Path, runtime: str = "litert", arena_size: int | None = None
) -> ModelClassifier:
    """A .tflite model (its bytes or its path) run window by window in ``runtime`` (litert,
    litert-reference, micro: tflite-micro as the board)."""
    from kws.export.tflite import TFLiteRunner, read_model, tflite_ops

    model = model if isinstance(model, bytes) else read_model(model)
    runner = TFLiteRunner(model, runtime=runtime, arena_size=arena_size)
    has_softmax = tflite_ops(model)[-1:] == ["SOFTMAX"]

    def probabilities(raw: np.ndarray) -> np.ndarray:
        scores = runner.dequantize(raw).astype(np.float64)
        return scores if has_softmax else softmax(scores)

    return ModelClassifier(runner.run, probabilities)
