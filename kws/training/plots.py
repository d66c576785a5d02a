"""Figures for looking at clips and results: a clip's features, a confusion matrix, training curves.

Figures are built as bare ``matplotlib.figure.Figure`` objects and written with the Agg
renderer, never through pyplot, so nothing needs a display and no global figure state leaks
between calls. Each ``plot_*`` function has a ``*_figure`` twin that returns the Figure
unsaved, for notebooks and tests.
"""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torchaudio
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kws.audio.features import MICRO_FEATURE_SCALE, FeatureSettings, build_frontend
from kws.audio.micro_tables import MicroFrontendConfig
from kws.audio.wav import read_wav, resample_int16

DPI = 100
TOP_DB = 80.0  # dynamic range shown in the dB panels


def plot_features(wav_path: str | Path, out_path: str | Path, settings: FeatureSettings | None = None) -> Path:
    """Write one PNG with a clip's waveform, spectrum, spectrogram, mel spectrogram, MFCC and
    micro front end features (what the model sees with ``frontend: micro``).

    The clip is resampled to ``settings.sample_rate`` if needed, and zero-padded to one window
    if shorter. Raises :class:`kws.audio.wav.AudioError` for clips that cannot be used (stereo,
    unreadable, empty) and ``OSError`` if ``out_path`` cannot be written.
    """
    return _save(features_figure(wav_path, settings), out_path)


def features_figure(wav_path: str | Path, settings: FeatureSettings | None = None) -> Figure:
    """The figure :func:`plot_features` writes."""
    settings = settings or FeatureSettings()
    wav_path = Path(wav_path)
    sr = settings.sample_rate
    # read_wav(path, sr, resample=True) would do the same resampling but hide the file's own rate,
    # which the title reports.
    samples, file_rate = read_wav(wav_path)
    if file_rate != sr:
        samples = resample_int16(samples, file_rate, sr)
    num_samples = len(samples)
    samples = np.pad(samples, (0, max(0, settings.window_samples - num_samples)))
    audio = torch.from_numpy(samples)[None]  # int16 [1, T], the front ends' input
    wave = audio.to(torch.float32) / 32768.0  # full scale = 1.0

    title = f"{wav_path.name}: {num_samples / sr:.3f} s at {sr} Hz"
    if file_rate != sr:
        title += f" (resampled from {file_rate} Hz)"
    if len(samples) > num_samples:
        title += f", zero-padded to one {settings.window_ms} ms window"
    title += f"; frames: {settings.window_ms} ms window, {settings.stride_ms} ms stride"

    fig = Figure(figsize=(14, 12), dpi=DPI, layout="constrained")
    fig.suptitle(title)
    ax_wave, ax_spectrum, ax_stft, ax_mel, ax_mfcc, ax_micro = fig.subplots(3, 2).flat

    t = np.arange(len(samples)) / sr
    ax_wave.plot(t, wave[0].numpy(), linewidth=0.5)
    ax_wave.set(title="Waveform", xlabel="time (s)", ylabel="amplitude (full scale = 1)", xlim=(0, t[-1]), ylim=(-1, 1))

    # One Hann-windowed FFT over the whole clip.
    whole = torchaudio.transforms.Spectrogram(n_fft=len(samples), center=False, power=1)(wave)[0]  # [freq, 1]
    freqs = np.fft.rfftfreq(len(samples), 1 / sr)
    ax_spectrum.plot(freqs, _dbfs(whole, len(samples), power=1)[:, 0].numpy(), linewidth=0.5)
    ax_spectrum.set(
        title="Magnitude spectrum of the whole clip", xlabel="frequency (Hz)", ylabel="level (dBFS)", xlim=(0, sr / 2)
    )

    # n_fft = window length keeps each STFT frame on the same samples as the front ends' frames.
    frame_kwargs = dict(n_fft=settings.window_samples, hop_length=settings.stride_samples, center=False)
    stft = torchaudio.transforms.Spectrogram(power=2, **frame_kwargs)(wave)[0]
    extent = _frame_extent(stft.shape[-1], settings)
    _image(
        fig,
        ax_stft,
        _dbfs(stft, settings.window_samples, power=2),
        extent + (0, sr / 2),
        "Spectrogram (STFT)",
        "frequency (Hz)",
        "level (dBFS)",
    )

    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sr, n_mels=settings.num_features, f_min=20.0, f_max=sr / 2, power=2, **frame_kwargs
    )(wave)[0]
    _image(
        fig,
        ax_mel,
        _dbfs(mel, settings.window_samples, power=2),
        extent + (-0.5, settings.num_features - 0.5),
        f"Mel spectrogram ({settings.num_features} bands)",
        f"mel band (20-{sr // 2} Hz)",
        "level (dBFS)",
    )

    with torch.no_grad():
        mfcc = build_frontend(replace(settings, frontend="mfcc"))(audio)[0].T
        micro = build_frontend(replace(settings, frontend="micro"))(audio)[0].T
    _image(
        fig,
        ax_mfcc,
        mfcc,
        extent + (-0.5, settings.num_features - 0.5),
        "MFCC (frontend: mfcc)",
        "coefficient",
        "value",
    )
    low, high = MicroFrontendConfig.lower_band_limit, MicroFrontendConfig.upper_band_limit
    _image(
        fig,
        ax_micro,
        micro,
        extent + (-0.5, settings.num_features - 0.5),
        "Micro front end (frontend: micro, model input)",
        f"channel ({low:g}-{high:g} Hz, mel-spaced)",
        f"value (uint16 x {MICRO_FEATURE_SCALE * 256:g}/256)",
    )
    return fig


