"""Compression math: fake quantization and pruning. Their model surgery transforms register when
imported, and are entry points of group ``kws.model_transforms`` (pyproject.toml), which is how
a checkpoint that needs them finds them (kws.models.surgery)."""
