"""One clip of the offline corpus: a speaker says a word (:mod:`datamodules.delivery`), espeak-ng
speaks it, and the word is laid into one second of audio.

Steps: synthesize the script (SSML, phonemes); when the word was said inside a phrase, cut it out
at espeak-ng's word events (with its co-articulated edges, plus 0-20 ms of each neighbour);
trim silence; resample to the corpus rate from ``22050 * formant_scale`` Hz, which scales every
formant by the speaker's ``formant_scale`` (vocal-tract length) while the pitch and rate espeak
was given were divided by it first, so only the formants move; the speaker's microphone band; a
fade; its loudness; a random place in the second over a faint noise floor.
"""

from __future__ import annotations

import math

import numpy as np

from datamodules.delivery import WORD, Script, pause_after, script
from datamodules.espeak import REINSTALL, Espeak, EspeakError
from datamodules.voices import FORMANT_STEPS, Speaker

# Clip layout, in seconds: the trimmed word sits at least EDGE_MARGIN from either end of the clip.
EDGE_MARGIN = 0.03
FADE = 0.005
NEIGHBOUR = 0.02  # at most this much of the words around a phrase's word stays in its cut
TRIM_THRESHOLD_DB = -45.0  # frames this far below the loudest frame count as silence
ESPEAK_RATE_MIN, ESPEAK_RATE_MAX = 80, 450


