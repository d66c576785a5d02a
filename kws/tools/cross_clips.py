"""The clips of the cross-check: voices the model never heard, as 1 s Speech Commands-style clips.

- **Other synthesizers** (:func:`clip_set`): the keywords and other Speech Commands words spoken
  by every English voice of flite (``flite -lv``) and festival (its ``voice-locations``), each
  at a few speaking rates and, where the voice allows, mean pitches (flite's
  ``duration_stretch`` / ``int_f0_target_mean``; festival's ``Duration_Stretch`` and its
  diphone voices' ``int_lr_params``, HTS voices' ``-r``). They are never training data: the
  corpus is espeak-ng's. Each word is cut to its extent (:func:`datamodules.word_extent.word_extent`),
  faded, set to a seeded peak level and placed at a seeded point of a 1 s clip over a
  faint Gaussian floor; ``_noise_/`` adds 1 s cuts of the TEST part of the shipped background
  recordings (:mod:`datamodules.noise_parts`) at several levels, and floor-only silence. The set
  is cached in ``<root>/<key>/`` (key: tools' versions, voices, words, renditions, seed), its
  ``manifest.json`` written last.
- **Real speech** (:func:`real_clips`): ``kws/assets/real_speech/<word>/*.wav``, 60 clips of the
  Speech Commands test set (see SOURCE.txt there), or any folder laid out alike.

Every clip is a manifest row: ``path`` (relative to its folder, ``<word>/<speaker>_nohash_<k>.wav``),
``word``, ``family`` (flite, festival, noise, real), ``voice``, ``onset``/``end`` (the word's samples).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from datamodules.noise_parts import noise_part
from datamodules.synthetic import real_noise_dir
from datamodules.word_extent import word_extent
from kws.audio.wav import read_wav, write_wav

SAMPLE_RATE = 16000
FORMAT_VERSION = 1
APT_PACKAGES = {"flite": "flite", "festival": "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"}
SYNTHESIZERS = tuple(APT_PACKAGES)
LIMITED_DOMAIN = ("_time",)  # flite's awb_time speaks only the time of day
DEFAULT_STRETCHES = (0.85, 1.0, 1.25)  # duration factors: fast, as the voice speaks, slow
DEFAULT_PITCHES = (
    0,
    80,
    200,
)  # mean F0 in Hz (0: the voice's own); keywords get every pitch, other words the voice's own
PEAK_DB = (-20.0, -3.0)
EDGE_MARGIN, FADE, KEEP = (
    0.03,
    0.005,
    0.01,
)  # s: the word this far from the clip's ends, faded, this much kept around it (as the corpus)
FLOOR_RMS = (1.0, 4.0)  # int16 units, as the corpus's clips
NOISE_LEVELS = (0.05, 0.2, 0.6)


class CrossCheckError(RuntimeError):
    """A missing synthesizer, voice or clip: the message names it and the fix."""


@dataclass(frozen=True)
class Voice:
    synthesizer: str
    name: str
    pitch_control: bool = True

    @property
    def id(self) -> str:
        return f"{self.synthesizer}/{self.name}"


def require(synthesizer: str) -> str:
    """The synthesizer's executable, or a CrossCheckError saying which Debian packages give it."""
    path = shutil.which(synthesizer)
    if path is None:
        raise CrossCheckError(
            f"{synthesizer} is not installed (no `{synthesizer}` on PATH), "
            "and the cross-synthesizer check speaks with it: "
            f"`apt-get install -y {APT_PACKAGES[synthesizer]}` (Debian/Ubuntu; .ci/run installs them), "
            f"or leave it out with --synthesizers {' '.join(s for s in SYNTHESIZERS if s != synthesizer) or 'none'}"
        )
    return path


