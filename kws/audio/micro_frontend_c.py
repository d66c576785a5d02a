"""The firmware's own C micro front end (``firmware/micro_frontend.c``), as the front end of
training on CPUs: one source for the board and for training, bit-exact by construction.

``pip install -e .`` (``make install``) compiles it into ``kws/audio/_micro_frontend_lib*.so``
(setup.py) with the default front end's tables; it runs ``MicroFrontendProcessBatch``, which
processes 32 clips in lock-step vector lanes (about 25,000 to 47,000 one-second clips per second
per core, against about 900 for the PyTorch port). Calls go through ctypes, which releases the
GIL, so a batch is split over threads.

:class:`kws.audio.micro_frontend.MicroFrontend` uses it for CPU tensors when it was built for the
same configuration, after checking that it gives the PyTorch port's output on a probe; otherwise
(a GPU, another configuration, no compiler at install time) the PyTorch port runs.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
from concurrent.futures import ThreadPoolExecutor
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import numpy as np

from kws.audio.micro_tables import MicroFrontendConfig

LIBRARY_STEM = "_micro_frontend_lib"
# sha256 of the default front end's values and final states on probe(): what the PyTorch port
# computes (tests/audio/test_micro_frontend_c.py checks it), so the library can be checked
# against the reference without loading PyTorch. Changing the front end changes it: the test says
# what to write here.
PROBE_SHA256 = "1d9b918e7ef164ae71b553a07ec9d1d5b173187c9b34219a512d98c4ae400b48"
INFO_FIELDS = (
    "sample_rate",
    "window_samples",
    "stride_samples",
    "num_channels",
    "fft_size",
    "enable_pcan",
    "enable_log",
    "lanes",
    "smoothing_bits",
)


def library_path() -> Path | None:
    """The built library, if the installation compiled it."""
    folder = Path(__file__).resolve().parent
    for suffix in EXTENSION_SUFFIXES:
        if (folder / f"{LIBRARY_STEM}{suffix}").is_file():
            return folder / f"{LIBRARY_STEM}{suffix}"
    return None


@functools.cache
def load_library() -> ctypes.CDLL | None:
    path = library_path()
    if path is None:
        return None
    lib = ctypes.CDLL(str(path))
    lib.MicroFrontendProcessBatch.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_size_t,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.MicroFrontendProcessBatch.restype = ctypes.c_size_t
    lib.MicroFrontendBuildInfo.argtypes = [ctypes.c_void_p]
    lib.MicroFrontendBuildInfo.restype = None
    return lib


@functools.cache
def build_info() -> dict[str, int] | None:
    """The configuration the library was compiled for (None: no library)."""
    lib = load_library()
    if lib is None:
        return None
    out = np.zeros(len(INFO_FIELDS), np.int64)
    lib.MicroFrontendBuildInfo(out.ctypes.data)
    return dict(zip(INFO_FIELDS, map(int, out)))


def matches(cfg: MicroFrontendConfig) -> bool:
    """Whether the library was built for ``cfg``'s framing and stages (the tables themselves are
    checked on a probe by MicroFrontend before use)."""
    info = build_info()
    return info is not None and (
        info["sample_rate"],
        info["window_samples"],
        info["stride_samples"],
        info["num_channels"],
        info["fft_size"],
        bool(info["enable_pcan"]),
        bool(info["enable_log"]),
        info["smoothing_bits"],
    ) == (
        cfg.sample_rate,
        cfg.window_samples,
        cfg.stride_samples,
        cfg.num_channels,
        cfg.fft_size,
        cfg.enable_pcan,
        cfg.enable_log,
        cfg.smoothing_bits,
    )


def probe() -> tuple[np.ndarray, np.ndarray]:
    """int16 audio [4, 2 s] (silence, quiet, speech-level and clipping noise) and noise
    estimates to start from: the values a library and the reference must agree on."""
    rng = np.random.default_rng(0)
    audio = (
        (rng.standard_normal((4, 32000)) * np.array([[0.0], [30.0], [3000.0], [40000.0]]))
        .clip(-32768, 32767)
        .astype(np.int16)
    )
    return audio, rng.integers(0, 2**24, (4, MicroFrontendConfig().num_channels)).astype(np.uint32)


def digest(values: np.ndarray, estimates: np.ndarray) -> str:
    return hashlib.sha256(
        np.ascontiguousarray(values, np.uint16).tobytes() + np.ascontiguousarray(estimates, np.uint32).tobytes()
    ).hexdigest()


@functools.cache
def usable(cfg: MicroFrontendConfig) -> bool:
    """Whether the library is built, for ``cfg``, and computes the reference's values on probe()."""
    if not matches(cfg) or cfg != MicroFrontendConfig():
        return False
    return digest(*process_batch(*probe())) == PROBE_SHA256


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="kws-micro-frontend")


def process_batch(
    audio: np.ndarray, state: np.ndarray | None = None, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(values uint16 [clips, frames, channels], noise estimates uint32 [clips, channels] after the
    last frame) of int16 ``audio`` [clips, samples], each clip starting from its row of ``state``
    (None: fresh). The batch is split over ``threads`` threads in multiples of the vector lanes."""
    lib, info = load_library(), build_info()
    if lib is None:
        raise RuntimeError("the C micro front end library is not built; reinstall kws with a C compiler (make install)")
    audio = np.ascontiguousarray(audio, np.int16)
    clips, samples = audio.shape
    channels = info["num_channels"]
    frames = (
        1 + (samples - info["window_samples"]) // info["stride_samples"] if samples >= info["window_samples"] else 0
    )
    if frames == 0:
        raise ValueError(
            f"micro front end: clips of {samples} samples are shorter than one {info['window_samples']}-sample window"
        )
    estimates = (
        np.zeros((clips, channels), np.uint32) if state is None else np.array(state, np.uint32, order="C", copy=True)
    )
    values = np.empty((clips, frames, channels), np.uint16)
    lanes = info["lanes"]
    per_thread = max(lanes, math.ceil(clips / max(1, threads) / lanes) * lanes)
    starts = range(0, clips, per_thread)

    def run(start: int) -> None:
        stop = min(clips, start + per_thread)
        lib.MicroFrontendProcessBatch(
            audio[start:].ctypes.data, stop - start, samples, estimates[start:].ctypes.data, values[start:].ctypes.data
        )

    if len(starts) == 1:
        run(0)
    else:
        list(_pool(threads).map(run, starts))
    return values, estimates
