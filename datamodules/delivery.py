"""How a synthetic speaker says a word: pronunciation, prosody and the phrase around it.

Three levers widen what the offline corpus says beyond espeak-ng's one reading per dialect:

- **Accents** (:data:`ACCENTS`): vowel and consonant substitutions on the dialect's own phonemes,
  the way English accents differ (the vowel of "no": [o:] in Scotland, [oU] in America, [0U] in
  London; "yes" as [jes], [je:s], [jIs]). A speaker keeps one option per group
  (:func:`draw_accent`); the substituted word is spoken through espeak-ng's phoneme input
  (``[[n|'o:]]``). The mnemonics are espeak-ng's English ones (``phsource/ph_english*``):
  ``@`` before a vowel is avoided, since espeak then inserts a linking [r] ("ner-oo").
- **Styles** (:data:`STYLES`): statement, question, continuing, exclaimed, emphatic, drawn out,
  clipped: endings and SSML ``<prosody rate pitch range>`` / ``<emphasis>`` around the word.
- **Phrases** (:data:`CARRIERS`): the word inside a short phrase ("I said no again"), to be cut
  out at espeak-ng's word events with the co-articulated onset and ending only a phrase has.

:func:`script` turns (word, its phonemes, a speaker's accent, a random draw) into the SSML text
and the position of the word's events in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

# group -> option -> {phoneme: replacement}; "|" separates phonemes in espeak-ng's phoneme input.
ACCENTS: dict[str, dict[str, dict[str, str]]] = {
    "goat": {  # no, go, zero, follow
        "o:": {"oU": "o:"},  # monophthong: Scotland, northern England, the Caribbean, India
        "o": {"oU": "o"},  # short monophthong
        "oU": {"oU": "o|U"},  # [oʊ]: General American (espeak's en-us says a fronted [ɵu])
        "0U": {"oU": "0|U"},  # open start [ɒʊ]: London, Australia
        "VU": {"oU": "V|U"},  # [ʌʊ]: the West Midlands, Cockney
    },
    "dress": {  # yes, bed, left, seven
        "e": {"E": "e"},  # raised [e]: Australia, South Africa, India
        "e:": {"E": "e:"},  # long [e:]
        "I": {"E": "I"},  # [I]: New Zealand "yis"
        "e@": {"E": "e|@"},  # drawl [eə]: the American South
    },
    "kit": {  # six, visual, marvin
        "i": {"I": "i"},  # tense [i]: India, the Caribbean, Spanish speakers
        "@": {"I": "@"},  # centralised: New Zealand
    },
    "face": {  # eight
        "e:": {"eI": "e:"},  # monophthong: Scotland, Wales, India, the Caribbean
        "aI": {"eI": "aI"},  # wide [æɪ]: London, Australia
    },
    "price": {  # five, nine, right
        "a:": {"aI": "a|:"},  # monophthong [a:] (":" lengthens): the American South
        "OI": {"aI": "OI"},  # backed [ɒɪ]: London, Australia
    },
    "strut": {  # up, one
        "U": {"V": "U"},  # northern England: no foot-strut split
        "0": {"V": "0"},  # rounded
    },
    "th": {  # three
        "stopped": {"T": "t", "D": "d"},  # Ireland, the Caribbean, India
        "fronted": {"T": "f", "D": "v"},  # London
    },
}
KEEP_DIALECT = 0.45  # chance that a speaker keeps its dialect's own phoneme in a group
OWN_DIALECT_CLIP = 0.15  # chance that a clip falls back to the dialect's own reading

# name: weight. Endings and SSML around the word (see _markup).
STYLES = {
    "statement": 0.28,
    "question": 0.12,
    "continuing": 0.1,
    "exclaimed": 0.1,
    "emphatic": 0.12,
    "drawn": 0.14,
    "clipped": 0.14,
}
ENDINGS = {"statement": ".", "question": "?", "continuing": ",", "exclaimed": "!", "emphatic": "!"}

# Short phrases the word is said in ({w}); carrier words are plain text without apostrophes, so
# each is one espeak-ng word event.
CARRIERS = (
    "I said {w} again",
    "{w} again",
    "say {w} now",
    "the answer is {w}",
    "{w}, I think",
    "well {w}",
    "oh {w}",
    "I think {w}",
    "just {w} please",
    "she said {w} to me",
    "{w} it is",
)
PHRASE_PROBABILITY = 0.3
WORD = re.compile(r"[a-z']+")  # words that get accents, lengthening and phrases (one word event)


def lexicon(words: Sequence[str], dialects: Sequence[str]) -> dict[tuple[str, str], list[str]]:
    """(dialect, word) -> espeak-ng's phonemes of the word in that dialect, for the words accents
    apply to (:data:`WORD`). One private espeak-ng instance, so no speaker's synthesis state is touched."""
    from datamodules.espeak import Espeak

    out = {}
    with Espeak() as espeak:
        for dialect in dialects:
            espeak.set_voice(dialect)
            for word in words:
                if WORD.fullmatch(word):
                    out[dialect, word] = espeak.phonemes(word)
    return out


def draw_accent(rng: np.random.Generator) -> tuple[tuple[str, str], ...]:
    """A speaker's accent: (group, option) for each group that differs from the dialect's own."""
    accent = []
    for group, options in ACCENTS.items():
        if rng.random() >= KEEP_DIALECT:
            accent.append((group, list(options)[int(rng.integers(len(options)))]))
    return tuple(accent)


