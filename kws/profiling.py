"""Model size and cost: parameters, FLOPs and CPU latency.

FLOPs follow the usual TinyML count: 2 x multiply-accumulates (torch's own FLOP counter) plus
one add per bias element of each output (TinyConv: 640,000 + 32,000 + 4,000 + 4 = 676,004).
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> dict[str, int]:
    """All parameters, and those not exactly zero (pruned weights are zeros)."""
    params = list(model.parameters())
    return {"parameters": sum(p.numel() for p in params), "nonzero_parameters": sum(int((p != 0).sum()) for p in params)}


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one example: 2 x MACs plus bias additions."""
    x = torch.zeros(1, *input_shape)
    bias_adds = 0

    def count_bias(module, _inputs, output):
        nonlocal bias_adds
        if getattr(module, "bias", None) is not None:
            bias_adds += output.numel()

    hooks = [m.register_forward_hook(count_bias) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return counter.get_total_flops() + bias_adds


def cpu_latency_ms(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1, runs: int = 200, warmup: int = 20) -> float:
    """Median wall time of one forward pass on the CPU, after warm-up."""
    model = model.eval()
    x = torch.randn(batch, *input_shape)
    times = []
    with torch.no_grad():
        for i in range(warmup + runs):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
