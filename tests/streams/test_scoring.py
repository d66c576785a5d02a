"""The stream test's pieces: the fast recognizer replay against RecognizeCommands, detection
scoring on hand-made cases, word extents, noise parts, and stream building (determinism, ground
truth where the words are)."""

import numpy as np
import pytest

from datamodules.noise_parts import SPLIT_FRACTIONS, noise_part
from datamodules.word_extent import word_extent, word_extents
from kws.streams.recognize import RecognizeCommands, RecognizerSettings
from kws.streams.recordings import StreamEvent, build_stream
from kws.streams.scoring import calibrate, replay, score

LABELS = ["silence", "unknown", "yes", "no"]


def bursty_scores(rng, n=1500):
    logits = rng.normal(0, 2, (n, 4))
    for _ in range(40):
        i = rng.integers(n)
        logits[i : i + rng.integers(1, 12), rng.integers(4)] += rng.uniform(2, 8)
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("trial", range(12))
def test_replay_equals_recognize_commands(trial):
    rng = np.random.default_rng(trial)
    p = bursty_scores(rng)
    times = np.arange(len(p)) * 100 + 40
    setting = RecognizerSettings(
        float(rng.choice([0.3, 0.5, 0.8])),
        int(rng.choice([200, 300, 1000])),
        int(rng.choice([0, 500, 1500])),
        int(rng.choice([1, 3, 5])),
    )
    recognizer = RecognizeCommands.from_settings(LABELS, setting)
    expected = [(d.label, d.score, d.time_ms) for s, t in zip(p, times) if (d := recognizer.process(s, int(t)))]
    got = replay(p, times, LABELS, setting)
    assert [(label, t) for label, _, t in got] == [(label, t) for label, _, t in expected]
    assert np.allclose([s for _, s, _ in got], [s for _, s, _ in expected], atol=1e-12)


def event(label, start_ms, end_ms):
    return StreamEvent(label, label, start_ms * 16, end_ms * 16, "")


def test_score_hits_false_alarms_and_delay():
    events = [event("yes", 1000, 1500), event("unknown", 3000, 3400), event("no", 5000, 5600), event("yes", 8000, 8400)]
    detections = [
        ("yes", 0.9, 1700),  # hit, 200 ms after the end
        ("yes", 0.9, 2400),  # second detection of the same word: false alarm
        ("yes", 0.9, 3300),  # during an other word: false alarm
        ("yes", 0.9, 5500),  # wrong label during "no": false alarm
        ("no", 0.9, 6700),  # 1100 ms after the end: outside the 1000 ms tolerance, false alarm
        ("yes", 0.9, 8000),  # at the word's start: hit, delay -400
    ]
    result = score(detections, events, duration_s=3600.0, tolerance_ms=1000)
    assert (result["hits"], result["keywords"], result["false_alarms"]) == (2, 3, 4)
    assert result["recall_per_label"] == {"no": 0.0, "yes": 1.0}
    hours = (3600 - 1.5) / 3600  # minus the keywords' 0.5 + 0.6 + 0.4 s
    assert result["fa_per_hour"] == pytest.approx(4 / hours)
    assert result["delay_median_ms"] == pytest.approx(-100)


def test_score_matches_the_earliest_open_keyword():
    events = [event("yes", 1000, 1300), event("yes", 1900, 2200)]
    result = score([("yes", 0.9, 2100), ("yes", 0.9, 2250)], events, duration_s=10.0)
    assert result["hits"] == 2 and result["false_alarms"] == 0


def test_calibrate_picks_best_recall_within_budget():
    rows = [
        dict(recall=0.9, fa_per_hour=12.0, threshold=0.5),
        dict(recall=0.8, fa_per_hour=4.0, threshold=0.6),
        dict(recall=0.8, fa_per_hour=3.0, threshold=0.7),
        dict(recall=0.5, fa_per_hour=0.0, threshold=0.9),
    ]
    assert calibrate(rows, 5.0)["threshold"] == 0.7
    assert calibrate(rows, 0.0)["threshold"] == 0.9
    assert calibrate([dict(recall=1.0, fa_per_hour=3.0, threshold=0.5)], 1.0) is None


def test_word_extent_finds_a_burst():
    rng = np.random.default_rng(1)
    clip = rng.normal(0, 3, 16000)
    clip[4000:9000] += 8000 * np.sin(np.arange(5000) * 0.3)
    start, end = word_extent(np.round(clip).astype(np.int16))
    assert abs(start - 4000) <= 160 and abs(end - 9000) <= 160
    assert word_extents(np.zeros((2, 16000), np.int16)).tolist() == [[0, 16000], [0, 16000]]


def test_noise_parts_cut_a_recording_without_overlap():
    recording = np.arange(100_003)
    parts = [noise_part(recording, s) for s in SPLIT_FRACTIONS]
    assert np.array_equal(np.concatenate(parts), recording)
    assert len(parts[0]) == pytest.approx(80_002, abs=1)
    with pytest.raises(ValueError, match="split"):
        noise_part(recording, "train")


def test_stream_is_deterministic_and_its_words_are_where_it_says(tiny_corpus):
    a = build_stream(tiny_corpus, "testing", seed=3, other_repeats=1)
    b = build_stream(tiny_corpus, "testing", seed=3, other_repeats=1)
    assert np.array_equal(a.audio, b.audio) and a.events == b.events
    assert not np.array_equal(a.audio, build_stream(tiny_corpus, "testing", seed=4, other_repeats=1).audio)
    files = set((tiny_corpus / "testing_list.txt").read_text().split())
    assert {e.source for e in a.events} <= files and a.keyword_events
    ends = [e.end for e in a.events]
    starts = [e.start for e in a.events]
    assert all(s2 - e1 >= 0.5 * 16000 - 1 for e1, s2 in zip(ends, starts[1:]))  # the gaps
    # Each word is louder than the stretch just before it.
    for e in a.keyword_events:
        word = a.audio[e.start : e.end].astype(float)
        before = a.audio[e.start - 8000 : e.start - 800].astype(float)
        assert np.sqrt(np.mean(word**2)) > np.sqrt(np.mean(before**2))
