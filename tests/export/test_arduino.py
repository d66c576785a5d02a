"""The Arduino library of an export (kws/export/arduino.py), without a toolchain: its layout, its
library.properties, a deterministic zip, the errors that name the missing file and the fix, and
the Arduino IDE's rules check_library enforces. tests/firmware/test_arduino_library.py compiles
one made from a trained model and runs it in QEMU."""

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from kws.audio.settings import FeatureSettings
from kws.export import ExportError
from kws.export.arduino import SEMVER, check_library, main, read_properties, write_arduino_library
from kws.export.c_sources import write_model_data, write_model_ops, write_model_settings

LABELS = ["silence", "unknown", "yes", "no"]
MODEL = bytes(range(256)) * 5  # the packager never parses the model: any bytes do
SOURCE = "runs/csv/version_0/checkpoints/best-epoch=18.ckpt"
SKETCH_OWN = {
    "audio_provider.cpp",
    "audio_provider.h",
    "command_responder.cpp",
    "command_responder.h",
    "feature_provider.cpp",
    "feature_provider.h",
    "inference.cpp",
    "inference.h",
    "pipeline.cpp",
    "pipeline.h",
    "timing_stats.h",
}


def fake_export(folder: Path, frontend: str = "micro", model: bytes = MODEL, labels=LABELS) -> Path:
    """An export folder as `python -m kws export` writes it (C sources from c_sources), with the
    front end's tables header (a stand-in: only its presence and bytes matter here)."""
    folder.mkdir(parents=True)
    write_model_data(model, folder, SOURCE)
    (folder / "model_int8.tflite").write_bytes(model)
    write_model_settings(folder, SOURCE, FeatureSettings(frontend=frontend), labels, (0.1, -128), (0.05, 3), 9000)
    write_model_ops(["RESHAPE", "CONV_2D", "FULLY_CONNECTED"], folder, SOURCE)
    (folder / f"{frontend}_frontend_tables.h").write_text(f"// {frontend} tables\n")
    return folder


def test_layout_properties_and_header(tmp_path):
    export = fake_export(tmp_path / "export")
    result = write_arduino_library(export, log=lambda line: None)
    name = "kws_yes_no_inferencing"
    lib = export / "arduino" / name
    assert result["library"] == lib and result["zip"] == export / "arduino" / f"{name}.zip"
    files = {str(p.relative_to(lib)) for p in lib.rglob("*") if p.is_file()}
    model_files = {"model_data.cpp", "model_data.h", "model_settings.h", "model_ops.h", "micro_frontend_tables.h"}
    shared = {
        "micro_frontend.c",
        "micro_frontend.h",
        "feature_quantize.h",
        "recognize_commands.cpp",
        "recognize_commands.h",
    }
    expected = {f"src/{f}" for f in model_files | shared | SKETCH_OWN | {f"{name}.h"}}
    assert files == expected | {"library.properties", "examples/kws_firmware/kws_firmware.ino"}
    assert (lib / "src/model_data.cpp").read_bytes() == (export / "model_data.cc").read_bytes()
    assert (lib / "src/micro_frontend_tables.h").read_bytes() == (export / "micro_frontend_tables.h").read_bytes()

    sha = hashlib.sha256(MODEL).hexdigest()
    props = read_properties(lib / "library.properties")
    assert props["name"] == name and props["version"] == f"1.0.0+{sha[:12]}" and SEMVER.match(props["version"])
    assert props["category"] == "Data Processing" and props["architectures"] == "mbed,mbed_nano"
    assert props["depends"] == "Arduino_TensorFlowLite" and props["includes"] == f"{name}.h"
    assert sha in props["paragraph"] and SOURCE in props["paragraph"]
    assert all(props[key] for key in ("author", "maintainer", "sentence", "url"))

    header = (lib / "src" / f"{name}.h").read_text()
    includes = [line for line in header.splitlines() if line.startswith("#include")]
    assert includes[0] == "#include <TensorFlowLite.h>"  # first: the IDE finds the TFLM library through it
    assert {'#include "inference.h"', '#include "pipeline.h"', '#include "audio_provider.h"'} <= set(includes)
    assert f'#define KWS_MODEL_SHA256 "{sha}"' in header and f'#define KWS_MODEL_SOURCE "{SOURCE}"' in header
    ino = (lib / "examples/kws_firmware/kws_firmware.ino").read_text()
    assert [line for line in ino.splitlines() if line.startswith("#include")] == [
        f"#include <{name}.h>  // the model, its front end and the pipeline"
    ]
    assert "void setup()" in ino and "void loop()" in ino
    assert check_library(lib) == []


def test_zip_is_the_library_and_deterministic(tmp_path):
    first = write_arduino_library(fake_export(tmp_path / "a"), log=lambda line: None)
    second = write_arduino_library(fake_export(tmp_path / "b"), log=lambda line: None)
    assert first["zip"].read_bytes() == second["zip"].read_bytes()  # same model, same zip
    again = first["zip"].read_bytes()
    write_arduino_library(tmp_path / "a", log=lambda line: None)  # packaged again: replaced, identical
    assert first["zip"].read_bytes() == again
    with zipfile.ZipFile(first["zip"]) as archive:
        names = archive.namelist()
        assert names == sorted(names) and all(n.startswith(f"{first['name']}/") for n in names)
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        lib = first["library"]
        on_disk = {f"{first['name']}/{p.relative_to(lib)}": p.read_bytes() for p in lib.rglob("*") if p.is_file()}
        assert {n: archive.read(n) for n in names if not n.endswith("/")} == on_disk
    other = write_arduino_library(fake_export(tmp_path / "c", model=MODEL[::-1]), log=lambda line: None)
    assert other["version"] != first["version"]  # another model, another version


