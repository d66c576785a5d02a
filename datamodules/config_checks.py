"""Checks shared by the data module's config objects (``data.augment``, ``data.lead_in``,
``data.classes``): each error names the full key, as a config file or the command line spells it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields


def check_within(key: str, value: float, low: float, high: float, high_open: bool = False) -> None:
    """``key`` (e.g. ``data.augment.max_cut``) must lie in [low, high] (or [low, high))."""
    if not low <= value <= high or (high_open and value == high):
        raise ValueError(f"{key} must be within [{low:g}, {high:g}{')' if high_open else ']'}, got {value:g}")


def check_at_least(key: str, value: float, low: float) -> None:
    if not value >= low:
        raise ValueError(f"{key} must be >= {low:g}, got {value:g}")


def check_range(key: str, value: tuple[float, float], positive: bool = True) -> None:
    """A [low, high] pair with low <= high (and 0 < low with ``positive``, else 0 <= low)."""
    low_ok = value[0] > 0 if positive else value[0] >= 0
    if len(value) != 2 or not low_ok or not value[0] <= value[1]:
        bound = "0 <" if positive else "0 <="
        raise ValueError(f"{key} must be a range [low, high] with {bound} low <= high, got {list(value)}")


def pairs_as_tuples(config) -> None:
    """A frozen dataclass's list fields as tuples: YAML, hparams.yaml and checkpoints give lists."""
    for field in fields(config):
        value = getattr(config, field.name)
        if isinstance(value, list):
            object.__setattr__(config, field.name, tuple(value))


def plain(config) -> dict:
    """A config object as plain values (pairs as lists), for hparams.yaml and checkpoints: a
    checkpoint opened with ``weights_only=True`` may hold no kws class."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(config).items()}


def as_config(config_type: type, value, group: str):
    """``value`` as a ``config_type``: itself, or built from a mapping (a checkpoint's hparams,
    a dict in Python); an unknown key is named with its group (``data.<group>.<key>``)."""
    if isinstance(value, config_type):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"data.{group} must be a mapping of {config_type.__name__}'s options, got {value!r}")
    unknown = sorted(set(value) - {field.name for field in fields(config_type)})
    if unknown:
        known = ", ".join(field.name for field in fields(config_type))
        raise ValueError(f"data.{group} has no option {', '.join(unknown)}; its options: {known}")
    return config_type(**value)
