"""``python -m kws firmware-sim``: the firmware, built for the Cortex-M4F and run in QEMU, against
the host: does the board compute what ``python -m kws listen --model micro`` computes?

For each kernel set (TFLM's reference kernels, and CMSIS-NN, which the Arduino library runs on the
Nano 33 BLE Sense), ``make -C firmware`` builds the sketch's own sources with a QEMU board layer
and runs them on a recording (firmware/README.md). Then:

- stream: every inference's int8 outputs and every detection of the firmware, against listen's on
  the same recording, model and recognizer settings;
- clips: the model alone on the int8 inputs of every test clip, against tflite-micro on the host;
- where outputs differ, :mod:`kws.export.int8_reference` names the requantization rounding that
  reproduces the firmware's, per op;
- footprint: flash and RAM per part, from the ELF's map file.

Both sides read the export folder and nothing else (:mod:`kws.export.folder`): the firmware
its C files (model_settings.h with the recognizer and its stride, the front end's tables), the
host its report.json (labels, features, the same recognizer) and model_int8.tflite.

One line per kernel set says whether outputs and detections are identical; the details go into
the export's ``report.json`` (key ``firmware``). Exit code 1 when they differ anywhere.

The recording is what listen takes (any rate-matching mono WAV, 8/16/24/32-bit or float): it is
read once here and handed to both sides as a 16-bit PCM copy, the one format the board's
simulator reads. The folder and the recording are checked before anything is built.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from kws.audio.settings import FeatureSettings
from kws.audio.wav import AudioError, read_wav, write_wav
from kws.deploy.listen import listen, tflite_classifier
from kws.export import ExportError
from kws.export.folder import read_export, reexport_hint
from kws.export.tflite import read_model
from kws.streams.recognize import RecognizeCommands, RecognizerSettings

KERNELS = ("reference", "cmsis-nn")
REPO = Path(__file__).resolve().parents[2]
REPORT_NAME = "report.json"
RATE_FIX = "(firmware-sim takes the rate the model was trained on, as the board's microphone delivers it)"


def make(target: str, **variables: str) -> subprocess.CompletedProcess:
    """``make -C firmware <target> VAR=value ...`` from the repository root; its output on failure."""
    command = ["make", "-s", "-C", str(REPO / "firmware"), target, *(f"{k}={v}" for k, v in variables.items())]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc


def read_outputs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(times ms [n], int8 outputs [n, classes]) of "time o0 o1 ..." lines."""
    rows = np.loadtxt(path, dtype=np.int64, ndmin=2)
    return rows[:, 0], rows[:, 1:]


def compare_outputs(firmware: np.ndarray, host: np.ndarray) -> dict:
    difference = np.abs(firmware.astype(np.int64) - host.astype(np.int64))
    return {"identical": bool(firmware.shape == host.shape and not difference.any()), "outputs": int(host.size),
            "differing": int((difference > 0).sum()) if firmware.shape == host.shape else None,
            "max_difference": int(difference.max()) if firmware.shape == host.shape and difference.size else None}


def host_stream(export: Path, recording: Path, settings: FeatureSettings, labels: list[str],
                recognizer: RecognizerSettings) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """listen --model micro on the recording: (times, int8 outputs, detection lines)."""
    from kws.audio.wav import wav_blocks

    times, outputs = [], []
    classify = tflite_classifier(export / "model_int8.tflite", "micro")
    blocks = wav_blocks(recording, settings.sample_rate, 10 * settings.sample_rate)
    recognize = RecognizeCommands.from_settings(labels, recognizer)
    detections = listen(blocks, classify, labels, settings, recognizer.inference_stride_ms, recognize, log=None,
                        outputs=lambda t, raw: (times.append(t), outputs.append(raw)))
    return np.concatenate(times), np.concatenate(outputs), [str(d) for d in detections]


def rounding_of(model: bytes, inputs: np.ndarray, outputs: np.ndarray) -> dict | None:
    """Per op, the requantization roundings with which the numpy int8 graph gives ``outputs``."""
    from kws.export.int8_reference import Int8Graph, matching_roundings

    graph = Int8Graph(model)
    shape = [len(inputs), *graph.graph.tensors[graph.graph.inputs[0]].shape[1:]]
    return matching_roundings(graph, inputs.reshape(shape), {"firmware": outputs})["firmware"]


