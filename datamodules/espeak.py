"""espeak-ng through ctypes: the offline corpus's speech synthesizer (PyPI ``espeakng-loader``
ships the library and its voices, so nothing needs downloading or compiling)."""

from __future__ import annotations

import _ctypes
import ctypes
import importlib.metadata
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class EspeakError(RuntimeError):
    """espeak-ng is missing or failed; the message says what to do."""


# "fast" is a speed experiment of espeak-ng ("fast_test"), not a voice.
EXCLUDED_VARIANTS = frozenset({"fast"})
REINSTALL = "reinstall it with `pip install --force-reinstall 'espeakng-loader>=0.2.4'`"


def _espeakng_loader():
    try:
        import espeakng_loader
    except ImportError as err:
        raise EspeakError(
            "the synthetic corpus is spoken by espeak-ng, from the PyPI package espeakng-loader, "
            "which is not installed; install it with `pip install 'espeakng-loader>=0.2.4'` "
            "(or `pip install -e .` in the kws repository)"
        ) from err
    return espeakng_loader


def espeakng_loader_version() -> str | None:
    try:
        return importlib.metadata.version("espeakng-loader")
    except importlib.metadata.PackageNotFoundError:
        return None


def list_variants() -> tuple[str, ...]:
    """espeak-ng's voice variants (file names in its ``voices/!v`` folder), sorted."""
    folder = Path(_espeakng_loader().get_data_path()) / "voices" / "!v"
    if not folder.is_dir():
        raise EspeakError(f"espeak-ng's voice variants are missing ({folder}); {REINSTALL}")
    return tuple(sorted(p.name for p in folder.iterdir() if p.name not in EXCLUDED_VARIANTS))


