"""An offline stand-in for Google Speech Commands v0.02, spoken by espeak-ng.

``generate_corpus(root)`` writes, deterministically from a seed, the same on-disk layout as the
real data set::

    root/<word>/<speaker>_nohash_<k>.wav     1 s, 16 kHz, mono, 16-bit PCM
    root/validation_list.txt, root/testing_list.txt
    root/_background_noise_/*.wav            generated white/pink/brown noise + 3 real recordings
    root/.kws_corpus.json                    marker: arguments and format version, written last

A "speaker" (:mod:`datamodules.voices`) is an espeak-ng English dialect voice (en, en-us,
en-gb-scotland, ...) combined with one of its ~100 voice variants (m1..m8, f1..f5, croak, klatt,
whisper, ...), an accent, a vocal-tract length (formant scale) and a fixed base pitch, pitch range,
speaking rate, loudness and microphone response. Each clip (:mod:`datamodules.render`) jitters
these a little, the way a person says a word differently each time, says the word in one of
several styles, alone or cut out of a short phrase (:mod:`datamodules.delivery`), and places it
at a random position in the second. Speakers are chosen so that Speech Commands' own hash rule
(:func:`which_set`, sha1 of the speaker id) puts 10 % of them in validation and 10 % in testing,
and no voice variant is shared between splits: test voices are never heard in training. The
marker's "voices" list each speaker's dialect, variant, family and synthesis
(:mod:`datamodules.holdout` reads them).

Speech comes from the PyPI package ``espeakng-loader`` (libespeak-ng plus its data), driven
through ctypes; nothing needs downloading.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import re
import shutil
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from datamodules.delivery import lexicon
from datamodules.espeak import Espeak, EspeakError, espeakng_loader_version, list_variants
from datamodules.layout import BACKGROUND_NOISE_DIR, SPLITS, download_speech_commands
from datamodules.render import Renderer
from datamodules.voices import Speaker, make_speakers, speaker_order
from kws.audio.wav import read_wav, write_wav

DEFAULT_WORDS = ("yes", "no")
# The other 33 words of Speech Commands v0.02.
DEFAULT_UNKNOWN_WORDS = (
    "bed",
    "bird",
    "cat",
    "dog",
    "down",
    "eight",
    "five",
    "four",
    "go",
    "happy",
    "house",
    "left",
    "marvin",
    "nine",
    "off",
    "on",
    "one",
    "right",
    "seven",
    "sheila",
    "six",
    "stop",
    "three",
    "tree",
    "two",
    "up",
    "wow",
    "zero",
    "backward",
    "forward",
    "follow",
    "learn",
    "visual",
)

# 2: accents, speaking styles, words cut from phrases, formant scaling; voices record dialect,
# variant, family and synthesis.
FORMAT_VERSION = 2
MARKER_NAME = ".kws_corpus.json"
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"

# 240 voices (24 unseen in test): more voices heard the stream test's unseen ones better
# (README "Listening to a stream"); synthesis takes under a minute on two cores.
DEFAULT_NUM_SPEAKERS = 240
DEFAULT_CLIPS_PER_WORD = 2880  # 12 per speaker
DEFAULT_UNKNOWN_CLIPS_PER_WORD = 360

NOISE_SECONDS = 60
NOISE_COLORS = {"white_noise": 0.0, "pink_noise": 1.0, "brown_noise": 2.0}  # power ~ 1 / f**exponent

Jobs = dict[str, list[tuple[str, int]]]  # speaker id -> [(word, repetition k), ...]


def _assign_clips(speakers: Sequence[Speaker], word_counts: dict[str, int], seed: int) -> Jobs:
    """Which speaker says which word how often."""
    jobs: Jobs = {s.id: [] for s in speakers}
    for word, count in word_counts.items():
        order = speaker_order(speakers, np.random.default_rng([seed, 2, zlib.crc32(word.encode())]))
        for j in range(count):
            speaker = speakers[order[j % len(order)]]
            jobs[speaker.id].append((word, j // len(order)))
    return jobs


def _write_speech(
    folder: Path, speakers: Sequence[Speaker], jobs: Jobs, seed: int, sample_rate: int, progress: bool
) -> dict[str, dict[str, int]]:
    """Write every clip; returns how they were said (clips per style, carrier phrase, pronunciation)."""
    from tqdm.auto import tqdm

    from kws.utils.threads import torch_threads

    # Resampling one short clip at a time is fastest on one thread (and very slow on busy cores).
    with (
        torch_threads(1),
        tqdm(total=sum(map(len, jobs.values())), desc="Synthesizing speech", unit="clip", disable=not progress) as bar,
    ):
        words = sorted({word for clips in jobs.values() for word, _ in clips})
        renderer = Renderer(sample_rate, lexicon(words, sorted({s.dialect for s in speakers})))
        said = {"style": Counter(), "context": Counter(), "pronunciation": Counter()}
        for speaker in speakers:
            with Espeak() as espeak:
                espeak.set_voice(speaker.voice)
                for word, k in jobs[speaker.id]:
                    name = f"{speaker.id}_nohash_{k}.wav"
                    # Each clip draws from its own stream: it depends on its name, not on the order.
                    rng = np.random.default_rng([seed, 3, zlib.crc32(f"{word}/{name}".encode())])
                    clip, script = renderer.clip(espeak, speaker, word, rng)
                    write_wav(folder / word / name, clip, sample_rate)
                    said["style"][script.style] += 1
                    said["context"]["phrase" if script.carrier else "alone"] += 1
                    said["pronunciation"]["phonemes" if script.phonemes else "text"] += 1
                    bar.update()
    return {key: dict(sorted(counter.items())) for key, counter in said.items()}


def _colored_noise(rng: np.random.Generator, num_samples: int, exponent: float, sample_rate: int) -> np.ndarray:
    """Gaussian noise with power ~ 1/f**exponent above 20 Hz, at -20 dBFS RMS."""
    freqs = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
    shape = np.zeros_like(freqs)
    audible = freqs >= 20.0
    shape[audible] = freqs[audible] ** (-exponent / 2)
    noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(num_samples)) * shape, num_samples)
    noise *= 0.1 / np.sqrt(np.mean(noise**2))
    return np.clip(np.round(noise * 32768.0), -32768, 32767).astype(np.int16)


def real_noise_dir() -> Path:
    """The real Speech Commands background recordings shipped with kws (CC BY 4.0)."""
    return Path(str(importlib.resources.files("kws") / "assets" / "background_noise"))


def _write_background_noise(folder: Path, seed: int, sample_rate: int) -> None:
    folder.mkdir()
    for i, (name, exponent) in enumerate(NOISE_COLORS.items()):
        rng = np.random.default_rng([seed, 4, i])
        noise = _colored_noise(rng, NOISE_SECONDS * sample_rate, exponent, sample_rate)
        write_wav(folder / f"{name}.wav", noise, sample_rate)
    source = real_noise_dir()
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: kws's background-noise recordings are missing; reinstall kws")
    for path in sorted(source.iterdir()):
        if path.suffix == ".wav" and sample_rate != 16000:
            write_wav(folder / path.name, read_wav(path, sample_rate, resample=True)[0], sample_rate)
        else:
            shutil.copyfile(path, folder / path.name)  # the recordings with their LICENSE and SOURCE.txt


def _read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None


def refresh_corpus(root: str | os.PathLike, progress: bool = True) -> bool:
    """Regenerate the corpus at ``root`` with its own arguments if an older generator (format
    version) or another espeak-ng made it; True if it did. A current corpus, or a folder without
    the marker (the real data set), is left as it is."""
    marker = _read_marker(Path(root))
    if marker is None or (marker.get("format_version"), marker.get("espeakng_loader")) == (
        FORMAT_VERSION,
        espeakng_loader_version(),
    ):
        return False
    if progress:
        print(
            f"{root}: made by an older corpus generator (format {marker.get('format_version')}, "
            f"now {FORMAT_VERSION}): generating it anew"
        )
    generate_corpus(root, **marker["args"], progress=progress)
    return True


def _is_current(root: Path, key: dict) -> bool:
    """Whether ``root`` holds a complete corpus made with these arguments."""
    marker = _read_marker(root)
    return marker is not None and {k: marker.get(k) for k in key} == key


def _write_lists(folder: Path, speakers: Sequence[Speaker], jobs: Jobs) -> None:
    """validation_list.txt and testing_list.txt, as in Speech Commands: paths relative to the root."""
    lists: dict[str, list[str]] = {"validation": [], "testing": []}
    for speaker in speakers:
        if speaker.split in lists:
            lists[speaker.split] += [f"{word}/{speaker.id}_nohash_{k}.wav" for word, k in jobs[speaker.id]]
    (folder / VALIDATION_LIST).write_text("".join(f"{p}\n" for p in sorted(lists["validation"])))
    (folder / TESTING_LIST).write_text("".join(f"{p}\n" for p in sorted(lists["testing"])))


def _remove_stale_partials(root: Path) -> None:
    """Delete temp folders left by generator runs that were killed."""
    for path in [*root.parent.glob(f".{root.name}.partial-*"), *root.parent.glob(f".{root.name}.old-*")]:
        pid = path.name.rsplit("-", 1)[1]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, PermissionError):
            pass  # not ours, or a live process of another user


def generate_corpus(
    root: str | os.PathLike,
    words: Sequence[str] = DEFAULT_WORDS,
    unknown_words: Sequence[str] = DEFAULT_UNKNOWN_WORDS,
    num_speakers: int = DEFAULT_NUM_SPEAKERS,
    clips_per_word: int = DEFAULT_CLIPS_PER_WORD,
    unknown_clips_per_word: int = DEFAULT_UNKNOWN_CLIPS_PER_WORD,
    seed: int = 0,
    sample_rate: int = 16000,
    progress: bool = True,
) -> Path:
    """Write (or reuse) a synthetic Speech Commands-style corpus at ``root``; returns ``root``.

    Args:
        root: the corpus folder. Reused at once if its marker matches these arguments; otherwise
            (re)generated in a temp folder beside it, which then replaces it.
        words: keywords; each gets ``clips_per_word`` clips, spread evenly over all speakers.
        unknown_words: other words (the "unknown" class); ``unknown_clips_per_word`` clips each,
            from speakers taken in turn so every split gets its share.
        num_speakers: synthetic speakers (voices), split 80/10/10 % by :func:`which_set`.
        clips_per_word: clips of each keyword, over all speakers (2880 = 12 per speaker for 240).
        unknown_clips_per_word: clips of each unknown word, over all speakers.
        seed: all randomness derives from it; the same arguments give byte-identical files.
        sample_rate: of the written clips, which are one second long.
        progress: show a tqdm progress bar.

    Raises:
        EspeakError: espeakng-loader is missing or a voice fails.
        FileExistsError: ``root`` holds files this generator did not write.
        ValueError: invalid arguments.
    """
    root = Path(root).expanduser().absolute()
    words, unknown_words = tuple(words), tuple(unknown_words)
    all_words = words + unknown_words
    if len(set(all_words)) != len(all_words):
        raise ValueError(f"words and unknown_words must be distinct, got {all_words}")
    for word in all_words:
        if not re.fullmatch(r"[a-z][a-z' -]*", word):
            raise ValueError(f"{word!r}: words must be lowercase letters (they name folders and are spoken)")
    if num_speakers < 3:
        raise ValueError(f"num_speakers={num_speakers}: at least 3 are needed, one per split")
    if clips_per_word < 0 or unknown_clips_per_word < 0:
        raise ValueError("clips_per_word and unknown_clips_per_word must be >= 0")

    args = dict(
        words=list(words),
        unknown_words=list(unknown_words),
        num_speakers=num_speakers,
        clips_per_word=clips_per_word,
        unknown_clips_per_word=unknown_clips_per_word,
        seed=seed,
        sample_rate=sample_rate,
    )
    key = dict(format_version=FORMAT_VERSION, espeakng_loader=espeakng_loader_version(), args=args)
    if _is_current(root, key):
        return root
    ours = {*all_words, BACKGROUND_NOISE_DIR, VALIDATION_LIST, TESTING_LIST, MARKER_NAME}
    if root.exists() and _read_marker(root) is None and not set(os.listdir(root)) <= ours:
        # Without our marker and with foreign files this may be the real data set: never delete it.
        raise FileExistsError(
            f"{root} exists and is not a kws synthetic corpus (no {MARKER_NAME}); pass an empty or new folder as root"
        )

    started = time.perf_counter()
    speakers = make_speakers(num_speakers, seed, list_variants())
    jobs = _assign_clips(
        speakers, {**{w: clips_per_word for w in words}, **{w: unknown_clips_per_word for w in unknown_words}}, seed
    )
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(root)
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for word in all_words:
            (tmp / word).mkdir()
        delivery = _write_speech(tmp, speakers, jobs, seed, sample_rate, progress)
        _write_background_noise(tmp / BACKGROUND_NOISE_DIR, seed, sample_rate)
        _write_lists(tmp, speakers, jobs)
        counts = {split: sum(s.split == split for s in speakers) for split in SPLITS}
        info = dict(
            clips={w: sum(j[0] == w for js in jobs.values() for j in js) for w in all_words},
            speakers=counts,
            delivery=delivery,
            voices=[s.record() for s in speakers],
        )
        # Written last: a folder with this marker is complete.
        (tmp / MARKER_NAME).write_text(json.dumps(key | info, indent=1) + "\n")

        if _is_current(root, key):
            shutil.rmtree(tmp)  # another process finished the same corpus meanwhile
            return root
        old = root.parent / f".{root.name}.old-{os.getpid()}"
        if root.exists():
            os.rename(root, old)
        os.rename(tmp, root)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if progress:
        print(
            f"Synthetic corpus: {sum(info['clips'].values())} clips by {num_speakers} speakers "
            f"({counts['training']} training, {counts['validation']} validation, {counts['testing']} testing) "
            f"in {time.perf_counter() - started:.1f} s -> {root}"
        )
    return root


def main(argv: Sequence[str] | None = None) -> Path:
    """``python -m kws corpus ROOT``: generate (or reuse) the offline corpus."""
    parser = argparse.ArgumentParser(
        prog="python -m kws corpus",
        description="Generate the offline Speech Commands-style corpus (espeak-ng voices, split by voice).",
    )
    parser.add_argument("root", type=Path, help="folder to write (reused when it already matches)")
    parser.add_argument("--num_speakers", type=int, default=DEFAULT_NUM_SPEAKERS)
    parser.add_argument("--clips_per_word", type=int, default=DEFAULT_CLIPS_PER_WORD)
    parser.add_argument("--unknown_clips_per_word", type=int, default=DEFAULT_UNKNOWN_CLIPS_PER_WORD)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample_rate", type=int, default=16000)
    args = parser.parse_args(argv)
    try:
        return generate_corpus(
            args.root,
            num_speakers=args.num_speakers,
            clips_per_word=args.clips_per_word,
            unknown_clips_per_word=args.unknown_clips_per_word,
            seed=args.seed,
            sample_rate=args.sample_rate,
        )
    except (EspeakError, FileExistsError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    except OSError as err:  # a root under a file, a full disk: name the folder, not a traceback
        parser.exit(
            2,
            f"error: cannot write the corpus to {args.root} ({err.strerror or err}: {err.filename}); "
            "choose another folder or free some space\n",
        )


def fetch_corpus(root: Path, synthetic: bool, wanted_words: Sequence[str], sample_rate: int) -> None:
    """Generate the offline corpus (``synthetic``: the wanted words, the others as unknown words)
    or download Speech Commands into ``root``."""
    if synthetic:
        wanted = tuple(wanted_words)
        others = tuple(w for w in DEFAULT_WORDS + DEFAULT_UNKNOWN_WORDS if w not in wanted)
        generate_corpus(root, words=wanted, unknown_words=others, sample_rate=sample_rate)
    else:
        download_speech_commands(root)
