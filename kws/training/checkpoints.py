"""The one way the tools (export, listen, profile, sweep) read what ``python -m kws fit`` wrote: a
KWSModule checkpoint with its data module, or the model a config builds. Errors name the file
and what to pass instead."""

from __future__ import annotations

from pathlib import Path

from datamodules import SpeechCommandsDataModule
from datamodules.renamed_keys import merge_data_sections, nest_flat_keys, renamed_hint
from kws.training.checkpoint_file import FEATURE_KEYS, CheckpointError, check_compatible, read_checkpoint
from kws.training.module import KWSModule

__all__ = [
    "CheckpointError",
    "check_compatible",
    "config_section",
    "load_checkpoint",
    "load_config_model",
    "load_module",
    "read_checkpoint",
    "read_config",
]


def load_module(path: str | Path) -> tuple[KWSModule, dict]:
    """(KWSModule, the raw checkpoint dict) of a checkpoint saved by ``fit``: pruned, rebuilt and
    quantization-wrapped models come back as trained (the module replays their surgery log)."""
    checkpoint = read_checkpoint(path)
    try:
        # init_from=None: the weights come from this checkpoint, not from the one training started from.
        module = KWSModule.load_from_checkpoint(path, map_location="cpu", weights_only=True, init_from=None)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} does not fit KWSModule's TinyConv (another architecture?): {err}") from err
    return module, checkpoint


def load_checkpoint(path: str | Path, config: str | Path | None = None) -> tuple[KWSModule, SpeechCommandsDataModule]:
    """(KWSModule, SpeechCommandsDataModule) of a checkpoint: the data module from the
    checkpoint's ``datamodule_hyper_parameters``, overridden by the ``data`` section of ``config``."""
    module, checkpoint = load_module(path)
    data = {k: v for k, v in (checkpoint.get("datamodule_hyper_parameters") or {}).items() if not k.startswith("_")}
    data = nest_flat_keys(data)  # a checkpoint saved before the option groups
    if config is not None:
        try:
            data = merge_data_sections(data, config_section(read_config(config), "data", config))
        except ValueError as err:
            raise CheckpointError(f"{config}: {err}") from err
    if not data:
        raise CheckpointError(
            f"{path} holds no data module hyperparameters; pass --config with the `data:` section it was trained with"
        )
    try:
        datamodule = SpeechCommandsDataModule(**data)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"bad data settings {data}: {err}") from err
    features = {key: getattr(datamodule.features, key) for key in FEATURE_KEYS}
    check_compatible(checkpoint, path, datamodule.labels, datamodule.input_shape, features)
    return module, datamodule


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


def load_config_model(path: str | Path) -> tuple[KWSModule, dict]:
    """(untrained KWSModule, config) from a ``python -m kws fit`` config: its ``model:`` and
    ``data:`` sections, validated by jsonargparse against the two classes' signatures (as the CLI
    does), labels and input shape linked from the data. No data is read or generated."""
    from jsonargparse import ArgumentParser

    config = read_config(path)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(SpeechCommandsDataModule, "data")
    parser.add_class_arguments(KWSModule, "model", skip={"labels", "input_shape"}, instantiate=False)
    sections = {key: config_section(config, key, path) for key in ("data", "model")}
    try:
        parsed = parser.parse_object(sections)
        init = parser.instantiate_classes(parsed)
    except Exception as err:  # jsonargparse's messages name the key and the expected type
        raise CheckpointError(f"{path}: {err}\n{renamed_hint(str(err))}".rstrip()) from err
    data = init.data
    return KWSModule(labels=data.labels, input_shape=data.input_shape, **vars(parsed.model)), config
