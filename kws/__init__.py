"""kws: keyword spotting from raw audio to a microcontroller, with PyTorch Lightning."""
from kws.features import FeatureSettings, build_frontend
from kws.models import TinyConv
from kws.module import KWSModule

__all__ = ["FeatureSettings", "KWSModule", "TinyConv", "build_frontend"]
__version__ = "0.1.0"
