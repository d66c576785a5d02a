"""Turn a stream of per-window class scores into discrete keyword detections.

A port of TFLM micro_speech's ``RecognizeCommands`` (recognize_commands.cc): one inference every
stride gives noisy, overlapping scores; averaging them over the last ``average_window_ms`` and
suppressing repeats turns them into "heard yes" events. The firmware's C recognizer will mirror
this class step for step (same window rule, same comparisons), so its behaviour can be tested
here, in Python, on recordings.

Scores are class probabilities in [0, 1] (the softmax of the model's logits; for an int8 model,
of its dequantized outputs), so ``detection_threshold`` is a probability. TFLM's C code averages
int8/uint8 scores instead; a C port on probabilities scaled to 0..255 uses the threshold * 255.

Differences from TFLM, all deliberate:

- a detection needs the top average score ``>= detection_threshold`` (TFLM: ``>``);
- ``ignore`` labels (silence, unknown) are recognised exactly as TFLM does -- they become the
  "previous command" and restart the suppression clock -- but are not reported, as micro_speech's
  command responder would ignore them;
- at start the previous command is "none" (TFLM: "silence"), so a first silence is not special.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np


# RecognizeCommands' settings when no calibration is at hand (TFLM micro_speech's).
CALIBRATION_STRIDE_MS = 100  # the inference stride recognizer settings are calibrated at (listen's and the firmware's)
RECOGNIZER_DEFAULTS = {"average_window_ms": 1000, "detection_threshold": 0.8, "suppression_ms": 1500, "minimum_count": 3}


@dataclass(frozen=True)
class Detection:
    label: str
    score: float  # the averaged score of the label over the window, in [0, 1]
    time_ms: int

    def __str__(self) -> str:
        return f"Heard {self.label} ({self.score:.2f}) @{self.time_ms}ms"


class RecognizeCommands:
    """Average scores over a sliding time window and report new, confident, non-repeated commands.

    Args:
        labels: class names, in the order of the scores.
        average_window_ms: scores of inferences at most this old (``time - t <= window``) are averaged.
        detection_threshold: minimum averaged probability of the top class.
        suppression_ms: the same command is not reported again until this long after the last one
            (``time - last > suppression_ms``); a different command is reported at once.
        minimum_count: no decision until the window holds this many inferences (a window with too
            few is dominated by one noisy score, e.g. right after start-up).
        ignore: labels recognised (they reset the previous command) but never reported.
    """

    def __init__(
        self,
        labels: Sequence[str],
        average_window_ms: int = 1000,
        detection_threshold: float = 0.8,
        suppression_ms: int = 1500,
        minimum_count: int = 3,
        ignore: Sequence[str] = ("silence", "unknown", "_silence_", "_unknown_"),
    ):
        if average_window_ms <= 0 or suppression_ms < 0 or minimum_count < 1:
            raise ValueError("average_window_ms must be > 0, suppression_ms >= 0 and minimum_count >= 1")
        self.labels = list(labels)
        self.average_window_ms, self.detection_threshold = average_window_ms, detection_threshold
        self.suppression_ms, self.minimum_count = suppression_ms, minimum_count
        self.ignore = set(ignore)
        self.reset()

    def reset(self) -> None:
        self._results: deque[tuple[int, np.ndarray]] = deque()
        self.previous_label: str | None = None
        self.previous_time_ms: int | None = None

    def process(self, scores: np.ndarray, time_ms: int) -> Detection | None:
        """Add one inference's scores [num_classes] at ``time_ms``; the detection it completes, if any."""
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape[0] != len(self.labels):
            raise ValueError(f"expected {len(self.labels)} scores, got {scores.shape[0]}")
        if self._results and time_ms < self._results[-1][0]:
            raise ValueError(f"time went backwards: {time_ms} ms after {self._results[-1][0]} ms")
        self._results.append((time_ms, scores))
        while time_ms - self._results[0][0] > self.average_window_ms:
            self._results.popleft()
        if len(self._results) < self.minimum_count:
            return None

        average = np.mean([s for _, s in self._results], axis=0)
        top = int(np.argmax(average))  # the first of equal scores, as TFLM's strict '>' scan
        label, score = self.labels[top], float(average[top])
        since_last = float("inf") if self.previous_time_ms is None else time_ms - self.previous_time_ms
        if score < self.detection_threshold or (label == self.previous_label and since_last <= self.suppression_ms):
            return None
        self.previous_label, self.previous_time_ms = label, time_ms
        return None if label in self.ignore else Detection(label, score, time_ms)
