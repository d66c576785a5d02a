"""Model surgery: structural changes to a model (pruned-and-rebuilt layers, fake-quantization
wrappers) that a checkpoint must be able to replay before its weights load.

A compression callback changes ``module.model`` only through :func:`apply_transform`, which runs
a registered function and records ``(name, params)`` on the module. ``KWSModule`` saves that log
in every checkpoint and replays it in ``on_load_checkpoint`` -- before Lightning loads the
state dict -- so ``KWSModule.load_from_checkpoint`` rebuilds the exact trained model (smaller
layers, quantizer buffers with their learned ranges) with or without the callbacks configured.

Register a transform with ``@register_transform("name")`` on a function
``fn(model: nn.Module, **params) -> nn.Module``; params must be JSON-like (they are saved).
:mod:`kws.compression` registers the project's transforms; importing :mod:`kws` imports it, so
the registry is complete before any checkpoint loads. The names are what checkpoints store:
never rename one.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

TRANSFORMS: dict[str, Callable[..., nn.Module]] = {}


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
            raise KeyError(f"the checkpoint needs model transform {entry['name']!r}, which is not registered (known: {sorted(TRANSFORMS)}); import the module that registers it")
        apply_transform(module, entry["name"], **entry["params"])


# Path segments the transforms insert around a layer's own parameters: QuantWrapper's `layer`,
# torch.nn.utils.parametrize's `parametrizations.<name>.original`.
WRAPPER_SEGMENTS = {"layer", "parametrizations", "original"}


def parameters_in_plain_order(model: nn.Module, plain: nn.Module) -> list[nn.Parameter]:
    """``model``'s parameters ordered as the matching ones of the uncompressed ``plain`` model.

    Optimizer state is saved by position. A transformed model lists its parameters in another
    order than the model the optimizer was built on (parametrize moves a weight after the bias),
    so a resumed run must build its optimizer in the plain order to load that state."""
    order = {name: i for i, (name, _) in enumerate(plain.named_parameters())}

    def plain_name(name: str) -> str:
        return ".".join(part for part in name.split(".") if part not in WRAPPER_SEGMENTS)

    named = list(model.named_parameters())
    return [p for _, p in sorted(named, key=lambda item: order.get(plain_name(item[0]), len(order)))]