def _dbfs(spectrum: torch.Tensor, window_samples: int, power: int) -> torch.Tensor:
    """Hann-windowed magnitudes (power=1) or powers (power=2) in dB, 0 dB = a full-scale sine."""
    # A unit sine under a Hann window of N samples peaks at N/4 in the FFT magnitude.
    full_scale = (window_samples / 4) ** power
    stype = "magnitude" if power == 1 else "power"
    return torchaudio.transforms.AmplitudeToDB(stype, top_db=TOP_DB)(spectrum / full_scale)


def _frame_extent(num_frames: int, settings: FeatureSettings) -> tuple[float, float]:
    """Time span (s) of an image whose columns are frames centred on their windows."""
    stride = settings.stride_samples / settings.sample_rate
    first = settings.window_samples / 2 / settings.sample_rate
    return first - stride / 2, first + (num_frames - 0.5) * stride


def _image(fig: Figure, ax: Axes, data: torch.Tensor, extent: tuple, title: str, ylabel: str, clabel: str) -> None:
    im = ax.imshow(data.numpy(), origin="lower", aspect="auto", extent=extent, cmap="magma", interpolation="nearest")
    ax.set(title=title, xlabel="time (s)", ylabel=ylabel)
    fig.colorbar(im, ax=ax, label=clabel)


def plot_confusion_matrix(matrix, labels, out_path: str | Path, title: str = "Confusion matrix") -> Path:
    """Write a confusion matrix as a PNG: rows = true class, columns = predicted class, each cell
    annotated with its count and coloured by its share of the row (recall of the true class)."""
    return _save(confusion_matrix_figure(matrix, labels, title), out_path)


def confusion_matrix_figure(matrix, labels, title: str = "Confusion matrix") -> Figure:
    """The figure :func:`plot_confusion_matrix` writes; ``matrix`` is any [C, C] array of counts."""
    counts = np.asarray(matrix.cpu() if isinstance(matrix, torch.Tensor) else matrix)
    labels = [str(label) for label in labels]
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(labels):
        raise ValueError(f"confusion matrix must be [C, C] with C = {len(labels)} labels, got shape {counts.shape}")
    if not np.array_equal(counts, np.round(counts)) or (counts < 0).any():
        raise ValueError("confusion matrix must hold counts (non-negative integers), not normalised values")
    counts = counts.astype(np.int64)
    total = counts.sum()
    row_sums = counts.sum(axis=1, keepdims=True)
    recall = np.divide(counts, row_sums, out=np.zeros(counts.shape), where=row_sums > 0)
    accuracy = f"{np.trace(counts) / total:.2%}" if total else "n/a"

    size = max(4.5, 2 + 0.6 * len(labels))
    fig = Figure(figsize=(size + 1.5, size), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="share of the true class's clips")
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if recall[i, j] > 0.5 else "black")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted label", ylabel="true label", title=f"{title} (accuracy {accuracy}, n = {total})")
    return fig


