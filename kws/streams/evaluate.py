"""Keyword detection scored the way it is used: long recordings of one split streamed through the
front end (state carried), a classifier on every window and the command recognizer, swept over
the recognizer's settings, calibrated on the validation stream and reported on the test stream.

    results = evaluate(classify, labels, settings, data_dir)      # both streams, every budget
    results["calibrated"][10.0]                                    # chosen on validation, reported on test
    results["calibrated"][10.0]["voices"]["testing"]["family"]     # recall per voice family (generated corpus only)
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from kws.audio.settings import FeatureSettings
from kws.streams.frontend import STRIDE_MS, stream_scores
from kws.streams.recognize import IGNORED_LABELS, RecognizerSettings
from kws.streams.recordings import Stream, build_stream, split_files
from kws.streams.scoring import calibrate, plot_det, recall_at, replay, score, setting_of, sweep, write_csv
from kws.streams.voices import recall_by_voice, speaker_voices, voice_table

STREAM_SEEDS = {"validation": 1, "testing": 0}
DEFAULT_BUDGETS = (2.0, 5.0, 10.0)  # false alarms per hour
# The recognizer a model keeps is calibrated on the validation stream for this budget: the
# issue's operating point (recall at <= 10 false alarms per hour); 2 and 5 are reported beside it.
DEFAULT_CALIBRATION_FA_PER_HOUR = 10.0
Classify = Callable[[np.ndarray], np.ndarray]


def cached_stream(data_dir: Path, split: str, seed: int, cache_dir: Path | None = None, **kwargs) -> Stream:
    """The stream of (split, seed, kwargs), built once and kept in ``<cache_dir>/streams``
    (default ``<data_dir>/.cache``); the key covers the split's file list, so a changed corpus
    builds anew, and so is a cache that cannot be read (with a warning naming it)."""
    files = split_files(data_dir, split, kwargs.get("split_percentages", (10.0, 10.0)), kwargs.get("holdout_dialect"))
    key = hashlib.sha1(json.dumps([split, seed, sorted(kwargs.items()), files], default=str).encode()).hexdigest()[:10]
    path = Path(cache_dir or data_dir / ".cache") / "streams" / f"{split}-{seed}-{key}"
    if path.with_suffix(".json").is_file():
        try:
            return Stream.load(path)
        except (ValueError, KeyError, TypeError, OSError) as err:  # ValueError: bad JSON, a cut .wav (AudioError)
            # a killed writer or a full disk: the cache is only a cache, rebuilt as the audio cache is
            warnings.warn(f"the stream cache {path}.json/.wav is damaged ({err}); building it again")
    stream = build_stream(data_dir, split, seed, **kwargs)
    stream.save(path)
    return stream


def data_stream_options(datamodule) -> dict:
    """The stream options that follow a data module: its split rule (held-out dialect included)
    and its cache folder."""
    hp = datamodule.hparams
    options = {
        "split_percentages": (float(hp.validation_percentage), float(hp.testing_percentage)),
        "cache_dir": datamodule.cache_dir,
    }
    if hp.get("holdout_dialect"):
        options["holdout_dialect"] = hp.holdout_dialect
    return options


def window_scores(
    stream: Stream, classify: Classify, settings: FeatureSettings, stride_ms: int = STRIDE_MS
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities [n, classes], times ms [n]) of every window of the stream, the front end's
    state carried through the whole recording."""
    blocks = (
        stream.audio[i : i + 60 * stream.sample_rate] for i in range(0, len(stream.audio), 60 * stream.sample_rate)
    )
    parts = list(stream_scores(blocks, classify, settings, stride_ms))
    return np.concatenate([p for p, _ in parts]), np.concatenate([t for _, t in parts])


def evaluate(
    classify: Classify,
    labels: Sequence[str],
    settings: FeatureSettings,
    data_dir: str | Path,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    stride_ms: int = STRIDE_MS,
    tolerance_ms: int = 1000,
    seeds: dict[str, int] = STREAM_SEEDS,
    stream_kwargs: dict | None = None,
    log=print,
) -> dict:
    """Sweep both streams, calibrate on validation, report test: a dict with everything. On a
    corpus that names its voices (the generated one), each budget's entry also holds ``voices``:
    keyword recall per voice family and dialect on both streams at its setting
    (:mod:`kws.streams.voices`)."""
    data_dir, stream_kwargs = Path(data_dir), dict(stream_kwargs or {})
    voices = speaker_voices(data_dir)
    stream_kwargs.setdefault("keywords", tuple(label for label in labels if label not in IGNORED_LABELS))
    base = RecognizerSettings(inference_stride_ms=stride_ms)
    out = {"streams": {}, "rows": {}, "scores": {}, "calibrated": {}}
    for split, seed in seeds.items():
        started = time.perf_counter()
        stream = cached_stream(data_dir, split, seed, **stream_kwargs)
        probabilities, times = window_scores(stream, classify, settings, stride_ms)
        out["streams"][split], out["scores"][split] = stream, (probabilities, times)
        out["rows"][split] = sweep(
            probabilities, times, labels, stream.events, stream.duration_s, base=base, tolerance_ms=tolerance_ms
        )
        if log:
            log(f"{stream.summary()}; {len(times)} windows scored and swept in {time.perf_counter() - started:.1f} s")
    for budget in budgets:
        chosen = calibrate(out["rows"]["validation"], budget)
        if chosen is None:
            out["calibrated"][budget] = None
            continue
        test = out["streams"]["testing"]
        probabilities, times = out["scores"]["testing"]
        result = score(
            replay(probabilities, times, labels, setting_of(chosen)),
            test.events,
            test.duration_s,
            tolerance_ms=tolerance_ms,
        )
        out["calibrated"][budget] = dict(
            setting=setting_of(chosen).to_dict(),
            validation=chosen,
            testing=result,
            testing_oracle_recall=recall_at(out["rows"]["testing"], budget),
        )
        if voices:
            # Which voices the calibrated setting misses: the per-family view the one recall hides.
            out["calibrated"][budget]["voices"] = {
                split: recall_by_voice(
                    replay(*out["scores"][split], labels, setting_of(chosen)),
                    out["streams"][split].events,
                    voices,
                    out["streams"][split].sample_rate,
                    tolerance_ms,
                )
                for split in out["streams"]
            }
    return out


