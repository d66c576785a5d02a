"""Model size and cost: parameters, bytes, FLOPs, activation memory and latency, per layer and in total.

FLOPs follow the usual TinyML count: 2 x multiply-accumulates (torch's own FLOP counter) plus
one add per bias element of each output (TinyConv: 640,000 + 32,000 + 4,000 + 4 = 676,004).

:func:`profile_model` reports all of it per layer; ``callbacks.Profile`` runs it at the end of a
fit and ``python -m kws profile --ckpt PATH`` (or ``--config conf.yaml``) on a checkpoint or on a
model built from a config. Both print :func:`~kws.tools.profile_table.format_profile_table` and write the dict as JSON.

Definitions (see :func:`profile_model` for the full list):

- a *layer* is a module that runs during the forward pass and holds no other module that runs:
  Conv2d, ReLU, Flatten, Linear ...; a wrapper that computes with the layer it holds without
  calling it (``callbacks.quantization.QuantWrapper``) is one layer, and a layer pruned with
  ``torch.nn.utils.parametrize`` masks counts its masked weights (its parametrizations are no
  layers of their own).
- ``bytes_float32`` = 4 x parameters; ``bytes_int8`` = TFLite's full-integer scheme: 1 byte per
  weight, 4 per bias element (int32), zeros included, as a dense int8 model stores them;
  ``bytes_int8_nonzero`` counts only the nonzero values, the floor of any sparse encoding
  (indices not included). A structurally pruned (rebuilt) model has fewer parameters, so all of
  them fall; an unstructured pruned one keeps its shapes, so only the ``nonzero`` figures fall.
  A BatchNorm (DS-CNN) is folded into the convolution before it on export: its int8 bytes are
  the int32 bias it becomes there (4 per channel); its FLOPs fold away too (none counted).
"""

from __future__ import annotations

import argparse
import copy
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from kws.tools.profile_table import format_profile_table, write_profile
from kws.utils.threads import torch_threads
from kws.utils.timing import DEFAULT_MIN_RUN_TIME, latency_ms

