"""Never silent, never destructive: the promises kws makes about bad inputs and faults, one test
each. A bad input gets a clear, one-screen error naming the file or option and the fix, or it is
handled correctly; nothing the user made is ever deleted; no result is quietly wrong.

The next bad input found belongs here, as one more promise.
"""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from datamodules import SpeechCommandsDataModule
from datamodules.audio_cache import load_or_build_cache
from datamodules.layout import DataError
from kws.audio.features import FeatureSettings, build_frontend
from kws.audio.wav import read_wav, write_wav
from kws.training.checkpoints import CheckpointError, load_module
from kws.training.cli import claim_log_versions
from kws.training.module import KWSModule
from tests.helpers import REPO, make_corpus, run_kws


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("promises") / "corpus", lists=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, corpus) -> Path:
    """An untrained micro-front-end checkpoint as `fit` writes it (model and data settings)."""
    module = KWSModule(labels=["silence", "unknown", "yes", "no"], input_shape=(49, 40))
    dm = SpeechCommandsDataModule(data_dir=str(corpus))
    path = tmp_path_factory.mktemp("ckpt") / "micro.ckpt"
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": "2.6.6",
        "datamodule_hyper_parameters": dict(dm.hparams),
        "epoch": 0,
        "global_step": 0,
    }
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def kws(*args, cwd, env=None) -> subprocess.CompletedProcess:
    return run_kws(*args, cwd=cwd, check=False, env={**os.environ, **(env or {})})


def cli(corpus: Path, *args) -> list[str]:
    return ["--config", str(REPO / "conf.yaml"), "--data.data_dir", str(corpus), "--trainer.logger", "false", *args]


def one_clear_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The run failed with one `error:` line holding every needle, and no traceback."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in errors[-1], errors[-1]
    return errors[-1]


# ----------------------------------------------------------------------------------- audio
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_float_wav_is_scaled_not_read_as_silence(tmp_path, subtype):
    t = np.arange(16000) / 16000
    path = tmp_path / "float.wav"
    sf.write(path, 0.5 * np.sin(2 * np.pi * 440 * t), 16000, subtype=subtype)
    samples, _ = read_wav(path, 16000)
    assert samples.dtype == np.int16 and abs(int(samples.max()) - 16384) <= 1 and abs(int(samples.min()) + 16384) <= 1


def test_a_wrong_rate_in_listen_says_what_listen_can_do(tmp_path, micro_speech_dir):
    write_wav(tmp_path / "44k.wav", np.zeros(2 * 44100, np.int16), 44100)
    proc = kws(
        "listen",
        str(tmp_path / "44k.wav"),
        "--model",
        "int8",
        "--tflite",
        str(micro_speech_dir / "micro_speech_quantized.tflite"),
        cwd=tmp_path,
    )
    error = one_clear_error(proc, "44100 Hz", "16000 Hz", "sox")
    assert "data" not in error


def test_listen_on_a_truncated_wav_names_it_before_hearing_anything(tmp_path, micro_speech_dir):
    """The header promises 3 s, the file holds 1 s: listen refuses, as the data loader does,
    instead of reporting the words of the part it got."""
    path = tmp_path / "cut.wav"
    write_wav(path, (1000 * np.sin(np.arange(3 * 16000) / 5)).astype(np.int16), 16000)
    path.write_bytes(path.read_bytes()[: 44 + 2 * 16000])
    proc = kws(
        "listen",
        str(path),
        "--model",
        "int8",
        "--tflite",
        str(micro_speech_dir / "micro_speech_quantized.tflite"),
        cwd=tmp_path,
    )
    one_clear_error(proc, str(path), "truncated")
    assert "Heard" not in proc.stdout


@pytest.mark.parametrize("tool", ["listen", "plot-features"])
def test_nan_in_a_float_wav_is_named(tmp_path, micro_speech_dir, tool):
    path = tmp_path / "nan.wav"
    samples = 0.1 * np.sin(np.arange(2 * 16000) / 5)
    samples[5000] = np.nan
    sf.write(path, samples, 16000, subtype="FLOAT")
    tflite = str(micro_speech_dir / "micro_speech_quantized.tflite")
    args = (
        [str(path), "--model", "int8", "--tflite", tflite]
        if tool == "listen"
        else ["--wav", str(path), "--out", str(tmp_path / "p.png")]
    )
    proc = kws(tool, *args, cwd=tmp_path)
    one_clear_error(proc, str(path), "NaN")


