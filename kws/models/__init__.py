"""Keyword-spotting models, and the surgery log that lets a checkpoint rebuild a compressed one.

``ARCHITECTURES`` names each model the ``model.arch`` option can choose; :func:`build_model` makes one."""

from __future__ import annotations

from torch import nn

from kws.models.ds_cnn import DSCNN
from kws.models.tiny_conv import TinyConv

ARCHITECTURES = ("tiny_conv", "ds_cnn")
# Each architecture's width (``channels``) when the option is null.
DEFAULT_CHANNELS = {"tiny_conv": 8, "ds_cnn": 64}


def build_model(
    arch: str, input_shape: tuple[int, int], num_classes: int, channels: int | None = None, dropout: float = 0.5
) -> nn.Module:
    """A fresh model of architecture ``arch`` (one of :data:`ARCHITECTURES`); ``channels``: its
    width (None: the architecture's own default, :data:`DEFAULT_CHANNELS`)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"model.arch must be one of {list(ARCHITECTURES)}, got {arch!r}")
    if channels is None:
        channels = DEFAULT_CHANNELS[arch]
    if arch == "tiny_conv":
        return TinyConv(tuple(input_shape), num_classes, channels=channels, dropout=dropout)
    return DSCNN(tuple(input_shape), num_classes, channels=channels, dropout=dropout)


__all__ = ["ARCHITECTURES", "DEFAULT_CHANNELS", "DSCNN", "TinyConv", "build_model"]
