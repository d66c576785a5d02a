"""CPU threads: a scoped intra-op thread count, and each training process's share of a node."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads (None: leave torch's setting), restored after."""
    saved = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        yield
    finally:
        torch.set_num_threads(saved)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells, else all)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def share_cpu_threads(processes: int) -> None:
    """Give each of a node's training processes its share of the CPU cores: by default every
    process would start one thread per core, and the front end then runs many times slower.
    An explicit OMP_NUM_THREADS (set by conf/slurm.sbatch from the task's CPUs) is kept."""
    if processes > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, available_cores() // processes))
