"""The synthetic Speech Commands stand-in: layout, format, splits, determinism, caching; and what
it says and how: accents, styles, words cut from phrases, formant scaling, the voices it records."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datamodules import synthetic
from datamodules.delivery import ACCENTS, CARRIERS, Script, lexicon, pronounce, substitutions
from datamodules.espeak import Espeak, EspeakError, list_variants, variant_synthesis
from datamodules.layout import which_set
from datamodules.render import Renderer, check_words, cut_word
from datamodules.synthetic import generate_corpus
from datamodules.voices import DIALECTS, FORMANT_SCALE, Speaker, family_of
from datamodules.word_extent import word_extent

TINY = dict(
    words=("yes", "no"),
    unknown_words=("bed", "visual"),
    num_speakers=6,
    clips_per_word=12,
    unknown_clips_per_word=6,
    seed=0,
    progress=False,
)
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
    assert sorted(s for (s,) in splits.values()) == [
        "testing",
        "training",
        "training",
        "training",
        "training",
        "validation",
    ]
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


def test_corpus_of_an_older_generator_is_made_anew_with_its_own_arguments(tmp_path):
    """The data module refreshes a generated corpus whose marker names an older format: the
    same arguments (a small corpus stays small), today's generator."""
    from datamodules import SpeechCommandsDataModule

    root = generate_corpus(tmp_path / "corpus", **TINY)
    marker = json.loads((root / synthetic.MARKER_NAME).read_text())
    (root / synthetic.MARKER_NAME).write_text(json.dumps({**marker, "format_version": 1}))
    for path in (root / "yes").iterdir():  # what an older generator said differently
        path.write_bytes(path.read_bytes()[:-2000] + bytes(2000))
    SpeechCommandsDataModule(data_dir=str(root), synthetic=True, cache_dir=str(tmp_path / "cache")).prepare_data()
    assert json.loads((root / synthetic.MARKER_NAME).read_text()) == marker
    assert all_files(root) == all_files(generate_corpus(tmp_path / "again", **TINY))
    assert not synthetic.refresh_corpus(root, progress=False)  # current: left as it is
    assert not synthetic.refresh_corpus(tmp_path / "cache", progress=False)  # no marker: never touched


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


# ---------------------------------------------------------------- what the corpus says, and how
EXAMPLES = {"goat": "no", "dress": "yes", "kit": "six", "face": "eight", "price": "five", "strut": "up", "th": "three"}


def lab_speaker(**changes) -> Speaker:
    """A plain speaker: no accent, no formant scaling, a flat channel."""
    base = dict(
        id="lab",
        dialect="en-us",
        variant="m3",
        synthesis="wavegen",
        accent=(),
        formant_scale=1.0,
        pitch=50,
        pitch_range=50,
        rate=150,
        peak_db=-6.0,
        highpass_hz=50.0,
        lowpass_hz=7900.0,
    )
    return Speaker(**{**base, **changes})


def render(speaker: Speaker, word: str = "no", **fixed) -> tuple[np.ndarray, object]:
    """The word's samples (its extent in the clip, float) and the script it was said from."""
    renderer = Renderer(16000, lexicon([word], [speaker.dialect]))
    with Espeak() as espeak:
        espeak.set_voice(speaker.voice)
        clip, said = renderer.clip(espeak, speaker, word, np.random.default_rng(0), **fixed)
    start, end = word_extent(clip)
    return clip[start:end].astype(np.float64) / 32768, said


def centroid(x: np.ndarray, sample_rate: int, lo: float = 200.0, hi: float = 3500.0) -> float:
    """Spectral centroid in the formant band: moves with F1/F2."""
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sample_rate)
    band = (freqs > lo) & (freqs < hi)
    return float((power[band] * freqs[band]).sum() / power[band].sum())


def high_share(x: np.ndarray, sample_rate: int = Espeak.SAMPLE_RATE) -> float:
    """Share of the energy above 4 kHz (an [s] has most of its energy there, "no" almost none)."""
    power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    return float(power[np.fft.rfftfreq(len(x), 1 / sample_rate) > 4000].sum() / power.sum())


def f0(x: np.ndarray, sample_rate: int = 16000) -> float:
    x = x - x.mean()
    r = np.correlate(x, x, "full")[len(x) - 1 :]
    lo, hi = sample_rate // 400, sample_rate // 60
    return sample_rate / (lo + int(np.argmax(r[lo:hi])))


def test_marker_records_each_speakers_voice(corpus):
    marker = json.loads((corpus / synthetic.MARKER_NAME).read_text())
    assert marker["format_version"] == synthetic.FORMAT_VERSION == 2
    variants = set(list_variants())
    for voice in marker["voices"]:
        assert voice["dialect"] in DIALECTS and voice["variant"] in variants, voice
        assert voice["voice"] == f"{voice['dialect']}+{voice['variant']}"
        assert voice["family"] == family_of(voice["variant"])
        assert voice["synthesis"] == variant_synthesis(voice["variant"])
        assert FORMANT_SCALE[0] <= voice["formant_scale"] <= FORMANT_SCALE[1]
        substitutions(list(voice["accent"].items()))  # every option is a known one
    speakers = {p.name.split("_nohash_")[0] for p in clips(corpus)}
    assert speakers == {v["id"] for v in marker["voices"]}
    total = len(clips(corpus))
    for counts in marker["delivery"].values():
        assert sum(counts.values()) == total, marker["delivery"]
    assert set(marker["delivery"]["context"]) == {"alone", "phrase"}
    assert set(marker["delivery"]["pronunciation"]) == {"phonemes", "text"}


