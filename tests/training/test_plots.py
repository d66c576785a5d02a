"""kws.plots: each figure is written as a readable PNG of the figure's size and shows real data."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import soundfile as sf
import torch

from kws.audio.features import FeatureSettings, build_frontend
from kws.audio.wav import AudioError
from kws.training.plots import (
    confusion_matrix_figure,
    features_figure,
    plot_confusion_matrix,
    plot_features,
    plot_training_curves,
    training_curves_figure,
)

YES_WAV = Path("/work/shared/data/micro_speech/yes_1000ms.wav")
PANELS = [
    "Waveform",
    "Magnitude spectrum of the whole clip",
    "Spectrogram (STFT)",
    "Mel spectrogram (40 bands)",
    "MFCC (frontend: mfcc)",
    "Micro front end (frontend: micro, model input)",
]


def assert_png(path: Path, figure) -> None:
    """A non-empty PNG that matplotlib reads back at the figure's pixel size."""
    assert path.is_file() and path.stat().st_size > 0
    pixels = matplotlib.image.imread(path)
    width, height = figure.get_size_inches() * figure.dpi
    assert pixels.shape[:2] == (round(height), round(width))
    assert pixels[..., :3].std() > 0.05  # something drawn, not a blank canvas


def panels(fig) -> dict:
    """Panel axes by title (colorbars have none)."""
    return {ax.get_title(): ax for ax in fig.axes if ax.get_title()}


def write_sine(path: Path, rate: int, seconds: float, channels: int = 1, freq: float = 1000.0) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    wave = np.round(0.5 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    sf.write(str(path), np.stack([wave] * channels, axis=1), rate, subtype="PCM_16")
    return path


def test_plot_features_on_micro_speech_clip(tmp_path):
    if not YES_WAV.is_file():
        pytest.skip(f"{YES_WAV} is missing (shared micro_speech test data)")
    out = plot_features(YES_WAV, tmp_path / "new" / "folder" / "yes.png")
    assert out == tmp_path / "new" / "folder" / "yes.png"

    fig = features_figure(YES_WAV)
    assert_png(out, fig)
    assert "yes_1000ms.wav" in fig.get_suptitle() and "resampled" not in fig.get_suptitle()
    assert list(panels(fig)) == PANELS
    assert len(fig.axes) == 6 + 4  # four image panels with colorbars
    # The micro panel shows exactly what the model is fed.
    audio = torch.from_numpy(sf.read(str(YES_WAV), dtype="int16")[0])[None]
    micro = build_frontend(FeatureSettings(frontend="micro"))(audio)[0].T.numpy()
    shown = panels(fig)[PANELS[5]].images[0].get_array()
    assert shown.shape == (40, 49)
    np.testing.assert_array_equal(shown, micro)


def test_plot_features_resamples_44k_clip(tmp_path):
    wav = write_sine(tmp_path / "tone44k.wav", 44100, 1.3)
    out = plot_features(wav, tmp_path / "tone.png")

    fig = features_figure(wav)
    assert_png(out, fig)
    assert "tone44k.wav" in fig.get_suptitle() and "resampled from 44100 Hz" in fig.get_suptitle()
    # A half-scale 1 kHz sine: the whole-clip spectrum peaks at 1 kHz, -6 dBFS.
    freqs, level = panels(fig)["Magnitude spectrum of the whole clip"].lines[0].get_xydata().T
    assert freqs[np.argmax(level)] == pytest.approx(1000, abs=2)
    assert level.max() == pytest.approx(-6.0, abs=0.5)
    assert freqs.max() == pytest.approx(8000)  # resampled to 16 kHz
    # 1.3 s at 16 kHz, 30 ms / 20 ms frames -> 64 frames in the feature panels.
    assert panels(fig)[PANELS[4]].images[0].get_array().shape == (40, 64)


def test_plot_features_pads_short_clip(tmp_path):
    wav = write_sine(tmp_path / "short.wav", 16000, 0.01)
    fig = features_figure(wav)
    assert "zero-padded" in fig.get_suptitle()
    assert panels(fig)[PANELS[5]].images[0].get_array().shape == (40, 1)


def test_plot_features_refuses_stereo(tmp_path):
    wav = write_sine(tmp_path / "stereo.wav", 16000, 1.0, channels=2)
    with pytest.raises(AudioError, match="2 channels"):
        plot_features(wav, tmp_path / "stereo.png")
    assert not (tmp_path / "stereo.png").exists()


def test_unwritable_output_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(OSError, match="cannot write the figure"):
        plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b"], blocker / "cm.png")


def test_confusion_matrix_annotations_colours_and_accuracy(tmp_path):
    counts = np.array([[50, 3, 0], [4, 40, 6], [0, 0, 0]])
    labels = ["yes", "no", "unknown"]
    out = plot_confusion_matrix(torch.from_numpy(counts), labels, tmp_path / "cm.png", title="Val")

    fig = confusion_matrix_figure(counts, labels, title="Val")
    assert_png(out, fig)
    ax = fig.axes[0]
    # Each count sits in its cell: x = predicted (column), y = true (row).
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert len(ax.texts) == counts.size
    assert cells == {(i, j): str(c) for (i, j), c in np.ndenumerate(counts)}
    assert ax.get_title() == "Val (accuracy 87.38%, n = 103)"
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert ax.get_ylabel() == "true label" and ax.get_xlabel() == "predicted label"
    expected = np.array([[50 / 53, 3 / 53, 0], [0.08, 0.8, 0.12], [0, 0, 0]])  # empty row -> 0, not NaN
    np.testing.assert_allclose(ax.images[0].get_array(), expected)


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="2 labels"):
        confusion_matrix_figure(np.eye(3, dtype=int), ["a", "b"])
    with pytest.raises(ValueError, match="counts"):
        confusion_matrix_figure(np.eye(2) / 2, ["a", "b"])


