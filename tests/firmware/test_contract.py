"""The export folder is the one deploy contract: a model trained with other framing than the
default (32 channels, ``--data.features.num_features 32``) exports, and the firmware built from that
folder alone -- its front-end tables included, no default table anywhere in the build -- runs in
QEMU identical to ``python -m kws listen --export`` on the same folder: every inference's int8
outputs and every detection.

Needs the Arm toolchain, QEMU and a TFLM source tree, as tests/firmware/test_emulator.py;
skipped with the reason otherwise."""

import re

import numpy as np
import pytest

from kws.audio.settings import FeatureSettings
from kws.audio.wav import read_wav, write_wav
from tests.firmware.test_emulator import pytestmark  # noqa: F401  the same skips: toolchain, QEMU, TFLM tree
from tests.helpers import REPO, run_kws, trained_checkpoint

CHANNELS = 32
BUILD = REPO / "firmware" / "build"


@pytest.fixture(scope="module")
def exported(tiny_corpus, tmp_path_factory):
    """TinyConv trained for two epochs on 32-channel micro features, exported."""
    from datamodules import SpeechCommandsDataModule
    from kws.export.folder import write_recognizer
    from kws.export.pipeline import export_checkpoint
    from kws.streams.recognize import RecognizerSettings

    folder = tmp_path_factory.mktemp("contract")
    dm = SpeechCommandsDataModule(
        data_dir=str(tiny_corpus), batch_size=64, features=FeatureSettings(num_features=CHANNELS)
    )
    dm.prepare_data()
    dm.setup()
    ckpt = trained_checkpoint(
        dm, dm.split_features("training"), folder / "model.ckpt", epochs=2, arch="tiny_conv", learning_rate=3e-3
    )
    report = export_checkpoint(ckpt, folder / "export", calibration_clips=100, log=lambda line: None)
    # A two-epoch model hears little at its calibrated threshold: a low one, written into the
    # folder as stream-test --export writes one, gives detections to compare.
    low = RecognizerSettings(detection_threshold=0.4, average_window_ms=500, suppression_ms=500, minimum_count=2)
    calibration = {"settings": low.float32_threshold().to_dict(), "calibrated_on": "tests/firmware/test_contract.py"}
    write_recognizer(folder / "export", calibration, report["stream_test"])
    clips = sorted(tiny_corpus.glob("[a-z]*/*.wav"))[::5][:16]
    quiet = np.zeros(8000, np.int16)
    audio = np.concatenate([np.concatenate([read_wav(c, 16000)[0], quiet]) for c in clips])
    write_wav(folder / "recording.wav", audio, 16000)
    return folder


def test_a_32_channel_model_runs_on_the_board_as_listen_hears_it(exported):
    from kws.deploy.firmware_sim import simulate

    export = exported / "export"
    tables = (export / "micro_frontend_tables.h").read_text()
    settings = (export / "model_settings.h").read_text()
    assert "#define MF_NUM_CHANNELS 32\n" in tables and "constexpr int kFeatureSize = 32;" in settings
    # the folder's recognizer, as the firmware compiles it
    assert "constexpr float kDetectionThreshold = 0.4f;" in settings

    lines = []
    results = simulate(export, exported / "recording.wav", kernels=("cmsis-nn",), log=lines.append)
    entry = results["kernels"]["cmsis-nn"]
    stream = entry["stream"]
    assert stream["identical"] and stream["times_identical"] and stream["detections_identical"], lines
    assert entry["clips"]["identical"], entry["clips"]

    # The build holds the export's tables and no other: staged from the folder, never generated.
    found = sorted(BUILD.rglob("*_frontend_tables.h"))
    assert found == [BUILD / "sketch" / "kws_firmware" / "micro_frontend_tables.h"], found
    assert found[0].read_text() == tables
    assert not (BUILD / "generated").exists()

    # `listen --export` on the same folder, as a user runs it: the firmware's outputs and detections.
    outputs = exported / "listen_outputs.txt"
    proc = run_kws("listen", str(exported / "recording.wav"), "--export", str(export), "--outputs", str(outputs))
    sim = BUILD / "cmsis-nn" / "sim" / "recording"
    listened = np.loadtxt(outputs, dtype=np.int64, ndmin=2)
    assert len(listened) > 100 and np.array_equal(listened, np.loadtxt(sim / "inferences.txt", dtype=np.int64, ndmin=2))
    assert np.all(np.diff(listened[:, 0]) == results["stride_ms"])  # the export's stride, on both sides
    heard = re.findall(r"^Heard .*$", proc.stdout, re.M)
    assert heard and heard == (sim / "detections.txt").read_text().splitlines()
