"""Model surgery: structural changes to a model (pruned-and-rebuilt layers, fake-quantization
wrappers) that a checkpoint must be able to replay before its weights load.

A compression callback changes ``module.model`` only through :func:`apply_transform`, which runs
a registered function and records ``(name, params)`` on the module. ``KWSModule`` saves that log
in every checkpoint and replays it in ``on_load_checkpoint`` -- before Lightning loads the
state dict -- so ``KWSModule.load_from_checkpoint`` rebuilds the exact trained model (smaller
layers, quantizer buffers with their learned ranges) with or without the callbacks configured.

Register a transform with ``@register_transform("name")`` on a function
``fn(model: nn.Module, **params) -> nn.Module``; params must be JSON-like (they are saved).
A transform named in a checkpoint but not yet registered is found through the package's entry
points (group ``kws.model_transforms`` in pyproject.toml: name -> function), so a checkpoint
loads without whoever loads it importing the modules that compress (kws.compression, or a
plugin's): the model layer never imports the layers above it. The names are what checkpoints
store: never rename one.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Callable

from torch import nn

TRANSFORMS: dict[str, Callable[..., nn.Module]] = {}
ENTRY_POINT_GROUP = "kws.model_transforms"


def register_transform(name: str) -> Callable:
    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in TRANSFORMS and TRANSFORMS[name] is not fn:
            raise ValueError(f"transform {name!r} is registered twice")
        TRANSFORMS[name] = fn
        return fn

    return decorator


def apply_transform(module: nn.Module, name: str, **params: Any) -> nn.Module:
    """Replace ``module.model`` by ``transform(module.model, **params)`` and log it."""
    module.model = find_transform(name)(module.model, **params)
    module.model_transforms.append({"name": name, "params": params})
    return module.model


def find_transform(name: str) -> Callable[..., nn.Module]:
    """The transform registered as ``name``, loading its entry point if it is not yet."""
    if name not in TRANSFORMS:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            raise KeyError(
                f"the checkpoint needs model transform {name!r}, which is neither registered "
                f"(known: {sorted(TRANSFORMS)}) "
                f"nor an entry point of group {ENTRY_POINT_GROUP!r}; is kws installed (pip install -e .)?"
            )
        TRANSFORMS.setdefault(name, found[0].load())
    return TRANSFORMS[name]


def replay_transforms(module: nn.Module, log: list[dict]) -> None:
    """Apply a saved transform log to a freshly built module (before its weights load)."""
    for entry in log:
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
