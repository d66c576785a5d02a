"""Shared test fixtures. Reference files in ../shared are read directly (they are not shipped)."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MICRO_SPEECH = SHARED / "micro_speech"


@pytest.fixture(scope="session")
def micro_speech_dir() -> Path:
    if not MICRO_SPEECH.is_dir():
        pytest.skip(f"reference clips not found at {MICRO_SPEECH}")
    return MICRO_SPEECH
