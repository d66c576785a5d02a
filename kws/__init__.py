"""kws: keyword spotting from raw audio to a microcontroller, with PyTorch Lightning.

One sub-package per pipeline stage, each importing only the ones before it (tests/test_layering.py):
utils <- audio <- datamodules (the data) <- models, training <- compression <- export <- deploy, tools.
"""
from kws.audio.features import FeatureSettings, build_frontend
from kws.models import TinyConv
from kws.training.module import KWSModule

# Registers the compression transforms, so any checkpoint's surgery log replays (kws.models.surgery).
import kws.compression  # noqa: E402,F401  isort: skip

__all__ = ["FeatureSettings", "KWSModule", "TinyConv", "build_frontend"]
__version__ = "0.1.0"
