"""The cross-check (kws.tools.cross_check, kws.tools.cross_clips): held-out synthesizers' clips are
1 s and hold their word where the manifest says, are cached, the board view differs from the fresh
one exactly when the front end keeps state, the counts and rates of the table are right, the
stream view attributes detections to the right clips, and a missing synthesizer fails naming the
Debian package. Synthesizing tests need flite and festival (.ci/run installs them on Debian)."""

import csv
import json
import os
import shutil

import numpy as np
import pytest

from datamodules.word_extent import word_extent
from kws.audio.settings import FeatureSettings
from kws.audio.wav import read_wav, write_wav
from kws.streams.recognize import RecognizerSettings
from kws.tools import cross_clips
from kws.tools.cross_check import board_rows, main, metrics, stream_view, table, window_features
from kws.tools.cross_clips import CrossCheckError, clip_set, list_voices, real_clips, real_speech_dir, require
from tests.helpers import run_kws

MISSING = [s for s in ("flite", "festival") if shutil.which(s) is None]
needs_synthesizers = pytest.mark.skipif(
    bool(MISSING),
    reason=f"{', '.join(MISSING)} not found: apt-get install -y flite festival festvox-kallpc16k "
    "festvox-kdlpc16k festvox-us-slt-hts (.ci/run does on Debian)",
)
VOICES = ("flite/slt", "festival/kal_diphone")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    voices = [v for v in list_voices(["flite", "festival"]) if v.id in VOICES]
    root = tmp_path_factory.mktemp("cross")
    folder, rows = clip_set(
        root, voices, ["yes", "no"], ["cat", "go"], stretches=(1.0, 1.25), pitches=(0, 200), seed=0, progress=False
    )
    return folder, rows


def test_a_missing_synthesizer_fails_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no flite, no festival
    with pytest.raises(CrossCheckError, match=r"apt-get install -y flite\b"):
        require("flite")
    with pytest.raises(CrossCheckError, match="apt-get install -y festival festvox-kallpc16k"):
        list_voices(["festival"])
    env = {**os.environ, "PATH": str(tmp_path)}
    proc = run_kws(
        "cross-check", "--tflite", str(tmp_path / "model.tflite"), "--synthesizers", "festival", check=False, env=env
    )
    assert (
        proc.returncode == 2
        and "festival is not installed" in proc.stderr
        and "apt-get install -y festival" in proc.stderr
    ), proc.stderr
    assert "Traceback" not in proc.stderr


@needs_synthesizers
def test_clips_are_one_second_and_hold_their_word(clips):
    folder, rows = clips
    counts = {}
    for row in rows:
        counts[(row["voice"], row["word"])] = counts.get((row["voice"], row["word"]), 0) + 1
    # keywords: 2 stretches x 2 pitches; other words: 2 stretches at the voice's own pitch; 12 noise clips
    assert counts == {
        **{(v, w): 4 for v in VOICES for w in ("yes", "no")},
        **{(v, w): 2 for v in VOICES for w in ("cat", "go")},
        ("noise/background", "_noise_"): 12,
    }
    for row in rows:
        audio, rate = read_wav(folder / row["path"])
        assert rate == 16000 and audio.shape == (16000,), row["path"]
        if row["family"] == "noise":
            continue
        start, end = word_extent(audio)
        assert row["onset"] - 320 <= start and end <= row["end"] + 320, (row, start, end)  # found where it was placed
        assert end - start > 1600, row  # a word, not a click: over 100 ms
        inside = np.abs(audio[row["onset"] : row["end"]].astype(float)).max()
        outside = np.abs(np.concatenate([audio[: row["onset"]], audio[row["end"] :]]).astype(float)).max()
        assert inside > 30 * outside, row  # the floor around the word is faint
    again = [r for r in rows if r["voice"] == "flite/slt" and r["word"] == "no"]
    assert len({(r["stretch"], r["pitch"]) for r in again}) == 4  # every rendition its own


@needs_synthesizers
def test_clip_sets_are_cached(clips, monkeypatch):
    folder, rows = clips
    monkeypatch.setattr(cross_clips, "_speak", lambda *a: pytest.fail("a cached set was synthesized again"))
    voices = [v for v in list_voices(["flite", "festival"]) if v.id in VOICES]
    assert clip_set(
        folder.parent,
        voices,
        ["yes", "no"],
        ["cat", "go"],
        stretches=(1.0, 1.25),
        pitches=(0, 200),
        seed=0,
        progress=False,
    ) == (folder, rows)


