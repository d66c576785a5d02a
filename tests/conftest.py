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
