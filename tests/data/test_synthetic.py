"""The synthetic Speech Commands stand-in: layout, format, splits, determinism, caching."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datamodules import synthetic
from datamodules.layout import which_set
from datamodules.espeak import EspeakError
from datamodules.synthetic import generate_corpus

TINY = dict(words=("yes", "no"), unknown_words=("bed", "visual"), num_speakers=6, clips_per_word=12,
            unknown_clips_per_word=6, seed=0, progress=False)
CLIP_NAME = re.compile(r"^[0-9a-f]{8}_nohash_\d+\.wav$")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return generate_corpus(tmp_path_factory.mktemp("synthetic") / "corpus", **TINY)


def clips(root: Path) -> list[Path]:
    return sorted(p for word in TINY["words"] + TINY["unknown_words"] for p in (root / word).iterdir())


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_list(root: Path, name: str) -> list[str]:
    return (root / name).read_text().splitlines()


def test_layout_and_wav_format(corpus):
    for word in TINY["words"]:
        assert len(list((corpus / word).iterdir())) == TINY["clips_per_word"]
    for word in TINY["unknown_words"]:
        assert len(list((corpus / word).iterdir())) == TINY["unknown_clips_per_word"]
    for path in clips(corpus):
        assert CLIP_NAME.match(path.name), path
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16"), path


def test_background_noise(corpus):
    noise = corpus / synthetic.BACKGROUND_NOISE_DIR
    for name in ("white_noise", "pink_noise", "brown_noise"):
        info = sf.info(str(noise / f"{name}.wav"))
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, 60 * 16000)
    real = sorted(synthetic.real_noise_dir().glob("*.wav"))
    assert [p.name for p in real] == ["doing_the_dishes.wav", "exercise_bike.wav", "running_tap.wav"]
    for path in real:
        assert (noise / path.name).read_bytes() == path.read_bytes()
    assert "CC BY 4.0" in (noise / "SOURCE.txt").read_text()
    assert (noise / "LICENSE").is_file()


def test_lists_follow_the_hash_rule(corpus):
    validation = read_list(corpus, "validation_list.txt")
    testing = read_list(corpus, "testing_list.txt")
    assert validation and testing and not set(validation) & set(testing)
    for line in validation + testing:
        assert (corpus / line).is_file(), line
    listed = {**dict.fromkeys(validation, "validation"), **dict.fromkeys(testing, "testing")}
    for path in clips(corpus):
        relative = f"{path.parent.name}/{path.name}"
        assert which_set(relative) == listed.get(relative, "training"), relative


def test_no_speaker_in_two_splits(corpus):
    splits: dict[str, set[str]] = {}
    for path in clips(corpus):
        splits.setdefault(path.name.split("_nohash_")[0], set()).add(which_set(path.name))
    assert all(len(s) == 1 for s in splits.values())
    assert sorted(s for (s,) in splits.values()) == ["testing", "training", "training", "training",
                                                     "training", "validation"]
    # Voice variants (timbres) are not shared between splits either.
    voices = json.loads((corpus / synthetic.MARKER_NAME).read_text())["voices"]
    variant_splits: dict[str, set[str]] = {}
    for voice in voices:
        variant_splits.setdefault(voice["voice"].split("+")[1], set()).add(voice["split"])
    assert all(len(s) == 1 for s in variant_splits.values())




def test_clips_are_audible_unclipped_and_inside_the_second(corpus):
    for path in clips(corpus):
        samples = sf.read(str(path), dtype="int16")[0].astype(np.float64)
        assert np.sqrt(np.mean(samples**2)) > 30, f"{path}: nearly silent"
        assert np.abs(samples).max() < 32000, f"{path}: saturated"
        # The first and last 20 ms hold only the noise floor (never digital zero): the word is not
        # cut at either edge.
        edge = 320
        for end in (samples[:edge], samples[-edge:]):
            assert 0 < np.abs(end).max() < 32, path
        assert np.abs(samples[edge:-edge]).max() > 1000, path


def test_deterministic(corpus, tmp_path):
    again = generate_corpus(tmp_path / "again", **TINY)
    assert all_files(again) == all_files(corpus)


def test_cached_then_regenerated_on_change(tmp_path):
    root = generate_corpus(tmp_path / "corpus", **TINY)
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert generate_corpus(root, **TINY) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == mtimes

    before = all_files(root)
    generate_corpus(root, **{**TINY, "seed": 1})
    after = all_files(root)
    assert after != before
    assert json.loads((root / synthetic.MARKER_NAME).read_text())["args"]["seed"] == 1
    assert not list(tmp_path.glob(".corpus.*")), "temp folders left behind"


def test_partial_folder_is_regenerated(tmp_path):
    root = generate_corpus(tmp_path / "corpus", **TINY)
    (root / synthetic.MARKER_NAME).unlink()  # as if the run died before writing its marker
    next((root / "yes").iterdir()).unlink()
    generate_corpus(root, **TINY)
    assert (root / synthetic.MARKER_NAME).is_file()
    assert len(list((root / "yes").iterdir())) == TINY["clips_per_word"]


def test_refuses_to_overwrite_foreign_folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "README.md").write_text("someone else's data")
    with pytest.raises(FileExistsError, match="not a kws synthetic corpus"):
        generate_corpus(tmp_path / "data", **TINY)
    assert (tmp_path / "data" / "README.md").is_file()


def test_missing_espeak_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # makes `import espeakng_loader` fail
    with pytest.raises(EspeakError, match="pip install"):
        generate_corpus(tmp_path / "corpus", **TINY)
    assert not (tmp_path / "corpus").exists()


def test_rejects_overlapping_words(tmp_path):
    with pytest.raises(ValueError, match="distinct"):
        generate_corpus(tmp_path / "corpus", **{**TINY, "unknown_words": ("yes", "bed")})