def test_listen_outputs_on_a_full_disk_names_the_file_and_keeps_the_earlier_one(
    tmp_path, micro_speech_dir, monkeypatch, capsys
):
    import errno
    import io

    from kws.deploy import listen

    class Full(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        writelines = write

    real_open = open
    monkeypatch.setattr(
        listen, "open", lambda path, mode="r": (real_open(path, mode).close(), Full())[1], raising=False
    )
    write_wav(tmp_path / "rec.wav", (1000 * np.sin(np.arange(2 * 16000) / 5)).astype(np.int16), 16000)
    outputs = tmp_path / "outputs.txt"
    outputs.write_text("an earlier run's outputs\n")
    with pytest.raises(SystemExit) as info:
        listen.main(
            [
                str(tmp_path / "rec.wav"),
                "--model",
                "int8",
                "--tflite",
                str(micro_speech_dir / "micro_speech_quantized.tflite"),
                "--outputs",
                str(outputs),
            ]
        )
    error = capsys.readouterr().err.splitlines()[-1]
    assert info.value.code == 2 and error.startswith("error:") and str(outputs) in error and "space" in error, error
    assert outputs.read_text() == "an earlier run's outputs\n"  # not a cut or empty file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs.txt", "rec.wav"]  # no temporary left


def test_sample_rate_the_front_end_cannot_use_names_the_user_option():
    with pytest.raises(ValueError) as info:
        build_frontend(FeatureSettings(sample_rate=8000))
    assert "sample_rate 8000" in str(info.value) and "upper_band_limit" not in str(info.value)


# ------------------------------------------------------------------------------------ data
def test_split_list_entries_are_normalised(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=12, lists=True)
    for name in ("validation_list.txt", "testing_list.txt"):
        lines = (root / name).read_text().split()
        (root / name).write_text("".join(f"./{line}\n" for line in lines))
    dm = SpeechCommandsDataModule(data_dir=str(root), batch_size=8)
    dm.prepare_data()
    dm.setup()
    assert sum(dm.counts["validation"].values()) > 0 and sum(dm.counts["testing"].values()) > 0


def test_split_list_entries_naming_no_clip_are_refused_with_their_count(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=12, lists=True)
    (root / "testing_list.txt").write_text("yes/nobody_nohash_0.wav\nno/nobody_nohash_1.wav\n")
    dm = SpeechCommandsDataModule(data_dir=str(root), batch_size=8)
    dm.prepare_data()
    with pytest.raises(DataError, match=r"testing_list.txt: 2 of 2 entries name no clip"):
        dm.setup()


def test_upper_case_wav_files_are_found(tmp_path):
    root = make_corpus(tmp_path / "c")
    for path in list((root / "yes").iterdir()):
        path.rename(path.with_suffix(".WAV"))
    dm = SpeechCommandsDataModule(data_dir=str(root), batch_size=8)
    dm.prepare_data()
    dm.setup()
    assert sum(counts["yes"] for counts in dm.counts.values()) == 60


def test_unquoted_yes_no_in_yaml_says_to_quote_them():
    with pytest.raises(ValueError, match="quote"):
        SpeechCommandsDataModule(wanted_words=[True, False])


def test_a_damaged_cache_is_named_and_rebuilt(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=3)
    files = sorted(f"{p.parent.name}/{p.name}" for p in root.glob("[a-z]*/*.wav"))
    audio, _, _ = load_or_build_cache(root, files, root / ".cache", 16000, 16000)
    expected = np.array(audio)
    for victim in (".npy", ".json"):
        path = next((root / ".cache").glob(f"audio-*{victim}"))
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        with pytest.warns(UserWarning, match=f"{path.name}.*damaged"):
            again, _, _ = load_or_build_cache(root, files, root / ".cache", 16000, 16000)
        assert np.array_equal(again, expected)


def test_a_cache_whose_file_list_was_reordered_is_rebuilt_not_trusted(tmp_path):
    """Rows belong to files: a valid but reordered list in the .json would map every clip to the
    wrong label (test accuracy 1.0 -> 0.06), so it is caught, named and rebuilt."""
    root = make_corpus(tmp_path / "c", speakers=3)
    files = sorted(f"{p.parent.name}/{p.name}" for p in root.glob("[a-z]*/*.wav"))
    audio, _, _ = load_or_build_cache(root, files, root / ".cache", 16000, 16000)
    expected = {name: np.array(row) for name, row in zip(files, audio)}
    meta_path = next((root / ".cache").glob("audio-*.json"))
    meta = json.loads(meta_path.read_text())
    meta["files"] = meta["files"][::-1]
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match=f"{meta_path.name}.*(reordered|does not match)"):
        again, kept, _ = load_or_build_cache(root, files, root / ".cache", 16000, 16000)
    assert kept == files and all(np.array_equal(row, expected[name]) for name, row in zip(kept, again))