def test_clip_inputs(report: dict) -> np.ndarray | None:
    """The int8 model inputs of the test clips the export was verified on (from its checkpoint's
    data), or None when the checkpoint or data are not at hand."""
    from kws.export.tflite import quantize
    from kws.training.checkpoints import CheckpointError, load_checkpoint

    try:
        _, datamodule = load_checkpoint(report["source"])
        datamodule.setup()
        features, _ = datamodule.split_features("testing")
    except (CheckpointError, OSError, ValueError, KeyError):
        return None
    return quantize(features, report["int8"]["input_scale"], report["int8"]["input_zero_point"], np.int8)


def test_recording(report: dict, path: Path, clips: int = 30) -> Path:
    """A recording of ``clips`` test-split clips (seeded) with half a second of their split's
    quiet noise between them, from the export's checkpoint and data."""
    from kws.audio.wav import write_wav
    from kws.training.checkpoints import load_checkpoint

    _, datamodule = load_checkpoint(report["source"])
    datamodule.setup()
    data = datamodule.splits["testing"]
    rows = np.random.default_rng(0).permutation(len(data))[:clips]
    audio, _ = data[list(rows)]
    quiet = (np.random.default_rng(1).standard_normal((len(rows), 8000)) * 20).astype(np.int16)
    write_wav(path, np.concatenate([np.concatenate([a, q]) for a, q in zip(audio.numpy(), quiet)]), datamodule.features.sample_rate)
    return path


def pcm16_copy(recording: Path, settings: FeatureSettings, scratch: Path) -> Path:
    """The recording as 16-bit PCM in ``scratch`` (same name: the board's results go to
    build/<kernels>/sim/<name>), after listen's checks (rate, channels, truncation, NaN) and one
    of its own: at least one window, the board's first inference."""
    samples, rate = read_wav(recording, settings.sample_rate, rate_fix=RATE_FIX)
    if len(samples) < settings.clip_samples:
        raise AudioError(f"{recording}: {len(samples) * 1000 // rate} ms long, shorter than one {settings.clip_ms} ms "
                         f"window, the board's first inference: firmware-sim needs a recording of at least "
                         f"{settings.clip_ms} ms")
    copy = scratch / f"{recording.stem}.wav"
    write_wav(copy, samples, rate)
    return copy


def simulate(export: Path, recording: Path, kernels: tuple[str, ...] = KERNELS, clips: bool = True, log=print) -> dict:
    folder = read_export(export, firmware=True)  # the firmware reads the same folder's model_settings.h
    report, recognizer = folder.report, folder.recognizer
    model = read_model(folder.model, reexport_hint(export, report))
    build = REPO / "firmware" / "build"
    results = {"recording": str(recording), "stride_ms": recognizer.inference_stride_ms,
               "recognizer": recognizer.to_dict(), "kernels": {}}
    with tempfile.TemporaryDirectory() as scratch:
        recording = pcm16_copy(recording, folder.features, Path(scratch))
        host_times, host_outputs, host_detections = host_stream(export, recording, folder.features, folder.labels,
                                                                recognizer)
        inputs = test_clip_inputs(report) if clips else None
        windows = Path(scratch) / "test_clips.int8"
        if inputs is not None:
            windows.write_bytes(inputs.astype(np.int8).tobytes())
            host_clips = _host_clip_outputs(model, inputs)
        for k in kernels:
            variables = {"MODEL_DIR": str(export), "KERNELS": k}
            make("firmware-sim", RECORDING=str(recording), **variables)
            out = build / k / "sim" / recording.stem
            times, outputs = read_outputs(out / "inferences.txt")
            detections = (out / "detections.txt").read_text().splitlines()
            entry = {"stream": {"inferences": int(len(times)), "times_identical": bool(np.array_equal(times, host_times)),
                                **compare_outputs(outputs, host_outputs), "detections": len(detections),
                                "detections_identical": detections == host_detections}}
            log_text = (out / "log.txt").read_text()
            entry["arena_used_bytes"] = next((int(line.split()[1]) for line in log_text.splitlines() if line.startswith("arena_used_bytes")), None)
            if inputs is not None:
                make("firmware-windows", WINDOWS=str(windows), **variables)
                firmware_clips = np.loadtxt(build / k / "windows" / "test_clips.txt", dtype=np.int64, ndmin=2)
                entry["clips"] = compare_outputs(firmware_clips, host_clips)
                entry["rounding"] = rounding_of(model, inputs, firmware_clips)
            make("footprint", **variables)
            entry["footprint"] = json.loads((build / k / "footprint.json").read_text())
            results["kernels"][k] = entry
            log(summary_line(k, entry))
    return results