def test_voice_families_and_klatt_modes():
    families = [family_of(v) for v in ("m3", "klatt2", "klatt", "whisperf", "Gene2", "croak")]
    assert families == ["m", "klatt", "klatt", "whisper", "gene", "croak"]
    assert {"klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6"} <= set(list_variants())
    modes = [variant_synthesis(v) for v in ("klatt", "klatt4", "m3")]
    assert modes == ["klatt1", "klatt4", "wavegen"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_accent_option_is_spoken_as_written(dialect):
    """espeak-ng reports the phonemes it spoke: a mnemonic it did not know would be missing."""
    own = lexicon(list(EXAMPLES.values()), [dialect])
    with Espeak() as espeak:
        espeak.set_voice(dialect)
        for group, options in ACCENTS.items():
            for option in options:
                phonemes = pronounce(own[dialect, EXAMPLES[group]], substitutions([(group, option)]))
                spoken = espeak.synth(f"<speak>[[{'|'.join(phonemes)}]].\n</speak>", 150, 50, 50, 30, 1, ssml=True)
                assert spoken.spoken() == [p.lstrip("',") for p in phonemes if p != ":"], (group, option)
                assert len(spoken.word_starts) == 1


def test_pronunciations_sound_different():
    def vowel(phonemes: str) -> np.ndarray:
        with Espeak() as espeak:  # fresh: the same synthesis state for each
            espeak.set_voice("en")
            spoken = espeak.synth(f"[[{phonemes}]].", 150, 50, 50, 30, 1)
        starts = dict((name.lstrip("',"), at) for name, at in spoken.phonemes)
        return spoken.samples[starts["n"] : starts["_:"]].astype(np.float64)

    british, monophthong, american = vowel("n|'oU"), vowel("n|'o:"), vowel("n|'o|U")
    # en's "no" is [nəʊ] (F2 ~1350 Hz); [no:] is back and rounded (F2 ~800 Hz).
    assert centroid(monophthong, Espeak.SAMPLE_RATE) < 0.85 * centroid(british, Espeak.SAMPLE_RATE)
    assert centroid(american, Espeak.SAMPLE_RATE) < 0.85 * centroid(british, Espeak.SAMPLE_RATE)
    assert len(monophthong) != len(american)


def test_accents_reach_the_clips():
    accented, said = render(lab_speaker(accent=(("goat", "o:"),)), style="statement")
    plain, plain_said = render(lab_speaker(), style="statement")
    assert said.phonemes == "n|'o:" and plain_said.phonemes is None
    assert centroid(accented, 16000) < 0.9 * centroid(plain, 16000)


def test_styles_shape_the_word():
    durations = {style: len(render(lab_speaker(), style=style)[0]) for style in ("statement", "drawn", "clipped")}
    assert durations["drawn"] > 1.3 * durations["statement"] > 1.3 * durations["clipped"], durations
    statement = render(lab_speaker(), style="statement")[0]
    for style in ("emphatic", "question"):
        other, said = render(lab_speaker(), style=style)
        assert said.text.count("<prosody") == 1
        assert len(other) != len(statement) or not np.allclose(other, statement)


def test_phrase_cut_holds_the_word_not_its_neighbours():
    with Espeak() as espeak:
        espeak.set_voice("en-us")
        spoken = espeak.synth("<speak>this no sir.\n</speak>", 150, 50, 50, 30, 1, ssml=True)
    said = Script("<speak>this no sir.\n</speak>", 1, 3, "statement", "this {w} sir", None)
    cut = cut_word(spoken.samples, spoken.word_starts, said, (0, 0))
    # The [s] of "this" and of "sir" stay out; "no" (a nasal and a vowel) has next to no energy above 4 kHz.
    this, sir = spoken.samples[: spoken.word_starts[1]], spoken.samples[spoken.word_starts[2] :]
    assert high_share(cut) < 0.01 and min(high_share(this), high_share(sir)) > 10 * high_share(cut)
    assert 0.1 * Espeak.SAMPLE_RATE < len(cut) < 0.5 * Espeak.SAMPLE_RATE
    with pytest.raises(EspeakError, match="expected 4"):
        check_words(spoken.word_starts, Script(said.text, 1, 4, "statement", "this {w} sir", None))


@pytest.mark.parametrize("carrier", CARRIERS)
def test_every_carrier_gives_a_clip_of_the_word(carrier):
    word, said = render(lab_speaker(), carrier=carrier, style="statement")
    assert said.carrier == carrier and said.num_words == len(carrier.replace(",", " ").split())
    assert 0.08 < len(word) / 16000 < 0.7 and np.abs(word).max() > 0.1


def test_formant_scale_moves_formants_not_pitch():
    short, _ = render(lab_speaker(formant_scale=1.15), style="statement")
    long, _ = render(lab_speaker(formant_scale=0.85), style="statement")
    middle = [x[len(x) // 3 : 2 * len(x) // 3] for x in (short, long)]
    assert centroid(middle[0], 16000) > 1.08 * centroid(middle[1], 16000)
    assert 0.9 < f0(middle[0][:1024]) / f0(middle[1][:1024]) < 1.12  # unscaled it would be 1.35
    assert 0.85 < len(short) / len(long) < 1.15