def test_mfcc_model_gets_the_mfcc_front_end_only(tmp_path):
    lib = write_arduino_library(fake_export(tmp_path / "export", "mfcc"), log=lambda line: None)["library"]
    src = {p.name for p in (lib / "src").iterdir()}
    assert {"mfcc_frontend.c", "mfcc_frontend.h", "mfcc_frontend_tables.h"} <= src
    assert not {name for name in src if name.startswith("micro_frontend")}  # the IDE would compile it
    assert check_library(lib) == []


@pytest.mark.parametrize(
    "missing, says",
    [
        ("model_data.cc", "re-export"),
        ("model_settings.h", "re-export"),
        ("micro_frontend_tables.h", "re-export"),
    ],
)
def test_an_incomplete_export_names_the_file_and_the_fix(tmp_path, missing, says):
    export = fake_export(tmp_path / "export")
    (export / missing).unlink()
    with pytest.raises(ExportError, match=missing) as err:
        write_arduino_library(export, log=lambda line: None)
    assert says in str(err.value) and not (export / "arduino").exists()


def test_errors_leave_an_earlier_library_alone(tmp_path):
    export = fake_export(tmp_path / "export")
    first = write_arduino_library(export, log=lambda line: None)
    zip_bytes = first["zip"].read_bytes()
    (export / "model_int8.tflite").write_bytes(MODEL[:-1])  # disagrees with model_data.cc
    with pytest.raises(ExportError, match="different models"):
        write_arduino_library(export, log=lambda line: None)
    with pytest.raises(ExportError, match="mfcc_frontend_tables.h.*re-export"):
        (export / "model_int8.tflite").write_bytes(MODEL)
        write_model_settings(export, SOURCE, FeatureSettings(frontend="mfcc"), LABELS, (0.1, -128), (0.05, 3), 9000)
        write_arduino_library(export, log=lambda line: None)
    assert first["zip"].read_bytes() == zip_bytes and check_library(first["library"]) == []
    assert [p.name for p in (export / "arduino").iterdir() if "partial" in p.name] == []


@pytest.mark.parametrize("name", ["9lives kws", "Arduino_KWS", "kws/yes", "-kws", "x" * 64, "123"])
def test_invalid_names_and_versions_are_refused(tmp_path, name):
    export = fake_export(tmp_path / "export")
    with pytest.raises(ExportError, match="library name"):
        write_arduino_library(export, name=name, log=lambda line: None)
    with pytest.raises(ExportError, match="not semver"):
        write_arduino_library(export, version="1.0", log=lambda line: None)
    with pytest.raises(ExportError, match="a file of the pipeline"):
        write_arduino_library(export, name="pipeline", log=lambda line: None)


def test_check_library_catches_what_the_ide_enforces(tmp_path):
    good = write_arduino_library(fake_export(tmp_path / "export"), log=lambda line: None)["library"]

    def broken(how) -> list[str]:
        lib = tmp_path / "broken" / good.name
        shutil.rmtree(lib.parent, ignore_errors=True)
        shutil.copytree(good, lib)
        how(lib)
        return check_library(lib)

    def rename(path: Path, new: str):
        return lambda lib: (lib / path).rename(lib / new)

    assert any(".cc is not compiled" in p for p in broken(rename(Path("src/model_data.cpp"), "src/model_data.cc")))
    assert any(
        "kws_firmware.ino inside" in p
        for p in broken(rename(Path("examples/kws_firmware/kws_firmware.ino"), "examples/kws_firmware/main.ino"))
    )
    assert any(
        "shadows src/model_settings.h" in p
        for p in broken(lambda lib: shutil.copy(lib / "src/model_settings.h", lib / "examples/kws_firmware/"))
    )
    assert any(
        "the same file name" in p
        for p in broken(
            lambda lib: (lib / "src/extra").mkdir() or shutil.copy(lib / "src/pipeline.h", lib / "src/extra/Pipeline.h")
        )
    )
    assert any('"inference.h", which is not in' in p for p in broken(lambda lib: (lib / "src/inference.h").unlink()))
    assert any("outside src/" in p for p in broken(lambda lib: shutil.copy(lib / "src/pipeline.cpp", lib)))
    assert any(
        "differs from the folder" in p
        for p in broken(
            lambda lib: (lib / "library.properties").write_text(
                (lib / "library.properties").read_text().replace(f"name={good.name}", "name=other")
            )
        )
    )
    assert any(
        "no url=" in p
        for p in broken(
            lambda lib: (lib / "library.properties").write_text(
                "".join(
                    line
                    for line in (lib / "library.properties").read_text().splitlines(True)
                    if not line.startswith("url=")
                )
            )
        )
    )
    assert any("includes=" in p for p in broken(lambda lib: (lib / "src" / f"{good.name}.h").unlink()))


def test_command_line(tmp_path, capsys):
    export = fake_export(tmp_path / "export")
    result = main(["--export", str(export), "--name", "my_kws", "--version", "2.1.0"])
    assert result["zip"] == export / "arduino" / "my_kws.zip" and result["zip"].is_file()
    assert read_properties(export / "arduino/my_kws/library.properties")["version"] == "2.1.0"
    main(["--check", str(result["library"])])
    assert "rules hold" in capsys.readouterr().out
    (export / "model_ops.h").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["--export", str(export)])
    assert exit_info.value.code == 2 and "model_ops.h" in capsys.readouterr().err
    (result["library"] / "library.properties").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["--check", str(result["library"])])
    assert exit_info.value.code == 1
