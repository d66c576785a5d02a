"""Shared test fixtures. Reference files in ../shared are read directly (they are not shipped)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MICRO_SPEECH = SHARED / "micro_speech"


@pytest.fixture(scope="session")
def micro_speech_dir() -> Path:
    if not MICRO_SPEECH.is_dir():
        pytest.skip(f"reference clips not found at {MICRO_SPEECH}")
    return MICRO_SPEECH


def run_kws(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    """Run ``python -m kws ...`` as a user would; on failure show the end of its output."""
    proc = subprocess.run([sys.executable, "-m", "kws", *args], cwd=cwd or REPO, capture_output=True, text=True, timeout=900)
    if check and proc.returncode:
        raise AssertionError(f"kws {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A small generated corpus (20 voices, yes/no plus five other words) for real fits."""
    from datamodules.synthetic import generate_corpus

    root = tmp_path_factory.mktemp("corpus") / "synthetic"
    return generate_corpus(root, num_speakers=20, clips_per_word=60, unknown_clips_per_word=6, unknown_words=("cat", "dog", "bed", "bird", "go"), progress=False)
