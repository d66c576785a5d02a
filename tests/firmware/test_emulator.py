"""The firmware built for the Cortex-M4F (arm-none-eabi-gcc, both TFLM kernel sets) and run in QEMU
(mps2-an386), against the host: every inference's int8 outputs and every detection on a recording
equal `listen --model micro`'s, the model's outputs on every test clip equal tflite-micro's on the
host, the footprint fits the budget, and every file of the Arduino sketch compiles.

Needs the Arm toolchain, QEMU and a TFLM source tree (../shared/third_party/tflite-micro, or
TFLM_DIR); skipped with the reason otherwise. .ci/run installs the toolchain on Debian."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from kws.audio.wav import read_wav, write_wav
from tests.helpers import REPO

TFLM_DIR = Path(os.environ.get("TFLM_DIR", REPO.parent / "shared" / "third_party" / "tflite-micro"))
MISSING = [
    tool for tool in ("arm-none-eabi-gcc", "arm-none-eabi-g++", "qemu-system-arm", "make") if shutil.which(tool) is None
]
pytestmark = [
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"{', '.join(MISSING)} not found: install gcc-arm-none-eabi libnewlib-arm-none-eabi "
        "libstdc++-arm-none-eabi-newlib qemu-system-arm (.ci/run does on Debian)",
    ),
    pytest.mark.skipif(
        not (TFLM_DIR / "cmsis-nn").is_dir(),
        reason=f"no TFLM source tree at {TFLM_DIR} (set TFLM_DIR; firmware/README.md says how to generate one)",
    ),
]


@pytest.fixture(scope="module")
def exported(tiny_corpus, tmp_path_factory):
    """A seeded, untrained model exported from a checkpoint (bit-exactness needs no training)."""
    from datamodules import SpeechCommandsDataModule
    from kws.export.pipeline import export_checkpoint
    from kws.training.module import KWSModule

    folder = tmp_path_factory.mktemp("firmware")
    torch.manual_seed(0)
    module = KWSModule()
    dm = SpeechCommandsDataModule(data_dir=str(tiny_corpus), batch_size=64)
    ckpt = folder / "model.ckpt"
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": "2.6.6",
        "datamodule_hyper_parameters": dict(dm.hparams),
    }
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, ckpt)
    export_checkpoint(ckpt, folder / "export", calibration_clips=100, log=lambda line: None)
    # A recording of corpus clips and quiet between them.
    clips = sorted(tiny_corpus.glob("[a-z]*/*.wav"))[::7][:10]
    quiet = np.zeros(8000, np.int16)
    write_wav(
        folder / "recording.wav", np.concatenate([np.concatenate([read_wav(c, 16000)[0], quiet]) for c in clips]), 16000
    )
    return folder


def test_the_board_computes_what_the_host_computes(exported):
    from kws.deploy.firmware_sim import simulate

    lines = []
    results = simulate(exported / "export", exported / "recording.wav", log=lines.append)
    assert len(lines) == 2, lines
    for kernels, entry in results["kernels"].items():
        stream = entry["stream"]
        assert stream["identical"] and stream["times_identical"] and stream["inferences"] > 50, (kernels, stream)
        assert stream["detections_identical"], (kernels, stream)
        assert entry["clips"]["identical"], (kernels, entry["clips"])
        assert entry["rounding"] is not None  # the integer reference reproduces the board's outputs
        footprint = entry["footprint"]
        assert footprint["fits"], footprint


def test_every_sketch_file_compiles_for_the_cortex_m4f(exported):
    proc = subprocess.run(
        ["make", "-s", "-C", str(REPO / "firmware"), "sketch-check", f"MODEL_DIR={exported / 'export'}"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "sketch-check: compiled" in proc.stdout
