"""Decode a corpus once into a memory-mapped int16 array ``[clips, samples]``.

Training then gathers whole batches from this array with one fancy-index per batch; nothing
decodes audio per sample during training. The cache is keyed by the file list (with sizes and
modification times) and the decoding settings, built by one process at a time (a file lock in the
cache folder), written to a temporary file and renamed into place, so several processes (DDP
ranks, SLURM tasks, nodes sharing the folder) can start at once safely and decode only once.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from kws.audio.wav import DATA_RATE_FIX, AudioError, read_wav, resample_int16, wrong_rate_message

CACHE_VERSION = 2  # 2: the metadata carries a digest of its row order (rows_digest)


@dataclass
class DecodeReport:
    """What decoding did to the corpus: nothing is dropped without being counted here."""

    decoded: int = 0
    padded: int = 0  # shorter than a clip: zero-padded at the end (as the reference recipe)
    cropped: int = 0  # longer than a clip: first clip_samples kept
    resampled: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # relative path -> reason

    def summary(self) -> str:
        text = (
            f"decoded {self.decoded} clips ({self.padded} zero-padded to 1 clip, {self.cropped} cropped, "
            f"{self.resampled} resampled)"
        )
        if self.skipped:
            first = "; ".join(f"{k}: {v}" for k, v in list(self.skipped.items())[:5])
            text += f", skipped {len(self.skipped)} unreadable: {first}" + (" ..." if len(self.skipped) > 5 else "")
        return text


def rows_digest(files: list[str]) -> str:
    """A digest of the cache's rows, in order: row i holds files[i]. Stored beside the list so
    an edited or reordered list (rows mapped to the wrong files) is caught, not trusted."""
    return hashlib.sha1("\n".join(files).encode()).hexdigest()


def _in_order(kept: list[str], requested: list[str]) -> bool:
    """Whether ``kept`` is ``requested`` with some files left out, in the same order."""
    remaining = iter(requested)
    return all(any(f == r for r in remaining) for f in kept)


def cache_key(root: Path, files: list[str], sample_rate: int, clip_samples: int, resample: bool) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION} {sample_rate} {clip_samples} {resample}".encode())
    for rel in files:
        st = (root / rel).stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load_or_build_cache(
    root: Path,
    files: list[str],
    cache_dir: Path,
    sample_rate: int,
    clip_samples: int,
    resample: bool = False,
    skip_bad_files: bool = False,
    workers: int | None = None,
) -> tuple[np.ndarray, list[str], DecodeReport]:
    """Return ``(audio memmap [n, clip_samples] int16, files kept, report)``, decoding if needed.
    A cache that cannot be read (a truncated .npy, a corrupt .json) is rebuilt, with a warning
    naming it."""
    key = cache_key(root, files, sample_rate, clip_samples, resample)
    data_path, meta_path = cache_dir / f"audio-{key}.npy", cache_dir / f"audio-{key}.json"
    cached = _read(data_path, meta_path, files, clip_samples)
    if cached is None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OSError(
                f"cannot create the audio cache folder {cache_dir} ({err}); set data.cache_dir to a writable folder"
            ) from err
        # One builder per cache folder: processes starting together (ranks, jobs, nodes sharing
        # the folder) wait here, then find the finished cache.
        with FileLock(cache_dir / f"audio-{key}.lock"):
            cached = _read(data_path, meta_path, files, clip_samples)
            if cached is None:
                _remove_stale_temporaries(cache_dir)
                _build(root, files, data_path, meta_path, sample_rate, clip_samples, resample, skip_bad_files, workers)
                cached = _read(data_path, meta_path, files, clip_samples)
        if cached is None:
            raise OSError(
                f"the audio cache {data_path} cannot be read back after building it; "
                f"delete {cache_dir} and check the disk"
            )
    audio, meta = cached
    report = DecodeReport(**meta["report"])
    if report.skipped and not skip_bad_files:
        raise AudioError(
            f"{len(report.skipped)} unreadable clips in the cache (e.g. {next(iter(report.skipped.items()))}); "
            "fix them or set skip_bad_files: true"
        )
    return audio, meta["files"], report


def _read(data_path: Path, meta_path: Path, requested: list[str], clip_samples: int) -> tuple[np.ndarray, dict] | None:
    """The cache's audio (memory-mapped) and metadata; None when absent. A damaged cache (killed
    while written by another tool, a full disk, an edit such as a reordered file list) is
    deleted so that it is rebuilt."""
    if not (data_path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        audio = np.load(data_path, mmap_mode="r")
        if (
            audio.dtype != np.int16
            or audio.ndim != 2
            or audio.shape[1] != clip_samples
            or len(audio) != len(meta["files"])
            or len(audio) > len(requested)
        ):
            raise ValueError(
                f"holds {audio.dtype} {audio.shape}, expected int16 [{len(meta['files'])}, {clip_samples}]"
            )
        if meta.get("rows_digest") != rows_digest(meta["files"]) or not _in_order(meta["files"], requested):
            raise ValueError(
                "its file list does not match its rows (edited or reordered), so rows would map to the wrong files"
            )
        DecodeReport(**meta["report"])
        return audio, meta
    except (OSError, ValueError, KeyError, TypeError, EOFError) as err:
        warnings.warn(
            f"the audio cache {data_path} (with {meta_path.name}) is damaged ({err}); deleting it and decoding again"
        )
        for path in (data_path, meta_path):
            path.unlink(missing_ok=True)
        return None


def _remove_stale_temporaries(cache_dir: Path) -> None:
    """Delete partial caches left by builders that were killed (``audio-<key>.<pid>.tmp*.npy``,
    ``.tmp`` metadata): their process is gone, so nobody will finish or rename them."""
    for path in cache_dir.glob("audio-*.*.tmp*"):
        pid = path.name.split(".")[1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except PermissionError:
            pass  # a live process of another user


def _decode(path: Path, sample_rate: int, clip_samples: int, resample: bool) -> tuple[np.ndarray, str]:
    samples, rate = read_wav(path)
    note = ""
    if rate != sample_rate:
        if not resample:
            raise AudioError(wrong_rate_message(path, rate, sample_rate, DATA_RATE_FIX))
        samples, note = resample_int16(samples, rate, sample_rate), "resampled "
    if len(samples) < clip_samples:
        return np.pad(samples, (0, clip_samples - len(samples))), note + "padded"
    if len(samples) > clip_samples:
        return samples[:clip_samples], note + "cropped"
    return samples, note


def _build(root, files, data_path, meta_path, sample_rate, clip_samples, resample, skip_bad_files, workers) -> None:
    cache_dir = data_path.parent
    tmp = data_path.with_suffix(f".{os.getpid()}.tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16, shape=(len(files), clip_samples))
    report = DecodeReport()
    kept = np.ones(len(files), bool)

    def work(i: int):
        try:
            return i, *_decode(root / files[i], sample_rate, clip_samples, resample), None
        except AudioError as err:
            return i, None, "", err

    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        for i, samples, note, err in tqdm(
            pool.map(work, range(len(files))), total=len(files), desc=f"Decoding audio into {cache_dir}", unit="clip"
        ):
            if err is not None:
                if not skip_bad_files:
                    tmp.unlink(missing_ok=True)
                    raise AudioError(
                        f"{err}\n(or set data.skip_bad_files: true to leave such files out; "
                        "they are counted and listed)"
                    ) from err
                report.skipped[files[i]] = str(err)
                kept[i] = False
                continue
            out[i] = samples
            report.decoded += 1
            report.padded += "padded" in note
            report.cropped += "cropped" in note
            report.resampled += "resampled" in note
    out.flush()
    del out
    if not kept.all():  # compact: drop the rows of skipped files
        full = np.load(tmp, mmap_mode="r")
        compact = data_path.with_suffix(f".{os.getpid()}.tmp2.npy")
        np.save(compact, full[kept])
        del full
        os.replace(compact, tmp)
    kept_files = [f for f, k in zip(files, kept) if k]
    meta = {"files": kept_files, "rows_digest": rows_digest(kept_files), "report": report.__dict__}
    meta_tmp = meta_path.with_suffix(f".{os.getpid()}.tmp")
    meta_tmp.write_text(json.dumps(meta))
    os.replace(tmp, data_path)  # data first, then the metadata that marks it complete
    os.replace(meta_tmp, meta_path)
