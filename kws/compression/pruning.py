"""Pruning: unstructured magnitude pruning, or structured removal of conv channels, on a schedule.

:class:`Pruner` holds the schedule and the masks; ``callbacks.Pruning`` is a Pruner that Lightning
calls at the start and end of each epoch. Masks are ``torch.nn.utils.parametrize``
parametrizations and every structural change goes through :mod:`kws.models.surgery`, so a
checkpoint reloads mid-pruning (masks included) and after it (a smaller model).

Relation to Lightning's ``ModelPruning`` (same torch primitives, nothing of it reused): there,
``amount`` is a fraction of what *remains* each time it is applied and masks are ``torch.nn.utils.prune``
forward pre-hooks; its checkpoints store the masked weights without the masks, and it has no
channel removal. Here: ``amount`` is the final fraction of the *original* weights/channels with
exact counts at every step (``round(s_t * n)``, ties broken by index so the count is exact);
one-shot, constant and Zhu & Gupta gradual schedules; L1/L2/Linf channel pruning that removes the
channels and the fully connected columns they feed; and parametrized masks, so ``layer.weight``
is the masked weight on every access (a prune pre-hook only refreshes ``layer.weight`` when the
layer itself is called: a fake-quantization wrapper that reads it would get a stale tensor).
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from kws.models import TinyConv
from kws.models.surgery import apply_transform, register_transform

NORMS = {"l1": 1.0, "l2": 2.0, "linf": math.inf}
SCHEDULES = ("one_shot", "constant", "gradual")
CONV_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
PRUNABLE_LAYERS = (*CONV_LAYERS, nn.Linear)


class WeightMask(nn.Module):
    """Parametrization ``tensor -> tensor * mask``; the bool mask is a buffer, so checkpoints keep it."""

    def __init__(self, mask: Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask


def prunable_layer_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, PRUNABLE_LAYERS)]


def find_layer(model: nn.Module, name: str, kinds: tuple[type, ...] = PRUNABLE_LAYERS) -> nn.Module:
    """Layer ``name`` of ``model``, or the one layer of ``kinds`` inside it when a wrapper sits there."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"no layer {name!r} in the model; prunable layers: {prunable_layer_names(model)}") from None
    found = [m for m in module.modules() if isinstance(m, kinds)]
    if len(found) != 1:
        kind = "/".join(k.__name__ for k in kinds)
        raise ValueError(
            f"layer {name!r} ({type(module).__name__}) holds {len(found)} {kind} layers, not one; "
            f"prunable layers: {prunable_layer_names(model)}"
        )
    return found[0]


def _layer_and_tensor(model: nn.Module, param: str) -> tuple[nn.Module, str]:
    layer, _, tensor = param.rpartition(".")
    return find_layer(model, layer), tensor


def get_mask(model: nn.Module, param: str) -> Tensor | None:
    """The pruning mask of ``param`` ("layer.weight"), or None when it has none."""
    layer, tensor = _layer_and_tensor(model, param)
    if not parametrize.is_parametrized(layer, tensor):
        return None
    masks = [p.mask for p in layer.parametrizations[tensor] if isinstance(p, WeightMask)]
    return masks[0] if masks else None


def channel_columns(keep: Sequence[int], per_channel: int) -> Tensor:
    """Input columns of a fully connected layer fed by channels ``keep`` through a channel-major flatten."""
    return (torch.as_tensor(keep)[:, None] * per_channel + torch.arange(per_channel)).flatten()


@register_transform("prune_masks")
def add_masks(model: nn.Module, params: list[str]) -> nn.Module:
    """Reparametrize each ``"layer.tensor"`` as ``tensor * mask``, all ones until pruning edits it."""
    for param in params:
        layer, tensor = _layer_and_tensor(model, param)
        mask = torch.ones_like(getattr(layer, tensor), dtype=torch.bool)
        parametrize.register_parametrization(layer, tensor, WeightMask(mask))
    return model


