"""``make bench`` (``python -m kws bench``): in one run on this machine, training throughput
against the model step alone and against the per-clip TF-op pipeline (:mod:`kws.tools.bench_training`),
feature extraction speed per front end and implementation, model latency per runtime, and
listen's peak memory on a long recording (:mod:`kws.tools.bench_memory`). Results are printed and
written as JSON for comparing versions. Nothing here is a test: targets are reported, never asserted.
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

from kws.export.tflite import RUNTIME_LABELS
from kws.tools.bench_training import bench_training, targets
from kws.utils.timing import DEFAULT_MIN_RUN_TIME

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def bench_features(clips: int = 1000) -> dict:
    """Clips per second of each front end implementation on one batch of ``clips`` 1 s clips:
    the micro front end as the firmware's C code (this machine's threads), as the PyTorch port
    (CPU, and CUDA when present), TensorFlow's op one clip at a time (as the starter ran it);
    the MFCC."""
    from kws.audio import micro_frontend_c
    from kws.audio.features import FeatureSettings, build_frontend
    from kws.audio.micro_frontend import MicroFrontend

    audio = (torch.randn(clips, 16000, generator=torch.Generator().manual_seed(0)) * 3000).to(torch.int16)
    runs = {
        "micro_torch_cpu": (MicroFrontend(backend="torch"), "cpu"),
        "mfcc_cpu": (build_frontend(FeatureSettings(frontend="mfcc")), "cpu"),
    }
    if micro_frontend_c.build_info() is not None:
        runs["micro_c_cpu"] = (MicroFrontend(backend="c"), "cpu")
    if torch.cuda.is_available():
        runs.update(
            micro_torch_cuda=(MicroFrontend(backend="torch"), "cuda"),
            mfcc_cuda=(build_frontend(FeatureSettings(frontend="mfcc")), "cuda"),
        )
    out = {}
    with torch.no_grad():
        for name, (fe, device) in runs.items():
            fe, x = fe.to(device), audio.to(device)
            fe(x[:100])
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            sync()
            start = time.perf_counter()
            for chunk in x.split(100):
                fe(chunk)
            sync()
            out[f"{name}_clips_per_s"] = clips / (time.perf_counter() - start)
    import tensorflow as tf
    from tensorflow.lite.experimental.microfrontend.python.ops import audio_microfrontend_op

    subset = audio[:100].numpy()
    audio_microfrontend_op.audio_microfrontend(
        tf.constant(subset[0]),
        sample_rate=16000,
        window_size=30,
        window_step=20,
        num_channels=40,
        out_scale=1,
        out_type=tf.float32,
    )
    start = time.perf_counter()
    for clip in subset:
        audio_microfrontend_op.audio_microfrontend(
            tf.constant(clip),
            sample_rate=16000,
            window_size=30,
            window_step=20,
            num_channels=40,
            out_scale=1,
            out_type=tf.float32,
        )
    out["micro_tf_op_per_clip_clips_per_s"] = len(subset) / (time.perf_counter() - start)
    out["threads"] = torch.get_num_threads()
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
    # the micro front end's features span roughly 0..26 (uint16 output * MICRO_FEATURE_SCALE, kws.audio.settings)
    high = 26.0
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
        sizes = {
            "onnx": (work / "model.onnx").stat().st_size,
            "tflite_float": len(float_tflite),
            "tflite_int8": len(int8_tflite),
        }
    return {
        "ms_per_inference": ms,
        "model": {
            "name": "TinyConv",
            "input_shape": list(input_shape),
            "num_classes": num_classes,
            "weights": "fresh, seeded (latency does not depend on trained weights)",
            "bytes": sizes,
        },
        "calibration": calibration_source,
        "tensor_arena_bytes": arena["bytes"],
        "export_s": export_s,
        "min_run_time_s": min_run_time,
        "batch": 1,
        "threads": 1,
        "timed": "median wall time of one call on one prepared clip: PyTorch model(x) (no_grad, eval; "
        "latency_ms's random input); ONNX Runtime session.run; "
        "LiteRT and tflite-micro interpreter.invoke() with the input already set (no tensor copies or quantization)",
    }


def config_data(path: str) -> dict:
    """The ``data:`` section of a `fit` YAML, as SpeechCommandsDataModule's keyword arguments."""
    import yaml

    try:
        data = (yaml.safe_load(Path(path).read_text()) or {}).get("data") or {}
    except (OSError, yaml.YAMLError) as err:
        raise SystemExit(f"error: --config {path}: {err}")
    return {key: value for key, value in data.items() if key not in ("download",)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m kws bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="data/synthetic", help="corpus (generated there when missing)")
    parser.add_argument("--frontend", default="micro", choices=["micro", "mfcc"])
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument(
        "--config",
        default=None,
        help="take the data options (augmentation included) from this YAML's data: section, e.g. conf.yaml; "
        "default: the data module's defaults (time shift and background noise only)",
    )
    parser.add_argument("--tf_batches", type=int, default=10, help="batches timed of the slow per-clip TF-op pipeline")
    parser.add_argument(
        "--min_run_time",
        type=float,
        default=DEFAULT_MIN_RUN_TIME,
        help="seconds of timed single-clip inferences per runtime (median reported)",
    )
    parser.add_argument("--feature_clips", type=int, default=1000, help="clips featurized per front end and device")
    parser.add_argument("--skip_training", action="store_true", help="skip the training throughput (and the targets)")
    parser.add_argument("--skip_features", action="store_true", help="skip the feature extraction speed")
    parser.add_argument(
        "--skip_runtimes", action="store_true", help="skip the per-runtime model latency (and its ONNX/TFLite export)"
    )
    parser.add_argument("--skip_listen", action="store_true", help="skip listen's peak memory on a long recording")
    parser.add_argument(
        "--listen_minutes", type=float, default=60.0, help="length of the recording listen's memory is measured on"
    )
    parser.add_argument("--out", default="runs/bench.json")
    args = parser.parse_args(argv)
    for name in ("batch_size", "tf_batches", "feature_clips"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.min_run_time <= 0:
        parser.error(f"--min_run_time must be > 0 seconds, got {args.min_run_time}")

    from datamodules import SpeechCommandsDataModule

    torch.manual_seed(0)
    data = config_data(args.config) if args.config else {}
    data.update(data_dir=args.data_dir, synthetic=True, batch_size=args.batch_size, num_workers=args.num_workers)
    data["features"] = {**(data.get("features") or {}), "frontend": args.frontend}
    dm = SpeechCommandsDataModule(**data)
    dm.prepare_data()
    dm.setup()
    results = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "settings": vars(args),
    }
    if not args.skip_training:
        results["training"] = bench_training(dm, args.tf_batches)
        results["targets"] = targets(results["training"])
    if not args.skip_features:
        results["features"] = bench_features(args.feature_clips)
    if not args.skip_runtimes:
        calibration, _ = dm.split_features("training", clips=200)  # real training features, no augmentation
        results["runtimes"] = bench_runtimes(
            tuple(dm.input_shape), len(dm.labels), calibration, min_run_time=args.min_run_time
        )
        results["runtimes"]["calibration"] = f"{len(calibration)} training clips of {args.data_dir} (no augmentation)"

    if not args.skip_listen:
        from kws.tools.bench_memory import bench_listen_memory

        results["listen_memory"] = bench_listen_memory(args.listen_minutes)

    if "training" in results:
        tr = results["training"]
        print(
            f"\nTraining throughput ({args.frontend} front end, batch {args.batch_size}, "
            f"{results['machine']['cores']} cores, {results['machine']['torch_threads']} torch threads):"
        )
        print("| pipeline | samples/s | epoch of {:,} clips | waiting for data |".format(tr["epoch_samples"]))
        print("|---|---:|---:|---:|")
        for key, name in (
            ("model_step", "TinyConv step alone (features in memory)"),
            ("kws", "kws: cache, background augmentation + C front end"),
            ("tf_op_per_clip", "per-clip TF op in the DataLoader (the starter's)"),
        ):
            r = tr[key]
            print(
                f"| {name} | {r['samples_per_s']:,.0f} | {tr['epoch_samples'] / r['samples_per_s']:.1f} s | "
                f"{100 * r['data_wait']:.0f} % |"
            )
    if "features" in results:
        print("\nFeature extraction (clips/s, batches of 100):")
        for key, value in results["features"].items():
            print(f"  {key}: {value:.0f}")
    if "runtimes" in results:
        rt = results["runtimes"]
        print(
            f"\nModel latency (TinyConv {rt['model']['input_shape'][0]}x{rt['model']['input_shape'][1]} -> "
            f"{rt['model']['num_classes']}, "
            f"fresh seeded weights; batch 1, 1 thread, median over {rt['min_run_time_s']} s of calls):"
        )
        print("| runtime | ms / inference |")
        print("|---|---:|")
        for key, value in rt["ms_per_inference"].items():
            print(f"| {RUNTIME_LABELS[key]} | {value:.3f} |")
        print(f"Timed: {rt['timed']}.")
        print(
            f"int8 calibration: {rt['calibration']}; tflite-micro arena {rt['tensor_arena_bytes']:,} bytes; "
            f"export took {rt['export_s']:.1f} s"
        )
    if "targets" in results:
        print("\nTargets (reported, not asserted):")
        print("| target | measured | met? |")
        print("|---|---:|:---:|")
        units = {
            "vs_tf_op_per_clip": lambda v: f"{v:.1f}x",
            "vs_model_step": lambda v: f"{100 * v:.0f} %",
            "data_wait": lambda v: f"{100 * v:.0f} %",
            "recipe_s": lambda v: f"{v:.0f} s",
        }
        for key, t in results["targets"].items():
            print(f"| {t['target']} | {units[key](t['measured'])} | {'yes' if t['met'] else 'NO'} |")
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
