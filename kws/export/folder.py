"""The export folder, the one deploy contract. ``python -m kws export`` writes it; the firmware
build (firmware/Makefile), ``python -m kws firmware-sim``, ``listen`` and the Arduino library read
it and nothing else:

- model_int8.tflite (listen, firmware-sim's host side), model_data.cc/.h and model_ops.h (the
  firmware);
- model_settings.h: front end, framing, labels, int8 quantization, arena, and the recognizer with
  its inference stride (the firmware), written from report.json's entries by :func:`write_settings`;
- ``<frontend>_frontend_tables.h``: the C front end's tables for the model's own feature settings;
- report.json: labels, features, int8 quantization and the recognizer (``recognizer.settings``,
  :class:`kws.streams.recognize.RecognizerSettings`) for the host tools, with the measurements.

Light on purpose (no PyTorch): listen with an int8 model reads its folder through here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kws.audio.settings import FeatureSettings
from kws.export import ExportError
from kws.export.c_sources import tables_header, write_model_settings
from kws.streams.recognize import RecognizerSettings

REPORT = "report.json"
SETTINGS = "model_settings.h"


@dataclass(frozen=True)
class ExportFolder:
    path: Path
    report: dict
    labels: list[str]
    features: FeatureSettings
    recognizer: RecognizerSettings
    calibrated: bool  # the recognizer was calibrated for the model (else micro_speech's defaults)

    @property
    def model(self) -> Path:
        return self.path / "model_int8.tflite"

    @property
    def tables(self) -> Path:
        return self.path / tables_header(self.features.frontend)


def reexport_hint(folder: Path, report: dict) -> str:
    return f"re-export it: python -m kws export --ckpt {report.get('source', 'CKPT')} --out {folder}"


def read_export(folder: str | Path, firmware: bool = False) -> ExportFolder:
    """The export at ``folder``; ``firmware``: also require the files the firmware compiles.
    Errors name the file and say how to mend it (an export written before a file was part of
    the contract is re-exported, never completed with defaults)."""
    folder = Path(folder)
    if not (folder / REPORT).is_file():
        raise ExportError(
            f"{folder} is not an export folder: it holds no {REPORT} "
            f"(write one with `python -m kws export --ckpt CKPT --out {folder}`)"
        )
    try:
        report = json.loads((folder / REPORT).read_text())
        fields = {f.name for f in dataclasses.fields(FeatureSettings)}
        features = FeatureSettings(**{k: v for k, v in report["features"].items() if k in fields})
        labels = list(report["labels"])
    except (ValueError, KeyError, TypeError) as err:
        raise ExportError(
            f"{folder / REPORT} is not a readable export report ({err}); {reexport_hint(folder, {})}"
        ) from err
    entry = report.get("recognizer")
    if not isinstance(entry, dict) or "settings" not in entry:
        raise ExportError(
            f"{folder / REPORT} holds no recognizer settings: the export predates them; {reexport_hint(folder, report)}"
        )
    try:
        recognizer = RecognizerSettings.from_dict(entry["settings"], str(folder / REPORT))
    except ValueError as err:
        raise ExportError(f"{err} ({reexport_hint(folder, report)})") from err
    export = ExportFolder(folder, report, labels, features, recognizer, entry.get("calibrated_on") is not None)
    needed = ["model_int8.tflite"]
    if firmware:
        needed += ["model_data.cc", "model_data.h", "model_ops.h", SETTINGS, export.tables.name]
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise ExportError(
            f"{folder} lacks {', '.join(missing)}: the export predates them or was altered; "
            f"{reexport_hint(folder, report)}"
        )
    if firmware:
        check_settings(folder, report)
    return export


# model_settings.h's values: `constexpr <type> kName[...] = value;` and `#define KWS_FRONTEND_X 1`.
_CONSTANT = re.compile(r"^(?:constexpr [^=]*?\b(k\w+)(?:\[\w*\])? = (.*);|#define (KWS_FRONTEND_\w+) (\S+))", re.M)


def _constants(text: str) -> dict[str, str]:
    return {m[1] or m[3]: m[2] or m[4] for m in _CONSTANT.finditer(text)}


def check_settings(folder: Path, report: dict) -> None:
    """model_settings.h holds the values report.json gives it (:func:`write_settings`): a damaged
    or edited header is named here, before the firmware is built from it -- not in a screen of
    compiler errors, nor as a board that silently computes something else than the host."""
    path = folder / SETTINGS
    with tempfile.TemporaryDirectory() as scratch:
        try:
            write_settings(Path(scratch), report)
        except (KeyError, TypeError, ValueError) as err:
            raise ExportError(
                f"{folder / REPORT} lacks what {SETTINGS} is written from ({err!r}); {reexport_hint(folder, report)}"
            ) from err
        expected = _constants((Path(scratch) / SETTINGS).read_text())
    found = _constants(path.read_text(errors="replace"))
    differ = [name for name in expected if found.get(name) != expected[name]]
    if differ:
        shown = ", ".join(f"{name} {found.get(name, 'missing')} (report.json: {expected[name]})" for name in differ[:3])
        raise ExportError(
            f"{path} does not hold what {REPORT} says -- {shown}{', ...' if len(differ) > 3 else ''}: "
            f"it is damaged or was edited; {reexport_hint(folder, report)}"
        )


def report_inputs(
    source: str, settings: FeatureSettings, labels: list[str], input_q, output_q, arena: int, recognizer: dict
) -> dict:
    """What model_settings.h is written from, in report.json's own keys, so that a new
    calibration can rewrite it from report.json alone (:func:`write_recognizer`)."""
    features = {**dataclasses.asdict(settings), "frames": settings.num_frames, "feature_scale": settings.feature_scale}
    int8 = {
        "input_scale": input_q[0],
        "input_zero_point": input_q[1],
        "output_scale": output_q[0],
        "output_zero_point": output_q[1],
    }
    return {
        "source": source,
        "labels": labels,
        "features": features,
        "int8": int8,
        "tensor_arena": {"bytes": arena},
        "recognizer": recognizer,
    }


def write_settings(folder: Path, report: dict) -> None:
    """model_settings.h in ``folder`` from report.json's entries (:func:`report_inputs`)."""
    fields = {f.name for f in dataclasses.fields(FeatureSettings)}
    features = FeatureSettings(**{k: v for k, v in report["features"].items() if k in fields})
    q = report["int8"]
    write_model_settings(
        folder,
        report["source"],
        features,
        report["labels"],
        (q["input_scale"], q["input_zero_point"]),
        (q["output_scale"], q["output_zero_point"]),
        report["tensor_arena"]["bytes"],
        RecognizerSettings.from_dict(report["recognizer"]["settings"], f"{folder / REPORT}"),
        calibrated=report["recognizer"].get("calibrated_on") is not None,
    )


def write_recognizer(folder: str | Path, calibration: dict, stream_test: dict) -> ExportFolder:
    """Make ``calibration`` (report.json's ``recognizer`` entry: settings and how they were
    chosen) the export's recognizer: model_settings.h and report.json (``recognizer``,
    ``stream_test``) are both written beside the folder's files first, then each replaced
    atomically, the settings header before the report. Refuses a folder that is not an export."""
    export = read_export(folder)
    RecognizerSettings.from_dict(calibration["settings"], "the new calibration")
    report = {**export.report, "recognizer": calibration, "stream_test": stream_test}
    staging = Path(tempfile.mkdtemp(prefix=".recognizer.", dir=export.path))
    try:
        write_settings(staging, report)
        if SETTINGS in report.get("artifacts", {}):
            report["artifacts"][SETTINGS] = (staging / SETTINGS).stat().st_size
        (staging / REPORT).write_text(json.dumps(report, indent=2))
        for name in (SETTINGS, REPORT):
            os.replace(staging / name, export.path / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if (export.path / "arduino").is_dir():  # the library carries model_settings.h: package it again
        from kws.export.arduino import write_arduino_library

        write_arduino_library(export.path, log=lambda line: None)
    return read_export(export.path)
