"""The Speech Commands data set on disk: its names, its split rule, its folder scan and download.
Shared by the data module and the generated corpus (which writes the same layout)."""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

SPEECH_COMMANDS_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
BACKGROUND_NOISE_DIR = "_background_noise_"
SILENCE_LABEL, UNKNOWN_LABEL = "silence", "unknown"
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # ~134M, from the dataset's reference split code
SPLITS = ("training", "validation", "testing")


def which_set(filename: str, validation_percentage: float = 10.0, testing_percentage: float = 10.0) -> str:
    """The dataset's own split rule: a stable hash of the speaker id (the name before ``_nohash_``),
    so one speaker's clips always land in the same split, whatever files are added later."""
    speaker = re.sub(r"_nohash_.*$", "", Path(filename).name)
    hashed = hashlib.sha1(speaker.encode("utf-8")).hexdigest()
    percentage = (int(hashed, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if percentage < validation_percentage:
        return "validation"
    if percentage < testing_percentage + validation_percentage:
        return "testing"
    return "training"


class DataError(ValueError):
    """A data set that cannot be used as it is; the message names the path and the fix."""


def scan_corpus(root: Path, wanted_words: Sequence[str] = ()) -> dict[str, list[str]]:
    """Word folder -> sorted relative paths of its .wav files (background noise excluded); each of
    ``wanted_words`` must have clips."""
    if not root.is_dir():
        raise DataError(
            f"data_dir {root} does not exist; point data.data_dir at an extracted Speech Commands folder, "
            "set data.download: true, or data.synthetic: true for the offline corpus"
        )
    words = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        words[folder.name] = sorted(
            f"{folder.name}/{f.name}" for f in folder.iterdir() if f.suffix.lower() == ".wav" and f.is_file()
        )
    if not any(words.values()):
        raise DataError(
            f"{root} holds no word folders with .wav files; expected the Speech Commands layout "
            "(<word>/<speaker>_nohash_<n>.wav)"
        )
    for word in wanted_words:
        if not words.get(word):
            raise DataError(
                f"wanted word '{word}' has no clips: {root / word} is missing or empty; "
                "check data.wanted_words and data.data_dir"
            )
    return words


def has_corpus(root: Path) -> bool:
    """Whether ``root`` holds word folders (a corpus, downloaded or generated, is there)."""
    return root.is_dir() and any(p.is_dir() and not p.name.startswith((".", "_")) for p in root.iterdir())


def split_lists(root: Path) -> dict[str, Path] | None:
    """The data set's ``validation_list.txt`` and ``testing_list.txt``; None when neither exists."""
    lists = {split: root / f"{split}_list.txt" for split in ("validation", "testing")}
    present = [path for path in lists.values() if path.is_file()]
    if not present:
        return None
    if len(present) == 1:
        missing = next(path for path in lists.values() if not path.is_file())
        raise DataError(
            f"{missing} is missing while {present[0].name} exists; restore it, "
            "or delete both lists to use the speaker-hash split"
        )
    return lists


def read_split_list(path: Path, files: set[str]) -> list[str]:
    """The clips a split list names, as paths relative to the data folder. Entries are normalised
    (``./yes/a.wav``, ``yes\\a.wav`` -> ``yes/a.wav``; blank lines skipped); entries that name no
    clip of ``files`` are refused, with their count, rather than silently moving clips to training."""
    entries = []
    for line in path.read_text().splitlines():
        entry = line.strip().replace("\\", "/")
        while entry.startswith("./"):
            entry = entry[2:]
        if entry:
            entries.append(entry)
    unmatched = [entry for entry in entries if entry not in files]
    if unmatched:
        raise DataError(
            f"{path}: {len(unmatched)} of {len(entries)} entries name no clip in {path.parent} (e.g. {unmatched[:3]}); "
            "entries are paths relative to the data folder (<word>/<file>.wav): fix or remove them"
        )
    return entries


def assign_splits(
    root: Path,
    files: list[str],
    scanned: set[str],
    validation_percentage: float = 10.0,
    testing_percentage: float = 10.0,
) -> list[str]:
    """The split of each of ``files``: the data set's lists when present (unlisted clips train),
    else the sha1-of-speaker rule at these percentages. ``scanned``: every clip found on disk
    (the lists may name clips left out as unreadable). The data module and the stream test's
    recordings both split through here."""
    lists = split_lists(root)
    if lists is None:
        return [which_set(f, validation_percentage, testing_percentage) for f in files]
    membership = {}
    for split, path in lists.items():
        membership.update(dict.fromkeys(read_split_list(path, scanned), split))
    return [membership.get(f, "training") for f in files]


def download_speech_commands(root: Path, url: str = SPEECH_COMMANDS_URL) -> None:
    """Download and extract the official archive into ``root`` (atomically, with a progress bar)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        archive = Path(tmp) / Path(url).name
        try:
            with urllib.request.urlopen(url, timeout=30) as response, open(archive, "wb") as out:
                total = int(response.headers.get("Content-Length", 0)) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"Downloading {url}") as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError) as err:
            raise DataError(
                f"could not download {url} ({err}). Without network: download the archive elsewhere, "
                f"extract it into {root} and set data.download: false; "
                "or train on the offline corpus with data.synthetic: true"
            ) from err
        extracted = Path(tmp) / "extracted"
        with tarfile.open(archive) as tar:
            tar.extractall(extracted, filter="data")
        shutil.rmtree(root, ignore_errors=True)
        shutil.move(str(extracted), root)
