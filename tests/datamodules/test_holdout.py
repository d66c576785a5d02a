"""Holding a dialect out: every clip of its speakers in testing, the rest untouched, clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from datamodules.holdout import hold_out_dialect, speaker_voices
from datamodules.layout import DataError, scan_corpus, which_set
from datamodules.synthetic import MARKER_NAME, generate_corpus

VOICES = [  # speaker id, dialect, variant
    ("aaaa0001", "en-us", "m3"),
    ("aaaa0002", "en-us", "klatt2"),
    ("aaaa0003", "en-gb-scotland", "f1"),
    ("aaaa0004", "en", "whisperf"),
    ("aaaa0005", "en-gb-scotland", "m7"),
]


def write_marker(root: Path, voices: list[dict] | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    marker = {"format_version": 2} | ({"voices": voices} if voices is not None else {})
    (root / MARKER_NAME).write_text(json.dumps(marker))
    return root


def marker_voices(old_format: bool = False) -> list[dict]:
    if old_format:  # format 1 named the voice only
        return [{"id": i, "voice": f"{d}+{v}"} for i, d, v in VOICES]
    return [
        {"id": i, "voice": f"{d}+{v}", "dialect": d, "variant": v, "family": v.rstrip("0123456789")}
        for i, d, v in VOICES
    ]


def clip_files() -> list[str]:
    return [
        f"{word}/{speaker}_nohash_{k}.wav"
        for word in ("yes", "no", "bed")
        for speaker, _, _ in VOICES
        for k in range(2)
    ]


@pytest.mark.parametrize("old_format", [False, True])
def test_speaker_voices_reads_the_marker(tmp_path, old_format):
    voices = speaker_voices(write_marker(tmp_path / "c", marker_voices(old_format)))
    assert voices["aaaa0002"] == {"dialect": "en-us", "variant": "klatt2", "family": "klatt"}
    family = "whisper" if old_format else "whisperf"  # format 1: from the variant; else as the marker says
    assert voices["aaaa0004"] == {"dialect": "en", "variant": "whisperf", "family": family}
    assert set(voices) == {i for i, _, _ in VOICES}


def test_hold_out_moves_exactly_that_dialects_clips():
    voices = {i: {"dialect": d, "variant": v, "family": v} for i, d, v in VOICES}
    files = clip_files()
    before = [which_set(f) for f in files]
    after = hold_out_dialect(files, before, voices, "en-gb-scotland")
    scottish = {"aaaa0003", "aaaa0005"}
    for f, old, new in zip(files, before, after):
        assert new == ("testing" if f.split("/")[1].split("_nohash_")[0] in scottish else old), f


def test_unknown_dialect_names_the_corpus_dialects():
    voices = {i: {"dialect": d, "variant": v, "family": v} for i, d, v in VOICES}
    with pytest.raises(ValueError, match=r"'en-029'.*\['en', 'en-gb-scotland', 'en-us'\]"):
        hold_out_dialect(clip_files(), ["training"] * len(clip_files()), voices, "en-029")


def test_clips_of_unlisted_speakers_are_refused():
    voices = {i: {"dialect": d, "variant": v, "family": v} for i, d, v in VOICES[1:]}
    with pytest.raises(DataError, match="not in the corpus marker"):
        hold_out_dialect(clip_files(), ["training"] * len(clip_files()), voices, "en-us")
    with pytest.raises(ValueError, match="split assignments"):
        hold_out_dialect(clip_files(), ["training"], voices, "en-us")


def test_missing_marker_or_voices_name_the_file(tmp_path):
    (tmp_path / "real").mkdir()
    with pytest.raises(DataError, match=rf"{MARKER_NAME} is missing.*kws synthetic corpus"):
        speaker_voices(tmp_path / "real")
    for name, voices in (("absent", None), ("empty", [])):
        root = write_marker(tmp_path / name, voices)
        with pytest.raises(DataError, match=re.escape(f"{root / MARKER_NAME} lists no voices")):
            speaker_voices(root)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / MARKER_NAME).write_text("{not json")
    with pytest.raises(DataError, match="unreadable"):
        speaker_voices(tmp_path / "bad")


def test_hold_out_on_a_generated_corpus(tmp_path):
    root = generate_corpus(
        tmp_path / "corpus",
        words=("yes", "no"),
        unknown_words=("bed",),
        num_speakers=8,
        clips_per_word=8,
        unknown_clips_per_word=4,
        progress=False,
    )
    voices = speaker_voices(root)
    files = [f for fs in scan_corpus(root).values() for f in fs]
    assignment = [which_set(f) for f in files]
    dialect = voices[files[0].split("/")[1].split("_nohash_")[0]]["dialect"]
    held = hold_out_dialect(files, assignment, voices, dialect)
    for f, old, new in zip(files, assignment, held):
        of_dialect = voices[f.split("/")[1].split("_nohash_")[0]]["dialect"] == dialect
        assert new == ("testing" if of_dialect else old)
    assert "testing" in held and any(v["dialect"] == dialect for v in voices.values())
