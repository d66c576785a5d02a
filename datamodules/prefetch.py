"""Training batches featurized in a background thread: the next batch's augmentation and features
are computed while the model trains on this one, so an epoch takes about the longer of the two
rather than their sum.

Threads, not processes: the front end is the firmware's C code called through ctypes and the
augmentation is torch tensor ops, both of which release the GIL, and a thread shares the decoded
audio without pickling it. Each batch is still a pure function of (epoch, batch index) through
the per-step seeds, so the prefetching changes no result.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator

_END = object()


class BackgroundFeatures:
    """``loader``'s batches, each passed through ``featurize(batch, index, epoch)`` in a
    background thread, at most ``depth`` batches ahead.

    ``epoch()`` is read when an epoch's iteration starts. The loader's ``sampler`` and
    ``batch_sampler`` are exposed so that Lightning still calls their ``set_epoch``.
    """

    def __init__(
        self, loader: Iterable, featurize: Callable[[Any, int, int], Any], epoch: Callable[[], int], depth: int = 2
    ):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.loader, self.featurize, self.epoch, self.depth = loader, featurize, epoch, depth

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def sampler(self):
        return getattr(self.loader, "sampler", None)

    @property
    def batch_sampler(self):
        return getattr(self.loader, "batch_sampler", None)

    def __iter__(self) -> Iterator:
        epoch = self.epoch()
        ready: queue.Queue = queue.Queue(self.depth)
        stop = threading.Event()

        def produce() -> None:
            try:
                for index, batch in enumerate(self.loader):
                    if stop.is_set():
                        return
                    ready.put(self.featurize(batch, index, epoch))
                ready.put(_END)
            except BaseException as err:  # handed to the training thread, which raises it
                ready.put(err)

        worker = threading.Thread(target=produce, name="kws-training-features", daemon=True)
        worker.start()
        try:
            while (item := ready.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                try:
                    ready.get(timeout=0.05)
                except queue.Empty:
                    pass
            worker.join()
