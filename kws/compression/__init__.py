"""Compression math: fake quantization and pruning. Importing this package registers their model
surgery transforms (kws.models.surgery), which checkpoints replay when they load."""
from kws.compression import pruning, quantization  # noqa: F401  (registers the transforms)
