"""Latency: the median time of a call, measured by ``torch.utils.benchmark.Timer``.

The Timer picks how many calls to time together so its own overhead stays negligible, warms
up first, sets the thread count for the measurement and synchronizes CUDA around each block."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.benchmark import Timer

DEFAULT_MIN_RUN_TIME = 0.2  # seconds of timed calls per measurement


def median_ms(
    call: Callable[[], object], min_run_time: float = DEFAULT_MIN_RUN_TIME, threads: int | None = None
) -> float:
    """Median wall time of one ``call()`` in ms, with ``threads`` intra-op threads (None: torch's
    current setting), over at least ``min_run_time`` seconds of calls."""
    if min_run_time <= 0:
        raise ValueError(f"min_run_time must be > 0 seconds, got {min_run_time}")
    timer = Timer(stmt="call()", globals={"call": call}, num_threads=threads or torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1000


def latency_ms(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch: int = 1,
    device: str | torch.device = "cpu",
    min_run_time: float = DEFAULT_MIN_RUN_TIME,
    threads: int | None = None,
) -> float:
    """Median time of one forward pass of a ``batch`` of random inputs on ``device``, in eval mode
    without gradients. The model is moved to ``device`` in place: pass a copy to keep it."""
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.randn(batch, *input_shape, device=device)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    return median_ms(forward, min_run_time, threads)