def test_training_curves_from_csv_logger_metrics(tmp_path):
    # CSVLogger layout: one row per log call, cells left empty for metrics not logged then.
    csv = tmp_path / "metrics.csv"
    csv.write_text(
        "epoch,step,train/loss_step,train/loss_epoch,val/loss,val/acc,lr-Adam\n"
        "0,9,2.0,,,,0.001\n"
        "0,19,1.0,,,,0.001\n"
        "0,19,,1.5,,,\n"
        "0,19,,,1.2,0.50,\n"
        "1,29,0.8,,,,0.001\n"
        "1,39,,0.7,,,\n"
        "1,39,,,0.9,0.75,\n"
    )
    out = plot_training_curves(csv, tmp_path / "curves" / "curves.png")

    fig = training_curves_figure(csv)
    assert_png(out, fig)
    loss_ax, acc_ax = fig.axes
    assert (loss_ax.get_title(), acc_ax.get_title()) == ("Loss", "Accuracy")
    assert fig.get_suptitle() == f"Training curves: {tmp_path.name}/metrics.csv"
    lines = {line.get_label(): line.get_xydata().tolist() for ax in fig.axes for line in ax.lines}
    assert lines == {
        "train/loss_epoch": [[0, 1.5], [1, 0.7]],
        "val/loss": [[0, 1.2], [1, 0.9]],
        "val/acc": [[0, 0.5], [1, 0.75]],
    }


def test_training_curves_skip_absent_panels(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text("epoch,step,train_loss\n0,9,2.0\n0,19,1.0\n1,29,0.5\n")  # flat metric names too
    fig = training_curves_figure(csv)
    assert [ax.get_title() for ax in fig.axes] == ["Loss"]
    assert fig.axes[0].lines[0].get_xydata().tolist() == [[0, 1.5], [1, 0.5]]  # per-epoch mean

    csv.write_text("epoch,step,lr-Adam\n0,9,0.001\n")
    with pytest.raises(ValueError, match="no loss or accuracy"):
        training_curves_figure(csv)
