"""Datasets that hand the DataLoader whole batches: one vectorised gather per batch from the
decoded audio (training), or rows of features computed once (evaluation)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class ClipBatches(Dataset):
    """Whole batches by index list (``__getitems__``, which the DataLoader calls with each batch's
    indices): one vectorised gather per batch, silence rows are zeros."""

    def __init__(self, audio: np.ndarray, rows: np.ndarray, labels: np.ndarray):
        self.audio, self.rows, self.labels = audio, rows, labels

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One clip and label for an integer index; a batch for a list of indices."""
        if isinstance(index, (int, np.integer)):
            audio, labels = self.__getitems__([index])
            return audio[0], labels[0]
        return self.__getitems__(index)

    def __getitems__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.rows[index]
        out = np.zeros((len(rows), self.audio.shape[1]), np.int16)
        speech = rows >= 0
        out[speech] = self.audio[np.sort(rows[speech])][np.argsort(np.argsort(rows[speech]))]
        return torch.from_numpy(out), torch.from_numpy(self.labels[index])


class FeatureBatches(Dataset):
    """Evaluation features [n, frames * features] computed once, with their labels, by index list."""

    def __init__(self, features: torch.Tensor, labels: np.ndarray):
        self.features, self.labels = features, torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int | list[int]):
        return self.__getitems__([index]) if isinstance(index, (int, np.integer)) else self.__getitems__(index)

    def __getitems__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[index], self.labels[index]


def whole_batch(batch):
    """collate_fn: ``ClipBatches.__getitems__`` already returns the batch."""
    return batch