def _run(command: list[str], what: str, stdin: str | None = None, timeout: int = 600) -> str:
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CrossCheckError(f"{what} failed: {err}") from err
    if done.returncode:
        raise CrossCheckError(f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
    return done.stdout


def list_voices(synthesizers: Sequence[str]) -> list[Voice]:
    """Every English voice of the synthesizers (limited-domain voices left out)."""
    voices = []
    for synthesizer in synthesizers:
        exe = require(synthesizer)
        if synthesizer == "flite":
            names = _run([exe, "-lv"], "`flite -lv`").split(":", 1)[-1].split()
            voices += [Voice("flite", n) for n in names if not n.endswith(LIMITED_DOMAIN)]
            continue
        script = (
            '(mapcar (lambda (v) (eval (list (intern (string-append "voice_" (car v))))) '
            "(print (list (car v) (Parameter.get 'Synth_Method) (Param.get 'Language)))) voice-locations)\n"
        )
        found = []
        for line in _run([exe, "--pipe"], "festival's voice list", stdin=script).splitlines():
            parts = line.strip('() "').replace('"', "").split()
            if len(parts) == 3 and "english" in parts[2].lower():
                found.append(Voice("festival", parts[0], pitch_control=parts[1] != "HTS"))  # HTS makes its own F0
        if not found:
            raise CrossCheckError(f"festival has no English voice: `apt-get install -y {APT_PACKAGES['festival']}`")
        voices += sorted(found, key=lambda v: v.name)
    return voices


def versions(synthesizers: Sequence[str]) -> dict[str, str]:
    """Each synthesizer's version line (flite's --version exits 1: its output is all that counts)."""
    out = {}
    for s in synthesizers:
        done = subprocess.run([require(s), "--version"], capture_output=True, text=True, timeout=60)
        out[s] = ((done.stdout + done.stderr).strip().splitlines() or ["?"])[-1].strip()
    return out


def _speak(voice: Voice, jobs: list[tuple[str, float, int]], folder: Path) -> list[Path]:
    """Raw WAV files of ``(text, stretch, pitch)`` jobs spoken by ``voice`` (festival: one process)."""
    paths = [folder / f"{i}.wav" for i in range(len(jobs))]
    exe = require(voice.synthesizer)
    if voice.synthesizer == "flite":
        for (text, stretch, pitch), path in zip(jobs, paths):
            options = ["--setf", f"duration_stretch={stretch}"] + (
                ["--setf", f"int_f0_target_mean={pitch}"] if pitch else []
            )
            _run(
                [exe, "-voice", voice.name, *options, "-t", text, "-o", str(path)],
                f"flite voice {voice.name} speaking {text!r}",
            )
        return paths
    lines = []
    for (text, stretch, pitch), path in zip(jobs, paths):
        lines += [
            f"(voice_{voice.name})",  # resets the voice's own settings before each job
            "(let ((d (Parameter.get 'Duration_Stretch))) (Parameter.set 'Duration_Stretch (* "
            f"{stretch} (if d d 1.0))))",
            f"(if (equal? (Parameter.get 'Synth_Method) 'HTS) "  # HTS ignores Duration_Stretch: its engine's speed
            f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {1 / stretch:.4f})))))',
        ]
        if pitch:
            lines.append(f"(set! int_lr_params (cons (list 'target_f0_mean {pitch}) int_lr_params))")
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{path}" \'riff)')
    (folder / "jobs.scm").write_text("\n".join(lines) + "\n")
    _run([exe, "-b", str(folder / "jobs.scm")], f"festival voice {voice.name}")
    return paths


def _place(path: Path, voice: Voice, word: str, rng: np.random.Generator) -> tuple[np.ndarray, int, int] | None:
    """(clip int16 [1 s], onset, end) of a spoken word, or None when it is longer than fits."""
    samples, _ = read_wav(path, SAMPLE_RATE, resample=True)  # flite's kal speaks at 8 kHz, festival's HTS at 32 kHz
    if np.abs(samples).max(initial=0) < 64:
        raise CrossCheckError(f"{voice.id} spoke no audible {word!r} ({path}); leave the voice out with --voices")
    start, end = word_extent(samples, SAMPLE_RATE)
    keep = int(KEEP * SAMPLE_RATE)
    wave = samples[max(0, start - keep) : end + keep].astype(np.float64) / 32768.0
    margin = int(EDGE_MARGIN * SAMPLE_RATE)
    if len(wave) > SAMPLE_RATE - 2 * margin:
        return None
    fade = int(FADE * SAMPLE_RATE)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
    wave[:fade] *= ramp
    wave[-fade:] *= ramp[::-1]
    wave *= 10 ** (rng.uniform(*PEAK_DB) / 20) / np.abs(wave).max()
    out = rng.normal(0.0, rng.uniform(*FLOOR_RMS) / 32768.0, SAMPLE_RATE)
    onset = int(rng.integers(margin, SAMPLE_RATE - margin - len(wave) + 1))
    out[onset : onset + len(wave)] += wave
    return np.clip(np.round(out * 32768.0), -32768, 32767).astype(np.int16), onset, onset + len(wave)


def _voice_clips(
    voice: Voice, words: list[tuple[str, bool]], stretches, pitches, folder: Path, seed: int
) -> list[dict]:
    speaker = voice.id.replace("/", "-")
    todo = []  # (word, k, stretch, pitch)
    for word, keyword in words:
        grid = [(s, p) for s in stretches for p in (pitches if keyword and voice.pitch_control else (0,))]
        todo += [(word, k, s, p) for k, (s, p) in enumerate(dict.fromkeys(grid))]
    rows = []
    for _ in range(4):  # a word too long for 1 s is spoken again faster
        with tempfile.TemporaryDirectory(prefix="kws-cross-") as tmp:
            raw = _speak(voice, [(w, s, p) for w, _, s, p in todo], Path(tmp))
            again = []
            for (word, k, stretch, pitch), path in zip(todo, raw):
                name = f"{word}/{speaker}_nohash_{k}.wav"
                placed = _place(path, voice, word, np.random.default_rng([seed, zlib.crc32(name.encode())]))
                if placed is None:
                    again.append((word, k, round(stretch * 0.8, 4), pitch))
                    continue
                (folder / word).mkdir(exist_ok=True)
                write_wav(folder / name, placed[0], SAMPLE_RATE)
                rows.append(
                    dict(
                        path=name,
                        word=word,
                        family=voice.synthesizer,
                        voice=voice.id,
                        stretch=stretch,
                        pitch=pitch,
                        onset=placed[1],
                        end=placed[2],
                    )
                )
        if not (todo := again):
            return rows
    raise CrossCheckError(
        f"{voice.id}: {[w for w, *_ in todo]} stay longer than one second even spoken at {todo[0][2]}x duration"
    )


