"""SpeechCommandsDataModule: the split, the silence/unknown classes, augmentation, bad input."""

import hashlib
import math
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from datamodules import SpeechCommandsDataModule
from datamodules.augment import BackgroundNoise, noise_volumes, time_shift
from datamodules.classes import ClassShares
from datamodules.layout import DataError, download_speech_commands, which_set
from kws.audio.wav import AudioError, write_wav
from tests.helpers import make_corpus


def datamodule(root: Path, **kwargs) -> SpeechCommandsDataModule:
    dm = SpeechCommandsDataModule(data_dir=str(root), batch_size=16, **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


# ---------------------------------------------------------------------------------- the split
def test_which_set_matches_speech_commands_rule():
    def reference(speaker: str) -> float:  # TensorFlow speech_commands input_data.which_set
        return (int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % 2**27) * (100.0 / (2**27 - 1))

    assert 5.0 < reference("cfcd2084") < 6.0
    assert 16.0 < reference("eccbc87e") < 17.0
    assert 61.0 < reference("c4ca4238") < 62.0
    assert which_set("yes/cfcd2084_nohash_0.wav") == "validation"
    assert which_set("eccbc87e_nohash_3.wav") == "testing"
    assert which_set("/data/no/c4ca4238_nohash_1.wav") == "training"
    # Everything after _nohash_ is ignored: one speaker, one split.
    assert which_set("cfcd2084_nohash_0.wav") == which_set("cfcd2084_nohash_17.wav")
    assert which_set("eccbc87e_nohash_0.wav", validation_percentage=20) == "validation"


def test_hash_split_keeps_speakers_apart_and_is_deterministic(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=60)
    a, b = datamodule(root), datamodule(root)
    files = sorted(str(p.relative_to(root)) for p in root.glob("*/*.wav") if not p.parent.name.startswith("_"))
    split_of = {f: which_set(f) for f in files}
    speakers = {
        s: {re.sub(r"_nohash_.*", "", Path(f).name) for f, sp in split_of.items() if sp == s}
        for s in ("training", "validation", "testing")
    }
    assert not speakers["training"] & speakers["testing"] and not speakers["training"] & speakers["validation"]
    for split in ("training", "validation", "testing"):
        np.testing.assert_array_equal(a.splits[split].labels, b.splits[split].labels)
        np.testing.assert_array_equal(a.splits[split].rows, b.splits[split].rows)
        wanted = sum(1 for f, sp in split_of.items() if sp == split and f.split("/")[0] in ("yes", "no"))
        counts = a.counts[split]
        assert counts["yes"] + counts["no"] == wanted
        assert counts["silence"] == math.ceil(wanted * 0.25) and counts["unknown"] == math.ceil(wanted * 0.25)
    # evaluation audio (silence noise included) is identical between two set-ups
    np.testing.assert_array_equal(a.splits["testing"].audio, b.splits["testing"].audio)
    assert "training" in a.summary() and "silence" in a.summary()


def test_split_lists_are_used_when_present(tmp_path):
    dm = datamodule(
        make_corpus(tmp_path / "c", speakers=10, lists=True), classes=dict(silence_percentage=0, unknown_percentage=0)
    )
    # validation: speakers 0 and 1 x 2 clips x (yes, no); testing: speaker 2
    assert dm.counts["validation"] == {"silence": 0, "unknown": 0, "yes": 4, "no": 4}
    assert dm.counts["testing"] == {"silence": 0, "unknown": 0, "yes": 2, "no": 2}
    assert dm.counts["training"]["yes"] == 14


def test_custom_percentages_and_words(tmp_path):
    dm = datamodule(
        make_corpus(tmp_path / "c", speakers=20),
        wanted_words=["cat"],
        classes=dict(silence_percentage=10, unknown_percentage=50),
    )
    assert dm.labels == ["silence", "unknown", "cat"]
    c = dm.counts["training"]
    assert c["silence"] == math.ceil(c["cat"] * 0.1) and c["unknown"] == math.ceil(c["cat"] * 0.5)


def test_training_unknown_share_apart_from_evaluation(tmp_path):
    """training_unknown_percentage sizes the training split's unknown class alone (above 100 %
    allowed); validation and test keep unknown_percentage."""
    dm = datamodule(
        make_corpus(tmp_path / "c", speakers=20),
        wanted_words=["cat"],
        classes=ClassShares(unknown_percentage=50, training_unknown_percentage=150),
    )
    for split, share in (("training", 1.5), ("validation", 0.5), ("testing", 0.5)):
        c = dm.counts[split]
        assert c["unknown"] == math.ceil(c["cat"] * share), split
    with pytest.raises(ValueError, match=r"data.classes.training_unknown_percentage \(or null: .*\) must be >= 0"):
        SpeechCommandsDataModule(classes=dict(training_unknown_percentage=-1))


# ---------------------------------------------------------------------------------- batches
def test_batches_and_features(tmp_path):
    dm = datamodule(make_corpus(tmp_path / "c"))
    features, labels = next(iter(dm.test_dataloader()))  # evaluation features are computed once, at set-up
    audio, same = dm.splits["testing"][list(range(16))]
    assert audio.dtype == torch.int16 and audio.shape == (16, 16000) and torch.equal(labels, same)
    assert features.shape == (16, 1960)
    torch.testing.assert_close(features, dm.featurize(audio), rtol=0, atol=0)  # evaluation is deterministic
    silence = labels == 0
    if silence.any():  # silence clips carry noise, not digital zeros
        assert audio[silence].abs().amax() > 0
    row = dm.splits["testing"].rows[0]
    np.testing.assert_array_equal(audio[0].numpy(), dm.splits["testing"].audio[row])


def test_training_augmentation_changes_audio(tmp_path):
    dm = datamodule(make_corpus(tmp_path / "c"))
    audio, labels = next(iter(dm.train_dataloader()))
    torch.manual_seed(0)
    a = dm.featurize(audio, labels)
    torch.manual_seed(1)
    b = dm.featurize(audio, labels)
    assert a.shape == (len(labels), 1960) and not torch.equal(a, b)


def test_time_shift_moves_and_zero_fills():
    audio = torch.arange(1, 11, dtype=torch.int16).repeat(200, 1)
    out = time_shift(audio, 3)
    for row in out:
        nz = row.nonzero().flatten()
        shift = int(nz[0]) if row[0] == 0 else -(int(row[0]) - 1)
        expected = torch.roll(torch.arange(1, 11, dtype=torch.int16), shift)
        if shift > 0:
            expected[:shift] = 0
        elif shift < 0:
            expected[shift:] = 0
        assert torch.equal(row, expected) and abs(shift) <= 3
    assert len({tuple(r.tolist()) for r in out}) == 7  # all shifts -3..3 occur in 200 draws


def test_noise_volumes_follow_the_recipe():
    torch.manual_seed(0)
    silence = torch.tensor([True] * 5000 + [False] * 5000)
    v = noise_volumes(silence, frequency=0.8, max_volume=0.1)
    assert v[:5000].max() > 0.9 and v[:5000].min() >= 0
    speech = v[5000:]
    assert speech.max() <= 0.1 and abs((speech > 0).float().mean() - 0.8) < 0.03


def test_background_noise_mix_is_clamped_sum():
    noise = BackgroundNoise([torch.full((20000,), 10000, dtype=torch.int16)], 16000)
    audio = torch.full((2, 16000), 30000, dtype=torch.int16)
    out = noise.mix(audio, torch.tensor([0.0, 1.0]))
    assert (out[0] == 30000).all() and (out[1] == 32767).all()
    with pytest.raises(ValueError, match="shorter than one clip"):
        BackgroundNoise([torch.zeros(100, dtype=torch.int16)], 16000)


# ---------------------------------------------------------------------------------- bad input
def test_missing_data_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist.*data.download: true"):
        datamodule(tmp_path / "nowhere")


def test_empty_wanted_word_folder(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=4)
    for f in (root / "no").glob("*.wav"):
        f.unlink()
    with pytest.raises(DataError, match=r"wanted word 'no' has no clips"):
        datamodule(root)


def test_corrupt_wav_is_named_or_counted(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=8)
    bad = root / "cat" / "spk000_nohash_0.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    with pytest.raises(AudioError, match=r"(?s)cat/spk000_nohash_0.wav: not a readable WAV.*skip_bad_files"):
        datamodule(root)
    dm = datamodule(root, skip_bad_files=True)
    assert list(dm.decode_report.skipped) == ["cat/spk000_nohash_0.wav"]
    assert "skipped 1 unreadable" in dm.summary()


def test_truncated_wav(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=4)
    f = root / "yes" / "spk001_nohash_1.wav"
    f.write_bytes(f.read_bytes()[:12000])
    with pytest.raises(AudioError, match=r"spk001_nohash_1.wav: truncated \(header says 16000 samples"):
        datamodule(root)


def test_wrong_sample_rate_refused_or_resampled(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=4)
    f = root / "yes" / "spk002_nohash_0.wav"
    write_wav(f, np.zeros(8000, np.int16), 8000)
    with pytest.raises(
        AudioError, match=r"spk002_nohash_0.wav: sample rate 8000 Hz, 16000 Hz is needed.*resample: true"
    ):
        datamodule(root)
    dm = datamodule(root, resample=True)
    assert dm.decode_report.resampled == 1


def test_stereo_refused(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=4)
    f = root / "no" / "spk003_nohash_0.wav"
    sf.write(f, np.zeros((16000, 2), np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"spk003_nohash_0.wav: has 2 channels, mono is needed"):
        datamodule(root)


def test_one_split_list_missing(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=4, lists=True)
    (root / "testing_list.txt").unlink()
    with pytest.raises(DataError, match="testing_list.txt is missing"):
        datamodule(root)


def test_missing_background_noise(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=4)
    (root / "_background_noise_" / "white.wav").unlink()
    with pytest.raises(DataError, match="no background noise recordings"):
        datamodule(root)


def test_offline_download_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"could not download .*extract it into .*synthetic: true"):
        download_speech_commands(tmp_path / "sc", url="http://127.0.0.1:9/speech_commands_v0.02.tar.gz")
    assert not (tmp_path / "sc").exists()


def test_bad_options():
    with pytest.raises(ValueError, match="wanted_words"):
        SpeechCommandsDataModule(wanted_words=[])
    with pytest.raises(ValueError, match="may not contain"):
        SpeechCommandsDataModule(wanted_words=["yes", "silence"])
    with pytest.raises(ValueError, match=r"data.classes.silence_percentage must be within \[0, 100\], got 120"):
        SpeechCommandsDataModule(classes=ClassShares(silence_percentage=120))
    with pytest.raises(ValueError, match="frontend"):
        SpeechCommandsDataModule(features=dict(frontend="spectrogram"))


def test_processes_starting_together_decode_once(tmp_path, monkeypatch):
    """Ranks (or jobs) that prepare the same data at once: one decodes the cache, under its file
    lock, the others wait and load it. Decoding is slowed so that the starts overlap."""
    import threading
    import time

    from datamodules import audio_cache

    root = make_corpus(tmp_path / "corpus", speakers=6)
    builds = []
    build = audio_cache._build

    def slow_build(*args, **kwargs):
        builds.append(threading.get_ident())
        time.sleep(0.5)
        return build(*args, **kwargs)

    monkeypatch.setattr(audio_cache, "_build", slow_build)
    shapes, errors = [], []

    def prepare():
        try:
            shapes.append(datamodule(root).splits["training"].audio.shape)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=prepare) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(builds) == 1 and len(set(shapes)) == 1 and len(shapes) == 3
    assert not [p.name for p in (root / ".cache").iterdir() if "tmp" in p.name]


