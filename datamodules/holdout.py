"""Holding one dialect of the synthetic corpus out of training: the closest proxy, offline, for an
accent no training voice has.

The corpus marker (``.kws_corpus.json``, written by :mod:`datamodules.synthetic`) lists every
speaker with its ``dialect``, voice ``variant`` and ``family`` (format 1 markers only name the voice,
``<dialect>+<variant>``; both are read). Holding a dialect out moves every clip of its speakers
into the test split, so none is trained on or used to choose the model, and the tests report it.

    voices = speaker_voices(data_dir)                      # {speaker id: {dialect, variant, family}}
    assignment = hold_out_dialect(files, assignment, voices, "en-gb-scotland")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from datamodules.layout import DataError
from datamodules.synthetic import MARKER_NAME
from datamodules.voices import family_of

NEEDS = "holding a dialect out needs a kws synthetic corpus (data.synthetic: true, or `python -m kws corpus`)"


def speaker_voices(data_dir: str | Path) -> dict[str, dict[str, str]]:
    """{speaker id: {"dialect", "variant", "family"}} of a kws synthetic corpus, from its marker.

    Raises:
        DataError: the marker is missing, unreadable, or lists no voices; the message names it.
    """
    path = Path(data_dir) / MARKER_NAME
    try:
        marker = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DataError(f"{path} is missing: {Path(data_dir)} is no kws synthetic corpus; {NEEDS}") from err
    except (OSError, ValueError) as err:
        raise DataError(f"{path} is unreadable ({err}); regenerate the corpus: {NEEDS}") from err
    voices = marker.get("voices") if isinstance(marker, dict) else None
    if not isinstance(voices, list) or not voices:
        raise DataError(f'{path} lists no voices ("voices"); regenerate the corpus: {NEEDS}')
    out = {}
    for entry in voices:
        try:
            dialect, _, variant = str(entry.get("voice", "")).partition("+")  # format 1: "<dialect>+<variant>"
            dialect, variant = entry.get("dialect", dialect), entry.get("variant", variant)
            if not dialect or not variant:
                raise KeyError("dialect")
            out[str(entry["id"])] = {
                "dialect": dialect,
                "variant": variant,
                "family": entry.get("family") or family_of(variant),
            }
        except (AttributeError, KeyError) as err:
            raise DataError(
                f"{path}: a voice without id, dialect or variant ({entry!r}); regenerate the corpus"
            ) from err
    return out


def speaker_of(path: str) -> str:
    """The speaker id of a clip path ``<word>/<speaker>_nohash_<k>.wav``."""
    return path.replace("\\", "/").rsplit("/", 1)[-1].split("_nohash_")[0]


def hold_out_dialect(
    files: Sequence[str], assignment: Sequence[str], voices: dict[str, dict[str, str]], dialect: str
) -> list[str]:
    """``assignment`` (the split of each of ``files``) with every clip of ``dialect``'s speakers
    moved to "testing"; the other clips keep their split.

    Raises:
        ValueError: ``dialect`` is not one of the corpus's (the message lists them), or the lists differ in length.
        DataError: clips by speakers the marker does not list (the corpus was changed after generation).
    """
    if len(files) != len(assignment):
        raise ValueError(f"hold_out_dialect: {len(files)} files but {len(assignment)} split assignments")
    dialects = sorted({v["dialect"] for v in voices.values()})
    if dialect not in dialects:
        raise ValueError(f"data.holdout_dialect {dialect!r} is no dialect of this corpus; choose one of {dialects}")
    unknown = sorted({speaker_of(f) for f in files} - set(voices))
    if unknown:
        raise DataError(
            f"{len(unknown)} speakers have clips but are not in the corpus marker's voices "
            f"(e.g. {unknown[:3]}): their dialect is unknown; remove those clips or regenerate the corpus"
        )
    held = {speaker for speaker, v in voices.items() if v["dialect"] == dialect}
    return ["testing" if speaker_of(f) in held else split for f, split in zip(files, assignment)]
