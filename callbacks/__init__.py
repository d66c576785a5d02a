from callbacks.export import Export
from callbacks.profile import Profile
from callbacks.pruning import Pruning
from callbacks.quantization import QuantizationAwareTraining
from callbacks.stream_test import StreamTest

__all__ = ["Export", "Profile", "Pruning", "QuantizationAwareTraining", "StreamTest"]
