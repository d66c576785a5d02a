"""Long test recordings built from one split of a Speech Commands-style corpus, with ground truth.

A stream is the split's keyword clips and other-word clips, each cut to its word (found by
energy, :mod:`datamodules.word_extent`) and laid one after another with random gaps, over that
split's part of the background recordings (:mod:`datamodules.noise_parts`) at several levels that
change every few tens of seconds, with stretches of noise alone in between. Everything follows
from ``seed``; the ground truth is every word's label and [start, end) in samples.

    stream = build_stream("data/synthetic", "testing", seed=0)
    stream.audio          # int16, one long recording
    stream.keyword_events # [(label, start, end), ...]
    stream.save("runs/streams/testing-0")   # .wav + .json; Stream.load(...) reads it back
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from datamodules.noise_parts import read_noise_parts
from datamodules.word_extent import word_extents
from kws.audio.wav import read_wav, write_wav

UNKNOWN = "unknown"


@dataclass(frozen=True)
class StreamEvent:
    label: str  # the keyword, or "unknown" for any other word
    word: str
    start: int  # first sample of the word in the stream
    end: int  # one past its last sample
    source: str  # the clip it came from, relative to the corpus


@dataclass
class Stream:
    audio: np.ndarray  # int16 [samples]
    events: list[StreamEvent]
    sample_rate: int = 16000
    info: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def keyword_events(self) -> list[StreamEvent]:
        return [e for e in self.events if e.label != UNKNOWN]

    @property
    def other_events(self) -> list[StreamEvent]:
        return [e for e in self.events if e.label == UNKNOWN]

    def summary(self) -> str:
        hours = self.duration_s / 3600
        return (
            f"{self.info.get('split', '?')} stream (seed {self.info.get('seed', '?')}): "
            f"{self.duration_s / 60:.1f} min, "
            f"{len(self.keyword_events)} keywords, {len(self.other_events)} other words "
            f"({len(self.other_events) / hours:.0f} per hour)"
        )

    def save(self, path: str | Path) -> Path:
        """``path``.wav and ``path``.json, each written beside and renamed into place (the .json
        last: a reader that finds it finds both whole)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        wav, meta = path.with_suffix(".wav"), path.with_suffix(".json")
        write_wav(wav.with_suffix(".wav.tmp"), self.audio, self.sample_rate)
        wav.with_suffix(".wav.tmp").replace(wav)
        meta.with_suffix(".json.tmp").write_text(
            json.dumps(
                {"sample_rate": self.sample_rate, "info": self.info, "events": [asdict(e) for e in self.events]},
                indent=0,
            )
        )
        meta.with_suffix(".json.tmp").replace(meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Stream":
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        audio, _ = read_wav(path.with_suffix(".wav"), meta["sample_rate"])
        return cls(
            np.asarray(audio, np.int16), [StreamEvent(**e) for e in meta["events"]], meta["sample_rate"], meta["info"]
        )


def split_files(
    data_dir: Path,
    split: str,
    split_percentages: tuple[float, float] = (10.0, 10.0),
    holdout_dialect: str | None = None,
) -> list[str]:
    """Relative paths of the clips of ``split``, as the data module splits them: the data set's
    lists when present, else its speaker-hash rule with the data module's (validation, testing)
    ``split_percentages``; ``holdout_dialect``'s clips all in testing."""
    from datamodules.holdout import hold_out_dialect, speaker_voices
    from datamodules.layout import SPLITS, assign_splits, scan_corpus

    if split not in SPLITS:
        raise ValueError(f"split must be training, validation or testing, got {split!r}")
    files = sorted(f for fs in scan_corpus(data_dir).values() for f in fs)
    assignment = assign_splits(data_dir, files, set(files), *split_percentages)
    if holdout_dialect:
        assignment = hold_out_dialect(files, assignment, speaker_voices(data_dir), holdout_dialect)
    return [f for f, s in zip(files, assignment) if s == split]


def build_stream(
    data_dir: str | Path,
    split: str = "testing",
    seed: int = 0,
    keywords: Sequence[str] = ("yes", "no"),
    keyword_repeats: int = 1,
    other_repeats: int = 2,
    gap_s: tuple[float, float] = (0.5, 2.5),
    noise_levels: Sequence[float] = (0.0, 0.005, 0.02, 0.05, 0.1),
    segment_s: tuple[float, float] = (10.0, 40.0),
    noise_only_probability: float = 0.08,
    noise_only_s: tuple[float, float] = (3.0, 12.0),
    floor_rms: float = 2.0,
    pad_ms: float = 30.0,
    sample_rate: int = 16000,
    max_keywords: int = 400,
    max_others: int = 800,
    split_percentages: tuple[float, float] = (10.0, 10.0),
    holdout_dialect: str | None = None,
) -> Stream:
    """A long recording of ``split``'s words over its background noise; see the module docstring.

    Args:
        keyword_repeats / other_repeats: how often each keyword / other-word clip is used.
        gap_s: range of the silence between one word's end and the next word's start.
        noise_levels: background volumes (x the recording, as training mixes noise), one drawn
            per segment; segments last ``segment_s`` and cross-fade over 0.1 s.
        noise_only_probability, noise_only_s: chance, before each word, of an extra stretch of
            noise alone, and its length.
        floor_rms: a Gaussian floor (int16 units) under everything, like a microphone's.
        pad_ms: audio kept either side of each word's extent when it is cut from its clip.
        max_keywords / max_others: at most this many keyword / other-word clips (a seeded subset;
            the real data set's test split would otherwise make a stream of hours).
        split_percentages: (validation, testing) % of the speaker-hash split, used when the
            corpus has no split lists: the data module's, so the test stream holds its test speakers.
        holdout_dialect: the data module's: that dialect's clips all belong to the test stream.
    """
    data_dir = Path(data_dir)
    rng = np.random.default_rng([seed, zlib_hash(split)])
    files = split_files(data_dir, split, split_percentages, holdout_dialect)
    keywords = tuple(keywords)
    keyword_files = [f for f in files if f.split("/")[0] in keywords]
    other_files = [f for f in files if f.split("/")[0] not in keywords]
    pick = lambda names, limit: [names[i] for i in sorted(rng.permutation(len(names))[:limit])]  # noqa: E731
    files = sorted(pick(keyword_files, max_keywords) + pick(other_files, max_others))
    clips = np.zeros((len(files), sample_rate), np.int16)  # shorter clips zero-padded, as the data module does
    for row, f in zip(clips, files):
        audio = read_wav(data_dir / f, sample_rate)[0][:sample_rate]
        row[: len(audio)] = audio
    extents = word_extents(clips, sample_rate)
    words = [f.split("/")[0] for f in files]
    order = [i for i, w in enumerate(words) if w in keywords] * keyword_repeats + [
        i for i, w in enumerate(words) if w not in keywords
    ] * other_repeats
    order = [order[j] for j in rng.permutation(len(order))]

    pad = int(pad_ms * sample_rate / 1000)
    placed, t = [], int(2.0 * sample_rate)
    for i in order:
        gap = rng.uniform(*gap_s)
        if rng.random() < noise_only_probability:
            gap += rng.uniform(*noise_only_s)
        start = t + int(gap * sample_rate)
        s, e = extents[i]
        placed.append((i, start, s, e))
        t = start + (e - s)
    length = t + 2 * sample_rate

    noise, segments = _background(data_dir, split, length, rng, noise_levels, segment_s, sample_rate)
    mix = noise + rng.normal(0.0, floor_rms, length)
    events = []
    for i, start, s, e in placed:
        lo, hi = max(0, s - pad), min(sample_rate, e + pad)
        mix[start - (s - lo) : start + (hi - s)] += clips[i, lo:hi]
        label = words[i] if words[i] in keywords else UNKNOWN
        events.append(StreamEvent(label, words[i], int(start), int(start + e - s), files[i]))
    audio = np.clip(np.round(mix), -32768, 32767).astype(np.int16)
    info = dict(
        split=split,
        seed=seed,
        keywords=list(keywords),
        keyword_repeats=keyword_repeats,
        other_repeats=other_repeats,
        gap_s=list(gap_s),
        noise_levels=list(noise_levels),
        segments=segments,
    )
    return Stream(audio, events, sample_rate, info)


def zlib_hash(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


def _background(
    data_dir: Path,
    split: str,
    length: int,
    rng: np.random.Generator,
    levels: Sequence[float],
    segment_s: tuple[float, float],
    sample_rate: int,
) -> tuple[np.ndarray, list[dict]]:
    """Noise [length] float64 in int16 units: segments of one recording part at one level,
    cross-faded; and the segments' description."""
    parts = read_noise_parts(data_dir / "_background_noise_", split, sample_rate)
    names = sorted(parts)
    fade = sample_rate // 10
    out = np.zeros(length)
    segments, t = [], 0
    while t < length:
        n = min(length - t, int(rng.uniform(*segment_s) * sample_rate))
        name = names[rng.integers(len(names))]
        level = float(levels[rng.integers(len(levels))])
        part = parts[name].astype(np.float64)
        offset = int(rng.integers(len(part)))
        take = np.resize(np.roll(part, -offset), n + fade) * level  # the part looped from a random point
        ramp = np.ones(n + fade)
        if t > 0:
            ramp[:fade] = np.linspace(0.0, 1.0, fade)
        ramp[n:] = np.linspace(1.0, 0.0, fade)
        end = min(length, t + n + fade)
        out[t:end] += (take * ramp)[: end - t]
        segments.append(dict(start=int(t), samples=int(n), noise=name, level=level))
        t += n
    return out, segments
