"""Front-end state carried in from preceding audio: training clips featurized as a stream would be.

On the board the micro front end never restarts: when a word arrives, the noise estimate (and
so PCAN's gain) has been following the audio before it for seconds. Featurizing each training
clip from a fresh state (estimate 0) trains the model on features the board never computes.

The front end's only state is the per-channel noise estimate; everything else about a frame is
the audio under it. Streaming a lead-in A (``L`` samples, a multiple of the 320-sample stride)
then a clip C, the clip's 49 frames are stream frames L/320 ...; frames 0 .. L/320 - 2 lie inside
A, and frame L/320 - 1 covers A[-320:] + C[:160]. So a bank entry -- the estimate after A's own
frames and A's last 320 samples -- featurizes any clip exactly as the stream would: run the front
end from that estimate over A[-320:] ++ C (50 frames) and drop the first frame
(:func:`features_after`; ``tests/datamodules/test_lead_in.py`` checks it bit for bit against streaming A ++ C).
That costs one frame in 50 (2 %) more front-end work per clip.

A lead-in is the split's background noise (its part of each recording,
:mod:`datamodules.noise_parts`) at the entry's volume, continuing into the clip (the entry
stores where the clip's noise crop starts, so lead-in and clip hear one continuous recording),
a Gaussian microphone floor, and, with ``word_probability``, one or two words of the same split
ending shortly before the clip. Entries belong to pools that draw their volume differently:
``speech`` (as the training recipe mixes noise into speech clips), ``silence`` (U(0, 1), as its
silence clips) and ``clean`` (no noise; the data module builds none: evaluation clips get fixed,
seeded lead-ins from :func:`lead_in_rows`).

    bank = LeadInBank.build(frontend, noise, words, extents, {"speech": 6144, "silence": 2048}, seed=0)
    index = bank.draw(pool_ids, generator)                   # one entry per clip
    audio = bank.mix(clips, index, noise, generator)         # the clip's noise continues the lead-in's
    features = bank.features(frontend, audio, index)         # [B, 49, 40], as the stream computes them

One set of weights for every front-end state: the board runs after seconds of room audio, but a
clip tool (TensorFlow's speech_commands scripts, micro_speech's tests) and a board just switched
on start from a fresh state. :meth:`LeadInBank.featurize` draws the state per clip from a mix:
``fresh_probability`` of the clips from a fresh start, the rest after lead-ins of lengths in
``LeadInConfig.seconds`` whose noise level differs from the clip's by ``level_ratio``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch import Tensor, nn

from datamodules.augment import BackgroundNoise, to_int16
from datamodules.config_checks import check_at_least, check_range, check_within, pairs_as_tuples

POOLS = ("speech", "silence", "clean")


@dataclass(frozen=True)
class LeadInConfig:
    """The data module's ``lead_in`` options (``data.lead_in.*``): whether clips are featurized
    after a lead-in, and how lead-ins are composed.

    Args:
        enabled: featurize clips as a stream does, the front end's state carried in from preceding
            audio: training clips after one of ``entries`` lead-ins of the training split (cached),
            evaluation clips after a fixed, seeded ``eval_s`` lead-in of their own split. Only the
            micro front end keeps state (:func:`lead_in_applies`).
        entries: lead-ins in the training bank.
        eval_s: length of the evaluation clips' lead-in.
        fresh_probability: share of training clips featurized from a fresh state instead, so that
            one set of weights serves a stream and a clip tool alike.
        seconds: range of a training lead-in's length (rounded to the frame stride).
        level_ratio: range of the lead-in's noise level relative to the clip's (drawn
            log-uniformly): the room may have been louder or quieter before the word.
        word_probability: chance that a lead-in holds words of the split (else noise alone).
        max_words: at most this many words (1..max_words, uniformly).
        last_gap_s: range of the silence between the last lead-in word and the clip.
        word_gap_s: range of the silence between two lead-in words.
        floor: range of the Gaussian floor's RMS, int16 units (the corpus's clips have 1-4).
    """

    enabled: bool = False
    entries: int = 8192
    eval_s: float = 2.0
    fresh_probability: float = 0.0
    seconds: tuple[float, float] = (1.0, 3.0)
    level_ratio: tuple[float, float] = (1.0, 1.0)
    word_probability: float = 0.5
    max_words: int = 2
    last_gap_s: tuple[float, float] = (0.05, 1.0)
    word_gap_s: tuple[float, float] = (0.3, 2.0)
    floor: tuple[float, float] = (1.0, 4.0)

    def __post_init__(self) -> None:
        pairs_as_tuples(self)
        key = "data.lead_in."
        check_at_least(key + "entries", self.entries, 1)
        check_at_least(key + "eval_s", self.eval_s, 0.04)  # two 20 ms frames
        check_at_least(key + "max_words", self.max_words, 1)
        check_within(key + "fresh_probability", self.fresh_probability, 0, 1)
        check_within(key + "word_probability", self.word_probability, 0, 1)
        check_range(key + "seconds", self.seconds)
        check_range(key + "level_ratio", self.level_ratio)
        for name in ("last_gap_s", "word_gap_s", "floor"):
            check_range(key + name, getattr(self, name), positive=False)


def features_after(frontend: nn.Module, tail: Tensor, estimate: Tensor, audio: Tensor) -> Tensor:
    """Features [B, frames, C] of clips ``audio`` [B, S] as a stream computes them after a lead-in
    whose last ``stride`` samples are ``tail`` [B, stride] and whose noise estimate is ``estimate``
    [B, C] (``frontend``: :class:`kws.audio.features.MicroFeatures`)."""
    values, _ = frontend.forward_with_state(torch.cat([tail.to(audio.dtype), audio], 1), estimate)
    return values[:, 1:]


class LeadInBank(nn.Module):
    """Front-end states after lead-ins of one split, and where each lead-in's noise continues.

    Buffers (N entries): ``estimate`` [N, C] int64 (the noise estimate after the lead-in's
    frames), ``tail`` [N, stride] int16 (its last stride samples), ``noise_start`` [N] (index in
    the noise bank where the clip's noise crop starts), ``volume`` [N], ``floor`` [N] and
    ``pool`` [N] (index into :data:`POOLS`).
    """

    def __init__(
        self, estimate: Tensor, tail: Tensor, noise_start: Tensor, volume: Tensor, floor: Tensor, pool: Tensor
    ):
        super().__init__()
        for name, value in dict(
            estimate=estimate, tail=tail, noise_start=noise_start, volume=volume, floor=floor, pool=pool
        ).items():
            self.register_buffer(name, value, persistent=False)
        self.members = {p: torch.nonzero(pool == i).flatten() for i, p in enumerate(POOLS)}

    def __len__(self) -> int:
        return len(self.pool)

    # ------------------------------------------------------------------ building
    @classmethod
    @torch.no_grad()
    def build(
        cls,
        frontend: nn.Module,
        noise: BackgroundNoise,
        words: np.ndarray,
        extents: np.ndarray,
        pools: dict[str, int],
        seed: int = 0,
        config: LeadInConfig = LeadInConfig(),
        stride: int = 320,
        clip_samples: int = 16000,
        batch: int = 64,
        return_audio: bool = False,
        speech_noise: tuple[float, float] = (0.8, 0.1),
    ):
        """``pools``: entries per pool name; ``words`` [M, S] int16 clips of the split and their word
        ``extents`` [M, 2] (lead-in words are cut from them); ``speech_noise``: the ``speech`` pool's
        (background_frequency, background_volume), the training augmentation's. With
        ``return_audio``, returns (bank, the lead-ins' int16 audio) for checks."""
        unknown = set(pools) - set(POOLS)
        if unknown:
            raise ValueError(f"lead-in pools must be among {POOLS}, got {sorted(unknown)}")
        rng = np.random.default_rng([seed, 7])
        bank = noise.bank.cpu().numpy()
        offsets, max_start = noise.offsets.cpu().numpy(), noise.max_start.cpu().numpy()
        specs = []
        for pool, count in pools.items():
            for _ in range(count):
                length = stride * max(2, round(rng.uniform(*config.seconds) * 16000 / stride))
                which = int(rng.integers(len(offsets)))
                room = int(max_start[which]) - length  # the lead-in and the clip's crop both fit
                if room < 0:
                    raise ValueError(
                        f"a background recording part is shorter than a {length}-sample lead-in plus a clip"
                    )
                start = int(offsets[which]) + int(rng.integers(room + 1))
                if pool == "silence":
                    volume = rng.uniform(0.0, 1.0)
                elif pool == "speech" and rng.random() < speech_noise[0]:
                    volume = rng.uniform(0.0, speech_noise[1])
                else:
                    volume = 0.0
                # no draw at ratio 1: banks of configs without level_ratio stay as they were
                ratio = (
                    float(np.exp(rng.uniform(*np.log(config.level_ratio)))) if config.level_ratio != (1.0, 1.0) else 1.0
                )
                specs.append(
                    dict(
                        pool=POOLS.index(pool),
                        length=length,
                        start=start,
                        volume=float(volume),
                        ratio=ratio,
                        floor=float(rng.uniform(*config.floor)),
                        seed=int(rng.integers(2**31)),
                    )
                )
        audio = [_compose(s, bank, words, extents, config) for s in specs]
        estimate = torch.zeros(len(specs), frontend.frontend.cfg.num_channels, dtype=torch.int64)
        by_length: dict[int, list[int]] = {}
        for i, s in enumerate(specs):
            by_length.setdefault(s["length"], []).append(i)
        for length, members in by_length.items():
            for lo in range(0, len(members), batch):
                rows = members[lo : lo + batch]
                _, estimate[rows] = frontend.forward_with_state(torch.from_numpy(np.stack([audio[i] for i in rows])))
        tail = torch.from_numpy(np.stack([a[-stride:] for a in audio]))
        bank = cls(
            estimate,
            tail,
            torch.tensor([s["start"] + s["length"] for s in specs], dtype=torch.int64),
            torch.tensor([s["volume"] for s in specs], dtype=torch.float32),
            torch.tensor([s["floor"] for s in specs], dtype=torch.float32),
            torch.tensor([s["pool"] for s in specs], dtype=torch.int64),
        )
        return (bank, audio) if return_audio else bank

    def save(self, path: str | Path) -> None:
        np.savez(path, **{k: v.cpu().numpy() for k, v in self.state_tensors().items()})

    @classmethod
    def load(cls, path: str | Path) -> "LeadInBank":
        with np.load(path) as f:
            return cls(
                *(torch.from_numpy(f[k]) for k in ("estimate", "tail", "noise_start", "volume", "floor", "pool"))
            )

    def state_tensors(self) -> dict[str, Tensor]:
        return dict(
            estimate=self.estimate,
            tail=self.tail,
            noise_start=self.noise_start,
            volume=self.volume,
            floor=self.floor,
            pool=self.pool,
        )

    # ------------------------------------------------------------------ using
    def draw(self, pool: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One random entry per clip from the pool named by ``pool`` [B] (indices into POOLS)."""
        out = torch.empty_like(pool)
        u = torch.rand(len(pool), device=pool.device, generator=generator)
        for i, name in enumerate(POOLS):
            mask = pool == i
            if mask.any():
                members = self.members[name].to(pool.device)
                if not len(members):
                    raise ValueError(f"the lead-in bank has no {name!r} entries")
                out[mask] = members[(u[mask] * len(members)).long().clamp(max=len(members) - 1)]
        return out

    def mix(
        self, audio: Tensor, index: Tensor, noise: BackgroundNoise, generator: torch.Generator | None = None
    ) -> Tensor:
        """int16 clips [B, S] + each entry's noise, continuing its lead-in's, and its floor."""
        samples = audio.shape[1]
        crop = noise.bank[self.noise_start[index, None] + torch.arange(samples, device=audio.device)].to(torch.float32)
        floor = torch.randn(audio.shape, device=audio.device, generator=generator) * self.floor[index, None]
        wave = audio.to(torch.float32) + self.volume[index, None] * crop + floor
        return to_int16((wave / 32768.0).clamp(-1.0, 1.0))

    def features(self, frontend: nn.Module, audio: Tensor, index: Tensor, fresh: Tensor | None = None) -> Tensor:
        """Features of clips [B, S] after each one's lead-in (see :func:`features_after`); rows
        where ``fresh`` [B] is true from a fresh front-end state instead."""
        if fresh is None or not fresh.any():
            return features_after(frontend, self.tail[index], self.estimate[index], audio)
        values = frontend(audio[fresh])
        out = values.new_empty(len(audio), *values.shape[1:])
        out[fresh] = values
        carried = ~fresh
        if carried.any():
            out[carried] = features_after(
                frontend, self.tail[index[carried]], self.estimate[index[carried]], audio[carried]
            )
        return out

    def featurize(
        self,
        frontend: nn.Module,
        audio: Tensor,
        is_silence: Tensor,
        noise: BackgroundNoise,
        generator: torch.Generator | None = None,
        fresh_probability: float = 0.0,
    ) -> Tensor:
        """Features [B, frames, C] of int16 clips [B, S], each after a random lead-in of its pool
        (silence clips: the silence pool's, else speech) with that lead-in's noise continued; a
        ``fresh_probability`` share of them (drawn per clip) from a fresh state, with the same noise."""
        index = self.draw(torch.where(is_silence, POOLS.index("silence"), POOLS.index("speech")), generator)
        mixed = self.mix(audio, index, noise, generator)
        fresh = (
            torch.rand(len(audio), device=audio.device, generator=generator) < fresh_probability
            if fresh_probability > 0
            else None
        )
        return self.features(frontend, mixed, index, fresh)


def cached_bank(cache_dir: Path, key: list, build) -> LeadInBank:
    """The bank ``build()`` makes, cached in ``cache_dir`` under a hash of ``key`` (everything it
    depends on), built by one process at a time and written atomically."""
    digest = hashlib.sha1(json.dumps(key, default=str).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"lead_in-{digest}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_suffix(".lock")):
        if not path.is_file():
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            build().save(tmp)
            os.replace(tmp, path)
    return LeadInBank.load(path)


def _compose(spec: dict, noise: np.ndarray, words: np.ndarray, extents: np.ndarray, config: LeadInConfig) -> np.ndarray:
    """One lead-in's int16 audio: floor + volume x noise + maybe words ending before the clip."""
    rng = np.random.default_rng(spec["seed"])
    length, start = spec["length"], spec["start"]
    wave = rng.normal(0.0, spec["floor"], length) + spec["volume"] * spec.get("ratio", 1.0) * noise[
        start : start + length
    ].astype(np.float64)
    if len(words) and rng.random() < config.word_probability:
        end = length - int(rng.uniform(*config.last_gap_s) * 16000)
        for _ in range(int(rng.integers(1, config.max_words + 1))):
            k = int(rng.integers(len(words)))
            s, e = (int(v) for v in extents[k])
            s, e = max(0, s - 480), min(words.shape[1], e + 480)  # a little of the clip around the word
            begin = end - (e - s)
            if begin < 0:
                break
            wave[begin:end] += words[k, s:e]
            end = begin - int(rng.uniform(*config.word_gap_s) * 16000)
    return np.clip(np.round(wave), -32768, 32767).astype(np.int16)


def lead_in_applies(config: LeadInConfig, frontend: str, sample_rate: int, stride_ms: int, log=print) -> bool:
    """Whether ``data.lead_in`` takes effect; framing it cannot serve raises, naming the fix. The
    lead-in carries the micro front end's state: a stateless front end (MFCC) has none to carry."""
    if not config.enabled:
        return False
    if frontend != "micro":
        log(
            f"data.lead_in: the {frontend} front end keeps no state between frames, "
            "so clips are featurized without a lead-in"
        )
        return False
    if (sample_rate, stride_ms) != (16000, 20):  # the lead-ins are composed in whole 20 ms frames at 16 kHz
        raise ValueError(
            f"data.lead_in is built for 16 kHz audio and a 20 ms stride, got data.features.sample_rate "
            f"{sample_rate} and data.features.stride_ms {stride_ms}: "
            "set data.lead_in.enabled: false for other framing"
        )
    return True


def lead_in_rows(
    clips: np.ndarray,
    noise: BackgroundNoise,
    words: np.ndarray,
    extents: np.ndarray,
    is_silence: np.ndarray,
    seed: int,
    seconds: float = 2.0,
    config: LeadInConfig = LeadInConfig(),
) -> np.ndarray:
    """Evaluation rows [n, lead + S] int16: a fixed-length, seeded lead-in before each clip (speech
    clips stay clean; a silence clip's noise continues its lead-in's at a U(0, 1) volume, replacing
    the clip). The front end runs over the whole row and keeps the clip's last frames."""
    rng = np.random.default_rng([seed, 8])
    bank = noise.bank.cpu().numpy()
    offsets, max_start = noise.offsets.cpu().numpy(), noise.max_start.cpu().numpy()
    samples = clips.shape[1]
    length = int(round(seconds * 16000 / 320)) * 320
    out = np.zeros((len(clips), length + samples), np.int16)
    # Recordings long enough for the lead-in and a silence clip's noise after it.
    usable = np.flatnonzero(max_start - length + 1 > 0)
    if len(clips) and not len(usable):
        raise ValueError(
            f"every background recording (of this split's part) is shorter than the {seconds:g} s evaluation lead-in "
            f"plus one clip: use longer recordings in _background_noise_, a shorter data.lead_in.eval_s, "
            "or data.noise_split: false"
        )
    for i in range(len(clips)):
        which = int(usable[rng.integers(len(usable))])
        start = int(offsets[which]) + int(rng.integers(int(max_start[which]) - length + 1))
        volume = float(rng.uniform(0.0, 1.0)) if is_silence[i] else 0.0
        spec = dict(
            length=length,
            start=start,
            volume=volume,
            floor=float(rng.uniform(*config.floor)),
            seed=int(rng.integers(2**31)),
        )
        row = _compose(spec, bank, words, extents, config).astype(np.float64)
        tail_noise = rng.normal(0.0, spec["floor"], samples) + volume * bank[start + length : start + length + samples]
        clip = tail_noise if is_silence[i] else clips[i].astype(np.float64)
        out[i] = np.clip(np.round(np.concatenate([row, clip])), -32768, 32767).astype(np.int16)
    return out
