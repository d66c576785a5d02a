"""kws: keyword spotting from raw audio to a microcontroller, with PyTorch Lightning.

One sub-package per pipeline stage, each importing only the ones before it (tests/test_layering.py):
utils <- audio <- datamodules (the data) <- models, training <- compression <- export <- deploy, tools.

The public names below are imported on first use, so that ``import kws.deploy.listen`` for an
int8 model on a small host does not load PyTorch.
"""

from __future__ import annotations

import importlib

__all__ = ["FeatureSettings", "KWSModule", "TinyConv", "build_frontend"]
__version__ = "0.1.0"
_PUBLIC = {
    "FeatureSettings": "kws.audio.settings",
    "KWSModule": "kws.training.module",
    "TinyConv": "kws.models.tiny_conv",
    "build_frontend": "kws.audio.features",
}


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'kws' has no attribute {name!r}")
