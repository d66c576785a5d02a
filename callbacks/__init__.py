from callbacks.quantization import QuantizationAwareTraining
from callbacks.pruning import Pruning
from callbacks.export import Export
from callbacks.profile import Profile
from callbacks.stream_test import StreamTest