@register_transform("prune_permanent")
def remove_masks(model: nn.Module, params: list[str]) -> nn.Module:
    """Bake each mask into its tensor and drop the parametrization."""
    for param in params:
        layer, tensor = _layer_and_tensor(model, param)
        chain = list(layer.parametrizations[tensor]) if parametrize.is_parametrized(layer, tensor) else []
        # remove_parametrizations bakes in every parametrization of the tensor, not only the mask.
        if [type(p) for p in chain] != [WeightMask]:
            raise ValueError(f"{param} should carry exactly one pruning mask, found parametrizations {chain}")
        # Keeps the same Parameter object (its data becomes the masked values): optimizers stay valid.
        parametrize.remove_parametrizations(layer, tensor, leave_parametrized=True)
    return model


def _select(param: nn.Parameter, dim: int, index: Tensor) -> nn.Parameter:
    return nn.Parameter(param.detach().index_select(dim, index.to(param.device)), requires_grad=param.requires_grad)


@register_transform("prune_channels")
def keep_channels(model: nn.Module, keep: list[int], conv: str = "conv", fc: str = "fc") -> nn.Module:
    """Keep output channels ``keep`` of ``conv`` and the input columns of ``fc`` they feed.

    The two layers shrink in place, wherever they sit (inside wrappers too): for TinyConv the
    result is ``TinyConv(channels=len(keep))`` holding the kept weights.
    """
    conv_layer, fc_layer = find_layer(model, conv, CONV_LAYERS), find_layer(model, fc, (nn.Linear,))
    index = torch.as_tensor(keep)
    columns = channel_columns(keep, fc_layer.in_features // conv_layer.out_channels)
    conv_layer.weight = _select(conv_layer.weight, 0, index)
    if conv_layer.bias is not None:
        conv_layer.bias = _select(conv_layer.bias, 0, index)
    fc_layer.weight = _select(fc_layer.weight, 1, columns)
    conv_layer.out_channels, fc_layer.in_features = len(keep), len(columns)
    return model


def _lowest(scores: Tensor, k: int) -> Tensor:
    """Bool tensor marking the ``k`` lowest scores (ties: lower index first, so exactly ``k``)."""
    marked = torch.zeros_like(scores, dtype=torch.bool)
    marked[torch.argsort(scores, stable=True)[:k]] = True
    return marked


def _swap_in_optimizers(
    optimizers: Sequence[torch.optim.Optimizer], old: Tensor, new: Tensor, select: Callable[[Tensor], Tensor]
) -> None:
    """Point optimizers at ``new`` in place of ``old``, slicing per-element state (Adam's moments)
    the way the parameter was sliced, so the final checkpoint's optimizer state fits the smaller model."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["params"] = [new if p is old else p for p in group["params"]]
        if old in optimizer.state:
            state = optimizer.state.pop(old)
            optimizer.state[new] = {
                k: select(v) if torch.is_tensor(v) and v.shape == old.shape else v for k, v in state.items()
            }


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(int(p.count_nonzero()) for p in params)


class Pruner:
    """Prune ``amount`` of the original weights (or conv channels) on a schedule, then make it permanent.

    Args:
        amount: final fraction of the original weights (unstructured) or output channels
            (structured) pruned, in [0, 1). Each step zeroes exactly ``round(s_t * n)`` of them.
        method: ``unstructured`` (smallest ``|w|``, any model) or ``structured`` (conv output
            channels with the smallest ``norm``, removed at the end together with the fully
            connected columns they feed: the Linear layer registered right after the conv,
            TinyConv's ``fc``; TinyConv only).
        scope: ``layer`` (each layer pruned to ``s_t``) or ``global`` (``s_t`` of all the selected
            weights together, ranked by magnitude across layers); unstructured only.
        norm: channel ranking for structured pruning: ``L1``, ``L2`` or ``Linf`` (any case).
        schedule: sparsity ``s_t`` applied at the start of epoch ``t`` (0-based):
            ``one_shot``: ``amount`` at ``start_epoch``.
            ``constant``: equal steps, ``amount * (t - start + 1) / (end - start + 1)``, reaching
            ``amount`` at ``end_epoch``.
            ``gradual``: Zhu & Gupta, ``s_f + (s_i - s_f) * (1 - (t - start) / (end - start)) ** 3``
            with ``s_i = initial_amount`` at ``start_epoch`` and ``s_f = amount`` at ``end_epoch``.
            Epochs after ``end_epoch`` fine-tune with the masks fixed.
        start_epoch, end_epoch: first and last pruning epochs (``end_epoch``: not for ``one_shot``);
            ``end_epoch`` must be below ``trainer.max_epochs``.
        initial_amount: ``s_i`` of the gradual schedule.
        layers: names in ``pl_module.model`` to prune (default: every Conv/Linear layer for
            unstructured, the convolution for structured).
    """

    def __init__(
        self,
        amount: float,
        method: Literal["unstructured", "structured"] = "unstructured",
        scope: Literal["layer", "global"] = "layer",
        norm: str = "L1",
        schedule: Literal["one_shot", "constant", "gradual"] = "one_shot",
        start_epoch: int = 0,
        end_epoch: int | None = None,
        initial_amount: float = 0.0,
        layers: list[str] | None = None,
    ):
        if not 0 <= amount < 1:
            raise ValueError(
                "amount must be in [0, 1) (the final fraction of the original weights or "
                f"channels pruned), got {amount}"
            )
        if method not in ("unstructured", "structured"):
            raise ValueError(f"method must be 'unstructured' or 'structured', got {method!r}")
        if scope not in ("layer", "global"):
            raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
        if scope == "global" and method == "structured":
            raise ValueError(
                "scope 'global' is for unstructured pruning; structured pruning ranks the channels of one convolution"
            )
        if not isinstance(norm, str) or norm.lower() not in NORMS:
            raise ValueError(f"norm must be L1, L2 or Linf, got {norm!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if start_epoch < 0:
            raise ValueError(f"start_epoch must be >= 0, got {start_epoch}")
        if schedule == "one_shot":
            if end_epoch not in (None, start_epoch):
                raise ValueError(
                    f"schedule 'one_shot' prunes once, at start_epoch={start_epoch}: "
                    f"leave end_epoch out (got {end_epoch})"
                )
            end_epoch = start_epoch
        elif end_epoch is None or end_epoch < start_epoch or (schedule == "gradual" and end_epoch == start_epoch):
            relation = ">" if schedule == "gradual" else ">="
            raise ValueError(
                f"schedule {schedule!r} needs end_epoch {relation} start_epoch={start_epoch}, got end_epoch={end_epoch}"
            )
        if not 0 <= initial_amount <= amount:
            raise ValueError(f"initial_amount must be in [0, amount={amount}], got {initial_amount}")
        if initial_amount and schedule != "gradual":
            raise ValueError(f"initial_amount is for schedule 'gradual', not {schedule!r}")
        if layers is not None and (not layers or len(set(layers)) != len(layers)):
            raise ValueError(f"layers must name distinct layers, or be left out to prune every layer; got {layers}")
        self.amount, self.method, self.scope, self.norm = amount, method, scope, norm.lower()
        self.schedule, self.start_epoch, self.end_epoch, self.initial_amount = (
            schedule,
            start_epoch,
            end_epoch,
            initial_amount,
        )
        self.layers = list(layers) if layers else None
        self._names: list[str] = []  # resolved in setup, once the model is known
        self._params: list[str] = []  # "layer.tensor" names that carry masks
        self._fc = ""  # structured: the Linear layer the conv feeds
        self._before = (0, 0)  # parameters and nonzero parameters before pruning

    @property
    def structured(self) -> bool:
        return self.method == "structured"

    def sparsity(self, epoch: int) -> float:
        """The schedule's target fraction pruned during ``epoch``."""
        if epoch < self.start_epoch:
            return 0.0
        t, t0, end = min(epoch, self.end_epoch), self.start_epoch, self.end_epoch
        if self.schedule == "one_shot":
            return self.amount
        if self.schedule == "constant":
            return self.amount * (t - t0 + 1) / (end - t0 + 1)
        s_i, s_f = self.initial_amount, self.amount
        return s_f + (s_i - s_f) * (1 - (t - t0) / (end - t0)) ** 3

    def bind(self, model: nn.Module) -> None:
        """Resolve and check the layers to prune; errors name the option and the available layers."""
        kinds = CONV_LAYERS if self.structured else PRUNABLE_LAYERS
        self._names = self.layers or [n for n, m in model.named_modules() if isinstance(m, kinds)]
        if not self._names:
            raise ValueError(f"the model has no {'/'.join(k.__name__ for k in kinds)} layer to prune")
        layers = [find_layer(model, name) for name in self._names]
        self._params = [f"{name}.weight" for name in self._names]
        if not self.structured:
            sizes = {name: layer.weight.numel() for name, layer in zip(self._names, layers)}
            for group in [[name] for name in sizes] if self.scope == "layer" else [list(sizes)]:
                n = sum(sizes[name] for name in group)
                if round(self.amount * n) >= n:
                    raise ValueError(f"amount={self.amount} would prune every weight of {group}")
            return
        if not isinstance(model, TinyConv):
            # Removing channels of one DS-CNN layer would have to shrink its BatchNorm, the next
            # depthwise and pointwise layers too; only TinyConv's conv -> fc rebuild is implemented.
            raise ValueError(
                f"callbacks.Pruning method 'structured' removes TinyConv's conv channels and the fc columns they feed; "
                f"this model is a {type(model).__name__} (model.arch), which it does not support: "
                "use method 'unstructured' "
                f"(or model.arch tiny_conv)"
            )
        if len(layers) != 1 or not isinstance(layers[0], CONV_LAYERS) or layers[0].groups != 1:
            raise ValueError(
                f"structured pruning removes the output channels of one (ungrouped) convolution; layers={self._names}"
            )
        conv, name = layers[0], self._names[0]
        ordered = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE_LAYERS)]
        position = next(i for i, (_, m) in enumerate(ordered) if m is conv)
        fc_name, fc = ordered[position + 1] if position + 1 < len(ordered) else ("", None)
        if not isinstance(fc, nn.Linear) or fc.in_features % conv.out_channels:
            raise ValueError(
                f"structured pruning of {name!r} needs the next layer to be a Linear fed by its "
                f"flattened channels, found {fc}"
            )
        channels = conv.out_channels
        if round(self.amount * channels) >= channels:
            raise ValueError(
                f"amount={self.amount} would prune all {channels} channels of {name!r} "
                f"(round({self.amount} * {channels})); at least one must remain"
            )
        self._fc = fc_name
        if conv.bias is not None:  # a channel left with its bias would still feed fc a constant
            self._params.append(f"{name}.bias")

    def has_masks(self, model: nn.Module) -> bool:
        """Whether the pruned layers carry masks (pruning started and is not yet permanent)."""
        return get_mask(model, self._params[0]) is not None

    def prune(self, pl_module: nn.Module, epoch: int) -> None:
        """Set the masks to the schedule's sparsity for ``epoch``, adding them on first use."""
        model = pl_module.model
        if get_mask(model, self._params[0]) is None:
            apply_transform(pl_module, "prune_masks", params=self._params)
        target = self.sparsity(epoch)
        with torch.no_grad():
            if self.structured:
                self._prune_channels(model, target)
            else:
                self._prune_weights(model, target)

    def _prune_weights(self, model: nn.Module, target: float) -> None:
        masks = [get_mask(model, param) for param in self._params]
        # Already pruned weights rank lowest, so each step only adds to them (the schedule never falls).
        scores = [
            find_layer(model, n).weight.abs().masked_fill(~m, -math.inf).flatten() for n, m in zip(self._names, masks)
        ]
        groups = [[i] for i in range(len(masks))] if self.scope == "layer" else [list(range(len(masks)))]
        for group in groups:
            flat = torch.cat([scores[i] for i in group])
            pruned = _lowest(flat, round(target * flat.numel()))
            for i, part in zip(group, pruned.split([scores[i].numel() for i in group])):
                masks[i].copy_(~part.view_as(masks[i]))

    def _prune_channels(self, model: nn.Module, target: float) -> None:
        name = self._names[0]
        weight, mask = find_layer(model, name).weight, get_mask(model, f"{name}.weight")
        scores = torch.linalg.vector_norm(weight.flatten(1), ord=NORMS[self.norm], dim=1)
        scores = scores.masked_fill(~mask.flatten(1).any(1), -math.inf)
        pruned = _lowest(scores, round(target * len(scores)))
        mask.copy_(~pruned.view(-1, *[1] * (mask.dim() - 1)).expand_as(mask))
        if len(self._params) > 1:
            get_mask(model, f"{name}.bias").copy_(~pruned)

    def sparsity_report(self, model: nn.Module) -> dict[str, float]:
        """Fraction of zero weights per pruned layer and overall; channels kept for structured."""
        weights = {name: find_layer(model, name).weight.detach() for name in self._names}
        report = {f"pruning/sparsity/{n}": float((w == 0).sum() / w.numel()) for n, w in weights.items()}
        report["pruning/sparsity"] = float(
            sum((w == 0).sum() for w in weights.values()) / sum(w.numel() for w in weights.values())
        )
        if self.structured:
            report.update(
                {f"pruning/channels/{n}": float((w.flatten(1) != 0).any(1).sum()) for n, w in weights.items()}
            )
        return report

    def make_permanent(self, pl_module: nn.Module, optimizers: Sequence[torch.optim.Optimizer] = ()) -> str:
        """Bake the masks in; structured: remove the pruned channels (``optimizers`` follow). Returns a summary."""
        model, lines = pl_module.model, []
        if self.structured:
            keep = get_mask(model, self._params[0]).flatten(1).any(1).nonzero().flatten().tolist()
        apply_transform(pl_module, "prune_permanent", params=self._params)
        if self.structured:
            lines.append(self._remove_channels(pl_module, keep, optimizers))
        for name in self._names:
            weight = find_layer(model, name).weight
            lines.append(f"  {name}: {int(weight.count_nonzero()):,} of {weight.numel():,} weights nonzero")
        params, nonzero = parameter_counts(model)
        method = f"structured {self.norm}" if self.structured else f"unstructured {self.scope}"
        head = (
            f"Pruning ({method}, {self.schedule} to {self.amount:g}) made permanent: "
            f"parameters {self._before[0]:,} -> {params:,}, nonzero {self._before[1]:,} -> {nonzero:,}"
        )
        return "\n".join([head, *lines])

    def _remove_channels(
        self, pl_module: nn.Module, keep: list[int], optimizers: Sequence[torch.optim.Optimizer]
    ) -> str:
        name = self._names[0]
        conv, fc = find_layer(pl_module.model, name, CONV_LAYERS), find_layer(pl_module.model, self._fc, (nn.Linear,))
        channels, old = conv.out_channels, (conv.weight, conv.bias, fc.weight)
        index, columns = torch.as_tensor(keep), channel_columns(keep, fc.in_features // conv.out_channels)
        apply_transform(pl_module, "prune_channels", keep=keep, conv=name, fc=self._fc)
        _swap_in_optimizers(optimizers, old[0], conv.weight, lambda t: t[index.to(t.device)])
        if conv.bias is not None:
            _swap_in_optimizers(optimizers, old[1], conv.bias, lambda t: t[index.to(t.device)])
        _swap_in_optimizers(optimizers, old[2], fc.weight, lambda t: t[:, columns.to(t.device)])
        return f"  {name}: kept {len(keep)} of {channels} channels {keep}; {self._fc}: {fc.in_features} inputs"