def test_temporaries_of_a_killed_decoder_are_removed(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=3)
    files = sorted(f"{p.parent.name}/{p.name}" for p in root.glob("[a-z]*/*.wav"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (root / ".cache").mkdir()
    stale = root / ".cache" / f"audio-0123456789abcdef.{dead.pid}.tmp.npy"
    stale.write_bytes(b"\0" * 1000)
    load_or_build_cache(root, files, root / ".cache", 16000, 16000)
    assert not stale.exists()


# ------------------------------------------------------------------------------ checkpoints
class Payload:
    """What a malicious checkpoint carries: unpickling it runs a shell command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_checkpoint_that_could_run_code_is_refused(tmp_path, corpus, checkpoint):
    marker = tmp_path / "pwned"
    content = torch.load(checkpoint, weights_only=True)
    content["hyper_parameters"]["extra"] = Payload(f"touch {marker}")
    evil = tmp_path / "evil.ckpt"
    torch.save(content, evil)
    with pytest.raises(CheckpointError, match="could run code"):
        load_module(evil)
    proc = kws("test", *cli(corpus, "--ckpt_path", str(evil)), cwd=tmp_path)
    one_clear_error(proc, "could run code")
    with pytest.raises(CheckpointError, match="could run code"):
        KWSModule(init_from=str(evil))
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"hello", b"PK\x03\x04truncated", "plain"])
def test_a_file_that_is_no_kws_checkpoint_gets_one_clear_error(tmp_path, corpus, content):
    path = tmp_path / "bad.ckpt"
    if content == "plain":
        torch.save({"conv.weight": torch.zeros(1)}, path)
    else:
        path.write_bytes(content)
    proc = kws("test", *cli(corpus, "--ckpt_path", str(path)), cwd=tmp_path)
    one_clear_error(proc, str(path))


def test_a_checkpoint_is_checked_against_the_run_data_settings(tmp_path, corpus, checkpoint):
    proc = kws("test", *cli(corpus, "--ckpt_path", str(checkpoint), "--data.features.frontend", "mfcc"), cwd=tmp_path)
    one_clear_error(proc, "data.features.frontend 'micro' (this run: 'mfcc')")
    proc = kws(
        "test",
        *cli(corpus, "--ckpt_path", str(checkpoint), "--data.wanted_words", '["yes", "no", "cat"]'),
        cwd=tmp_path,
    )
    one_clear_error(
        proc, "labels ['silence', 'unknown', 'yes', 'no'] (this run: ['silence', 'unknown', 'yes', 'no', 'cat'])"
    )
    proc = kws("fit", *cli(corpus, "--ckpt_path", str(checkpoint), "--data.features.num_features", "32"), cwd=tmp_path)
    one_clear_error(proc, "input shape (49, 40) (this run: (49, 32))")


def test_test_without_a_checkpoint_is_refused_unless_asked_for(tmp_path, corpus):
    one_clear_error(kws("test", *cli(corpus), cwd=tmp_path), "--ckpt_path", "--allow_untrained")
    proc = kws("test", *cli(corpus, "--allow_untrained", "true"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ------------------------------------------------------------------------------------ runs
def test_errors_of_a_run_print_one_line_and_the_traceback_on_request(tmp_path):
    proc = kws(
        "fit",
        "--config",
        str(REPO / "conf.yaml"),
        "--data.data_dir",
        str(tmp_path / "missing"),
        "--data.synthetic",
        "false",
        cwd=tmp_path,
    )
    one_clear_error(proc, str(tmp_path / "missing"), "does not exist")
    assert not list((tmp_path / "runs" / "csv").glob("version_*"))  # a refused run leaves no empty version_N
    debug = kws(
        "fit",
        "--config",
        str(REPO / "conf.yaml"),
        "--data.data_dir",
        str(tmp_path / "missing"),
        "--data.synthetic",
        "false",
        cwd=tmp_path,
        env={"KWS_DEBUG": "1"},
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_cosine_schedule_needs_a_finite_number_of_epochs(tmp_path, corpus):
    proc = kws("fit", *cli(corpus, "--trainer.max_epochs", "-1"), cwd=tmp_path)
    one_clear_error(proc, "max_epochs")


def test_runs_started_together_get_their_own_folders(tmp_path):
    from jsonargparse import Namespace

    def config():
        return {
            "trainer": {
                "logger": [
                    Namespace(
                        class_path="lightning.pytorch.loggers.CSVLogger",
                        init_args=Namespace(save_dir=str(tmp_path), name="csv", version=None),
                    )
                ]
            }
        }

    configs = [config() for _ in range(8)]
    threads = [threading.Thread(target=claim_log_versions, args=(c, "fit")) for c in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    versions = sorted(c["trainer"]["logger"][0].init_args.version for c in configs)
    assert versions == list(range(8)) and len(list((tmp_path / "csv").iterdir())) == 8


def test_a_resumed_fit_continues_in_its_own_folder(tmp_path):
    from jsonargparse import Namespace

    (tmp_path / "csv" / "version_3" / "checkpoints").mkdir(parents=True)
    logger = Namespace(
        class_path="lightning.pytorch.loggers.CSVLogger",
        init_args=Namespace(save_dir=str(tmp_path), name="csv", version=None),
    )
    claim_log_versions(
        {"trainer": {"logger": [logger]}, "ckpt_path": str(tmp_path / "csv/version_3/checkpoints/latest.ckpt")}, "fit"
    )
    assert logger.init_args.version == 3  # its best checkpoint and metrics stay together
