"""Shared fixtures. Reference files in ../shared are read directly (they are not shipped)."""

import os
from pathlib import Path

import pytest

from tests.helpers import MICRO_SPEECH

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def micro_speech_dir() -> Path:
    if not MICRO_SPEECH.is_dir():
        pytest.skip(f"reference clips not found at {MICRO_SPEECH}")
    return MICRO_SPEECH


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A small generated corpus (20 voices, yes/no plus five other words) for real fits."""
    from datamodules.synthetic import generate_corpus

    root = tmp_path_factory.mktemp("corpus") / "synthetic"
    return generate_corpus(
        root,
        num_speakers=20,
        clips_per_word=60,
        unknown_clips_per_word=6,
        unknown_words=("cat", "dog", "bed", "bird", "go"),
        progress=False,
    )


@pytest.fixture(scope="session")
def pruned_fit(tmp_path_factory):
    """One epoch with 50 % structured pruning, profiled at the start and the end of fit:
    (trainer, the Profile callback, the final checkpoint). tests/callbacks and tests/tools use it."""
    import lightning as L
    import torch
    from lightning.pytorch.loggers import CSVLogger

    from callbacks import Profile, Pruning
    from kws.training.module import KWSModule
    from tests.helpers import random_loader

    tmp = tmp_path_factory.mktemp("fit")
    torch.manual_seed(0)
    profile = Profile(batch_sizes=[1, 8], min_run_time=0.01, when="both", devices=["cpu"])
    prune = Pruning(amount=0.5, method="structured", schedule="one_shot", start_epoch=0)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=CSVLogger(tmp, name="csv"),
        default_root_dir=tmp,
        callbacks=[prune, profile],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    module = KWSModule()
    trainer.fit(module, random_loader())
    ckpt = tmp / "final.ckpt"
    trainer.save_checkpoint(ckpt)
    return trainer, profile, ckpt
