"""``make bench``'s memory line: the peak memory of ``python -m kws listen`` on a long recording.

A recording of ``minutes`` minutes (seeded noise of varying level, written block by block) is
listened to by a fresh process, which reports its own peak resident memory (VmHWM):
through an int8 TinyConv (fresh seeded weights) in tflite-micro, as the board runs it -- the C
front end and numpy, no PyTorch -- and through a float checkpoint in PyTorch. The same for a
1-minute recording shows what each process costs before any audio: bounded streaming means the
two differ by little, whatever the length.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

TARGET_PEAK_MB = 500.0  # the target for a 60-minute recording
# The child's own peak: /proc's VmHWM belongs to the memory of the program exec'd (ru_maxrss would
# include the parent's, which Linux carries over a fork and exec).
CHILD = (
    "import resource, sys; from kws.__main__ import main; "
    "main(['listen', sys.argv[1], *sys.argv[2:]]); "
    "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')] if "
    "sys.platform == 'linux' else []; "
    "print('MAXRSS_KB', hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)


def write_recording(path: Path, minutes: float, sample_rate: int = 16000) -> None:
    """Seeded noise whose level changes every few seconds, written a block at a time."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", sample_rate, 1, "PCM_16") as f:
        for _ in range(int(minutes * 60 / 5)):
            f.write((rng.standard_normal(5 * sample_rate) * rng.uniform(10, 3000)).clip(-32768, 32767).astype(np.int16))


def untrained_checkpoint(path: Path) -> None:
    from datamodules import SpeechCommandsDataModule
    from kws.training.module import KWSModule

    torch.manual_seed(0)
    module = KWSModule()
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": "2.6.6",
            "datamodule_hyper_parameters": dict(SpeechCommandsDataModule().hparams),
        },
        path,
    )


def int8_model(folder: Path) -> Path:
    """A fresh seeded TinyConv exported to int8 (latency and memory do not depend on the weights)."""
    from kws.export.convert import convert_tflite
    from kws.export.graph import export_onnx, float_tinyconv
    from kws.models import TinyConv

    torch.manual_seed(0)
    export_onnx(float_tinyconv(TinyConv()), folder / "model.onnx")
    calibration = np.random.default_rng(0).uniform(0, 26, (200, 1960)).astype(np.float32)
    (folder / "model_int8.tflite").write_bytes(convert_tflite(folder / "model.onnx", calibration, folder)[1])
    return folder / "model_int8.tflite"


def listen_peak_mb(wav: Path, *options: str) -> float:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(wav), *options], capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("MAXRSS_KB")]
    if proc.returncode or not lines:
        raise RuntimeError(f"listen failed: {proc.stderr[-2000:]}")
    return int(lines[-1].split()[1]) / 1024


def bench_listen_memory(minutes: float = 60.0) -> dict:
    """Peak resident memory (MB) of listen on a 1-minute and a ``minutes``-minute recording, per
    model kind: {"micro": {"1_min": MB, "60_min": MB}, "pytorch": {...}}."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        untrained_checkpoint(folder / "model.ckpt")
        models = {
            "micro": ["--model", "micro", "--tflite", str(int8_model(folder))],
            "pytorch": ["--model", "pytorch", "--ckpt", str(folder / "model.ckpt")],
        }
        result = {name: {} for name in models}
        for length in (1.0, minutes):
            write_recording(folder / "recording.wav", length)
            for name, options in models.items():
                result[name][f"{length:g}_min"] = listen_peak_mb(folder / "recording.wav", *options)
    peak = result["micro"][f"{minutes:g}_min"]
    return {
        "peak_mb": result,
        "minutes": minutes,
        "target": f"listen on a {minutes:g}-minute recording under {TARGET_PEAK_MB:.0f} MB (int8 model, tflite-micro)",
        "measured": peak,
        "met": peak < TARGET_PEAK_MB,
        "how": "peak resident memory (VmHWM) of a fresh `python -m kws listen` process on seeded noise; "
        "PyTorch alone takes about 700 MB to import (its CUDA build)",
    }
