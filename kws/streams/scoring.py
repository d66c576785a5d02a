"""Scoring keyword detections in a long recording against its ground truth, fast enough to sweep.

- :func:`replay`: :class:`kws.streams.recognize.RecognizeCommands` over a whole recording's cached
  scores at once (same window rule, comparisons and suppression; ``tests/streams/test_scoring.py``
  checks it against the class detection for detection), so recognizer settings can be swept
  without running the model again.
- :func:`score` (over :func:`match`): detections vs keyword occurrences. A keyword is hit by the first detection of
  its label at a time within [word start, word end + ``tolerance_ms``] (one hit per keyword);
  every other detection -- a keyword label where no such keyword is, a second detection of one,
  or a wrong label -- is a false alarm. False alarms are counted per hour of non-keyword audio
  (the recording minus the keywords' extents); the delay is detection time minus word end.
- :func:`sweep`, :func:`calibrate`: settings x thresholds, and the recall-maximising setting
  within a false-alarm budget (chosen on a validation stream, then applied to the test stream).
- :func:`plot_det`, :func:`write_csv`: the DET curve (recall against false alarms per hour).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
from pathlib import Path
from typing import Sequence

import numpy as np

from kws.streams.recognize import DEFAULT_RECOGNIZER, RecognizerSettings


def replay(
    probabilities: np.ndarray, times_ms: np.ndarray, labels: Sequence[str], setting: RecognizerSettings
) -> list[tuple[str, float, int]]:
    """Detections ``(label, score, time_ms)`` that RecognizeCommands would report for these
    per-inference scores [n, classes] at times [n] (non-decreasing); ``setting.ignore`` labels
    are recognised but not reported."""
    p = np.asarray(probabilities, np.float64)
    t = np.asarray(times_ms, np.int64)
    first = np.searchsorted(t, t - setting.average_window_ms, side="left")  # oldest kept: t_i - t_j <= window
    count = np.arange(len(t)) - first + 1
    sums = np.concatenate([np.zeros((1, p.shape[1])), np.cumsum(p, 0)])
    average = (sums[1:] - sums[first]) / count[:, None]
    top = average.argmax(1)
    best = average[np.arange(len(t)), top]
    candidates = np.flatnonzero((count >= setting.minimum_count) & (best >= setting.detection_threshold))
    ignored = {i for i, label in enumerate(labels) if label in set(setting.ignore)}
    previous, previous_time, out = -1, None, []
    for i in candidates.tolist():
        label, now = int(top[i]), int(t[i])
        if label == previous and now - previous_time <= setting.suppression_ms:
            continue
        previous, previous_time = label, now
        if label not in ignored:
            out.append((labels[label], float(best[i]), now))
    return out


def match(
    detections: Sequence[tuple[str, float, int]], keywords: Sequence, sample_rate: int = 16000, tolerance_ms: int = 1000
) -> tuple[np.ndarray, list[int], list[tuple[str, int]]]:
    """(hit [len(keywords)] bool, delays ms, false alarms ``(label, time_ms)``) of detections
    against keyword events sorted by start (``label``, ``start``, ``end`` in samples)."""
    starts = np.array([e.start * 1000 // sample_rate for e in keywords], np.int64)
    ends = np.array([e.end * 1000 // sample_rate for e in keywords], np.int64)
    hit = np.zeros(len(keywords), bool)
    delays, false_alarms = [], []
    for label, _, time in detections:
        # Keywords whose tolerance window holds this time: start <= time <= end + tolerance.
        hi = np.searchsorted(starts, time, side="right")
        found = None
        for k in range(hi - 1, -1, -1):
            if ends[k] + tolerance_ms < time - 30_000:
                break  # no word is that long: nothing earlier can match
            if not hit[k] and keywords[k].label == label and ends[k] + tolerance_ms >= time:
                found = k  # keep scanning back: the earliest unmatched one wins
        if found is None:
            false_alarms.append((label, time))
        else:
            hit[found] = True
            delays.append(time - ends[found])
    return hit, delays, false_alarms


def keyword_events(events, unknown: str = "unknown") -> list:
    """The keyword events (not ``unknown``) sorted by start: what :func:`match` takes."""
    return sorted((e for e in events if e.label != unknown), key=lambda e: e.start)


def score(
    detections: Sequence[tuple[str, float, int]],
    events,
    duration_s: float,
    sample_rate: int = 16000,
    tolerance_ms: int = 1000,
    unknown: str = "unknown",
) -> dict:
    """Recall, false alarms (per hour of non-keyword audio) and delays; ``events`` have
    ``label``, ``start``, ``end`` (samples)."""
    keywords = keyword_events(events, unknown)
    hit, delays, false_alarms = match(detections, keywords, sample_rate, tolerance_ms)
    keyword_s = float(sum(e.end - e.start for e in keywords)) / sample_rate
    hours = max(duration_s - keyword_s, 1e-9) / 3600
    per_label = {}
    for label in sorted({e.label for e in keywords}):
        mask = np.array([e.label == label for e in keywords])
        per_label[label] = float(hit[mask].mean())
    return dict(
        keywords=len(keywords),
        hits=int(hit.sum()),
        recall=float(hit.mean()) if len(keywords) else float("nan"),
        false_alarms=len(false_alarms),
        fa_per_hour=len(false_alarms) / hours,
        non_keyword_hours=hours,
        delay_median_ms=float(np.median(delays)) if delays else float("nan"),
        delay_p90_ms=float(np.percentile(delays, 90)) if delays else float("nan"),
        recall_per_label=per_label,
    )


DEFAULT_THRESHOLDS = tuple(
    np.unique(
        np.round(
            np.concatenate([np.arange(0.3, 0.9, 0.02), np.arange(0.9, 0.995, 0.005), [0.995, 0.997, 0.998, 0.999]]), 3
        )
    )
)
DEFAULT_WINDOWS = (200, 300, 500, 700, 1000)


def sweep(
    probabilities: np.ndarray,
    times_ms: np.ndarray,
    labels: Sequence[str],
    events,
    duration_s: float,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    suppressions: Sequence[int] = (DEFAULT_RECOGNIZER.suppression_ms,),
    base: RecognizerSettings = DEFAULT_RECOGNIZER,
    sample_rate: int = 16000,
    tolerance_ms: int = 1000,
) -> list[dict]:
    """One row per (window, suppression, threshold) over ``base`` (its minimum count, ignored
    labels and the stride the scores were taken at): the setting and :func:`score`'s numbers."""
    rows = []
    for window, suppression, threshold in itertools.product(windows, suppressions, thresholds):
        setting = dataclasses.replace(
            base, detection_threshold=float(threshold), average_window_ms=int(window), suppression_ms=int(suppression)
        )
        result = score(replay(probabilities, times_ms, labels, setting), events, duration_s, sample_rate, tolerance_ms)
        rows.append(
            dict(
                threshold=setting.detection_threshold,
                average_window_ms=setting.average_window_ms,
                suppression_ms=setting.suppression_ms,
                minimum_count=setting.minimum_count,
                inference_stride_ms=setting.inference_stride_ms,
                **result,
            )
        )
    return rows