def test_training_features_in_the_background_are_those_of_the_step_seeds(tmp_path):
    """The prefetching thread computes each batch exactly as the training step would have:
    augmentation from the (epoch, batch, rank) seed, then the front end."""
    from datamodules.prefetch import BackgroundFeatures
    from kws.utils.seeding import step_seed

    dm = datamodule(make_corpus(tmp_path / "c"))
    loader = dm._loader("training", shuffle=True)
    loader.sampler.set_epoch(3)
    background = list(BackgroundFeatures(loader, dm._training_features, lambda: 3))
    for index, (audio, labels) in enumerate(loader):
        generator = torch.Generator().manual_seed(step_seed(3, index, 0, "augment"))
        expected = dm.featurize(audio, labels, generator)
        assert torch.equal(background[index][0], expected) and torch.equal(background[index][1], labels)
    assert len(background) == len(loader)


def test_background_errors_reach_the_training_thread():
    from datamodules.prefetch import BackgroundFeatures

    def broken(batch, index, epoch):
        if index == 2:
            raise RuntimeError("decoding failed on batch 2")
        return batch

    with pytest.raises(RuntimeError, match="batch 2"):
        list(BackgroundFeatures(range(5), broken, lambda: 0))
    early = iter(BackgroundFeatures(range(1000), lambda b, i, e: b, lambda: 0, depth=2))
    assert next(early) == 0
    early.close()  # a consumer that stops early (limit_train_batches) leaves no thread behind
