"""Helpers shared by the tests: where things are, and running ``python -m kws`` as a user would.
Reference files in ../shared are read directly (they are not shipped)."""

import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MICRO_SPEECH = SHARED / "micro_speech"


def run_kws(*args, cwd=None, check=True, env=None) -> subprocess.CompletedProcess:
    """Run ``python -m kws ...`` as a user would; on failure show the end of its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "kws", *args], cwd=cwd or REPO, capture_output=True, text=True, timeout=900, env=env
    )
    if check and proc.returncode:
        raise AssertionError(f"kws {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


WORDS = {"yes": 440.0, "no": 660.0, "cat": 880.0, "dog": 330.0}


def make_corpus(root: Path, speakers: int = 30, clips: int = 2, lists: bool = False) -> Path:
    """A small corpus in the Speech Commands layout: a tone per word, speakers as file prefixes."""
    from kws.audio.wav import write_wav

    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    for word, freq in WORDS.items():
        (root / word).mkdir(parents=True)
        for s in range(speakers):
            for k in range(clips):
                x = 8000 * np.sin(2 * np.pi * freq * t) * (t > 0.2) * (t < 0.7) + rng.normal(0, 50, 16000)
                write_wav(root / word / f"spk{s:03d}_nohash_{k}.wav", x.astype(np.int16), 16000)
    (root / "_background_noise_").mkdir()
    write_wav(root / "_background_noise_" / "white.wav", rng.normal(0, 3000, 40 * 16000).astype(np.int16), 16000)
    if lists:
        files = sorted(str(p.relative_to(root)) for p in root.glob("*/*.wav") if not p.parent.name.startswith("_"))
        (root / "validation_list.txt").write_text(
            "\n".join(f for f in files if "spk000_" in f or "spk001_" in f) + "\n"
        )
        (root / "testing_list.txt").write_text("\n".join(f for f in files if "spk002_" in f) + "\n")
    return root


def trained_checkpoint(
    datamodule, features: tuple[np.ndarray, np.ndarray], path: Path, epochs: int, **module_args
) -> Path:
    """A KWSModule (``module_args``) trained for ``epochs`` on ``features`` (x, y), saved at ``path``
    as `fit` saves it: a Lightning checkpoint with the data module's hyperparameters."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from kws.training.module import KWSModule

    x, y = features
    torch.manual_seed(0)
    module = KWSModule(labels=datamodule.labels, input_shape=datamodule.input_shape, dropout=0.0, **module_args)
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(
        module, DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=32, shuffle=True)
    )
    trainer.save_checkpoint(path)
    saved = torch.load(path, map_location="cpu", weights_only=False)
    saved["datamodule_hyper_parameters"] = dict(datamodule.hparams)  # what fit with the data module stores
    torch.save(saved, path)
    return path


# What `python -m kws export` writes (tests/export, tests/callbacks).
EXPORT_ARTIFACTS = {
    "model.onnx",
    "model_float.tflite",
    "model_int8.tflite",
    "model_data.cc",
    "model_data.h",
    "model_settings.h",
    "model_ops.h",
    "micro_frontend_tables.h",
    "report.json",
}


def export_corpus(root: Path) -> Path:
    """The generated corpus the export tests train on (20 voices, 150 clips a word)."""
    from datamodules.synthetic import generate_corpus

    return generate_corpus(
        root,
        num_speakers=20,
        clips_per_word=150,
        unknown_clips_per_word=15,
        unknown_words=("cat", "dog", "bed", "bird", "go"),
        progress=False,
    )


def export_datamodule(corpus: Path):
    """A set-up data module over ``corpus`` (an :func:`export_corpus`), batch 64."""
    from datamodules import SpeechCommandsDataModule

    dm = SpeechCommandsDataModule(data_dir=str(corpus), batch_size=64)
    dm.prepare_data()
    dm.setup()
    return dm


def random_loader(n: int = 64):
    """Random TinyConv features with random labels (seed 0), batches of 32."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (n,), generator=g)
    return DataLoader(TensorDataset(torch.randn(n, 1960, generator=g), y), batch_size=32)
