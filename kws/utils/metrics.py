"""Top-1 accuracy and agreement, counted by torchmetrics (numpy arrays or tensors in)."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_accuracy


def accuracy(scores, labels) -> float:
    """Fraction of rows of ``scores`` [n, classes] (logits or probabilities) whose top class is
    ``labels`` [n]; ``labels`` may also be another model's scores (top-1 agreement)."""
    scores = torch.as_tensor(np.asarray(scores))
    labels = torch.as_tensor(np.asarray(labels))
    if labels.dim() == 2:
        labels = labels.argmax(-1)
    if not len(labels):
        raise ValueError("accuracy of no examples")
    return float(multiclass_accuracy(scores, labels, num_classes=scores.shape[-1], average="micro"))