def substitutions(accent: Sequence[tuple[str, str]]) -> dict[str, str]:
    """{phoneme: replacement} of an accent; unknown groups or options are refused by name."""
    out: dict[str, str] = {}
    for group, option in accent:
        if group not in ACCENTS or option not in ACCENTS[group]:
            known = {g: list(o) for g, o in ACCENTS.items()}
            raise ValueError(f"unknown accent option {group}={option!r}; known: {known}")
        out.update(ACCENTS[group][option])
    return out


def pronounce(phonemes: Sequence[str], replace: Mapping[str, str], lengthen: bool = False) -> list[str]:
    """``phonemes`` (each with its stress mark) with ``replace`` applied, the stress mark kept on the
    first phoneme of a replacement; ``lengthen`` adds espeak-ng's length mark ``:`` after the
    stressed vowel (a drawn-out word)."""
    out = []
    for ph in phonemes:
        stress = ph[: len(ph) - len(ph.lstrip("',"))]
        parts = replace.get(ph[len(stress) :], ph[len(stress) :]).split("|")
        out += [stress + parts[0], *parts[1:]]
        if lengthen and stress == "'":
            out.append(":")
            lengthen = False
    return out


@dataclass(frozen=True)
class Script:
    """What to send espeak-ng for one clip, and which of its word events are the word."""

    text: str  # SSML
    first_word: int  # index of the word's first word event
    num_words: int  # word events in the whole text
    style: str
    carrier: str | None  # the phrase around the word, or None when said alone
    phonemes: str | None  # the phonemes spoken, or None when espeak reads the word as text


def _markup(style: str, spelled: str, ending: str, rng: np.random.Generator) -> str:
    """The word with its style's SSML. A line break ends the word before any tag: espeak-ng 1.52
    reads a tag right after ``]]`` aloud ("slash prosody"), and a ``.`` after ``]]`` followed by a
    space as "dot"."""
    if style == "emphatic":
        pitch, spread = int(rng.integers(5, 26)), int(rng.integers(120, 201))
        inner = f'<prosody pitch="+{pitch}%" range="{spread}%">{spelled}{ending}\n</prosody>'
        return f'<emphasis level="strong">{inner}</emphasis>'
    if style == "drawn":  # espeak's rate floor is 80 words/min: the length mark draws the vowel further
        return f'<prosody rate="{int(rng.integers(55, 81))}%">{spelled}{ending}\n</prosody>'
    if style == "clipped":
        return f'<prosody rate="{int(rng.integers(140, 191))}%">{spelled}{ending}\n</prosody>'
    if style == "question":
        return f'<prosody range="{int(rng.integers(100, 181))}%">{spelled}{ending}\n</prosody>'
    return f"{spelled}{ending}"


def script(
    word: str,
    phonemes: Sequence[str] | None,
    accent: Sequence[tuple[str, str]],
    rng: np.random.Generator,
    style: str | None = None,
    carrier: str | None = None,
) -> Script:
    """How this clip says ``word``: its pronunciation (the speaker's ``accent`` over the dialect's
    ``phonemes``, or None to let espeak read the text), style and carrier phrase, drawn from ``rng``
    (``style``, ``carrier``: fixed instead of drawn, e.g. "drawn", "I said {w} again")."""
    drawn_style = list(STYLES)[rng.choice(len(STYLES), p=np.array(list(STYLES.values())) / sum(STYLES.values()))]
    own = rng.random() < OWN_DIALECT_CLIP
    in_phrase = rng.random() < PHRASE_PROBABILITY and WORD.fullmatch(word) is not None
    drawn_carrier = CARRIERS[int(rng.integers(len(CARRIERS)))] if in_phrase else None
    style, carrier = style or drawn_style, carrier or drawn_carrier
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; styles: {list(STYLES)}")
    if carrier is not None and (carrier.count("{w}") != 1 or not WORD.fullmatch(word)):
        raise ValueError(f"carrier {carrier!r} must hold one {{w}}, and {word!r} be one plain word")
    ending = ENDINGS.get(style) or [".", "?", ","][int(rng.integers(3))]

    spoken = None
    if phonemes and WORD.fullmatch(word):
        changed = pronounce(phonemes, {} if own else substitutions(accent), lengthen=style == "drawn")
        if changed != list(phonemes):
            spoken = "|".join(changed)
    spelled = f"[[{spoken}]]" if spoken else word

    if carrier is None:
        text = f"<speak>{_markup(style, spelled, ending, rng)}\n</speak>"
        return Script(text, 0, len(word.split()), style, None, spoken)
    before, after = carrier.split("{w}")
    at_end = not after.strip()
    # Inside a phrase the word runs on into the next one: its own ending only when it ends the phrase.
    marked = _markup(style, spelled, ending if at_end else "", rng)
    text = f"<speak>{before}{marked}{after}{'' if at_end else ENDINGS.get(style, '.')}\n</speak>"
    words_before, words_after = len(before.split()), len(after.replace(",", " ").split())
    return Script(text, words_before, words_before + 1 + words_after, style, carrier, spoken)


def pause_after(said: Script) -> bool:
    """Whether the phrase pauses after the word (a comma): its cut then takes none of the next word."""
    return said.carrier is not None and "{w}," in said.carrier
