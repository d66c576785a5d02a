"""Helpers shared by the tests: where things are, and running ``python -m kws`` as a user would.
Reference files in ../shared are read directly (they are not shipped)."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MICRO_SPEECH = SHARED / "micro_speech"


def run_kws(*args, cwd=None, check=True, env=None) -> subprocess.CompletedProcess:
    """Run ``python -m kws ...`` as a user would; on failure show the end of its output."""
    proc = subprocess.run([sys.executable, "-m", "kws", *args], cwd=cwd or REPO, capture_output=True, text=True, timeout=900, env=env)
    if check and proc.returncode:
        raise AssertionError(f"kws {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc
