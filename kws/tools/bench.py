"""``make bench``: training throughput of the data pipeline plus model, against a per-sample
baseline, feature extraction speed per front end and model latency per runtime -- in one run on
this machine.

The framework path is the real one: batches gathered from the int16 cache, augmentation and
features on the device in ``on_after_batch_transfer``, TinyConv forward/backward/Adam step.
The baseline is the textbook alternative: a ``Dataset`` whose ``__getitem__`` reads the WAV
file, augments it and computes its features, batched by a ``DataLoader``. Both run the same
model step and the same front end. Then single-clip model latency per runtime (PyTorch, ONNX
Runtime, LiteRT float and int8, tflite-micro int8) of a TinyConv exported once into a temporary
folder, and the issue's targets computed from the measured numbers. Results are printed and
written as JSON for comparing versions. Nothing here is a test: targets are reported, not asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from kws.audio.wav import read_wav
from kws.export.tflite import RUNTIME_LABELS
from kws.utils.timing import DEFAULT_MIN_RUN_TIME

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The targets (reported, never asserted).
TARGET_DATA_FRACTION = 0.20  # of the framework's step time spent waiting for data, on CPU
TARGET_SPEEDUP = 10.0  # framework samples/s over the per-sample baseline's
SEED_RECIPE_EPOCHS, SEED_RECIPE_CLIPS = 50, 10_500  # the seed recipe: 50 epochs over 10.5K clips
TARGET_SEED_RECIPE_S = 300.0  # ... in under 5 minutes on this machine



class PerSampleDataset(Dataset):
    """The baseline: decode, augment and featurize one clip per ``__getitem__``."""

    def __init__(self, dm, split: str = "training"):
        self.dm = dm
        self.root = dm.data_dir
        data = dm.splits[split]
        files = dm.cache_files
        self.items = [(files[r] if r >= 0 else None, int(l)) for r, l in zip(data.rows, data.labels)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        clip = np.zeros(self.dm.features.clip_samples, np.int16)
        if path is not None:
            samples, _ = read_wav(self.root / path, self.dm.features.sample_rate)
            clip[: len(samples)] = samples[: len(clip)]
        audio = torch.from_numpy(clip)[None]
        with torch.no_grad():
            features = self.dm.featurize(audio, torch.tensor([label]))[0]
        return features, label


def _train_steps(model, optimizer, batches, featurize=None) -> tuple[int, float, float]:
    """Run training steps; returns (samples, total seconds, seconds spent waiting for data)."""
    loss_fn = torch.nn.CrossEntropyLoss()
    samples, data_time = 0, 0.0
    start = time.perf_counter()
    tick = start
    for batch in batches:
        x, y = batch
        if featurize is not None:
            with torch.no_grad():
                x = featurize(x, y)
        data_time += time.perf_counter() - tick
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
        samples += len(y)
        tick = time.perf_counter()
    return samples, time.perf_counter() - start, data_time


def bench_training(dm, baseline_batches: int) -> dict:
    from kws.models import TinyConv

    results = {}
    n_train = len(dm.splits["training"])
    torch.manual_seed(0)
    model = TinyConv(dm.input_shape, len(dm.labels))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loader = dm.train_dataloader()
    _train_steps(model, opt, [next(iter(loader))], dm.featurize)  # warm-up
    samples, seconds, data = _train_steps(model, opt, loader, dm.featurize)
    results["framework"] = {
        "samples_per_s": samples / seconds, "epoch_s": seconds, "epoch_samples": samples,
        "data_fraction": data / seconds,
    }
    baseline = DataLoader(PerSampleDataset(dm), batch_size=dm.hparams.batch_size, shuffle=True, num_workers=dm.hparams.num_workers)
    it = iter(baseline)
    batches = [next(it) for _ in range(1)]  # warm-up
    _train_steps(model, opt, batches)
    samples, seconds, data = _train_steps(model, opt, (b for _, b in zip(range(baseline_batches), it)))
    results["baseline_per_sample"] = {
        "samples_per_s": samples / seconds, "epoch_s": n_train * seconds / samples, "epoch_samples": n_train,
        "data_fraction": data / seconds, "measured_samples": samples,
    }
    results["speedup"] = results["framework"]["samples_per_s"] / results["baseline_per_sample"]["samples_per_s"]
    return results


def bench_features(clips: int = 1000) -> dict:
    from kws.audio.features import FeatureSettings, build_frontend

    audio = (torch.randn(clips, 16000, generator=torch.Generator().manual_seed(0)) * 3000).to(torch.int16)
    out = {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for kind in ("micro", "mfcc"):
        for device in devices:
            fe = build_frontend(FeatureSettings(frontend=kind)).to(device)
            x = audio.to(device)
            fe(x[:100])
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for chunk in x.split(100):
                fe(chunk)
            if device == "cuda":
                torch.cuda.synchronize()
            out[f"{kind}_{device}_clips_per_s"] = clips / (time.perf_counter() - start)
    return out


def bench_runtimes(
    input_shape: tuple[int, int] = (49, 40),
    num_classes: int = 4,
    calibration: np.ndarray | None = None,
    min_run_time: float = DEFAULT_MIN_RUN_TIME,
) -> dict:
    """Single-clip (batch 1, as the board runs it) latency in ms per runtime of one TinyConv.

    The model is a fresh, seeded TinyConv: latency does not depend on the trained weights, only on
    the graph. It is exported once into a temporary folder: ONNX (export_onnx of float_tinyconv)
    and TFLite float + int8 (convert_tflite, calibrated on ``calibration`` features
    [n, frames * features]; default: 200 seeded uniform rows over the micro front end's range).
    Every runtime is timed on one thread, on one prepared clip (uniform over the micro front
    end's range): the median of ``min_run_time`` seconds of calls (torch.utils.benchmark.Timer).
    What one call is:

    - pytorch_float: ``model(x)`` under no_grad, eval, CPU, torch threads 1 (kws.utils.timing.latency_ms,
      on its own random input: a conv's time does not depend on the values);
    - onnxruntime: ``session.run`` (CPUExecutionProvider, intra_op_num_threads=1), numpy in and out;
    - tflite_float / tflite_int8: ``interpreter.invoke()`` (LiteRT) (default kernels, num_threads=1) on an
      input set once beforehand -- no set_tensor/get_tensor, no quantization of the features;
    - tflite_micro: tflite-micro's ``interpreter.invoke()`` on an input set once (reference
      kernels on this host, arena from tensor_arena_size).
    """
    import onnxruntime as ort

    from kws.export.convert import convert_tflite
    from kws.export.graph import export_onnx, float_tinyconv
    from kws.export.tflite import TFLiteRunner, quantize, tensor_arena_size
    from kws.models import TinyConv
    from kws.utils.redirect import stderr_to
    from kws.utils.timing import latency_ms, median_ms

    if min_run_time <= 0:
        raise ValueError(f"min_run_time must be > 0 seconds, got {min_run_time}")
    size = input_shape[0] * input_shape[1]
    high = 26.0  # the micro front end's features span roughly 0..26 (uint16 output * MICRO_FEATURE_SCALE, kws.features)
    rng = np.random.default_rng(0)
    calibration_source = "given features"
    if calibration is None:
        calibration = rng.uniform(0.0, high, (200, size)).astype(np.float32)
        calibration_source = f"200 seeded uniform rows over [0, {high:.1f}]"
    clip = rng.uniform(0.0, high, (1, size)).astype(np.float32)

    torch.manual_seed(0)
    model = float_tinyconv(TinyConv(input_shape, num_classes))
    ms = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        start = time.perf_counter()
        export_onnx(model, work / "model.onnx")
        float_tflite, int8_tflite = convert_tflite(work / "model.onnx", calibration, work)
        export_s = time.perf_counter() - start

        ms["pytorch_float"] = latency_ms(model, (size,), batch=1, device="cpu", min_run_time=min_run_time, threads=1)

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(work / "model.onnx"), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: clip}
        ms["onnxruntime"] = median_ms(lambda: session.run(None, feed), min_run_time)

        with stderr_to(work / "litert_stderr.txt"):  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line
            runner = TFLiteRunner(float_tflite, "litert")
            runner.interpreter.set_tensor(runner.input["index"], clip.reshape(runner.input["shape"]))
            ms["tflite_float"] = median_ms(runner.interpreter.invoke, min_run_time)
            runner = TFLiteRunner(int8_tflite, "litert")
            int8_clip = quantize(clip, *runner.input_quantization, runner.input["dtype"]).reshape(runner.input["shape"])
            runner.interpreter.set_tensor(runner.input["index"], int8_clip)
            ms["tflite_int8"] = median_ms(runner.interpreter.invoke, min_run_time)
        arena = tensor_arena_size(int8_tflite, int8_clip, work)
        micro = TFLiteRunner(int8_tflite, "micro", arena_size=arena["bytes"])
        micro.interpreter.set_input(int8_clip, 0)
        ms["tflite_micro"] = median_ms(micro.interpreter.invoke, min_run_time)
        sizes = {"onnx": (work / "model.onnx").stat().st_size, "tflite_float": len(float_tflite), "tflite_int8": len(int8_tflite)}
    return {
        "ms_per_inference": ms,
        "model": {"name": "TinyConv", "input_shape": list(input_shape), "num_classes": num_classes, "weights": "fresh, seeded (latency does not depend on trained weights)", "bytes": sizes},
        "calibration": calibration_source,
        "tensor_arena_bytes": arena["bytes"],
        "export_s": export_s,
        "min_run_time_s": min_run_time,
        "batch": 1,
        "threads": 1,
        "timed": "median wall time of one call on one prepared clip: PyTorch model(x) (no_grad, eval; latency_ms's random input); ONNX Runtime session.run; "
                 "LiteRT and tflite-micro interpreter.invoke() with the input already set (no tensor copies or quantization)",
    }


def targets(training: dict) -> dict:
    """The issue's targets against the measured training numbers (reported, not asserted)."""
    framework = training["framework"]
    recipe_s = SEED_RECIPE_EPOCHS * SEED_RECIPE_CLIPS / framework["samples_per_s"]
    measured = {
        "data_fraction": (framework["data_fraction"], f"< {100 * TARGET_DATA_FRACTION:.0f} % of step time in data (CPU)", framework["data_fraction"] < TARGET_DATA_FRACTION),
        "speedup_vs_per_sample": (training["speedup"], f">= {TARGET_SPEEDUP:.0f}x the per-sample baseline's samples/s", training["speedup"] >= TARGET_SPEEDUP),
        "seed_recipe_s": (recipe_s, f"< {TARGET_SEED_RECIPE_S:.0f} s for {SEED_RECIPE_EPOCHS} epochs x {SEED_RECIPE_CLIPS} clips", recipe_s < TARGET_SEED_RECIPE_S),
    }
    out = {name: {"target": target, "measured": value, "met": bool(met)} for name, (value, target, met) in measured.items()}
    out["seed_recipe_s"]["projected_from"] = (
        f"{SEED_RECIPE_EPOCHS} x {SEED_RECIPE_CLIPS} / framework samples/s, measured over one epoch of {framework['epoch_samples']} clips"
    )
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m kws bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="data/synthetic", help="corpus (generated there when missing)")
    parser.add_argument("--frontend", default="micro", choices=["micro", "mfcc"])
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--baseline_batches", type=int, default=10, help="batches timed for the slow per-sample baseline")
    parser.add_argument("--min_run_time", type=float, default=DEFAULT_MIN_RUN_TIME, help="seconds of timed single-clip inferences per runtime (median reported)")
    parser.add_argument("--feature_clips", type=int, default=1000, help="clips featurized per front end and device")
    parser.add_argument("--skip_training", action="store_true", help="skip the training throughput (and the targets)")
    parser.add_argument("--skip_features", action="store_true", help="skip the feature extraction speed")
    parser.add_argument("--skip_runtimes", action="store_true", help="skip the per-runtime model latency (and its ONNX/TFLite export)")
    parser.add_argument("--skip_listen", action="store_true", help="skip listen's peak memory on a long recording")
    parser.add_argument("--listen_minutes", type=float, default=60.0, help="length of the recording listen's memory is measured on")
    parser.add_argument("--out", default="runs/bench.json")
    args = parser.parse_args(argv)
    for name in ("batch_size", "baseline_batches", "feature_clips"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.min_run_time <= 0:
        parser.error(f"--min_run_time must be > 0 seconds, got {args.min_run_time}")

    from datamodules import SpeechCommandsDataModule

    torch.manual_seed(0)
    dm = SpeechCommandsDataModule(data_dir=args.data_dir, synthetic=True, frontend=args.frontend, batch_size=args.batch_size, num_workers=args.num_workers)
    dm.prepare_data()
    dm.setup()
    results = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "settings": vars(args),
    }
    if not args.skip_training:
        results["training"] = bench_training(dm, args.baseline_batches)
        results["targets"] = targets(results["training"])
    if not args.skip_features:
        results["features"] = bench_features(args.feature_clips)
    if not args.skip_runtimes:
        calibration, _ = dm.split_features("training", clips=200)  # real training features, no augmentation
        results["runtimes"] = bench_runtimes(tuple(dm.input_shape), len(dm.labels), calibration, min_run_time=args.min_run_time)
        results["runtimes"]["calibration"] = f"{len(calibration)} training clips of {args.data_dir} (no augmentation)"

    if not args.skip_listen:
        from kws.tools.bench_memory import bench_listen_memory

        results["listen_memory"] = bench_listen_memory(args.listen_minutes)

    if "training" in results:
        tr = results["training"]
        print(f"\nTraining throughput ({args.frontend} front end, batch {args.batch_size}, {results['machine']['cores']} cores):")
        print(f"| pipeline | samples/s | epoch ({tr['framework']['epoch_samples']} clips) | time in data |")
        print("|---|---:|---:|---:|")
        for name, key in (("kws (cache + on-device features)", "framework"), ("per-sample Dataset baseline", "baseline_per_sample")):
            r = tr[key]
            print(f"| {name} | {r['samples_per_s']:.0f} | {r['epoch_s']:.1f} s | {100 * r['data_fraction']:.0f} % |")
        print(f"Speed-up: {tr['speedup']:.1f}x")
    if "features" in results:
        print("\nFeature extraction (clips/s, batches of 100):")
        for key, value in results["features"].items():
            print(f"  {key}: {value:.0f}")
    if "runtimes" in results:
        rt = results["runtimes"]
        print(f"\nModel latency (TinyConv {rt['model']['input_shape'][0]}x{rt['model']['input_shape'][1]} -> {rt['model']['num_classes']}, "
              f"fresh seeded weights; batch 1, 1 thread, median over {rt['min_run_time_s']} s of calls):")
        print("| runtime | ms / inference |")
        print("|---|---:|")
        for key, value in rt["ms_per_inference"].items():
            print(f"| {RUNTIME_LABELS[key]} | {value:.3f} |")
        print(f"Timed: {rt['timed']}.")
        print(f"int8 calibration: {rt['calibration']}; tflite-micro arena {rt['tensor_arena_bytes']:,} bytes; export took {rt['export_s']:.1f} s")
    if "targets" in results:
        print("\nTargets (reported, not asserted):")
        print("| target | measured | met? |")
        print("|---|---:|:---:|")
        units = {"data_fraction": lambda v: f"{100 * v:.1f} % in data", "speedup_vs_per_sample": lambda v: f"{v:.1f}x", "seed_recipe_s": lambda v: f"{v:.0f} s"}
        for key, t in results["targets"].items():
            print(f"| {t['target']} | {units[key](t['measured'])} | {'yes' if t['met'] else 'NO'} |")
        print(f"Seed recipe projected as {results['targets']['seed_recipe_s']['projected_from']}.")
    if "listen_memory" in results:
        lm = results["listen_memory"]
        print(f"\nlisten, peak memory (MB): {lm['how']}")
        print(f"| model | 1-minute recording | {lm['minutes']:g}-minute recording |")
        print("|---|---:|---:|")
        long = f"{lm['minutes']:g}_min"
        for name, label in (("micro", "int8, tflite-micro"), ("pytorch", "float, PyTorch")):
            print(f"| {label} | {lm['peak_mb'][name]['1_min']:.0f} | {lm['peak_mb'][name][long]:.0f} |")
        print(f"Target: {lm['target']}: {lm['measured']:.0f} MB, {'met' if lm['met'] else 'NOT met'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nWritten to {out}")
    return results
