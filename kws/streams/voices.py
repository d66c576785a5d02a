"""Keyword recall per voice family and per dialect in a stream of the generated corpus.

The stream test's one recall number hides which voices the model misses. The offline corpus
names its speakers' voices in its marker (``<data_dir>/.kws_corpus.json``, ``voices``: each
speaker's ``id`` and ``voice`` "<dialect>+<variant>", or explicit ``dialect`` and ``family``),
and every stream event names the clip it came from (``<word>/<speaker>_nohash_<k>.wav``), so
the hits of :func:`kws.streams.scoring.match` can be counted per voice family (the espeak
variant's group: the timbre) and per dialect. A corpus without the marker (the real data set) has no
voices to name: :func:`speaker_voices` returns None and nothing is reported.

    voices = speaker_voices(data_dir)                       # {speaker id: {"family", "dialect"}} or None
    by_voice = recall_by_voice(detections, stream.events, voices)
    by_voice["family"]["klatt2"]["no"]                      # {"hits": 3, "keywords": 9, "recall": 0.33}
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from datamodules.holdout import speaker_voices as corpus_voices
from datamodules.layout import DataError
from kws.streams.scoring import keyword_events, match

GROUPINGS = ("family", "dialect")


def speaker_voices(data_dir: str | Path) -> dict[str, dict[str, str]] | None:
    """{speaker id: {"family", "dialect", ...}} from the corpus marker
    (:func:`datamodules.holdout.speaker_voices`); None when the corpus has no usable marker (a
    real data set): the stream test then reports no voice groups."""
    try:
        return corpus_voices(data_dir)
    except DataError:
        return None


def speaker_of(source: str) -> str:
    """The speaker id of a clip path ``<word>/<speaker>_nohash_<k>.wav`` (Speech Commands' rule)."""
    return Path(source).name.split("_nohash_")[0]


def recall_by_voice(
    detections: Sequence[tuple[str, float, int]],
    events,
    voices: dict[str, dict[str, str]],
    sample_rate: int = 16000,
    tolerance_ms: int = 1000,
) -> dict:
    """{"family" | "dialect": {group: {keyword: {"hits", "keywords", "recall"}}}}: the keywords
    of ``events`` heard by ``detections`` (matched as :func:`kws.streams.scoring.score` does),
    counted per voice group of their speakers; speakers the marker does not name count as "?"."""
    keywords = keyword_events(events)
    hit, _, _ = match(detections, keywords, sample_rate, tolerance_ms)
    out = {grouping: {} for grouping in GROUPINGS}
    for event, heard in zip(keywords, hit):
        voice = voices.get(speaker_of(event.source), {})
        for grouping in GROUPINGS:
            cell = (
                out[grouping]
                .setdefault(voice.get(grouping, "?"), {})
                .setdefault(event.label, {"hits": 0, "keywords": 0})
            )
            cell["hits"] += int(heard)
            cell["keywords"] += 1
    for groups in out.values():
        for cells in groups.values():
            for cell in cells.values():
                cell["recall"] = cell["hits"] / cell["keywords"]
    return {grouping: dict(sorted(groups.items())) for grouping, groups in out.items()}


def voice_table(calibrated: dict, split: str = "testing") -> str:
    """Recall per keyword per voice family and dialect at every budget's calibrated setting, a
    markdown table (the groups that miss most of the weakest keyword first); "" when no budget
    carries voices (a corpus without the marker). ``calibrated`` as ``evaluate`` returns it or
    report.json stores it."""
    budgets = [(b, c["voices"][split]) for b, c in calibrated.items() if c and (c.get("voices") or {}).get(split)]
    if not budgets:
        return ""
    labels = sorted(
        {label for _, v in budgets for groups in v.values() for cells in groups.values() for label in cells}
    )
    rows = []
    for grouping in GROUPINGS:
        names = sorted({name for _, v in budgets for name in v[grouping]})
        for name in names:
            cells = [v[grouping].get(name, {}).get(label) for _, v in budgets for label in labels]
            counts = next(
                (
                    {label: v[grouping][name].get(label, {}).get("keywords", 0) for label in labels}
                    for _, v in budgets
                    if name in v[grouping]
                ),
                {},
            )
            worst = min((c["recall"] for c in cells if c), default=np.nan)
            rows.append((grouping, name, counts, cells, worst))
    rows.sort(key=lambda r: (GROUPINGS.index(r[0]), r[4]))
    head = " | ".join(f"{label} @{float(b):g}/h" for b, _ in budgets for label in labels)
    lines = [f"| voice ({split} stream) | keywords | {head} |", "|---|---:|" + "---:|" * (len(budgets) * len(labels))]
    for grouping, name, counts, cells, _ in rows:
        shown = " | ".join(
            "-" if c is None else f"{100 * c['recall']:.0f} % ({c['hits']}/{c['keywords']})" for c in cells
        )
        lines.append(f"| {grouping} {name} | {' + '.join(str(counts.get(label, 0)) for label in labels)} | {shown} |")
    return "\n".join(lines)