@dataclass
class StreamTest:
    results: dict  # evaluate()'s
    summary: dict  # model, streams, calibrated per budget: results.json's and report.json's stream_test
    # chosen for calibrate_fa_per_hour on validation (float32 threshold); None: no setting within it
    recognizer: RecognizerSettings | None
    calibration: dict | None  # the recognizer with how it was chosen and its numbers: report.json's recognizer


def stream_test(
    classify: Classify,
    labels: Sequence[str],
    settings: FeatureSettings,
    data_dir: str | Path,
    model: str,
    calibrate_fa_per_hour: float = DEFAULT_CALIBRATION_FA_PER_HOUR,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    stride_ms: int = STRIDE_MS,
    tolerance_ms: int = 1000,
    stream_kwargs: dict | None = None,
    out: Path | None = None,
    title: str = "",
    log=print,
) -> StreamTest:
    """The stream test of one model (``model``: its name in the tables) and the recognizer
    calibrated for it: what ``callbacks.StreamTest``, ``python -m kws stream-test`` and the export
    all run. ``out``: also write results.json, det.png and the sweeps there."""
    budgets = tuple(sorted({*map(float, budgets), float(calibrate_fa_per_hour)}))
    results = evaluate(
        classify, labels, settings, data_dir, budgets, stride_ms, tolerance_ms, stream_kwargs=stream_kwargs, log=log
    )
    summary = dict(
        model=model,
        streams={s: st.summary() for s, st in results["streams"].items()},
        calibrated={f"{b:g}": c for b, c in results["calibrated"].items()},
    )
    if out is not None:
        write(results, Path(out), model, title=title)
    chosen = results["calibrated"].get(float(calibrate_fa_per_hour))
    if chosen is None:
        return StreamTest(results, summary, None, None)
    recognizer = RecognizerSettings(**chosen["setting"]).float32_threshold()
    calibration = {
        "settings": recognizer.to_dict(),
        "max_fa_per_hour": float(calibrate_fa_per_hour),
        "calibrated_on": "the validation stream",
        "model": model,
        "validation": chosen["validation"],
        "testing": chosen["testing"],
    }
    return StreamTest(results, summary, recognizer, calibration)


def table(results: dict, name: str) -> str:
    """The calibrated settings as a markdown table, followed, when the budgets carry ``voices``,
    by the test stream's recall per voice family and dialect; ``results["calibrated"]`` as
    :func:`evaluate` returns it or as report.json stores it (budgets as strings)."""
    lines = [
        f"| {name}: budget (FA/h, set on validation) | threshold | window | val recall | val FA/h | "
        "test recall | test FA/h | test delay median |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for budget, c in results["calibrated"].items():
        if not c:
            lines.append(f"| {float(budget):g} | - | - | no setting within the budget | | | | |")
            continue
        s, v, t = c["setting"], c["validation"], c["testing"]
        lines.append(
            f"| {float(budget):g} | {s['detection_threshold']:.3f} | {s['average_window_ms']} | "
            f"{100 * v['recall']:.1f} % | {v['fa_per_hour']:.1f} | "
            f"{100 * t['recall']:.1f} % | {t['fa_per_hour']:.1f} | {t['delay_median_ms']:.0f} ms |"
        )
    voices = voice_table(results["calibrated"])
    return "\n".join(lines) + (f"\n\n{voices}" if voices else "")


def write(results: dict, out: Path, name: str, title: str = "") -> dict:
    """sweep_<split>.csv, det.png and results.json in ``out``; returns the JSON summary."""
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in results["rows"].items():
        write_csv(rows, out / f"sweep_{split}.csv", model=name, stream=split)
    marks = {f"test @ <= {b:g}/h on val": c["testing"] for b, c in results["calibrated"].items() if c}
    plot_det(
        {"test": results["rows"]["testing"], "val": results["rows"]["validation"]},
        out / "det.png",
        marks,
        title=title or name,
    )
    summary = dict(
        model=name,
        streams={s: st.summary() for s, st in results["streams"].items()},
        calibrated={str(b): c for b, c in results["calibrated"].items()},
    )
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary
