"""The command line: config printing, bad keys, and a short end-to-end fit + test."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def run_kws(*args, cwd=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "kws", *args], cwd=cwd or REPO, capture_output=True, text=True, timeout=900)
    if check and proc.returncode:
        raise AssertionError(f"kws {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def test_print_config_round_trips_the_yaml():
    out = run_kws("fit", "--config", "conf.yaml", "--print_config").stdout
    config = yaml.safe_load(out)
    assert config["data"]["wanted_words"] == ["yes", "no"]
    assert config["data"]["frontend"] == "micro"
    assert config["model"]["learning_rate"] == 0.001


def test_bad_config_key_is_named():
    proc = run_kws("fit", "--config", "conf.yaml", "--data.wanted_wrods", "[yes]", check=False)
    assert proc.returncode != 0 and "wanted_wrods" in proc.stderr


def test_command_line_override():
    out = run_kws("fit", "--config", "conf.yaml", "--data.frontend", "mfcc", "--model.learning_rate", "0.01", "--print_config").stdout
    config = yaml.safe_load(out)
    assert config["data"]["frontend"] == "mfcc" and config["model"]["learning_rate"] == 0.01


def test_plot_features_tool(tmp_path, micro_speech_dir):
    out = tmp_path / "yes.png"
    run_kws("plot-features", "--wav", str(micro_speech_dir / "yes_1000ms.wav"), "--out", str(out))
    assert out.stat().st_size > 10_000
