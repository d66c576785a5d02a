"""``make bench``'s training throughput: kws's pipeline against the model step alone and against
the pipeline people used before, measured back to back in one run on this machine.

- ``model_step``: TinyConv forward + backward + Adam on features already in memory: the limit.
- ``kws``: the training loader as ``fit`` runs it on a CPU: batches gathered from the int16
  cache, augmentation (time shift, background noise) and the firmware's C front end in the
  background thread (:class:`datamodules.prefetch.BackgroundFeatures`), the model step in this
  one; one epoch.
- ``tf_op_per_clip``: the assignment starter's and TensorFlow speech_commands recipe's pipeline:
  a ``Dataset`` whose ``__getitem__`` reads the clip's WAV file, shifts it and mixes noise in
  numpy, and runs TensorFlow's ``audio_microfrontend`` op on it; a ``DataLoader`` batches it.

Every pipeline times the same model step; "data wait" is the time the training loop spends
waiting for its next batch. Targets are reported, never asserted.
"""

from __future__ import annotations

import os
import time
from typing import Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TARGET_VS_TF_OP = 10.0  # kws samples/s over the per-clip TF-op pipeline's
TARGET_VS_MODEL_STEP = 0.60  # of the model-step-only samples/s
TARGET_DATA_WAIT = 0.30  # of the training loop's time
RECIPE_EPOCHS, RECIPE_CLIPS = 50, 10_500  # TensorFlow speech_commands' recipe for micro_speech
TARGET_RECIPE_S = 120.0


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable) -> dict:
    """Run one training step per (features, labels) batch: samples/s and the share of the time
    spent waiting for batches."""
    loss_fn = torch.nn.CrossEntropyLoss()
    samples, waited = 0, 0.0
    start = tick = time.perf_counter()
    for x, y in batches:
        waited += time.perf_counter() - tick
        optimizer.zero_grad()
        loss_fn(model(x.reshape(len(y), -1)), y).backward()
        optimizer.step()
        samples += len(y)
        tick = time.perf_counter()
    seconds = time.perf_counter() - start
    return {"samples": samples, "seconds": seconds, "samples_per_s": samples / seconds, "data_wait": waited / seconds}


def _model(dm) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    from kws.models import TinyConv

    torch.manual_seed(0)
    model = TinyConv(dm.input_shape, len(dm.labels))
    return model, torch.optim.Adam(model.parameters(), 1e-3)


