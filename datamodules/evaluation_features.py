"""Set-up step 4: validation and test features, computed once. Evaluation is not augmented, so
each split's features are the same every epoch: one tensor per split and view (after the
lead-in, and from a fresh state: :data:`datamodules.classes.EVAL_VIEWS`)."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from datamodules.batches import ClipBatches, FeatureBatches
from datamodules.layout import SPLITS


@torch.no_grad()
def features_once(
    featurize: Callable[[torch.Tensor], torch.Tensor], data: ClipBatches, input_shape: Sequence[int], chunk: int = 500
) -> FeatureBatches:
    """Flat features of every clip of ``data``, ``chunk`` clips at a time."""
    features = [featurize(data[list(range(i, min(i + chunk, len(data))))][0]) for i in range(0, len(data), chunk)]
    return FeatureBatches(torch.cat(features) if features else torch.zeros(0, math.prod(input_shape)), data.labels)


def evaluation_features(
    splits: dict[str, ClipBatches],
    fresh: dict[str, ClipBatches],
    views: Sequence[str],
    featurize: Callable[[torch.Tensor], torch.Tensor],
    input_shape: Sequence[int],
) -> dict[str, dict[str, FeatureBatches]]:
    """split -> view -> features of the evaluation splits; ``splits`` holds the clips after their
    lead-in (or the fresh ones, without), ``fresh`` those without."""
    out = {}
    for split in SPLITS[1:]:
        clips = {"lead_in": splits[split], "fresh": fresh[split]}
        out[split] = {view: features_once(featurize, clips[view], input_shape) for view in views}
    return out