DEFAULT_BATCH_SIZES = (1, 256)
BIAS_NAMES = ("bias",)
OTHER = "(other)"  # parameters or FLOPs outside every layer (e.g. ops in a parent's forward)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """All parameters, and those not exactly zero (pruned weights are zeros)."""
    params = list(model.parameters())
    return {
        "parameters": sum(p.numel() for p in params),
        "nonzero_parameters": sum(int((p != 0).sum()) for p in params),
    }


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one example: 2 x MACs plus bias additions."""
    return _trace(model, input_shape).total_flops


# ------------------------------------------------------------------------------ per-layer trace
@dataclass
class _Calls:
    """What the forward hooks saw of one module (over all its calls)."""

    order: int = -1
    calls: int = 0
    output_shape: list | None = None
    output_bytes: int = 0  # of the last call
    live_bytes: int = 0  # largest input + output of one call, shared storage counted once
    bias_adds: int = 0


@dataclass
class _Trace:
    model: nn.Module
    layers: list[tuple[str, nn.Module, _Calls, int]] = field(default_factory=list)  # name, module, calls, matmul FLOPs
    counter_flops: int = 0
    input_bytes: int = 0
    activation_bytes: int = 0  # every layer output, a storage shared by several counted once

    @property
    def total_flops(self) -> int:
        return self.counter_flops + sum(calls.bias_adds for _, _, calls, _ in self.layers)


def _tensors(value) -> Iterator[Tensor]:
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _bytes(tensors: Iterable[Tensor]) -> int:
    """Bytes of ``tensors``, a storage shared by several (views, in-place results) counted once."""
    by_storage: dict[int, int] = {}
    for t in tensors:
        key = t.untyped_storage().data_ptr()
        by_storage[key] = max(by_storage.get(key, 0), t.numel() * t.element_size())
    return sum(by_storage.values())


def _is_internal(name: str) -> bool:
    """Modules of torch.nn.utils.parametrize (masks): part of their layer, never layers themselves."""
    return "parametrizations" in name.split(".")


def _compute_layer(module: nn.Module) -> nn.Module | None:
    """The Conv/Linear layer that ``module`` is or wraps (the first one in it), if any."""
    for name, m in module.named_modules():
        if not _is_internal(name) and isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            return m
    return None


def _trace(model: nn.Module, input_shape: Sequence[int]) -> _Trace:
    """One eval-mode forward pass of one example under torch's FLOP counter, with hooks on every
    module; the layers are the modules that ran and hold no other module that ran."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.zeros(1, *input_shape, device=device)
    named = [(name, m) for name, m in model.named_modules() if not _is_internal(name)]
    seen: dict[str, _Calls] = {name: _Calls() for name, _ in named}
    order = iter(range(1 << 62))
    outputs_seen: list[tuple[str, Tensor]] = []  # kept alive so that no storage is reused within the pass

    def hook(name: str, module: nn.Module):
        def record(_module, inputs, output):
            calls = seen[name]
            if calls.order < 0:
                calls.order = next(order)
            calls.calls += 1
            outputs = list(_tensors(output))
            outputs_seen.extend((name, t) for t in outputs)
            calls.output_shape = list(outputs[0].shape) if len(outputs) == 1 else [list(t.shape) for t in outputs]
            calls.output_bytes = _bytes(outputs)
            calls.live_bytes = max(calls.live_bytes, _bytes([*_tensors(inputs), *outputs]))
            layer = _compute_layer(module)
            if layer is not None and getattr(layer, "bias", None) is not None:
                calls.bias_adds += sum(t.numel() for t in outputs)

        return record

    hooks = [m.register_forward_hook(hook(name, m)) for name, m in named]
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)

    ran = [name for name, _ in named if seen[name].calls]
    modules = dict(named)
    # A module with a running descendant is a container: its descendants are reported instead.
    leaves = [n for n in ran if not any(o != n and (n == "" or o.startswith(n + ".")) for o in ran)]
    per_module = counter.get_flop_counts()
    root = type(model).__name__
    trace = _Trace(model, counter_flops=counter.get_total_flops(), input_bytes=_bytes([x]))
    layer_names = set(leaves)
    trace.activation_bytes = _bytes(t for name, t in outputs_seen if name in layer_names)
    for name in sorted(leaves, key=lambda n: seen[n].order):
        key = f"{root}.{name}" if name else root
        trace.layers.append((name, modules[name], seen[name], sum(per_module.get(key, {}).values())))
    return trace


