"""The Arduino library of a trained model's export, as a user gets it: `python -m kws arduino-library`
packages the export, the zip holds the library under its name, the library installed from the
zip compiles for the Cortex-M4F as the Arduino IDE builds it (`make arduino-check`), and the QEMU
firmware built from its src/ alone (`make library-sim`) is the export folder's firmware: the same
image, the same outputs on a recording.

Needs the Arm toolchain, QEMU and a TFLM source tree (../shared/third_party/tflite-micro, or
TFLM_DIR); skipped with the reason otherwise. Only the CMSIS-NN kernels (the Arduino library's)."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kws.audio.wav import read_wav, write_wav
from kws.export.arduino import check_library
from tests.helpers import REPO, run_kws, trained_checkpoint

TFLM_DIR = Path(os.environ.get("TFLM_DIR", REPO.parent / "shared" / "third_party" / "tflite-micro"))
TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-objcopy", "qemu-system-arm", "make")
MISSING = [tool for tool in TOOLS if shutil.which(tool) is None]
pytestmark = [
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"{', '.join(MISSING)} not found: install gcc-arm-none-eabi "
        "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm "
        "(.ci/run does on Debian)",
    ),
    pytest.mark.skipif(
        not (TFLM_DIR / "cmsis-nn").is_dir(),
        reason=f"no TFLM source tree at {TFLM_DIR} (set TFLM_DIR; firmware/README.md says how to make one)",
    ),
]
NAME = "kws_yes_no_inferencing"


def make(target: str, **variables) -> subprocess.CompletedProcess:
    command = ["make", "-s", "-C", str(REPO / "firmware"), target, *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(command, capture_output=True, text=True, timeout=3000)


@pytest.fixture(scope="module")
def exported(tiny_corpus, tmp_path_factory) -> Path:
    """A TinyConv trained for a few epochs on the tiny corpus, exported (no stream test), its
    front end's tables in the export folder (written by the export once the contract lands)."""
    from datamodules import SpeechCommandsDataModule
    from kws.export.pipeline import export_checkpoint

    folder = tmp_path_factory.mktemp("arduino")
    dm = SpeechCommandsDataModule(data_dir=str(tiny_corpus), batch_size=64)
    dm.prepare_data()
    dm.setup()
    ckpt = trained_checkpoint(dm, dm.split_features("training"), folder / "tiny.ckpt", epochs=4, learning_rate=3e-3)
    export_checkpoint(
        ckpt, folder / "export", calibration_clips=100, recognizer_fa_per_hour=None, log=lambda line: None
    )
    clips = sorted(tiny_corpus.glob("[a-z]*/*.wav"))[::11][:8]
    quiet = np.zeros(8000, np.int16)
    write_wav(
        folder / "recording.wav", np.concatenate([np.concatenate([read_wav(c, 16000)[0], quiet]) for c in clips]), 16000
    )
    return folder


@pytest.fixture(scope="module")
def installed(exported) -> Path:
    """The library as 'Add .ZIP Library' installs it: packaged from the command line, unzipped."""
    proc = run_kws("arduino-library", "--export", str(exported / "export"))
    assert "Add .ZIP Library" in proc.stdout
    libraries = exported / "Arduino" / "libraries"
    with zipfile.ZipFile(exported / "export" / "arduino" / f"{NAME}.zip") as archive:
        assert {name.split("/")[0] for name in archive.namelist()} == {NAME}  # one top folder: the library
        archive.extractall(libraries)
    return libraries / NAME


def test_the_zip_holds_the_library(exported, installed):
    lib = exported / "export" / "arduino" / NAME
    assert sorted(p.relative_to(lib) for p in lib.rglob("*")) == sorted(
        p.relative_to(installed) for p in installed.rglob("*")
    )
    properties = (installed / "library.properties").read_text()
    for line in (
        f"name={NAME}",
        "category=Data Processing",
        "architectures=mbed,mbed_nano",
        "depends=Arduino_TensorFlowLite",
        f"includes={NAME}.h",
    ):
        assert line + "\n" in properties
    assert (installed / "src" / "model_data.cpp").read_bytes() == (exported / "export" / "model_data.cc").read_bytes()
    assert (installed / "examples" / "kws_firmware" / "kws_firmware.ino").is_file()
    assert check_library(installed) == []


