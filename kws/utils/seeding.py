"""Per-step seeds: every random draw of a training step is a function of where the step is.

Resuming from a checkpoint must continue the same run. Lightning restores weights, optimizer,
schedulers and callback state, but not the random streams, and how many numbers were drawn before a
given step differs between an interrupted and an uninterrupted run (sanity validation, data loader
iterators). So nothing in training draws from a stream carried across steps:

- data order: ``torch.utils.data.DistributedSampler`` (one replica when not distributed), shuffled
  from (seed, epoch) through Lightning's ``set_epoch``;
- augmentation (time shift, noise) and dropout: generators seeded by :func:`step_seed` from
  (seed, epoch, batch, rank, stream).

The seed is ``seed_everything``'s (``PL_GLOBAL_SEED``): a run is reproducible for a given number
of processes, and a resumed run gives the weights of an uninterrupted one
(tests/training/test_distributed.py). Different numbers of processes draw different augmentation and
dropout (the rank is part of the seed); without those they train on the same batches.
"""

from __future__ import annotations

import os

import numpy as np

STREAMS = {"augment": 0, "model": 1}


def base_seed() -> int:
    """The run's seed: Lightning's ``seed_everything`` (``seed_everything:`` in the config), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def step_seed(epoch: int, batch: int, rank: int, stream: str) -> int:
    """A 63-bit seed for one stream of one training step on one rank."""
    entropy = [base_seed() & 0xFFFFFFFF, epoch, batch, rank, STREAMS[stream]]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
