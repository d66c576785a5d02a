"""Keyword recall per voice family and dialect (kws.streams.voices): counted on a hand-built
stream, read from both marker formats, carried by evaluate() into the results and the table, and
absent -- without an error -- for a corpus without the marker."""

import json

import numpy as np
import pytest

from kws.audio.settings import FeatureSettings
from kws.streams.evaluate import evaluate, table, write
from kws.streams.recordings import StreamEvent
from kws.streams.voices import recall_by_voice, speaker_voices, voice_table
from tests.helpers import make_corpus

VOICES = {
    "s1": {"family": "m1", "dialect": "en"},
    "s2": {"family": "klatt", "dialect": "en-us"},
    "s3": {"family": "m1", "dialect": "en-us"},
}


def event(label, start_ms, end_ms, speaker, k=0):
    return StreamEvent(
        label, label if label != "unknown" else "cat", start_ms * 16, end_ms * 16, f"{label}/{speaker}_nohash_{k}.wav"
    )


def test_recall_by_voice_counts_hits_per_family_and_dialect():
    events = [
        event("yes", 1000, 1400, "s1"),
        event("no", 3000, 3400, "s1"),  # m1/en: yes heard, no missed
        event("no", 5000, 5400, "s2"),
        event("no", 7000, 7400, "s2", 1),  # klatt/en-us: one no of two heard
        event("unknown", 9000, 9400, "s2"),  # other words are not keywords: never counted
        event("yes", 11000, 11400, "s3"),
        event("no", 13000, 13400, "s3"),  # m1/en-us: both heard
        event("yes", 15000, 15400, "zz"),  # a speaker the marker does not name: "?"
    ]
    detections = [
        ("yes", 0.9, 1500),
        ("no", 0.9, 5600),
        ("yes", 0.9, 9200),
        ("yes", 0.9, 11500),
        ("no", 0.9, 13300),
        ("no", 0.9, 15500),
    ]
    got = recall_by_voice(detections, events, VOICES)
    family, dialect = got["family"], got["dialect"]
    assert family["m1"]["yes"] == {"hits": 2, "keywords": 2, "recall": 1.0}
    assert family["m1"]["no"] == {"hits": 1, "keywords": 2, "recall": 0.5}
    assert family["klatt"] == {"no": {"hits": 1, "keywords": 2, "recall": 0.5}}
    assert family["?"] == {"yes": {"hits": 0, "keywords": 1, "recall": 0.0}}  # the wrong label at 15500 is no hit
    assert dialect["en"] == {
        "yes": {"hits": 1, "keywords": 1, "recall": 1.0},
        "no": {"hits": 0, "keywords": 1, "recall": 0.0},
    }
    assert dialect["en-us"]["no"] == {"hits": 2, "keywords": 3, "recall": 2 / 3}
    assert sum(c["keywords"] for cells in family.values() for c in cells.values()) == 7


def test_speaker_voices_reads_both_marker_formats(tmp_path):
    assert speaker_voices(tmp_path) is None  # no marker: the real data set
    (tmp_path / ".kws_corpus.json").write_text(
        json.dumps(
            {
                "voices": [
                    {"id": "a", "voice": "en-gb-scotland+klatt2"},
                    {"id": "b", "voice": "en-us+f1", "dialect": "en-us", "family": "female-1"},  # explicit fields win
                ]
            }
        )
    )
    # one definition with the data module's (datamodules.holdout): a family groups numbered variants
    assert speaker_voices(tmp_path) == {
        "a": {"family": "klatt", "dialect": "en-gb-scotland", "variant": "klatt2"},
        "b": {"family": "female-1", "dialect": "en-us", "variant": "f1"},
    }
    (tmp_path / ".kws_corpus.json").write_text(json.dumps({"format_version": 1}))
    assert speaker_voices(tmp_path) is None


def test_voice_table_lists_the_weakest_groups_first():
    voices = {
        "family": {
            "m1": {"yes": {"hits": 9, "keywords": 10, "recall": 0.9}, "no": {"hits": 8, "keywords": 10, "recall": 0.8}},
            "klatt": {
                "yes": {"hits": 10, "keywords": 10, "recall": 1.0},
                "no": {"hits": 2, "keywords": 10, "recall": 0.2},
            },
        },
        "dialect": {
            "en": {
                "yes": {"hits": 19, "keywords": 20, "recall": 0.95},
                "no": {"hits": 10, "keywords": 20, "recall": 0.5},
            }
        },
    }
    text = voice_table({"10": {"voices": {"testing": voices}}, "2": None})
    rows = [line for line in text.splitlines() if line.startswith("| family") or line.startswith("| dialect")]
    assert [r.split("|")[1].strip() for r in rows] == ["family klatt", "family m1", "dialect en"]
    assert "20 % (2/10)" in rows[0] and "| 10 + 10 |" in rows[0]
    assert voice_table({"10": {"testing": {}}}) == ""


class Constant:
    """A model that hears nothing: every window is silence."""

    def __call__(self, x):
        return np.tile([0.97, 0.01, 0.01, 0.01], (len(x), 1))


@pytest.mark.parametrize("with_marker", [True, False])
def test_evaluate_reports_voices_only_for_a_corpus_with_the_marker(tmp_path, with_marker):
    root = make_corpus(tmp_path / "corpus", speakers=6, clips=2)
    files = sorted(str(p.relative_to(root)) for p in root.glob("*/*.wav") if not p.parent.name.startswith("_"))
    (root / "validation_list.txt").write_text("\n".join(f for f in files if "spk000_" in f or "spk001_" in f) + "\n")
    (root / "testing_list.txt").write_text("\n".join(f for f in files if "spk002_" in f or "spk003_" in f) + "\n")
    if with_marker:
        voices = [
            {"id": "spk000", "voice": "en+m1"},
            {"id": "spk001", "voice": "en-us+m2"},
            {"id": "spk002", "voice": "en+klatt"},
            {"id": "spk003", "voice": "en-us+f1", "dialect": "en-us", "family": "f1"},
        ]
        (root / ".kws_corpus.json").write_text(json.dumps({"voices": voices}))
    labels = ["silence", "unknown", "yes", "no"]
    results = evaluate(Constant(), labels, FeatureSettings(), root, budgets=(10.0,), log=None)
    chosen = results["calibrated"][10.0]
    assert chosen is not None and chosen["testing"]["hits"] == 0
    if not with_marker:
        assert "voices" not in chosen and "voice (" not in table(results, "m")
        return
    test = chosen["voices"]["testing"]
    keywords = [e for e in results["streams"]["testing"].events if e.label != "unknown"]
    # Each test speaker said yes and no twice (2 clips each): every family and dialect counted exactly.
    counted = {name: {label: c["keywords"] for label, c in cells.items()} for name, cells in test["family"].items()}
    assert counted == {"klatt": {"yes": 2, "no": 2}, "f1": {"yes": 2, "no": 2}}
    assert set(test["dialect"]) == {"en", "en-us"} and len(keywords) == 8
    assert set(chosen["voices"]["validation"]["family"]) == {"m"}  # m1 and m2: one family
    assert all(c["hits"] == 0 for cells in test["family"].values() for c in cells.values())
    assert "| family klatt | 2 + 2 |" in table(results, "m")
    written = json.loads((write(results, tmp_path / "st", "m") and tmp_path / "st" / "results.json").read_text())
    assert (
        written["calibrated"]["10.0"]["voices"]["testing"]["dialect"]["en-us"]["no"]["keywords"] == 2
    )  # results.json keeps it