def test_views_differ_exactly_when_the_front_end_keeps_state():
    audio = np.stack([read_wav(p)[0] for p in sorted(real_speech_dir().glob("no/*.wav"))[:3]])
    parts = [np.random.default_rng(1).normal(0, 3000, 5 * 16000).astype(np.int16)]
    for frontend, differ in (("micro", True), ("mfcc", False)):
        settings = FeatureSettings(frontend=frontend)
        fresh = window_features(audio, settings, "fresh")
        board = window_features(board_rows(audio, settings, parts, 2.0, 0.01, 2.0, seed=0), settings, "board")
        assert fresh.shape == board.shape == (3, 49 * 40)
        assert (np.abs(fresh - board).max() > 0.5) == differ, (
            frontend
        )  # micro: the noise estimate came in from the lead-in
        assert differ or np.array_equal(fresh, board)  # the clip itself is unchanged
        louder = window_features(board_rows(audio, settings, parts, 2.0, 0.3, 2.0, seed=0), settings, "louder")
        assert (
            np.abs(louder - fresh).mean() > np.abs(board - fresh).mean()
        ) == differ  # a louder room, a larger estimate


def test_metrics_count_each_view():
    truth = ["yes", "yes", "no", "no", "no", "unknown", "unknown", "silence"]
    predicted = {
        "fresh": ["yes", "no", "no", "no", "unknown", "yes", "unknown", "silence"],
        "board": ["yes", "yes", "unknown", "unknown", "unknown", "unknown", "unknown", "no"],
    }
    heard = {0: True, 1: False, 2: True, 3: True, 4: False}
    alarms = {5: 2, 7: 1, 1: 1}  # two after an other word, one after the noise, one on a keyword
    got = metrics(np.arange(8), truth, predicted, heard, alarms, ["yes", "no"])
    assert got["clips"] == {"yes": 2, "no": 3, "unknown": 2, "silence": 1}
    assert got["fresh"]["recall"] == {"yes": [1, 2], "no": [2, 3]}
    assert got["fresh"]["false_positives"] == {"unknown": [1, 2], "silence": [0, 1], "all": [1, 3]}
    assert got["fresh"]["balanced_accuracy"] == pytest.approx((0.5 + 2 / 3 + 0.5 + 1.0) / 4)
    assert got["board"]["recall"] == {"yes": [2, 2], "no": [0, 3]} and got["board"]["false_positives"]["all"] == [1, 3]
    assert got["board"]["confusion"]["no"] == {"no": 0, "unknown": 3, "yes": 0}
    assert got["stream"] == {
        "heard": {"yes": [1, 2], "no": [2, 3]},
        "false_positives": {"unknown": [1, 2], "silence": [1, 1], "all": [2, 3]},
        "false_alarms": 4,
        "false_alarms_on_keywords": 1,
    }
    text = table({"a/b": got, "a": got}, ["yes", "no"], "m")
    row = text.splitlines()[2]
    assert row.startswith("| a/b | 2 / 3 / 2 / 1 | 50 · 100 · 50 % | 67 · 0 · 67 % | 33 · 33 · 67 % | 67 · ")
    assert text.splitlines()[3].startswith("| **a** |")


class Loud:
    """A stand-in model: "yes" whenever the window holds loud audio, silence otherwise."""

    def __call__(self, x):
        loud = x.reshape(len(x), 49, 40).max((1, 2)) > 14.0
        return np.where(loud[:, None], [0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0])


def test_stream_view_hears_keywords_and_attributes_false_alarms():
    t = np.arange(16000) / 16000
    tone = (8000 * np.sin(2 * np.pi * 700 * t) * ((t > 0.3) & (t < 0.7))).astype(np.int16)
    clips = np.stack([tone, tone, tone, np.zeros(16000, np.int16)])
    rows = [
        dict(path=f"{w}/x_nohash_{i}.wav", word=w, family="flite", voice="flite/x", onset=4800, end=11200)
        for i, w in enumerate(["yes", "no", "cat"])
    ]
    rows.append(
        dict(
            path="_noise_/f_nohash_0.wav", word="_noise_", family="noise", voice="noise/background", onset=0, end=16000
        )
    )
    truth = ["yes", "no", "unknown", "silence"]
    args = type("Args", (), dict(seed=0, lead_in_s=2.0, gap_s=1.5, noise_volume=0.0, floor_rms=2.0, tolerance_ms=1000))
    recognizer = RecognizerSettings(
        detection_threshold=0.7, average_window_ms=300, suppression_ms=1500, minimum_count=3, inference_stride_ms=100
    )
    heard, alarms = stream_view(
        "flite/x",
        np.arange(4),
        clips,
        rows,
        truth,
        Loud(),
        ["silence", "unknown", "yes", "no"],
        FeatureSettings(),
        recognizer,
        [np.zeros(16000, np.int16)],
        args,
    )
    assert heard == {0: True, 1: False}  # the "no" was heard as yes: a miss, and a false alarm on it
    assert alarms == {1: 1, 2: 1}  # the other word's "yes" belongs to it; the silent clip is quiet


