"""Set-up step 1: which split each clip belongs to. The dataset's ``validation_list.txt`` /
``testing_list.txt``, else its sha1-of-speaker rule (:func:`datamodules.layout.assign_splits`);
a held-out dialect's clips all go to testing (:mod:`datamodules.holdout`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from datamodules.holdout import hold_out_dialect, speaker_voices
from datamodules.layout import DataError, assign_splits, split_lists


def split_assignment(
    data_dir: Path,
    files: list[str],
    scanned: set[str],
    validation_percentage: float,
    testing_percentage: float,
    holdout_dialect: str | None = None,
) -> list[str]:
    """The split of each of ``files`` (cache rows); ``scanned``: every clip found on disk."""
    if split_lists(data_dir) is None:
        rank_zero_info(
            f"No split lists in {data_dir}: using the sha1-of-speaker split "
            f"({validation_percentage:g} % validation, {testing_percentage:g} % test)"
        )
    assignment = assign_splits(data_dir, files, scanned, validation_percentage, testing_percentage)
    if not holdout_dialect:
        return assignment
    return hold_out_dialect(files, assignment, speaker_voices(data_dir), holdout_dialect)


def empty_split_check(data_dir: Path, wanted_words: Sequence[str]) -> Callable[[str], None]:
    """What a split without keyword clips means: an error where the lists name the split (they
    disagree with the clips), else a warning (the speaker-hash split of a small data set)."""

    def on_empty(split: str) -> None:
        message = f"the {split} split holds no clip of {list(wanted_words)} in {data_dir}"
        if split_lists(data_dir) is not None:
            raise DataError(f"{message}; check {split}_list.txt against the clips")
        rank_zero_warn(
            f"{message} (the speaker-hash split of a small data set): its metrics will be empty; "
            "add speakers, or raise data.validation_percentage / data.testing_percentage"
        )

    return on_empty