def variant_synthesis(variant: str) -> str:
    """How a voice variant synthesizes: "klatt<N>" when its file selects a Klatt voice source
    (``klatt N``), else "wavegen" (espeak-ng's own formant synthesis)."""
    path = Path(_espeakng_loader().get_data_path()) / "voices" / "!v" / variant
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        raise EspeakError(f"espeak-ng's voice variant {path} is unreadable ({err}); {REINSTALL}") from err
    mode = re.search(r"^\s*klatt\s+(\d+)", text, re.MULTILINE)
    return f"klatt{mode.group(1)}" if mode and mode.group(1) != "0" else "wavegen"


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """espeak_EVENT of speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


@dataclass(frozen=True)
class Utterance:
    """What espeak-ng spoke: the samples and where in them each word and phoneme starts.

    ``word_starts[i]`` is the sample at which the text's (i+1)-th word begins (espeak's word events);
    ``phonemes`` lists (mnemonic with its stress mark, start sample) as espeak-ng spoke them, pauses
    (``_``, ``_:``) included, so a phoneme that espeak did not know is visibly missing.
    """

    samples: np.ndarray
    word_starts: tuple[int, ...]
    phonemes: tuple[tuple[str, int], ...]

    def spoken(self) -> list[str]:
        """The phonemes spoken, without pauses and stress marks."""
        return [name.lstrip("',") for name, _ in self.phonemes if not name.startswith("_")]


class Espeak:
    """A private instance of libespeak-ng, synthesizing in this thread at 22,050 Hz.

    espeak-ng keeps part of its synthesis state in C statics (the pitch-flutter index, the
    waveform phase) that no API call resets, not even Terminate + Initialize, so the same call
    gives slightly different audio depending on what was spoken before. Loading a private copy
    of the library gives every speaker the same fresh state: a speaker's clips then depend only
    on its own arguments, never on which speakers came before.
    """

    SAMPLE_RATE = 22050  # espeak-ng's own voices (not mbrola) always speak at this rate
    _AUDIO_OUTPUT_SYNCHRONOUS = 2
    _INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() on missing data
    _INITIALIZE_PHONEME_EVENTS = 0x0001
    _RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
    _POS_CHARACTER = 1
    _CHARS_UTF8 = 1
    _SSML, _PHONEMES = 0x10, 0x100  # synth flags: SSML tags; [[phonemes]] in the text
    _EVENT_WORD, _EVENT_PHONEME = 1, 7
    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))

    def __init__(self) -> None:
        loader = _espeakng_loader()
        with tempfile.TemporaryDirectory(prefix="kws-espeak-") as tmp:
            # A different file is a different library to the dynamic loader: fresh statics.
            private = Path(tmp) / "libespeak-ng.so"
            shutil.copyfile(loader.get_library_path(), private)
            try:
                self._lib = ctypes.CDLL(str(private))
            except OSError as err:
                raise EspeakError(f"cannot load libespeak-ng ({err}); {REINSTALL}") from err
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        rate = lib.espeak_Initialize(
            self._AUDIO_OUTPUT_SYNCHRONOUS,
            0,
            loader.get_data_path().encode(),
            self._INITIALIZE_DONT_EXIT | self._INITIALIZE_PHONEME_EVENTS,
        )
        if rate != self.SAMPLE_RATE:
            self._unload()
            raise EspeakError(
                f"espeak-ng failed to initialize from {loader.get_data_path()} (returned {rate}); {REINSTALL}"
            )
        self._chunks: list[np.ndarray] = []
        self._words: list[int] = []
        self._phonemes: list[tuple[str, int]] = []
        self._callback = self._CALLBACK(self._collect)  # kept referenced while C holds it
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != 0:  # the list ends with espeakEVENT_LIST_TERMINATED
            event = events[i]
            if event.type == self._EVENT_WORD:
                self._words.append(event.sample)  # the sample count at the word's start: exact, unlike ms
            elif event.type == self._EVENT_PHONEME:
                self._phonemes.append((event.id.string.decode(errors="replace"), event.sample))
            i += 1
        return 0  # 0 = continue

    def set_voice(self, name: str) -> None:
        if self._lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise EspeakError(f"espeak-ng has no voice {name!r}; {REINSTALL}")

    def synth(
        self, text: str, rate: int, pitch: int, pitch_range: int, volume: int, seed: int, ssml: bool = False
    ) -> Utterance:
        """Speak ``text`` with the current voice: int16 samples at ``SAMPLE_RATE`` and word/phoneme events.

        ``[[phonemes]]`` in the text are always read as espeak-ng phoneme mnemonics (``[[n'oU]]``);
        ``ssml``: the text is SSML (``<speak>``, ``<prosody rate pitch range>``, ``<emphasis>``).
        Inside SSML end a line after ``]]`` and its punctuation: espeak-ng 1.52 otherwise reads a
        following tag aloud, and a ``.`` as "dot".
        """
        lib = self._lib
        for param, value in (
            (self._RATE, rate),
            (self._PITCH, pitch),
            (self._RANGE, pitch_range),
            (self._VOLUME, volume),
        ):
            lib.espeak_SetParameter(param, int(value), 0)
        lib.espeak_ng_SetRandSeed(seed)  # the klatt and whisper voices draw noise from it
        self._chunks, self._words, self._phonemes = [], [], []
        data = text.encode() + b"\0"
        flags = self._CHARS_UTF8 | self._PHONEMES | (self._SSML if ssml else 0)
        status = lib.espeak_Synth(data, len(data), 0, self._POS_CHARACTER, 0, flags, None, None)
        if status != 0:
            raise EspeakError(f"espeak-ng failed (status {status}) to speak {text!r}")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return Utterance(samples, tuple(self._words), tuple(self._phonemes))

    def phonemes(self, word: str) -> list[str]:
        """How the current voice's dialect pronounces ``word``: its phoneme mnemonics, each with its
        stress mark (``["n", "'oU"]``), as espeak-ng's dictionary and rules give them."""
        text = ctypes.c_char_p(word.encode())
        out = self._lib.espeak_TextToPhonemes(ctypes.byref(text), self._CHARS_UTF8, ord("|") << 8)  # "|" between
        return [p for p in (out or b"").decode().replace(" ", "|").split("|") if p]

    def _unload(self) -> None:
        dlclose = getattr(_ctypes, "dlclose", None)  # POSIX; elsewhere the copy stays loaded
        if dlclose is not None:
            dlclose(self._lib._handle)

    def close(self) -> None:
        self._lib.espeak_Terminate()
        self._unload()

    def __enter__(self) -> "Espeak":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