def bench_model_step(dm) -> dict:
    """The model step alone, on one epoch's worth of batches of random features."""
    model, optimizer = _model(dm)
    n, batch = len(dm.splits["training"]), dm.hparams.batch_size
    x = torch.rand(batch, *dm.input_shape) * 26
    y = torch.randint(len(dm.labels), (batch,))
    train_steps(model, optimizer, [(x, y)] * 3)  # warm-up
    return train_steps(model, optimizer, [(x, y)] * (n // batch))


def bench_kws(dm) -> dict:
    """One epoch of kws's CPU training pipeline (the background features of fit)."""
    from datamodules.prefetch import BackgroundFeatures

    model, optimizer = _model(dm)
    loader = dm._loader("training", shuffle=True)
    train_steps(model, optimizer, BackgroundFeatures([next(iter(loader))], dm._training_features, lambda: 0))  # warm-up
    return train_steps(model, optimizer, BackgroundFeatures(loader, dm._training_features, lambda: 0))


class TFOpPerClip(Dataset):
    """The starter's pipeline: read, shift, mix noise (numpy) and TF's micro front end op, per clip."""

    def __init__(self, dm):
        import tensorflow as tf
        from tensorflow.lite.experimental.microfrontend.python.ops import audio_microfrontend_op

        if tf.config.list_physical_devices("GPU"):
            tf.config.set_visible_devices([], "GPU")  # leave the GPU to PyTorch
        self.tf, self.op, self.dm = tf, audio_microfrontend_op, dm
        data, files = dm.splits["training"], dm.cache_files
        self.items = [(files[r] if r >= 0 else None, int(label)) for r, label in zip(data.rows, data.labels)]
        self.noise = dm.noise.bank.numpy()
        self.rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from kws.audio.wav import read_wav

        s, hp = self.dm.features, self.dm.augment
        path, label = self.items[i]
        clip = np.zeros(s.clip_samples, np.float32)
        if path is not None:
            samples = read_wav(self.dm.data_dir / path, s.sample_rate)[0].astype(np.float32) / 32768
            clip[: len(samples)] = samples[: s.clip_samples]
        max_shift = int(hp.time_shift_ms * s.sample_rate / 1000)
        shift = int(self.rng.integers(-max_shift, max_shift + 1))
        clip = np.roll(clip, shift)
        if shift > 0:
            clip[:shift] = 0
        elif shift < 0:
            clip[shift:] = 0
        start = int(self.rng.integers(len(self.noise) - s.clip_samples))
        volume = self.rng.uniform(0, hp.background_volume) if self.rng.random() < hp.background_frequency else 0.0
        clip = np.clip(clip + volume * self.noise[start : start + s.clip_samples] / 32768, -1, 1)
        audio = self.tf.constant((clip * 32767).astype(np.int16))
        features = self.op.audio_microfrontend(
            audio,
            sample_rate=s.sample_rate,
            window_size=s.window_ms,
            window_step=s.stride_ms,
            num_channels=s.num_features,
            out_scale=1,
            out_type=self.tf.float32,
        )
        return torch.from_numpy(features.numpy() * (10.0 / 256.0)), label


def bench_tf_op_per_clip(dm, batches: int) -> dict:
    """``batches`` batches of the per-clip TF-op pipeline (it is slow: not a whole epoch)."""
    model, optimizer = _model(dm)
    loader = DataLoader(
        TFOpPerClip(dm), batch_size=dm.hparams.batch_size, shuffle=True, num_workers=dm.hparams.num_workers
    )
    it = iter(loader)
    train_steps(model, optimizer, [next(it)])  # warm-up (TensorFlow's first call builds the op)
    return train_steps(model, optimizer, (batch for _, batch in zip(range(batches), it)))


def bench_training(dm, tf_batches: int = 10) -> dict:
    results = {
        "model_step": bench_model_step(dm),
        "kws": bench_kws(dm),
        "tf_op_per_clip": bench_tf_op_per_clip(dm, tf_batches),
    }
    results["epoch_samples"] = len(dm.splits["training"])
    return results


def targets(training: dict) -> dict:
    """The issue's targets against the measured numbers (reported, not asserted)."""
    kws, step, tf = training["kws"], training["model_step"], training["tf_op_per_clip"]
    recipe_s = RECIPE_EPOCHS * RECIPE_CLIPS / kws["samples_per_s"]
    rows = {
        "vs_tf_op_per_clip": (
            kws["samples_per_s"] / tf["samples_per_s"],
            f">= {TARGET_VS_TF_OP:.0f}x the per-clip TF-op pipeline's samples/s",
            TARGET_VS_TF_OP,
            True,
        ),
        "vs_model_step": (
            kws["samples_per_s"] / step["samples_per_s"],
            f">= {100 * TARGET_VS_MODEL_STEP:.0f} % of the model step's samples/s",
            TARGET_VS_MODEL_STEP,
            True,
        ),
        "data_wait": (
            kws["data_wait"],
            f"< {100 * TARGET_DATA_WAIT:.0f} % of the step waiting for data",
            TARGET_DATA_WAIT,
            False,
        ),
        "recipe_s": (
            recipe_s,
            f"< {TARGET_RECIPE_S:.0f} s for {RECIPE_EPOCHS} epochs x {RECIPE_CLIPS:,} clips (projected)",
            TARGET_RECIPE_S,
            False,
        ),
    }
    return {
        name: {"target": text, "measured": value, "met": bool(value >= bound if higher else value < bound)}
        for name, (value, text, bound, higher) in rows.items()
    }
