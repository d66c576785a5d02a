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

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Labels recognised (they reset the previous command) but never reported: the model's silence
# and unknown classes, under the names micro_speech and the Speech Commands folders give them.
IGNORED_LABELS = ("silence", "unknown", "_silence_", "_unknown_")


@dataclass(frozen=True)
class RecognizerSettings:
    """Everything the command recognizer needs besides the labels: the one definition that the
    export writes into model_settings.h and report.json, and that listen, the stream test, the
    firmware check and the board all read. The defaults are TFLM micro_speech's.

    The averaging window and ``minimum_count`` count inferences, so a setting holds only at the
    ``inference_stride_ms`` it was calibrated at."""

    detection_threshold: float = 0.8  # minimum averaged probability of the top class
    average_window_ms: int = 1000
    suppression_ms: int = 1500
    minimum_count: int = 3
    inference_stride_ms: int = 100  # time between inferences: listen's, the stream test's and the board's
    ignore: tuple[str, ...] = IGNORED_LABELS

    def __post_init__(self):
        object.__setattr__(self, "ignore", tuple(self.ignore))  # a list from JSON stays hashable
        positive = min(self.average_window_ms, self.inference_stride_ms) > 0
        if not positive or self.suppression_ms < 0 or self.minimum_count < 1:
            raise ValueError(
                "recognizer settings: average_window_ms and inference_stride_ms must be > 0, "
                f"suppression_ms >= 0 and minimum_count >= 1, got {self}"
            )

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "ignore": list(self.ignore)}

    @classmethod
    def from_dict(cls, data: dict, where: str) -> RecognizerSettings:
        """The settings stored at ``where`` (report.json, a checkpoint); every field is required."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing, unknown = [n for n in names if n not in data], sorted(set(data) - set(names))
        if missing or unknown:
            faults = [f"lack {missing}"] * bool(missing) + [f"hold unknown {unknown}"] * bool(unknown)
            raise ValueError(
                f"{where}: the recognizer settings {' and '.join(faults)}; they were written by another "
                "version of kws: re-export the model (python -m kws export)"
            )
        return cls(**data)

    def float32_threshold(self) -> RecognizerSettings:
        """The threshold rounded to float32: what the firmware's float compares against, so board
        and host decide alike."""
        return dataclasses.replace(self, detection_threshold=float(np.float32(self.detection_threshold)))


DEFAULT_RECOGNIZER = RecognizerSettings()


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
        average_window_ms: int = DEFAULT_RECOGNIZER.average_window_ms,
        detection_threshold: float = DEFAULT_RECOGNIZER.detection_threshold,
        suppression_ms: int = DEFAULT_RECOGNIZER.suppression_ms,
        minimum_count: int = DEFAULT_RECOGNIZER.minimum_count,
        ignore: Sequence[str] = DEFAULT_RECOGNIZER.ignore,
    ):
        if average_window_ms <= 0 or suppression_ms < 0 or minimum_count < 1:
            raise ValueError("average_window_ms must be > 0, suppression_ms >= 0 and minimum_count >= 1")
        self.labels = list(labels)
        self.average_window_ms, self.detection_threshold = average_window_ms, detection_threshold
        self.suppression_ms, self.minimum_count = suppression_ms, minimum_count
        self.ignore = set(ignore)
        self.reset()

    @classmethod
    def from_settings(cls, labels: Sequence[str], settings: RecognizerSettings) -> RecognizeCommands:
        """The recognizer of ``settings`` (its stride is the caller's to keep: process() takes times)."""
        return cls(
            labels,
            settings.average_window_ms,
            settings.detection_threshold,
            settings.suppression_ms,
            settings.minimum_count,
            settings.ignore,
        )

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


# The command-line flags of the settings (listen, cross-check): one per field, named after it;
# the older spellings stay as aliases.
FLAG_ALIASES = {"detection_threshold": ("--threshold",), "inference_stride_ms": ("--stride_ms",)}


def add_recognizer_flags(group, fields: Sequence[str] | None = None) -> None:
    """``--<field>`` options (default None: not given) on an argparse parser or group."""
    for field in dataclasses.fields(RecognizerSettings):
        if field.name != "ignore" and (fields is None or field.name in fields):
            group.add_argument(
                f"--{field.name}",
                *FLAG_ALIASES.get(field.name, ()),
                dest=field.name,
                type=type(field.default),
                default=None,
                help=f"(default: the model's, else {field.default})",
            )


def given_flags(args) -> dict:
    """The settings given on the command line: field -> value."""
    fields = dataclasses.fields(RecognizerSettings)
    return {f.name: getattr(args, f.name) for f in fields if getattr(args, f.name, None) is not None}