def _noise_clips(folder: Path, seed: int) -> list[dict]:
    """1 s cuts of the test part of each shipped background recording at NOISE_LEVELS, and floor-only silence."""
    rows, rng = [], np.random.default_rng([seed, 7])
    (folder / "_noise_").mkdir(exist_ok=True)
    recordings = sorted(real_noise_dir().glob("*.wav"))
    for path in recordings:
        part = noise_part(read_wav(path, SAMPLE_RATE)[0], "testing")  # the part no training clip mixes in
        for k, level in enumerate(NOISE_LEVELS):
            start = int(rng.integers(len(part) - SAMPLE_RATE))
            clip = part[start : start + SAMPLE_RATE] * level + rng.normal(0.0, rng.uniform(*FLOOR_RMS), SAMPLE_RATE)
            rows.append(dict(path=f"_noise_/{path.stem}_nohash_{k}.wav", word="_noise_", level=level, data=clip))
    for k in range(len(NOISE_LEVELS)):
        rows.append(
            dict(
                path=f"_noise_/floor_nohash_{k}.wav",
                word="_noise_",
                level=0.0,
                data=rng.normal(0.0, rng.uniform(*FLOOR_RMS), SAMPLE_RATE),
            )
        )
    for row in rows:
        write_wav(folder / row["path"], np.clip(np.round(row.pop("data")), -32768, 32767).astype(np.int16), SAMPLE_RATE)
        row.update(family="noise", voice="noise/background", onset=0, end=SAMPLE_RATE)
    return rows


def clip_set(
    root: str | Path,
    voices: Sequence[Voice],
    keywords: Sequence[str],
    others: Sequence[str],
    stretches: Sequence[float] = DEFAULT_STRETCHES,
    pitches: Sequence[int] = DEFAULT_PITCHES,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Path, list[dict]]:
    """(folder, manifest rows) of the synthesized clips and the noise clips, built once into
    ``<root>/<key>/`` (written beside and renamed into place)."""
    from tqdm.auto import tqdm

    words = [(w, True) for w in keywords] + [(w, False) for w in others if w not in keywords]
    key = [
        FORMAT_VERSION,
        versions(sorted({v.synthesizer for v in voices})),
        [v.id for v in voices],
        words,
        list(stretches),
        list(pitches),
        seed,
    ]
    folder = Path(root) / hashlib.sha1(json.dumps(key).encode()).hexdigest()[:10]
    if (folder / "manifest.json").is_file():
        return folder, json.loads((folder / "manifest.json").read_text())["clips"]
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    rows = _noise_clips(partial, seed)
    for voice in tqdm(voices, desc="Synthesizing held-out voices", unit="voice", disable=not progress):
        rows += _voice_clips(voice, words, stretches, pitches, partial, seed)
    (partial / "manifest.json").write_text(json.dumps({"key": key, "clips": rows}, indent=0))
    if (folder / "manifest.json").is_file():  # another run finished the same set meanwhile: keep its
        shutil.rmtree(partial)
        return folder, json.loads((folder / "manifest.json").read_text())["clips"]
    shutil.rmtree(folder, ignore_errors=True)  # an incomplete set of the same key (no manifest)
    partial.rename(folder)
    return folder, rows


def real_speech_dir() -> Path:
    """The real Speech Commands clips shipped with kws (CC BY 4.0; SOURCE.txt names each one)."""
    return Path(str(importlib.resources.files("kws") / "assets" / "real_speech"))


def real_clips(folder: str | Path) -> list[dict]:
    """Manifest rows of ``<folder>/<word>/*.wav`` (real recordings; the word found by its energy)."""
    folder = Path(folder)
    paths = sorted(p for p in folder.glob("*/*.wav") if not p.parent.name.startswith("_"))
    if not paths:
        raise CrossCheckError(
            f"{folder}: no <word>/*.wav clips; pass a folder laid out as Speech Commands (--real_dir)"
        )
    rows = []
    for path in paths:
        onset, end = word_extent(read_wav(path, SAMPLE_RATE)[0][:SAMPLE_RATE])
        rows.append(
            dict(
                path=str(path.relative_to(folder)),
                word=path.parent.name,
                family="real",
                voice=f"real/{folder.name}",
                onset=onset,
                end=end,
            )
        )
    return rows