def calibrate(rows: Sequence[dict], max_fa_per_hour: float) -> dict | None:
    """The row with the highest recall among those within the false-alarm budget (ties: fewer
    false alarms, then the higher threshold); None if no setting is within it."""
    within = [r for r in rows if r["fa_per_hour"] <= max_fa_per_hour]
    if not within:
        return None
    return max(within, key=lambda r: (r["recall"], -r["fa_per_hour"], r["threshold"]))


def setting_of(row: dict, base: RecognizerSettings = DEFAULT_RECOGNIZER) -> RecognizerSettings:
    """The recognizer settings of a :func:`sweep` row (ignored labels: ``base``'s)."""
    return dataclasses.replace(
        base,
        detection_threshold=row["threshold"],
        average_window_ms=row["average_window_ms"],
        suppression_ms=row["suppression_ms"],
        minimum_count=row["minimum_count"],
        inference_stride_ms=row["inference_stride_ms"],
    )


def recall_at(rows: Sequence[dict], max_fa_per_hour: float) -> float:
    """The best recall of any swept setting within the budget (an oracle, on the same stream)."""
    row = calibrate(rows, max_fa_per_hour)
    return row["recall"] if row else 0.0


def write_csv(rows: Sequence[dict], path: str | Path, **extra) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = [k for k in rows[0] if k != "recall_per_label"]
    labels = sorted(rows[0]["recall_per_label"])
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*extra, *keys, *(f"recall_{label}" for label in labels)])
        for r in rows:
            writer.writerow(
                [*extra.values(), *(r[k] for k in keys), *(r["recall_per_label"][label] for label in labels)]
            )
    return path


def plot_det(
    curves: dict[str, Sequence[dict]], path: str | Path, marks: dict[str, dict] | None = None, title: str = ""
) -> Path:
    """Recall against false alarms per hour, one line per (curve, averaging window): for each
    false-alarm rate, the best recall of any threshold at or below it (the DET envelope)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for (name, rows), style in zip(curves.items(), ("-", "--", ":", "-.")):
        for window in sorted({r["average_window_ms"] for r in rows}):
            part = sorted(
                (r for r in rows if r["average_window_ms"] == window), key=lambda r: (r["fa_per_hour"], -r["recall"])
            )
            best = np.maximum.accumulate([100 * r["recall"] for r in part])
            ax.step([max(r["fa_per_hour"], 0.1) for r in part], best, style, where="post", label=f"{name}, {window} ms")
    for k, (name, row) in enumerate((marks or {}).items()):
        ax.plot(max(row["fa_per_hour"], 0.1), 100 * row["recall"], "k*", ms=10)
        ax.annotate(
            name,
            (max(row["fa_per_hour"], 0.1), 100 * row["recall"]),
            textcoords="offset points",
            xytext=(10, -16 - 14 * k),
            fontsize=8,
            arrowprops=dict(arrowstyle="-", lw=0.5),
        )
    ax.set_xscale("log")
    ax.set_xlabel("false alarms per hour (0 drawn at 0.1)")
    ax.set_ylabel("keyword recall (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
