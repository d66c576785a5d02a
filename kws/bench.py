"""``make bench``: training throughput of the data pipeline plus model, against a per-sample
baseline, and feature extraction speed per front end -- in one run on this machine.

The framework path is the real one: batches gathered from the int16 cache, augmentation and
features on the device in ``on_after_batch_transfer``, TinyConv forward/backward/Adam step.
The baseline is the textbook alternative: a ``Dataset`` whose ``__getitem__`` reads the WAV
file, augments it and computes its features, batched by a ``DataLoader``. Both run the same
model step and the same front end. Results are printed and written as JSON for comparing
versions. Nothing here is a test: targets are reported, not asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from kws.audio import read_wav

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


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
    from kws.features import FeatureSettings, build_frontend

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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m kws.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="data/synthetic", help="corpus (generated there when missing)")
    parser.add_argument("--frontend", default="micro", choices=["micro", "mfcc"])
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--baseline_batches", type=int, default=10, help="batches timed for the slow per-sample baseline")
    parser.add_argument("--out", default="runs/bench.json")
    args = parser.parse_args(argv)

    from datamodules import SpeechCommandsDataModule

    torch.manual_seed(0)
    dm = SpeechCommandsDataModule(data_dir=args.data_dir, synthetic=True, frontend=args.frontend, batch_size=args.batch_size, num_workers=args.num_workers)
    dm.prepare_data()
    dm.setup()
    results = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "settings": vars(args),
        "training": bench_training(dm, args.baseline_batches),
        "features": bench_features(),
    }
    tr = results["training"]
    print(f"\nTraining throughput ({args.frontend} front end, batch {args.batch_size}, {results['machine']['cores']} cores):")
    print(f"| pipeline | samples/s | epoch ({tr['framework']['epoch_samples']} clips) | time in data |")
    print("|---|---:|---:|---:|")
    for name, key in (("kws (cache + on-device features)", "framework"), ("per-sample Dataset baseline", "baseline_per_sample")):
        r = tr[key]
        print(f"| {name} | {r['samples_per_s']:.0f} | {r['epoch_s']:.1f} s | {100 * r['data_fraction']:.0f} % |")
    print(f"Speed-up: {tr['speedup']:.1f}x")
    print("\nFeature extraction (clips/s, batches of 100):")
    for key, value in results["features"].items():
        print(f"  {key}: {value:.0f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nWritten to {out}")
    return results


if __name__ == "__main__":
    main()
