"""A recording as the board hears it, in bounded memory: audio arrives in blocks, the front end
runs over it with its state carried from block to block (as the firmware's feature provider
does, never restarted), and every ``stride_ms`` the last 1 s of frames is one window for the
model. Blocks of any size give the same windows as the whole recording at once.

Used by ``python -m kws listen`` and the stream test, whatever the recording's length: only a
block of audio, one window of frames and a batch of windows are ever held.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np

from kws.audio import micro_frontend_c
from kws.audio.settings import MICRO_FEATURE_SCALE, FeatureSettings
from kws.streams.recognize import DEFAULT_RECOGNIZER

Classifier = Callable[[np.ndarray], np.ndarray]  # flat features [n, frames * features] -> probabilities [n, classes]
STRIDE_MS = DEFAULT_RECOGNIZER.inference_stride_ms


class StreamingFeatures:
    """Feature frames of a stream fed in blocks of int16 samples of any length.

    The micro front end runs as the firmware's C code when the installed library is built for
    these settings (numpy only: listening with an int8 model never loads PyTorch), else as the
    PyTorch front end; both give the same values."""

    def __init__(self, settings: FeatureSettings):
        self.settings = settings
        self.c_frontend = settings.frontend == "micro" and micro_frontend_c.usable(settings.micro_config())
        self.frontend = None if self.c_frontend else _torch_frontend(settings)
        self.pending = np.zeros(0, np.int16)  # samples not yet consumed by a whole frame step
        self.state = None  # the front end's state after the last frame
        self.frames_done = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """The frames [n, num_features] completed by ``samples`` (possibly none)."""
        s = self.settings
        audio = np.concatenate([self.pending, np.asarray(samples, np.int16)])
        if len(audio) < s.window_samples:
            self.pending = audio
            return np.zeros((0, s.num_features), np.float32)
        count = 1 + (len(audio) - s.window_samples) // s.stride_samples
        used = (count - 1) * s.stride_samples + s.window_samples
        features = self._features(audio[None, :used])
        self.pending = audio[count * s.stride_samples :]
        self.frames_done += count
        return features[0]

    def _features(self, audio: np.ndarray) -> np.ndarray:
        if self.c_frontend:
            values, self.state = micro_frontend_c.process_batch(audio, self.state)
            return values.astype(np.float32) * np.float32(MICRO_FEATURE_SCALE)  # as MicroFeatures scales in float32
        import torch

        with torch.no_grad():
            features, self.state = self.frontend.forward_with_state(
                torch.from_numpy(np.ascontiguousarray(audio)), self.state
            )
        return features.numpy()


def _torch_frontend(settings: FeatureSettings):
    from kws.audio.features import build_frontend  # PyTorch: only where the C front end cannot run

    return build_frontend(settings)


class WindowStream:
    """Every ``stride_ms``, the last ``num_frames`` frames as one flat window, with its time: the
    end of its last frame in ms from the start, the first window being the first full one."""

    def __init__(self, settings: FeatureSettings, stride_ms: int = STRIDE_MS):
        if stride_ms <= 0 or stride_ms % settings.stride_ms:
            raise ValueError(
                f"stride_ms must be a positive multiple of the {settings.stride_ms} ms frame step, got {stride_ms}"
            )
        self.settings, self.step = settings, stride_ms // settings.stride_ms
        self.recent = np.zeros((0, settings.num_features), np.float32)  # the last num_frames - 1 frames
        self.next_frame = 0  # global index of the next frame pushed

    def push(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(windows [n, frames * features], end times ms [n]) completed by ``frames``."""
        s = self.settings
        n = s.num_frames
        held = np.concatenate([self.recent, frames.astype(np.float32)])
        first = self.next_frame - len(self.recent)  # global index of held[0]
        last = self.next_frame + len(frames) - 1
        start = max(n - 1, self.next_frame)  # the first end not yet emitted ...
        start += (-(start - (n - 1))) % self.step  # ... on the stride grid n - 1, n - 1 + step, ...
        ends = np.arange(start, last + 1, self.step)
        x = (
            np.stack([held[e - first - n + 1 : e - first + 1].reshape(-1) for e in ends])
            if len(ends)
            else np.zeros((0, n * s.num_features), np.float32)
        )
        self.recent = held[max(0, len(held) - (n - 1)) :] if n > 1 else held[:0]
        self.next_frame = last + 1
        times = (ends * s.stride_samples + s.window_samples) * 1000 // s.sample_rate
        return x, times


def stream_windows(
    blocks: Iterable[np.ndarray], settings: FeatureSettings, stride_ms: int = STRIDE_MS
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(windows, end times) block by block over a stream of int16 sample blocks."""
    features, windows = StreamingFeatures(settings), WindowStream(settings, stride_ms)
    for block in blocks:
        x, t = windows.push(features.push(block))
        if len(t):
            yield x, t


def stream_scores(
    blocks: Iterable[np.ndarray], classify: Classifier, settings: FeatureSettings, stride_ms: int = STRIDE_MS
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(class probabilities [n, classes], window end times ms [n]) block by block."""
    for x, t in stream_windows(blocks, settings, stride_ms):
        yield classify(x), t


def blocks_of(audio: np.ndarray, block_samples: int = 16000 * 10) -> Iterator[np.ndarray]:
    """An in-memory recording as consecutive blocks (what a file reader yields)."""
    for start in range(0, len(audio), block_samples):
        yield audio[start : start + block_samples]
