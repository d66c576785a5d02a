"""An export folder as an Arduino library (1.5 format), ready for "Sketch > Include Library >
Add .ZIP Library", as Edge Impulse hands one over: no files copied into a sketch by hand.

``write_arduino_library(export_dir)`` writes ``<export_dir>/arduino/<name>/`` and
``<export_dir>/arduino/<name>.zip`` (top-level folder = the library's name)::

    library.properties            name, version, ..., depends=Arduino_TensorFlowLite, includes=<name>.h
    src/<name>.h                  the one header a sketch includes: TensorFlowLite.h first (it brings the
                                  TFLM library into the build), the pipeline's headers, the model's
                                  sha256, source checkpoint and the library version
    src/model_data.cpp/.h, model_settings.h, model_ops.h, <frontend>_frontend_tables.h   (the export)
    src/<frontend>_frontend.c/.h, feature_quantize.h, recognize_commands.cpp/.h         (firmware/)
    src/audio_provider, feature_provider, inference, pipeline, command_responder .cpp/.h,
        timing_stats.h                                                                  (firmware/kws_firmware/)
    examples/kws_firmware/kws_firmware.ino   the sketch's .ino, including <name>.h

Only the front end ``model_settings.h`` names is packaged (the IDE compiles every .c in src/).
``.cc`` files are renamed ``.cpp`` (the Arduino builder compiles .c, .cpp and .S only).

Version: ``1.0.0+<the first 12 hex digits of the model's sha256>`` (semver: the layout version,
then the model as build metadata), so a library names the exact model it carries; the full sha256
and the source checkpoint are in the paragraph and in ``<name>.h``. Output is deterministic: the
same model gives the same files and a byte-identical zip (sorted entries, fixed time stamps and
modes). ``check_library`` checks the rules a real Arduino IDE enforces that a compiler with stub
headers would not (names, layout, sketch naming, colliding file names, includes resolvable from
``src/`` alone); ``make -C firmware arduino-check LIBRARY=...`` runs it and compiles the library.

``python -m kws arduino-library --export DIR`` packages an existing export folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import Callable, Sequence

from kws.export import ExportError

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
SKETCH = "kws_firmware"
TOOL = "python -m kws arduino-library"
LAYOUT_VERSION = "1.0.0"  # bumped when the library's layout or API changes
TFLM_LIBRARY = "Arduino_TensorFlowLite"  # tensorflow/tflite-micro-arduino-examples' library.properties name
MODEL_FILES = ("model_data.cc", "model_data.h", "model_settings.h", "model_ops.h")
SHARED_FILES = ("feature_quantize.h", "recognize_commands.h", "recognize_commands.cc")
CATEGORIES = (
    "Display",
    "Communication",
    "Signal Input/Output",
    "Sensors",
    "Device Control",
    "Timing",
    "Data Storage",
    "Data Processing",
    "Other",
)
REQUIRED_PROPERTIES = (
    "name",
    "version",
    "author",
    "maintainer",
    "sentence",
    "paragraph",
    "category",
    "url",
    "architectures",
)
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
    r"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
# Library names: letters, digits, _ . - (the spec also allows spaces; refused here so that the
# folder, the zip's top folder and <name>.h are the name itself); at most 63; one letter at least.
LIBRARY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
SKETCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
SOURCE_EXTENSIONS = (".c", ".cpp", ".S")
CODE_EXTENSIONS = (*SOURCE_EXTENSIONS, ".cc", ".cxx", ".h", ".hpp", ".ino")
# Included with quotes but found in the TFLM library (Arduino_TensorFlowLite's src/), not ours.
EXTERNAL_PREFIXES = ("tensorflow/", "third_party/", "signal/")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# kws has no public page: the library it needs, where the IDE's "More info" leads a user.
DEFAULT_URL = "https://github.com/tensorflow/tflite-micro-arduino-examples"

Log = Callable[[str], None]


def model_info(export_dir: Path) -> dict:
    """What the library is made from, read from the export folder: the front end, labels, the
    model's bytes (from model_data.cc, the array the board runs) and sha256, the source checkpoint.
    Raises ExportError naming the missing or inconsistent file and the fix."""
    if not export_dir.is_dir():
        raise ExportError(f"no export folder at {export_dir}: run `python -m kws export --ckpt CKPT --out DIR`")
    missing = [name for name in MODEL_FILES if not (export_dir / name).is_file()]
    if missing:
        raise ExportError(
            f"{export_dir} has no {', '.join(missing)}: not a complete export; re-export it with "
            f"`python -m kws export --ckpt CKPT --out {export_dir}`"
        )
    settings = (export_dir / "model_settings.h").read_text()
    frontends = re.findall(r"^#define KWS_FRONTEND_(\w+) 1$", settings, re.M)
    if len(frontends) != 1 or frontends[0] not in ("MICRO", "MFCC"):
        raise ExportError(f"{export_dir / 'model_settings.h'} names front ends {frontends}: re-export")
    labels = re.search(r"kCategoryLabels\[kCategoryCount\] = \{(.*)\};", settings)
    source = re.match(r"// Generated by `[^`]*` from (.*)\.\n", settings)
    if labels is None or source is None:
        raise ExportError(f"{export_dir / 'model_settings.h'} has no labels or no 'Generated ... from' line: re-export")
    array = re.search(r"g_model\[\] = \{(.*?)\};", (export_dir / "model_data.cc").read_text(), re.S)
    if array is None:
        raise ExportError(f"{export_dir / 'model_data.cc'} holds no g_model array: re-export")
    model = bytes(int(value, 16) for value in re.findall(r"0x([0-9a-fA-F]{2})", array.group(1)))
    tflite = export_dir / "model_int8.tflite"
    if tflite.is_file() and tflite.read_bytes() != model:
        raise ExportError(f"{export_dir / 'model_data.cc'} and {tflite} hold different models: re-export")
    frontend = frontends[0].lower()
    tables = f"{frontend}_frontend_tables.h"
    if not (export_dir / tables).is_file():
        raise ExportError(
            f"{export_dir} has no {tables} (the {frontend} front end's tables, written by the export "
            "since it became the deploy contract): re-export it with `python -m kws export --ckpt "
            f"<its checkpoint> --out {export_dir}`"
        )
    return {
        "frontend": frontend,
        "tables": tables,
        "labels": json.loads(f"[{labels.group(1)}]"),
        "model": model,
        "sha256": hashlib.sha256(model).hexdigest(),
        "source": source.group(1),
    }


def default_name(labels: Sequence[str]) -> str:
    """``kws_<keywords>_inferencing`` (Edge Impulse's ``<project>_inferencing``): the labels but
    silence / unknown, each reduced to letters, digits and _."""
    words = [re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_") for label in labels if label not in ("silence", "unknown")]
    base = "_".join(word for word in words if word)[:40].strip("_")
    return f"kws_{base}_inferencing" if base else "kws_inferencing"


def library_version(sha256: str) -> str:
    return f"{LAYOUT_VERSION}+{sha256[:12]}"


def _sketch_files(firmware: Path) -> tuple[str, list[str]]:
    """(the .ino's text, the sketch's own .cpp/.h): what kws_firmware/.gitignore says is copied in
    is left out, as firmware/Makefile does."""
    sketch = firmware / SKETCH
    ino = sketch / f"{SKETCH}.ino"
    if not ino.is_file():
        raise ExportError(f"no Arduino sketch at {ino}: pass firmware_dir (--firmware), the checkout's firmware/")
    ignore = sketch / ".gitignore"
    lines = ignore.read_text().splitlines() if ignore.is_file() else []
    copied_in = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    own = sorted(p.name for p in sketch.iterdir() if p.suffix in (".cpp", ".h") and p.name not in copied_in)
    return ino.read_text(), own


def _headers(ino: str, name: str, info: dict, version: str) -> tuple[str, str]:
    """(<name>.h, the example .ino): the .ino's #include lines move into <name>.h, in order, and
    the .ino includes <name>.h alone (so the IDE finds this library first, by its header)."""
    includes = re.findall(r"^#include [<\"].*[>\"].*$", ino, re.M)
    if not includes or includes[0] != "#include <TensorFlowLite.h>":
        raise ExportError(
            f"firmware/{SKETCH}/{SKETCH}.ino should include <TensorFlowLite.h> first "
            f"(found {includes[:1]}): the Arduino IDE adds the TFLM library to the build through it"
        )
    guard = "KWS_LIBRARY_" + re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_H_"
    generated = f"// Generated by `{TOOL}` from {info['source']}.\n// Do not edit: run it again instead.\n"
    header = (
        f"{generated}// The keyword-spotting pipeline of that model for the Arduino Nano 33 BLE Sense: include\n"
        f"// this one header (examples/{SKETCH}/{SKETCH}.ino shows setup() and loop()).\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"// TensorFlowLite.h first: through it the IDE adds the {TFLM_LIBRARY} library (TFLM) to the build.\n"
        + "\n".join(includes)
        + "\n\n"
        + f"#define KWS_LIBRARY_NAME {json.dumps(name)}\n#define KWS_LIBRARY_VERSION {json.dumps(version)}\n"
        + f"#define KWS_MODEL_SHA256 {json.dumps(info['sha256'])}\n#define KWS_MODEL_BYTES {len(info['model'])}\n"
        + f"#define KWS_MODEL_SOURCE {json.dumps(info['source'])}\n\n#endif  // {guard}\n"
    )
    lines, placed = [], False
    for line in ino.splitlines():
        if line in includes:
            if not placed:
                lines.append(f"#include <{name}.h>  // the model, its front end and the pipeline")
                placed = True
            continue
        if line.startswith("// Needs the generated files copied in"):
            line = f"// The example of the {name} library: all it needs is in the library,\n// through {name}.h."
        if not (line == "" and lines and lines[-1] == ""):
            lines.append(line)
    return header, "\n".join(lines) + "\n"


def _properties(name: str, version: str, info: dict, author: str, url: str) -> str:
    keywords = [label for label in info["labels"] if label not in ("silence", "unknown")]
    single_line = lambda text: re.sub(r"\s+", " ", text)  # noqa: E731  a property is one line
    fields = {
        "name": name,
        "version": version,
        "author": author,
        "maintainer": author,
        "sentence": f"Keyword spotting ({', '.join(keywords) or 'no keywords'}) on the Arduino Nano 33 BLE Sense: "
        "microphone, front end, int8 model, command recognizer.",
        "paragraph": f"Generated by `{TOOL}` from the export of {info['source']}. Model sha256 {info['sha256']} "
        f"({len(info['model'])} bytes), labels {', '.join(info['labels'])}, {info['frontend']} front end. "
        f"Needs the {TFLM_LIBRARY} library. Example: File > Examples > {name} > {SKETCH}.",
        "category": "Data Processing",
        "url": url,
        "architectures": "mbed,mbed_nano",
        "depends": TFLM_LIBRARY,
        "includes": f"{name}.h",
    }
    return "".join(f"{key}={single_line(value)}\n" for key, value in fields.items())


def _library_files(
    export_dir: Path, firmware: Path, name: str, version: str, info: dict, author: str, url: str
) -> dict[str, bytes]:
    """Every file of the library: path inside the library folder -> bytes."""
    ino, own = _sketch_files(firmware)
    header, example = _headers(ino, name, info, version)
    src = {model.replace(".cc", ".cpp"): (export_dir / model).read_bytes() for model in MODEL_FILES}
    src[info["tables"]] = (export_dir / info["tables"]).read_bytes()
    for shared in (*SHARED_FILES, f"{info['frontend']}_frontend.c", f"{info['frontend']}_frontend.h"):
        if not (firmware / shared).is_file():
            raise ExportError(f"no {firmware / shared}: pass firmware_dir (--firmware), the checkout's firmware/")
        src[shared.replace(".cc", ".cpp")] = (firmware / shared).read_bytes()
    src.update({own_file: (firmware / SKETCH / own_file).read_bytes() for own_file in own})
    if f"{name}.h" in src:
        raise ExportError(f"library name {name!r}: {name}.h is a file of the pipeline; choose another --name")
    src[f"{name}.h"] = header.encode()
    files = {f"src/{path}": data for path, data in src.items()}
    files[f"examples/{SKETCH}/{SKETCH}.ino"] = example.encode()
    files["library.properties"] = _properties(name, version, info, author, url).encode()
    return files


def write_zip(files: dict[str, bytes], top: str, path: Path) -> None:
    """A deterministic zip: entries sorted, folders listed, fixed time stamps and Unix modes."""
    folders = {f"{top}/"} | {f"{top}/{'/'.join(p.split('/')[:i])}/" for p in files for i in range(1, p.count("/") + 1)}
    entries = sorted([(folder, None) for folder in folders] + [(f"{top}/{p}", data) for p, data in files.items()])
    with zipfile.ZipFile(path, "w") as archive:
        for entry, data in entries:
            info = zipfile.ZipInfo(entry, ZIP_TIME)
            info.create_system = 3
            info.external_attr = ((0o40755 if data is None else 0o100644) << 16) | (0x10 if data is None else 0)
            info.compress_type = zipfile.ZIP_STORED if data is None else zipfile.ZIP_DEFLATED
            archive.writestr(info, b"" if data is None else data, compresslevel=9)


def write_arduino_library(
    export_dir: str | Path,
    name: str | None = None,
    version: str | None = None,
    firmware_dir: str | Path = FIRMWARE,
    author: str = "kws (python -m kws export)",
    url: str = DEFAULT_URL,
    log: Log = print,
) -> dict:
    """Package ``export_dir`` as ``<export_dir>/arduino/<name>/`` and ``<name>.zip`` beside it;
    returns {"library", "zip", "name", "version", "sha256"}. ``name``: default
    ``kws_<keywords>_inferencing``; ``version``: default ``1.0.0+<sha256[:12]>``. Written beside
    and then moved into place: an error leaves an earlier library as it was."""
    export_dir, firmware = Path(export_dir), Path(firmware_dir)
    info = model_info(export_dir)
    name = name or default_name(info["labels"])
    version = version or library_version(info["sha256"])
    if not LIBRARY_NAME.match(name) or not re.search(r"[A-Za-z]", name) or name.lower().startswith("arduino"):
        raise ExportError(
            f"library name {name!r}: use letters, digits, _ . - (63 at most, a letter or digit first, "
            "one letter at least, not starting with 'Arduino', which is reserved)"
        )
    if not SEMVER.match(version):
        raise ExportError(f"library version {version!r} is not semver (e.g. 1.2.0 or 1.0.0+abc123)")
    files = _library_files(export_dir, firmware, name, version, info, author, url)
    out = export_dir / "arduino"
    staging = out / f".{name}.{uuid.uuid4().hex[:8]}.partial"
    try:
        for path, data in files.items():
            (staging / name / path).parent.mkdir(parents=True, exist_ok=True)
            (staging / name / path).write_bytes(data)
        problems = check_library(staging / name)
        if problems:
            raise ExportError("the Arduino library would break these rules:\n  " + "\n  ".join(problems))
        write_zip(files, name, staging / f"{name}.zip")
        if (out / name).exists():  # set aside, not deleted, until the new one is in place
            os.replace(out / name, staging / "earlier")
        os.replace(staging / name, out / name)
        os.replace(staging / f"{name}.zip", out / f"{name}.zip")
    except OSError as err:
        if (staging / "earlier").is_dir() and not (out / name).exists():
            os.replace(staging / "earlier", out / name)  # the earlier library back in its place
        raise ExportError(f"cannot write the Arduino library into {out}: {err}") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(
        f"[arduino] {out / name} (version {version}) and {out / (name + '.zip')}: "
        "Sketch > Include Library > Add .ZIP Library"
    )
    return {
        "library": out / name,
        "zip": out / f"{name}.zip",
        "name": name,
        "version": version,
        "sha256": info["sha256"],
    }


def read_properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def _unconditional_includes(text: str) -> list[str]:
    """The quoted includes outside #if blocks (an include guard is not one): those inside are left
    to the compiler, as the IDE's discovery preprocesses (feature_provider.h names both front ends)."""
    includes, stack = [], []
    lines = [line.strip() for line in text.splitlines()]
    for k, line in enumerate(lines):
        if re.match(r"#\s*if", line):
            guard = re.match(r"#\s*ifndef\s+(\w+)", line)
            stack.append(bool(guard) and k + 1 < len(lines) and lines[k + 1].split()[:2] == ["#define", guard.group(1)])
        elif re.match(r"#\s*endif", line) and stack:
            stack.pop()
        elif all(stack) and (match := re.match(r'#\s*include\s+"([^"]+)"', line)):
            includes.append(match.group(1))
    return includes


def _include_problems(src: Path, files: list[Path]) -> list[str]:
    """Quoted includes must resolve from the including file's folder or src/ (the only library
    folder on the IDE's include path), or be the TFLM library's."""
    problems = []
    for path in files:
        if path.suffix not in CODE_EXTENSIONS:
            continue
        for header in _unconditional_includes(path.read_text(errors="replace")):
            if header.startswith(EXTERNAL_PREFIXES) or (path.parent / header).is_file() or (src / header).is_file():
                continue
            problems.append(f'{path.relative_to(src.parent)} includes "{header}", which is not in the library\'s src/')
    return problems


def check_library(library: str | Path) -> list[str]:
    """What a real Arduino IDE would refuse or mis-build in ``library`` (empty: none): the
    library.properties fields, the name, the 1.5 layout (sources under src/, compiled
    recursively), file names that collide (case-insensitively, as on Windows and macOS: within
    src/, and an example's file shadowing one of src/), .cc files (not compiled by the IDE),
    includes src/ cannot resolve, examples named as their folder."""
    library = Path(library)
    problems: list[str] = []
    props_path, src = library / "library.properties", library / "src"
    if not props_path.is_file() or not src.is_dir():
        return [f"{library}: no library.properties or no src/ folder (the 1.5 library layout)"]
    props = read_properties(props_path)
    problems += [f"library.properties: no {key}=" for key in REQUIRED_PROPERTIES if not props.get(key)]
    name = props.get("name", "")
    if not LIBRARY_NAME.match(name) or not re.search(r"[A-Za-z]", name) or name.lower().startswith("arduino"):
        problems.append(f"library.properties: name={name!r} is not a valid library name")
    if name != library.name:
        problems.append(f"library.properties: name={name!r} differs from the folder {library.name!r}")
    if not SEMVER.match(props.get("version", "")):
        problems.append(f"library.properties: version={props.get('version')!r} is not semver")
    if props.get("category") not in CATEGORIES:
        problems.append(f"library.properties: category={props.get('category')!r} is not one of {CATEGORIES}")
    for header in filter(None, (h.strip() for h in props.get("includes", "").split(","))):
        if not (src / header).is_file():
            problems.append(f"library.properties: includes={header} is not in src/")
    outside = [
        p
        for p in library.rglob("*")
        if p.is_file()
        and p.suffix in CODE_EXTENSIONS
        and p.relative_to(library).parts[0] not in ("src", "examples", "extras")
    ]
    problems += [
        f"{p.relative_to(library)}: a source outside src/ (the 1.5 layout compiles src/ only)" for p in outside
    ]
    src_files = sorted(p for p in src.rglob("*") if p.is_file())
    problems += [
        f"{p.relative_to(library)}: .cc is not compiled by the Arduino IDE; rename it .cpp"
        for p in src_files
        if p.suffix in (".cc", ".cxx")
    ]
    seen: dict[str, Path] = {}
    for path in src_files:
        other = seen.setdefault(path.name.lower(), path)
        if other is not path:
            problems.append(f"{path.relative_to(library)} and {other.relative_to(library)}: the same file name")
    problems += _include_problems(src, src_files)
    examples = sorted(p for p in (library / "examples").glob("*") if p.is_dir())
    if not examples:
        problems.append("examples/: no example sketch")
    for example in examples:
        if not SKETCH_NAME.match(example.name) or not (example / f"{example.name}.ino").is_file():
            problems.append(f"examples/{example.name}: needs a valid sketch name and {example.name}.ino inside")
        for path in sorted(p for p in example.rglob("*") if p.is_file()):
            if path.name.lower() in seen:
                problems.append(
                    f"{path.relative_to(library)} shadows src/{seen[path.name.lower()].name} "
                    "(the sketch folder comes first on the include path)"
                )
        problems += _include_problems(src, sorted(p for p in example.rglob("*") if p.is_file()))
    return problems


def main(argv: Sequence[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(
        prog=f"{TOOL}",
        description="Package a `python -m kws export` folder as an "
        "Arduino library (<export>/arduino/<name>/ and <name>.zip) for the Arduino IDE.",
    )
    parser.add_argument(
        "--export",
        metavar="DIR",
        help="an export folder (model_data.cc, model_settings.h, model_ops.h, front-end tables)",
    )
    parser.add_argument("--name", default=None, help="library name (default kws_<keywords>_inferencing)")
    parser.add_argument("--version", default=None, help="semver (default 1.0.0+<the model's sha256[:12]>)")
    parser.add_argument("--author", default="kws (python -m kws export)", help="library.properties author/maintainer")
    parser.add_argument("--url", default=DEFAULT_URL, help="library.properties url")
    parser.add_argument("--firmware", default=str(FIRMWARE), help="the checkout's firmware/ (default: %(default)s)")
    parser.add_argument("--check", metavar="LIBRARY", help="only check a library folder against the IDE's rules")
    args = parser.parse_args(argv)
    if args.check:
        problems = check_library(args.check)
        if problems:
            parser.exit(1, f"error: {args.check} breaks the Arduino library rules:\n  " + "\n  ".join(problems) + "\n")
        print(f"{args.check}: the Arduino library rules hold")
        return None
    if not args.export:
        parser.error("--export DIR (or --check LIBRARY) is required")
    try:
        return write_arduino_library(args.export, args.name, args.version, args.firmware, args.author, args.url)
    except ExportError as err:
        parser.exit(2, f"error: {err}\n")