def _host_clip_outputs(model: bytes, inputs: np.ndarray) -> np.ndarray:
    from kws.export.tflite import TFLiteRunner

    runner = TFLiteRunner(model, "micro")
    outputs = []
    for row in inputs:
        runner.interpreter.set_input(row.reshape(runner.input["shape"]).astype(np.int8), 0)
        runner.interpreter.invoke()
        outputs.append(np.asarray(runner.interpreter.get_output(0)).reshape(-1))
    return np.stack(outputs).astype(np.int64)


def summary_line(kernels: str, entry: dict) -> str:
    """One line: are the firmware's int8 outputs and detections the host's?"""
    s = entry["stream"]
    same = s["identical"] and s["times_identical"]
    text = f"{kernels}: stream int8 outputs " + (f"identical ({s['inferences']} inferences)" if same else f"DIFFER ({s['differing']} of {s['outputs']} values)")
    text += f", detections {'identical' if s['detections_identical'] else 'DIFFER'} ({s['detections']})"
    if "clips" in entry:
        c = entry["clips"]
        text += "; test clips: int8 outputs " + ("identical" if c["identical"] else f"DIFFER ({c['differing']} of {c['outputs']} values)")
        rounding = entry.get("rounding")
        if not c["identical"]:
            text += "; rounding: " + (", ".join(f"{op} {'/'.join(modes)}" for op, modes in rounding.items()) if rounding else "no assignment reproduces them")
    return text


def agrees(entry: dict) -> bool:
    """The board computed what the host computed: every output, time, detection and clip."""
    s = entry["stream"]
    return s["identical"] and s["times_identical"] and s["detections_identical"] and entry.get("clips", s)["identical"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m kws firmware-sim", description="Build the firmware for Cortex-M4F, run it in QEMU on a recording and the test clips, and compare with the host (listen --model micro).")
    parser.add_argument("--export", required=True, help="a folder written by `python -m kws export`")
    parser.add_argument("--recording", default=None,
                        help="a mono WAV at the model's rate (16 kHz), at least 1 s, that the firmware and listen both "
                             "hear (default: 30 test-split clips with quiet between them)")
    parser.add_argument("--kernels", nargs="+", choices=KERNELS, default=list(KERNELS), help="TFLM kernel sets (default: both)")
    parser.add_argument("--no_clips", action="store_true", help="skip the per-clip comparison on the test split")
    args = parser.parse_args(argv)
    export = Path(args.export)
    try:
        # Everything the build reads is checked first: a bad file is named, not found by the compiler.
        folder = read_export(export, firmware=True)
        read_model(folder.model, reexport_hint(export, folder.report))
        if args.recording:
            with tempfile.TemporaryDirectory() as scratch:
                pcm16_copy(Path(args.recording), folder.features, Path(scratch))
        recording = Path(args.recording) if args.recording else None
        recording = recording or test_recording(folder.report, export.parent / "firmware_test_recording.wav")
        results = simulate(export, recording, tuple(args.kernels), clips=not args.no_clips)
        report = {**folder.report, "firmware": results}
        staged = export / f".{REPORT_NAME}.tmp"
        staged.write_text(json.dumps(report, indent=2))
        staged.replace(export / REPORT_NAME)  # a full disk never leaves half a report
    except (ExportError, RuntimeError, OSError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    differ = [k for k, entry in results["kernels"].items() if not agrees(entry)]
    if differ:
        parser.exit(1, f"error: the board does not compute what the host computes ({', '.join(differ)}; details in "
                       f"{export / REPORT_NAME}, key firmware): the firmware or this folder is at fault -- "
                       f"{reexport_hint(export, folder.report)}, and if they still differ, see firmware/README.md\n")
    return results
