"""Reading what `python -m kws fit` wrote, for the tools (export, listen, profile): a KWSModule
checkpoint, and sections of a fit config. Errors name the file and what to pass instead."""
from __future__ import annotations

from pathlib import Path


class CheckpointError(ValueError):
    """A checkpoint or config that cannot be used; the message names the file and the fix."""


def load_module(path: str | Path):
    """(KWSModule, the raw checkpoint dict) of a checkpoint saved by ``fit``: pruned, rebuilt and
    quantization-wrapped models come back as trained (the module replays their transforms)."""
    import torch

    from kws.module import KWSModule

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; pass a checkpoint saved by `python -m kws fit` (runs/csv/version_N/checkpoints/*.ckpt)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: {err}") from err
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or not isinstance(hparams, dict) or not {"labels", "input_shape"} <= set(hparams):
        found = "a plain state_dict" if isinstance(checkpoint, dict) and "state_dict" not in checkpoint else "no KWSModule hyperparameters (labels, input_shape)"
        raise CheckpointError(f"{path} is not a KWSModule checkpoint ({found}); pass a checkpoint saved by `python -m kws fit`")
    try:
        # init_from=None: the weights come from this checkpoint, not from the one training started from.
        module = KWSModule.load_from_checkpoint(path, map_location="cpu", init_from=None)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} does not fit KWSModule's TinyConv (another architecture?): {err}") from err
    return module, checkpoint


def read_config(path: str | Path) -> dict:
    """A ``python -m kws fit`` config file as a dict of sections."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no config file at {path}; pass the config you train with (conf.yaml)")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise CheckpointError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} is not a mapping of config sections (model:, data:, trainer:)")
    return config


def config_section(config: dict, key: str, path: str | Path = "the config") -> dict:
    """The init arguments of one section (plain, or class_path/init_args); {} when absent."""
    section = config.get(key) or {}
    if not isinstance(section, dict):
        raise CheckpointError(f"{path}: the `{key}:` section is not a mapping")
    return dict(section.get("init_args") or {}) if "class_path" in section else dict(section)
