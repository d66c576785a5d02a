"""Structural changes to a model (pruned-and-rebuilt layers, fake-quantization wrappers) that a
checkpoint must be able to replay before its weights load.

A compression callback changes ``module.model`` only through :func:`apply_transform`, which runs
a registered function and records ``(name, params)`` on the module. ``KWSModule`` saves that log
in every checkpoint and replays it in ``on_load_checkpoint`` -- before Lightning loads the
state dict -- so ``KWSModule.load_from_checkpoint`` rebuilds the exact trained model (smaller
layers, quantizer buffers with their learned ranges) with or without the callbacks configured.

Register a transform with ``@register_transform("name")`` on a function
``fn(model: nn.Module, **params) -> nn.Module``; params must be JSON-like (they are saved).
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Callable

from torch import nn

TRANSFORMS: dict[str, Callable[..., nn.Module]] = {}

# Modules that register transforms; imported before a checkpoint's log is replayed.
TRANSFORM_MODULES = ("callbacks.quantization", "callbacks.pruning")


def register_transform(name: str) -> Callable:
    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in TRANSFORMS and TRANSFORMS[name] is not fn:
            raise ValueError(f"transform {name!r} is registered twice")
        TRANSFORMS[name] = fn
        return fn

    return decorator


def apply_transform(module: nn.Module, name: str, **params: Any) -> nn.Module:
    """Replace ``module.model`` by ``TRANSFORMS[name](module.model, **params)`` and log it."""
    module.model = TRANSFORMS[name](module.model, **params)
    module.model_transforms.append({"name": name, "params": params})
    return module.model


def replay_transforms(module: nn.Module, log: list[dict]) -> None:
    """Apply a saved transform log to a freshly built module (before its weights load)."""
    for entry in log:
        if entry["name"] not in TRANSFORMS:
            for mod in TRANSFORM_MODULES:
                if importlib.util.find_spec(mod) is not None:
                    importlib.import_module(mod)
        if entry["name"] not in TRANSFORMS:
            raise KeyError(f"checkpoint needs model transform {entry['name']!r}, which no installed module registers")
        apply_transform(module, entry["name"], **entry["params"])