def _effective_tensors(module: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """(tensor name, value as the forward pass sees it) of every parameter in ``module``: masked
    weights for torch.nn.utils.parametrize and torch.nn.utils.prune, others as they are."""
    for name, m in module.named_modules():
        if _is_internal(name):
            continue
        if parametrize.is_parametrized(m):
            for tensor in m.parametrizations:
                yield tensor, getattr(m, tensor).detach()
        for pname, p in m.named_parameters(recurse=False):
            base = pname.removesuffix("_orig")
            mask = getattr(m, f"{base}_mask", None) if pname.endswith("_orig") else None
            yield (base, (p * mask).detach()) if isinstance(mask, Tensor) else (pname, p.detach())


def _sizes(tensors: Iterable[tuple[str, Tensor]]) -> dict[str, int]:
    sizes = dict.fromkeys(("parameters", "nonzero_parameters", "bytes_float32", "bytes_int8", "bytes_int8_nonzero"), 0)
    for name, t in tensors:
        n, nonzero = t.numel(), int(t.count_nonzero())
        width = 4 if name in BIAS_NAMES else 1  # int32 biases, int8 everything else (TFLite)
        sizes["parameters"] += n
        sizes["nonzero_parameters"] += nonzero
        sizes["bytes_float32"] += 4 * n
        sizes["bytes_int8"] += width * n
        sizes["bytes_int8_nonzero"] += width * nonzero
    return sizes


def _type_name(module: nn.Module) -> str:
    inner = _compute_layer(module)
    if inner is None or inner is module:
        return type(module).__name__
    return f"{type(module).__name__}({type(inner).__name__})"


def profile_layers(model: nn.Module, input_shape: Sequence[int]) -> dict:
    """The per-layer and total figures of :func:`profile_model`, without latency."""
    trace = _trace(model, input_shape)
    rows, covered = [], set()
    for name, module, calls, matmul_flops in trace.layers:
        covered.update(id(p) for p in module.parameters())
        sizes = _sizes(_effective_tensors(module))
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            # Folded into the convolution before it on export: its int8 model holds an int32 bias.
            sizes["bytes_int8"] = sizes["bytes_int8_nonzero"] = 4 * module.num_features
        rows.append(
            {
                "name": name or type(model).__name__,
                "type": _type_name(module),
                "output_shape": calls.output_shape,
                **sizes,
                "flops": matmul_flops + calls.bias_adds,
                "activation_bytes": calls.output_bytes,
                "live_bytes": calls.live_bytes,
                "calls": calls.calls,
            }
        )
    other_params = [(n.rpartition(".")[2], p.detach()) for n, p in model.named_parameters() if id(p) not in covered]
    other_flops = trace.total_flops - sum(r["flops"] for r in rows)
    if other_params or other_flops:
        rows.append(
            {
                "name": OTHER,
                "type": "",
                "output_shape": None,
                **_sizes(other_params),
                "flops": other_flops,
                "activation_bytes": 0,
                "live_bytes": 0,
                "calls": 0,
            }
        )
    total = {
        key: sum(r[key] for r in rows)
        for key in ("parameters", "nonzero_parameters", "bytes_float32", "bytes_int8", "bytes_int8_nonzero", "flops")
    }
    total["activation_bytes"] = trace.activation_bytes
    total["peak_activation_bytes"] = max([trace.input_bytes, *(r["live_bytes"] for r in rows)])
    total["input_bytes"] = trace.input_bytes
    assert total["flops"] == trace.total_flops
    return {"input_shape": [1, *input_shape], "layers": rows, "total": total}


def default_devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def _device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def profile_model(
    model: nn.Module,
    input_shape: Sequence[int],
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    devices: Sequence[str] | None = None,
    min_run_time: float = DEFAULT_MIN_RUN_TIME,
    threads: int | None = None,
) -> dict:
    """Size, cost, activation memory and latency of ``model`` on inputs ``[batch, *input_shape]``.

    The model is not changed (a copy is measured). Returns a JSON-ready dict:

    - ``layers``: one row per layer (see the module docstring) in execution order, with ``name``,
      ``type``, ``output_shape`` (batch 1), ``parameters`` and ``nonzero_parameters`` (of the
      weights as the forward pass uses them: pruning masks applied), ``bytes_float32``,
      ``bytes_int8``, ``bytes_int8_nonzero``, ``flops`` (one example: FLOPs torch's
      ``FlopCounterMode`` attributes to the layer + one add per output element of a Conv/Linear
      with a bias), ``activation_bytes`` (its output tensor, batch 1) and ``live_bytes`` (its
      input and output together; a tensor sharing storage with another -- a view as Flatten's,
      Dropout's identity in eval -- counted once). A row ``(other)`` takes parameters and FLOPs
      outside every layer, if any, so the rows always add up to the totals.
    - ``total``: the sums; ``activation_bytes``: all the layers' outputs, a storage shared by
      several counted once (what a pass that frees nothing holds); ``input_bytes``; and
      ``peak_activation_bytes``: the largest ``live_bytes`` of any layer
      (at least the input), i.e. the activation arena of a sequential forward pass that frees
      each tensor once its one consumer has run. Eager PyTorch's own memory may differ
      (unfused ReLU, allocator caching); tensors a branching model keeps alive across layers
      are not added.
    - ``latency_ms``: ``{device: {str(batch): median ms}}`` for each of ``devices`` (default: CPU,
      plus CUDA when available) and ``batch_sizes``: the median of at least ``min_run_time`` seconds
      of passes (``torch.utils.benchmark.Timer``, which warms up and synchronizes the device);
      the CPU with ``threads`` intra-op threads (default: torch's setting). On a busy machine
      all-thread timings wait on descheduled threads: ``threads=1`` is steadier.
    - ``latency``: how it was measured, and ``devices``: each device's name.

    FLOPs and parameters are the dense counts: unstructured pruning zeroes weights without
    removing their multiplications (see ``nonzero_parameters``); structured pruning that rebuilt
    smaller layers lowers every figure.
    """
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be positive integers, got {list(batch_sizes)}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if min_run_time <= 0:
        raise ValueError(f"min_run_time must be > 0 seconds, got {min_run_time}")
    devices = default_devices() if devices is None else list(devices)
    work = copy.deepcopy(model).cpu()
    result = profile_layers(work, input_shape)
    result["latency"] = {
        "statistic": "median",
        "timer": "torch.utils.benchmark.Timer.blocked_autorange",
        "min_run_time_s": min_run_time,
        "batch_sizes": [int(b) for b in batch_sizes],
    }
    result["latency_ms"] = {}
    with torch_threads(threads):
        result["devices"] = {device: _device_name(device) for device in devices}
        for device in devices:
            on_device = copy.deepcopy(work)
            result["latency_ms"][device] = {
                str(int(b)): latency_ms(on_device, input_shape, int(b), device, min_run_time) for b in batch_sizes
            }
            del on_device
    return result


# ---------------------------------------------------------------------------------------- CLI
def module_input_shape(module: nn.Module) -> tuple[int, ...]:
    """One example's input shape of a KWSModule's model (TinyConv takes flat features)."""
    example = getattr(module, "example_input_array", None)
    if isinstance(example, Tensor):
        return tuple(example.shape[1:])
    frames, features = module.hparams.input_shape
    return (frames * features,)


def main(argv: list[str] | None = None) -> dict:
    from kws.training.checkpoints import CheckpointError, config_section, load_config_model, load_module

    parser = argparse.ArgumentParser(
        prog="python -m kws profile",
        description="Parameters, bytes (float32/int8), FLOPs, activation memory and latency of a "
        "model, per layer and in total.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--ckpt",
        help="a checkpoint saved by `python -m kws fit` (pruned and rebuilt models show their smaller figures)",
    )
    source.add_argument(
        "--config", help="a fit config (conf.yaml): profile the untrained model its model: and data: sections build"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="JSON output (default: <checkpoint>.profile.json beside the checkpoint, "
        "or <trainer.default_root_dir or runs>/profile.json)",
    )
    parser.add_argument(
        "--batch_sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_BATCH_SIZES),
        help="batch sizes timed (default: 1 256)",
    )
    parser.add_argument(
        "--min_run_time",
        type=float,
        default=DEFAULT_MIN_RUN_TIME,
        help="seconds of timed forward passes per batch size and device (the median is reported)",
    )
    parser.add_argument(
        "--devices", nargs="+", default=None, help="devices timed (default: cpu, and cuda when available)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads while timing (default: torch's; 1 is steadier on a busy machine)",
    )
    args = parser.parse_args(argv)
    if (
        args.min_run_time <= 0
        or any(b < 1 for b in args.batch_sizes)
        or (args.threads is not None and args.threads < 1)
    ):
        parser.error(
            f"need --min_run_time > 0, --batch_sizes >= 1 and --threads >= 1, got {args.min_run_time}, "
            f"{args.batch_sizes}, {args.threads}"
        )
    if args.devices and any(torch.device(d).type == "cuda" for d in args.devices) and not torch.cuda.is_available():
        parser.error("--devices names cuda, but no CUDA device is available")
    try:
        if args.ckpt:
            module, _ = load_module(args.ckpt)
            ckpt = Path(args.ckpt)
            out = Path(args.out) if args.out else ckpt.with_name(f"{ckpt.stem}.profile.json")
        else:
            module, config = load_config_model(args.config)
            root = config_section(config, "trainer", args.config).get("default_root_dir") or "runs"
            out = Path(args.out) if args.out else Path(root) / "profile.json"
        profile = profile_model(
            module.model, module_input_shape(module), args.batch_sizes, args.devices, args.min_run_time, args.threads
        )
        profile["source"] = str(args.ckpt or args.config)
    except CheckpointError as err:
        parser.exit(2, f"error: {err}\n")
    try:
        write_profile(profile, out)
    except OSError as err:
        parser.exit(2, f"error: cannot write {out}: {err}; choose another --out\n")
    print(format_profile_table(profile))
    print(f"Profile: {out}")
    return profile
