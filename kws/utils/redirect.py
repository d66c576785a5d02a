"""Capturing what C++ libraries (TensorFlow, LiteRT, tflite-micro) print on file descriptor 2."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def stderr_to(path: str | Path) -> Iterator[None]:
    """Send file descriptor 2, where C++ code logs, to ``path`` for the block (Python's
    ``contextlib.redirect_stderr`` only swaps ``sys.stderr``, which C++ never sees)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "wb") as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