def test_two_exports_of_one_model_give_one_zip(exported):
    """Each export in a process of its own, as a user runs `python -m kws export`: a second export in
    one process names onnx2tf's Keras layers model_1/... and its int8 model's bytes differ."""
    zips = []
    for out in (exported / "export-a", exported / "export-b"):
        script = (
            "import sys; from kws.export.pipeline import export_checkpoint; "
            "export_checkpoint(sys.argv[1], sys.argv[2], calibration_clips=100, recognizer_fa_per_hour=None, "
            "log=lambda line: None)"
        )
        subprocess.run(
            [sys.executable, "-c", script, str(exported / "tiny.ckpt"), str(out)],
            cwd=REPO,
            check=True,
            capture_output=True,
            timeout=900,
        )
        run_kws("arduino-library", "--export", str(out))  # packaging an existing export again: the same zip
        zips.append((out / "arduino" / f"{NAME}.zip").read_bytes())
    assert zips[0] == zips[1]


def test_the_library_compiles_as_the_ide_builds_it(exported, installed):
    proc = make("arduino-check", LIBRARY=installed, BUILD_DIR=exported / "build")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "the Arduino library rules hold" in proc.stdout
    sources = [p for p in (installed / "src").iterdir() if p.suffix in (".c", ".cpp")]
    assert len(sources) == 8 and f"arduino-check: {len(sources) + 1} files" in proc.stdout  # and the example

    # The check can fail: the example without a header its library should give it.
    broken = exported / "broken" / NAME
    shutil.copytree(installed, broken)
    header = broken / "src" / f"{NAME}.h"
    header.write_text(header.read_text().replace('#include "pipeline.h"\n', ""))
    proc = make("arduino-check", LIBRARY=broken, BUILD_DIR=exported / "build-broken")
    assert proc.returncode != 0 and "kws_firmware.ino" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def test_the_firmware_from_the_library_is_the_export_folders(exported, installed):
    variables = {"KERNELS": "cmsis-nn", "RECORDING": exported / "recording.wav", "BUILD_DIR": exported / "build"}
    proc = make("firmware-sim", MODEL_DIR=exported / "export", **variables)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    proc = make("library-sim", LIBRARY=installed, **variables)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    build = exported / "build"
    (library_build,) = (elf.parents[1] for elf in (build / "library").glob(f"{NAME}-*/cmsis-nn/kws_sim.elf"))
    images = []
    for elf in (build / "cmsis-nn" / "kws_sim.elf", library_build / "cmsis-nn" / "kws_sim.elf"):
        subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(elf), str(elf.with_suffix(".bin"))], check=True)
        images.append(elf.with_suffix(".bin").read_bytes())
    assert images[0] == images[1]  # the same sources, flags and link order: the same firmware, byte for byte
    for name in ("inferences.txt", "detections.txt"):
        expected = (build / "cmsis-nn" / "sim" / "recording" / name).read_text()
        assert (library_build / "cmsis-nn" / "sim" / "recording" / name).read_text() == expected
    assert len((build / "cmsis-nn" / "sim" / "recording" / "inferences.txt").read_text().splitlines()) > 50


def test_an_mfcc_models_library_compiles(tmp_path):
    """The MFCC front end packaged instead of the micro one: its tables (for the model's settings)
    meet the static_asserts of feature_provider.h, and nothing of the micro front end is needed."""
    from kws.export.arduino import write_arduino_library
    from kws.export.frontend_tables import write_mfcc_frontend_tables
    from tests.export.test_arduino import fake_export

    export = fake_export(tmp_path / "export", "mfcc")
    write_mfcc_frontend_tables(export)  # the real tables in place of the stand-in
    lib = write_arduino_library(export, log=lambda line: None)["library"]
    proc = make("arduino-check", LIBRARY=lib, BUILD_DIR=tmp_path / "build")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "CC  arduino-check/mfcc_frontend.c" in proc.stdout and "micro_frontend" not in proc.stdout