def trim(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut leading and trailing silence (frames TRIM_THRESHOLD_DB below the loudest), keep 10 ms."""
    frame = max(1, sample_rate // 200)
    n = len(samples) // frame * frame
    energy = (samples[:n].reshape(-1, frame) ** 2).mean(axis=1)
    loud = np.flatnonzero(energy > energy.max() * 10 ** (TRIM_THRESHOLD_DB / 10))
    keep = sample_rate // 100
    start = max(0, loud[0] * frame - keep)
    stop = min(len(samples), (loud[-1] + 1) * frame + keep)
    return samples[start:stop]


def channel(samples: np.ndarray, sample_rate: int, highpass_hz: float, lowpass_hz: float) -> np.ndarray:
    """A speaker's microphone: zero-phase 2nd-order Butterworth band-pass magnitude, via FFT."""
    # Padding keeps the circular filter from wrapping around; a power of two keeps the FFT fast.
    n = 1 << (len(samples) + sample_rate // 10 - 1).bit_length()
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    with np.errstate(divide="ignore"):
        gain = 1.0 / np.sqrt((1.0 + (freqs / lowpass_hz) ** 4) * (1.0 + (highpass_hz / freqs) ** 4))
    return np.fft.irfft(np.fft.rfft(samples, n) * gain, n)[: len(samples)]


def cut_word(samples: np.ndarray, word_starts: tuple[int, ...], said: Script, pad: tuple[int, int]) -> np.ndarray:
    """The script's word out of a phrase: from its first word event to the next word's event (or
    the end), widened by ``pad`` samples (before, after) into the neighbours."""
    start = word_starts[said.first_word]
    if pause_after(said):
        pad = (pad[0], 0)
    stop = word_starts[said.first_word + 1] if said.first_word + 1 < len(word_starts) else len(samples)
    return samples[max(0, start - pad[0]) : min(len(samples), stop + pad[1])]


def check_words(word_starts: tuple[int, ...], said: Script) -> None:
    """espeak-ng spoke as many words as the script holds: markup read aloud ("dot", "slash
    prosody") would otherwise end up in the clip, or move a phrase's cut off the word."""
    if len(word_starts) != said.num_words:
        raise EspeakError(f"espeak-ng reported {len(word_starts)} words in {said.text!r}, expected {said.num_words}")


def espeak_pitch(pitch: float, formant_scale: float) -> int:
    """The espeak-ng pitch (0-100) that sounds at ``pitch`` once the audio is scaled by
    ``formant_scale``: espeak's pitch doubles every 50 steps (pitch_adjust_tab, 64..255 / 128)."""
    return int(np.clip(round(pitch - 50 * math.log2(formant_scale)), 0, 100))


class Renderer:
    """Speaks one word as a speaker and lays it into a 1-second clip.

    ``lexicon``: (dialect, word) -> the dialect's phonemes of the word (delivery.script's input).
    """

    def __init__(self, sample_rate: int, lexicon: dict[tuple[str, str], list[str]] | None = None) -> None:
        self.sample_rate = sample_rate
        self.lexicon = lexicon or {}
        self._resamplers: dict[int, object] = {}

    def _resampler(self, formant_scale: float):
        """Resampling from 22050 * formant_scale Hz; one kernel per scale, the last few kept."""
        import torchaudio

        steps = round(formant_scale * FORMANT_STEPS)
        if steps not in self._resamplers:
            if len(self._resamplers) >= 4:  # one speaker at a time: old kernels are not needed again
                self._resamplers.pop(next(iter(self._resamplers)))
            orig = Espeak.SAMPLE_RATE * steps // FORMANT_STEPS  # 50 * steps: an integer rate
            self._resamplers[steps] = torchaudio.transforms.Resample(orig, self.sample_rate)
        return self._resamplers[steps]

    def clip(
        self,
        espeak: Espeak,
        speaker: Speaker,
        word: str,
        rng: np.random.Generator,
        style: str | None = None,
        carrier: str | None = None,
    ) -> tuple[np.ndarray, Script]:
        """(int16 clip of ``sample_rate`` samples, the script it was spoken from); ``style`` and
        ``carrier`` fix what :func:`datamodules.delivery.script` would draw."""
        import torch

        said = script(word, self.lexicon.get((speaker.dialect, word)), speaker.accent, rng, style, carrier)
        rate_scale = rng.uniform(0.9, 1.1)
        pitch = int(np.clip(speaker.pitch + rng.integers(-6, 7), 0, 100))
        pitch_range = int(np.clip(speaker.pitch_range + rng.integers(-10, 11), 0, 100))
        pad = tuple(int(rng.uniform(0, NEIGHBOUR) * Espeak.SAMPLE_RATE) for _ in range(2))
        max_len = self.sample_rate - 2 * int(EDGE_MARGIN * self.sample_rate)
        # The resampling speeds the audio up by formant_scale: espeak speaks slower by as much.
        rate = speaker.rate * rate_scale / speaker.formant_scale
        seed = int(rng.integers(2**31))
        resample = self._resampler(speaker.formant_scale)
        # Slow voices can run past one second on long words: speak faster until the word fits.
        for _ in range(8):
            # Volume 30 of 200 keeps even the loudest variants (antonio, iven) from clipping inside espeak.
            spoken = espeak.synth(
                said.text,
                rate=int(np.clip(rate, ESPEAK_RATE_MIN, ESPEAK_RATE_MAX)),
                pitch=espeak_pitch(pitch, speaker.formant_scale),
                pitch_range=pitch_range,
                volume=30,
                seed=seed,
                ssml=True,
            )
            if WORD.fullmatch(word):  # other words (hyphens, digits) may be read as several
                check_words(spoken.word_starts, said)
            raw = cut_word(spoken.samples, spoken.word_starts, said, pad) if said.carrier else spoken.samples
            if np.abs(raw).max(initial=0) < 64:
                raise EspeakError(f"espeak-ng voice {speaker.voice!r} spoke no audible {word!r}; {REINSTALL}")
            # Trimmed first: SSML adds ~0.4 s of closing pause, which would double the resampling.
            raw = trim(raw.astype(np.float32) / 32768.0, Espeak.SAMPLE_RATE)
            wave = resample(torch.from_numpy(raw)).numpy().astype(np.float64)
            if len(wave) <= max_len:
                break
            rate *= 1.25
        else:
            raise EspeakError(f"{word!r} by voice {speaker.voice!r} is longer than one second even at 450 words/min")

        wave = channel(wave, self.sample_rate, speaker.highpass_hz, speaker.lowpass_hz)
        fade = int(FADE * self.sample_rate)
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
        wave[:fade] *= ramp
        wave[-fade:] *= ramp[::-1]
        peak_db = min(speaker.peak_db + rng.uniform(-3.0, 3.0), -1.0)
        wave *= 10 ** (peak_db / 20) / np.abs(wave).max()

        out = rng.normal(0.0, rng.uniform(1.0, 4.0) / 32768.0, self.sample_rate)  # noise floor, ~-80 dBFS
        margin = int(EDGE_MARGIN * self.sample_rate)
        onset = int(rng.integers(margin, self.sample_rate - margin - len(wave) + 1))
        out[onset : onset + len(wave)] += wave
        return np.clip(np.round(out * 32768.0), -32768, 32767).astype(np.int16), said