@needs_synthesizers
def test_a_small_run_reports_every_voice(clips, micro_speech_dir, tmp_path, capsys):
    real = tmp_path / "real"
    for word in ("yes", "no"):
        (real / word).mkdir(parents=True)
        write_wav(real / word / "ref_nohash_0.wav", read_wav(micro_speech_dir / f"{word}_1000ms.wav")[0], 16000)
    assert [(r["word"], r["voice"]) for r in real_clips(real)] == [("no", "real/real"), ("yes", "real/real")]
    out = tmp_path / "out"
    results = main(
        [
            "--tflite",
            str(micro_speech_dir / "micro_speech_quantized.tflite"),
            "--runtime",
            "litert",
            "--voices",
            *VOICES,
            "--words",
            "cat",
            "go",
            "--stretches",
            "1.0",
            "1.25",
            "--pitches",
            "0",
            "200",
            "--clips_dir",
            str(clips[0].parent),
            "--real_dir",
            str(real),
            "--out",
            str(out),
        ]
    )
    groups = results["groups"]
    assert list(groups) == [
        "flite/slt",
        "flite",
        "festival/kal_diphone",
        "festival",
        "real/real",
        "real",
        "noise/background",
        "noise",
        "synthetic (flite + festival)",
    ]
    assert groups["flite/slt"]["clips"] == {"yes": 4, "no": 4, "unknown": 4, "silence": 0}
    assert groups["synthetic (flite + festival)"]["clips"] == {"yes": 8, "no": 8, "unknown": 8, "silence": 0}
    assert groups["noise"]["clips"] == {"yes": 0, "no": 0, "unknown": 0, "silence": 12}
    with open(out / "clips.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(clips[1]) + 2
    for view in ("fresh", "board"):
        for kw in ("yes", "no"):  # the table's recall is the clips' own
            mine = [r for r in rows if r["voice"].startswith(("flite", "festival")) and r["label"] == kw]
            assert groups["synthetic (flite + festival)"][view]["recall"][kw] == [
                sum(r[f"pred_{view}"] == kw for r in mine),
                len(mine),
            ]
    # the reference model, trained on real speech, hears micro_speech's real yes and no as clips
    assert groups["real"]["fresh"]["recall"] == {"yes": [1, 1], "no": [1, 1]}
    assert json.loads((out / "results.json").read_text())["groups"]["real"]["fresh"]["recall"]["yes"] == [1, 1]
    printed = capsys.readouterr().out
    assert "| flite/slt | 4 / 4 / 4 / 0 |" in printed and "| **noise** | 0 / 0 / 0 / 12 |" in printed


def test_an_untrained_checkpoint_on_the_real_clips_alone(tmp_path, capsys):
    """--ckpt (PyTorch) with --synthesizers none: the shipped real clips and the noise clips only,
    no synthesizer needed; the table's fresh predictions are the model's own on fresh features."""
    import torch

    from kws.training.module import KWSModule

    torch.manual_seed(0)
    module = KWSModule(labels=["silence", "unknown", "yes", "no"], input_shape=(49, 40)).eval()
    ckpt = tmp_path / "untrained.ckpt"
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": "2.0.0",
            "datamodule_hyper_parameters": {"data_dir": str(tmp_path), "wanted_words": ["yes", "no"]},
        },
        ckpt,
    )
    out = tmp_path / "out"
    results = main(
        ["--ckpt", str(ckpt), "--synthesizers", "none", "--clips_dir", str(tmp_path / "clips"), "--out", str(out)]
    )
    assert list(results["groups"]) == ["real/real_speech", "real", "noise/background", "noise"]
    assert results["groups"]["real"]["clips"] == {"yes": 24, "no": 24, "unknown": 12, "silence": 0}
    assert (
        results["model"] == "float (PyTorch)" and results["recognizer"]["average_window_ms"] == 1000
    )  # no calibration: the defaults
    with open(out / "clips.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["voice"] == "real/real_speech"]
    audio = np.stack([read_wav(r["clip"])[0] for r in rows])
    with torch.no_grad():
        expected = module(torch.from_numpy(window_features(audio, FeatureSettings(), "fresh"))).argmax(1).tolist()
    assert [r["pred_fresh"] for r in rows] == [["silence", "unknown", "yes", "no"][k] for k in expected]
    assert "| **real** | 24 / 24 / 12 / 0 |" in capsys.readouterr().out