def plot_training_curves(metrics_csv: str | Path, out_path: str | Path) -> Path:
    """Write loss and accuracy vs epoch from a Lightning CSVLogger ``metrics.csv`` as a PNG."""
    return _save(training_curves_figure(metrics_csv), out_path)


def training_curves_figure(metrics_csv: str | Path) -> Figure:
    """The figure :func:`plot_training_curves` writes.

    Columns whose metric name (after the last '/') contains ``loss`` go in the loss panel, those
    containing ``acc`` in the accuracy panel (``val/acc``, ``val_acc``); other columns are
    ignored. A metric logged several times per epoch (per step) is shown as its epoch mean.
    """
    metrics_csv = Path(metrics_csv)
    with metrics_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0]) if rows else []
    if "epoch" not in columns:
        raise ValueError(
            f"{metrics_csv}: no 'epoch' column (columns: {columns}); expected a Lightning CSVLogger metrics.csv"
        )

    def kind(column: str) -> str | None:
        # "_step" columns are Lightning's per-step twins of "_epoch" columns (on_step and on_epoch).
        if column.endswith("_step"):
            return None
        name = column.rsplit("/", 1)[-1]
        return "loss" if "loss" in name else "accuracy" if "acc" in name else None

    panels: dict[str, list[str]] = {}
    for column in columns:
        if panel := kind(column):
            panels.setdefault(panel, []).append(column)
    if not panels:
        raise ValueError(f"{metrics_csv}: no loss or accuracy columns (columns: {columns})")

    fig = Figure(figsize=(6 * len(panels), 4.5), dpi=DPI, layout="constrained")
    fig.suptitle(f"Training curves: {metrics_csv.parent.name}/{metrics_csv.name}")
    for ax, (panel, panel_columns) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels.items()):
        for column in panel_columns:
            epochs, values = _epoch_means(rows, column)
            ax.plot(epochs, values, marker="o", markersize=3, label=column)
        ax.set(title=panel.capitalize(), xlabel="epoch", ylabel=panel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def _epoch_means(rows: list[dict[str, str]], column: str) -> tuple[list[int], list[float]]:
    """Per-epoch mean of a column's logged values; CSVLogger leaves unlogged cells empty."""
    by_epoch: dict[int, list[float]] = {}
    for row in rows:
        value, epoch = row[column], row["epoch"]
        if value and epoch and not math.isnan(float(value)):
            by_epoch.setdefault(int(float(epoch)), []).append(float(value))
    epochs = sorted(by_epoch)
    return epochs, [float(np.mean(by_epoch[e])) for e in epochs]


def _save(fig: Figure, out_path: str | Path) -> Path:
    """Write ``fig`` (format from the suffix, e.g. .png), creating the folder if missing."""
    out_path = Path(out_path)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_path, dpi=DPI)
    except OSError as err:
        raise OSError(f"{out_path}: cannot write the figure there ({err}); choose another output path") from err
    return out_path


def main(argv: list[str] | None = None) -> Path:
    """``python -m kws plot-features --wav clip.wav [--out clip.png]``."""
    import argparse

    from kws.audio.wav import AudioError

    parser = argparse.ArgumentParser(
        prog="python -m kws plot-features",
        description="Plot waveform, spectrum, spectrogram, mel spectrogram, MFCC and micro features of a clip.",
    )
    parser.add_argument("--wav", required=True, help="the clip (16-bit PCM WAV)")
    parser.add_argument("--out", default=None, help="output PNG (default: <wav name>.features.png beside it)")
    args = parser.parse_args(argv)
    out = args.out or str(args.wav).rsplit(".", 1)[0] + ".features.png"
    try:
        path = plot_features(args.wav, out, FeatureSettings())
    except (AudioError, OSError) as err:
        parser.exit(2, f"error: {err}\n")
    print(path)
    return path
