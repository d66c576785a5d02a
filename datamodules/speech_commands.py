"""Google Speech Commands as a LightningDataModule: the dataset's split, silence and unknown
classes, background noise, time shift, and the feature front end -- batch-wise on the device.

The pipeline, and where each step runs:

1. ``prepare_data`` (once per node): download the archive (or generate the offline stand-in
   corpus), then decode every clip once into a memory-mapped int16 cache (:mod:`.audio_cache`).
2. ``setup``: assign clips to train/val/test from ``validation_list.txt`` / ``testing_list.txt``
   (or the dataset's sha1-of-speaker rule when they are absent), add the silence and unknown
   classes, and print how many clips each class has in each split.
3. DataLoader: each batch is one gather from the cache (``[B, samples]`` int16).
4. ``on_after_batch_transfer`` (on the training device): time shift and noise mixing for
   training batches, then the front end (``micro`` or ``mfcc``) -> flat ``[B, frames*features]``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from filelock import FileLock
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from datamodules.audio_cache import DecodeReport, load_or_build_cache
from datamodules.augment import BackgroundNoise
from datamodules.classes import EVAL_VIEWS, class_rows, counts_table, evaluation_clips
from datamodules.batches import ClipBatches, FeatureBatches, whole_batch
from datamodules.lead_in import LeadInBank, LeadInConfig, cached_bank, lead_in_applies, lead_in_rows
from datamodules.noise_parts import read_noise_parts
from datamodules.training_features import Augmentation, training_features
from datamodules.word_extent import word_extents
from datamodules.prefetch import BackgroundFeatures
from datamodules.layout import (
    BACKGROUND_NOISE_DIR, SILENCE_LABEL, SPLITS, UNKNOWN_LABEL, DataError, assign_splits, download_speech_commands, scan_corpus, split_lists,
)
from datamodules.holdout import hold_out_dialect, speaker_voices
from kws.audio.features import FeatureSettings, build_frontend
from kws.utils.seeding import base_seed, step_seed

RANDOM_SEED = 59185  # the reference recipe's seed for picking unknown clips

class SpeechCommandsDataModule(L.LightningDataModule):
    """Speech Commands (v0.02 layout) for keyword spotting, with a batch-wise front end.

    Args:
        data_dir: the corpus root (one folder per word, ``_background_noise_``, the split lists).
        synthetic: if ``data_dir`` holds no corpus, generate the offline stand-in corpus there
            (espeak-ng voices, split by voice; see :mod:`datamodules.synthetic`).
        download: if ``data_dir`` holds no corpus, download the official archive.
        wanted_words: the keywords; every other word becomes ``unknown``.
        silence_percentage / unknown_percentage: size of those classes, as a percentage of the
            wanted-word clips in each split (25 / 25 as micro_speech's training recipe).
        training_unknown_percentage: the unknown class of the training split alone (default:
            ``unknown_percentage``), above 100 for more other words than keywords: a stream holds
            far more other speech than keywords. Evaluation keeps ``unknown_percentage``, so its
            clip accuracy stays comparable with the recipe's.
        validation_percentage / testing_percentage: for the hash split when the lists are absent.
        frontend, sample_rate, clip_ms, window_ms, stride_ms, num_features: the features
            (:class:`kws.audio.settings.FeatureSettings`).
        background_frequency: fraction of training clips mixed with background noise.
        background_volume: maximum noise volume for those clips (silence clips: up to 1).
        time_shift_ms: maximum random shift of training clips, either way.
        batch_size, num_workers: DataLoader settings.
        resample: resample clips at another rate instead of refusing them.
        skip_bad_files: leave unreadable clips out (counted and listed) instead of failing.
        cache_dir: where decoded audio is cached; default ``<data_dir>/.cache``.
        seed: seed of the silence/unknown selection and of the evaluation noise.
        noise_split: cut each background recording in time into training / validation / testing
            parts (:mod:`datamodules.noise_parts`): each split mixes and makes silence from its own.
        lead_in: featurize clips as a stream does, the front end's state carried in from preceding
            audio (:mod:`datamodules.lead_in`): training clips after one of ``lead_in_entries``
            lead-ins of the training split (random length, noise and words; cached), evaluation
            clips after a fixed, seeded ``lead_in_eval_s`` lead-in of their own split. Only the
            micro front end keeps state; with ``frontend: mfcc`` (no state between frames) there
            is nothing to carry, and the set-up says so. Validation and test are then measured
            both ways, after the lead-in and from a fresh state (:attr:`eval_views`).
        lead_in_seconds: range of the training lead-ins' lengths (short: a half-adapted state).
        lead_in_level_ratio: range of a training lead-in's noise level relative to its clip's.
        lead_in_fresh_probability: share of training clips featurized from a fresh state
            instead, so that one set of weights serves a stream and a clip tool alike.
        holdout_dialect: a dialect of the synthetic corpus (e.g. ``en-gb-scotland``) held out of
            training and validation: all its clips go to the test split (:mod:`datamodules.holdout`).
        word_placement, max_cut, keep_fraction, neighbour_probability, neighbour_gap_s,
        speed_probability, speed_range, eq_probability, reverb_probability, spec_masks: the
            training augmentation (:class:`datamodules.training_features.Augmentation`): each
            word moved anywhere at least ``1 - max_cut`` of it stays in the window (in place of the
            time shift; keywords left with less than ``keep_fraction`` inside become unknown), a
            neighbouring word, speed / microphone / room perturbation, SpecAugment masks.
    """

    def __init__(
        self,
        data_dir: str = "data/speech_commands_v0.02",
        synthetic: bool = False,
        download: bool = False,
        wanted_words: Sequence[str | bool] = ("yes", "no"),  # bool only to catch YAML's unquoted yes/no
        silence_percentage: float = 25.0,
        unknown_percentage: float = 25.0,
        training_unknown_percentage: float | None = None,
        validation_percentage: float = 10.0,
        testing_percentage: float = 10.0,
        frontend: Literal["micro", "mfcc"] = "micro",
        sample_rate: int = 16000,
        clip_ms: int = 1000,
        window_ms: int = 30,
        stride_ms: int = 20,
        num_features: int = 40,
        background_frequency: float = 0.8,
        background_volume: float = 0.1,
        time_shift_ms: float = 100.0,
        batch_size: int = 100,
        num_workers: int = 0,
        resample: bool = False,
        skip_bad_files: bool = False,
        cache_dir: str | None = None,
        seed: int = RANDOM_SEED,
        noise_split: bool = False,
        lead_in: bool = False,
        lead_in_entries: int = 8192,
        lead_in_eval_s: float = 2.0,
        lead_in_seconds: tuple[float, float] = (1.0, 3.0),
        lead_in_level_ratio: tuple[float, float] = (1.0, 1.0),
        lead_in_fresh_probability: float = 0.0,
        holdout_dialect: str | None = None,
        word_placement: bool = False,
        max_cut: float = 0.0,
        keep_fraction: float = 0.0,
        neighbour_probability: float = 0.0,
        neighbour_gap_s: tuple[float, float] = (0.5, 1.5),
        speed_probability: float = 0.0,
        speed_range: tuple[float, float] = (0.85, 1.15),
        eq_probability: float = 0.0,
        reverb_probability: float = 0.0,
        spec_masks: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        unquoted = [w for w in wanted_words if isinstance(w, bool)]
        if unquoted:
            raise ValueError(f"data.wanted_words holds {unquoted} (booleans): YAML reads bare yes/no/on/off as booleans; quote the words, e.g. wanted_words: [\"yes\", \"no\"]")
        if not wanted_words or len(set(wanted_words)) != len(wanted_words):
            raise ValueError(f"wanted_words must be a non-empty list of distinct words, got {list(wanted_words)}")
        reserved = {SILENCE_LABEL, UNKNOWN_LABEL, BACKGROUND_NOISE_DIR} & set(wanted_words)
        if reserved:
            raise ValueError(f"wanted_words may not contain {sorted(reserved)}")
        for name in ("silence_percentage", "unknown_percentage", "validation_percentage", "testing_percentage"):
            if not 0 <= getattr(self.hparams, name) <= 100:
                raise ValueError(f"{name} must be within [0, 100], got {getattr(self.hparams, name)}")
        if training_unknown_percentage is not None and training_unknown_percentage < 0:
            raise ValueError(f"training_unknown_percentage must be >= 0 (or null: unknown_percentage), got {training_unknown_percentage}")
        self.augmentation = Augmentation(background_frequency, background_volume, time_shift_ms, word_placement, max_cut, keep_fraction, neighbour_probability,
                                         tuple(neighbour_gap_s), speed_probability, tuple(speed_range), eq_probability, reverb_probability, spec_masks)
        if not 0 <= lead_in_fresh_probability <= 1:
            raise ValueError(f"data.lead_in_fresh_probability must be within [0, 1], got {lead_in_fresh_probability}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_dir / ".cache"
        self.features = FeatureSettings(frontend, sample_rate, clip_ms, window_ms, stride_ms, num_features)
        self.labels = [SILENCE_LABEL, UNKNOWN_LABEL, *wanted_words]
        self.frontend = build_frontend(self.features)
        self.noise: BackgroundNoise | None = None  # the training split's
        self.noises: dict[str, BackgroundNoise] = {}
        self.lead_in_bank: LeadInBank | None = None
        self.uses_lead_in = lead_in_applies(lead_in, frontend, sample_rate, stride_ms, lead_in_entries, lead_in_eval_s, rank_zero_info)
        self.splits: dict[str, ClipBatches] = {}
        self.fresh_clips: dict[str, ClipBatches] = {}  # evaluation clips without their lead-in
        self.eval_features: dict[str, dict[str, FeatureBatches]] = {}  # split -> view -> features
        self.counts: dict[str, dict[str, int]] = {}
        self.decode_report = DecodeReport()
        self.cache_files: list[str] = []

    @property
    def input_shape(self) -> tuple[int, int]:
        return self.features.input_shape

    @property
    def eval_views(self) -> tuple[str, ...]:
        """How validation and test clips are featurized, in loader order: after their lead-in
        (the board's view, when ``lead_in`` applies) and from a fresh state (a clip tool's)."""
        return EVAL_VIEWS if self.uses_lead_in else EVAL_VIEWS[1:]

    # ------------------------------------------------------------------ preparation (rank 0)
    def prepare_data(self) -> None:
        # Lightning runs this on one rank per node. The locks also serialise jobs or nodes sharing
        # a folder: the first generates (or downloads) the corpus and decodes the cache, the
        # others wait and find them. A node-local data.cache_dir gives one cache per node.
        if not self._has_corpus() and (self.hparams.synthetic or self.hparams.download):
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(self.data_dir.parent / f".{self.data_dir.name}.lock"):
                if not self._has_corpus():
                    self._fetch_corpus()
        elif self.hparams.synthetic:  # a generated corpus of an older generator is made anew, with its own arguments
            from datamodules.synthetic import refresh_corpus
            with FileLock(self.data_dir.parent / f".{self.data_dir.name}.lock"):
                refresh_corpus(self.data_dir)
        self._load_audio()

    def _fetch_corpus(self) -> None:
        if self.hparams.synthetic:
            from datamodules.synthetic import DEFAULT_UNKNOWN_WORDS, DEFAULT_WORDS, generate_corpus

            wanted = tuple(self.hparams.wanted_words)
            others = tuple(w for w in DEFAULT_WORDS + DEFAULT_UNKNOWN_WORDS if w not in wanted)
            generate_corpus(self.data_dir, words=wanted, unknown_words=others, sample_rate=self.features.sample_rate)
        else:
            download_speech_commands(self.data_dir)

    def _has_corpus(self) -> bool:
        return self.data_dir.is_dir() and any(p.is_dir() and not p.name.startswith((".", "_")) for p in self.data_dir.iterdir())

    def _load_audio(self) -> tuple[np.ndarray, list[str], list[str]]:
        """(the decoded clips, the files they are, every clip file found)."""
        words = scan_corpus(self.data_dir)
        for word in self.hparams.wanted_words:
            if not words.get(word):
                raise DataError(f"wanted word '{word}' has no clips: {self.data_dir / word} is missing or empty; check data.wanted_words and data.data_dir")
        files = [f for fs in words.values() for f in fs]
        audio, kept, self.decode_report = load_or_build_cache(
            self.data_dir, files, self.cache_dir, self.features.sample_rate, self.features.clip_samples,
            resample=self.hparams.resample, skip_bad_files=self.hparams.skip_bad_files,
        )
        return audio, kept, files

    # ------------------------------------------------------------------ splits (every rank)
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        hp = self.hparams
        audio, files, scanned = self._load_audio()
        self.cache_files = files  # relative path of each cache row
        assignment = self._split_assignment(files, set(scanned))
        extents = word_extents(audio, self.features.sample_rate) if self.uses_lead_in else None
        rng = np.random.default_rng(hp.seed)
        for split in SPLITS:
            percentage = hp.unknown_percentage if split != "training" or hp.training_unknown_percentage is None else hp.training_unknown_percentage
            rows, labels = class_rows(files, assignment, split, self.labels, hp.silence_percentage, percentage, rng, self._empty_split)
            if split != "training":
                audio_split = evaluation_clips(audio, rows, self._background_noise(split), rng)
                self.fresh_clips[split] = ClipBatches(audio_split, np.arange(len(rows)), labels)
                if self.uses_lead_in:  # the same clips, each after a fixed, seeded lead-in of its split
                    words = self._lead_in_words(assignment, split)
                    audio_split = lead_in_rows(audio_split, self._background_noise(split), audio[words], extents[words],
                                               # its own seed: lead_in on or off, the split holds the same clips
                                               rows < 0, seed=hp.seed * 10 + SPLITS.index(split), seconds=hp.lead_in_eval_s, config=self._lead_in_config())
                rows = np.arange(len(rows))
            else:
                audio_split = audio
            self.splits[split] = ClipBatches(audio_split, rows, labels)
            self.counts[split] = {label: int((labels == i).sum()) for i, label in enumerate(self.labels)}
        self.noise = self._background_noise()
        if self.uses_lead_in:
            words = self._lead_in_words(assignment, "training")
            self.lead_in_bank = self._lead_in_bank(audio[words], extents[words], [files[i] for i in words])
        # Evaluation is not augmented: its features are computed once, not every epoch, each view.
        for split in SPLITS[1:]:
            views = {"lead_in": self.splits[split], "fresh": self.fresh_clips[split]}
            self.eval_features[split] = {view: self._features_once(views[view]) for view in self.eval_views}
        rank_zero_info(self.summary())

    @torch.no_grad()
    def _features_once(self, data: ClipBatches) -> FeatureBatches:
        features = [self.featurize(data[list(range(i, min(i + 500, len(data))))][0]) for i in range(0, len(data), 500)]
        return FeatureBatches(torch.cat(features) if features else torch.zeros(0, math.prod(self.input_shape)), data.labels)

    # ------------------------------------------------------------------ lead-ins
    def _lead_in_config(self) -> LeadInConfig:
        hp = self.hparams
        return LeadInConfig(seconds=tuple(hp.lead_in_seconds), level_ratio=tuple(hp.lead_in_level_ratio),
                            background_frequency=hp.background_frequency, background_volume=hp.background_volume)

    def _lead_in_words(self, assignment: list[str], split: str, limit: int = 2000) -> np.ndarray:
        """Sorted cache rows (a seeded subset) of ``split`` whose words lead-ins may hold."""
        rows = np.flatnonzero(np.array(assignment) == split)
        return np.sort(np.random.default_rng([self.hparams.seed, 9]).permutation(rows)[:limit])

    def _lead_in_bank(self, words: np.ndarray, extents: np.ndarray, names: list[str]) -> LeadInBank:
        """The training split's bank of front-end states, built once and cached beside the audio."""
        hp = self.hparams
        n_silence = round(hp.lead_in_entries * hp.silence_percentage / (100 + hp.silence_percentage)) if hp.silence_percentage else 0
        pools = {"speech": hp.lead_in_entries - n_silence, "silence": n_silence}
        noise = self._background_noise("training")
        key = [2, pools, repr(self._lead_in_config()), repr(self.features), hp.seed, hp.noise_split, names, noise.bank.shape[0], int(noise.bank[::997].long().sum())]

        def build() -> LeadInBank:
            return LeadInBank.build(self.frontend, noise, words, extents, pools, seed=hp.seed, config=self._lead_in_config(),
                                    stride=self.features.stride_samples, clip_samples=self.features.clip_samples)

        return cached_bank(self.cache_dir, key, build)

    def _empty_split(self, split: str) -> None:
        """A split without keyword clips: an error where the lists name the split, else a warning."""
        message = f"the {split} split holds no clip of {list(self.hparams.wanted_words)} in {self.data_dir}"
        if split_lists(self.data_dir) is not None:
            raise DataError(f"{message}; check {split}_list.txt against the clips")
        rank_zero_warn(f"{message} (the speaker-hash split of a small data set): its metrics will be empty; add speakers, or raise data.validation_percentage / data.testing_percentage")

    def _split_assignment(self, files: list[str], scanned: set[str]) -> list[str]:
        """Split of each file (:func:`datamodules.layout.assign_splits`), ``holdout_dialect``'s
        clips all moved to testing. ``scanned``: every clip found on disk."""
        hp = self.hparams
        if split_lists(self.data_dir) is None:
            rank_zero_info(f"No split lists in {self.data_dir}: using the sha1-of-speaker split ({hp.validation_percentage:g} % validation, {hp.testing_percentage:g} % test)")
        assignment = assign_splits(self.data_dir, files, scanned, hp.validation_percentage, hp.testing_percentage)
        return hold_out_dialect(files, assignment, speaker_voices(self.data_dir), hp.holdout_dialect) if hp.holdout_dialect else assignment

    def _background_noise(self, split: str = "training") -> BackgroundNoise:
        """The background recordings (each split's part of them with ``noise_split``)."""
        split = split if self.hparams.noise_split else "training"
        if split in self.noises:
            return self.noises[split]
        parts = read_noise_parts(self.data_dir / BACKGROUND_NOISE_DIR, split if self.hparams.noise_split else None,
                                 self.features.sample_rate, self.features.clip_samples, resample=self.hparams.resample)
        recordings = [torch.from_numpy(samples.copy()) for samples in parts.values()]
        self.noises[split] = BackgroundNoise(recordings, self.features.clip_samples)
        return self.noises[split]

    def summary(self) -> str:
        """Clips per class per split: the table printed at set-up."""
        title = f"Speech Commands data from {self.data_dir} ({self.features.frontend} front end, {self.decode_report.summary()})"
        return title + "\n" + counts_table(self.counts, self.labels)

    # ------------------------------------------------------------------ loaders
    def _loader(self, split: str, shuffle: bool, view: str | None = None) -> DataLoader:
        if not self.splits:
            self.setup()
        data = self.eval_features[split][view] if view else self.splits[split]
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        # Lightning leaves a DistributedSampler as it is.
        if shuffle:
            # This rank's share of a permutation drawn from (seed, epoch) (Lightning calls
            # set_epoch): the same order on resume.
            sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=base_seed())
        elif world > 1:
            # Evaluation shards without the padding repeats of Lightning's default sampler, so
            # every clip counts once (torchmetrics syncs the uneven shards).
            sampler = UnrepeatedDistributedSampler(data, num_replicas=world, rank=rank, shuffle=False)
        else:
            sampler = SequentialSampler(data)
        return DataLoader(
            data, sampler=sampler, batch_size=self.hparams.batch_size, collate_fn=whole_batch,
            num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader | BackgroundFeatures:
        loader = self._loader("training", shuffle=True)
        if self.trainer is not None and self.trainer.strategy.root_device.type == "cpu":
            # On a CPU the next batch's features are computed while the model trains on this one.
            return BackgroundFeatures(loader, self._training_features, lambda: self.trainer.current_epoch)
        return loader  # on a GPU the features are computed there, in on_after_batch_transfer

    def _training_features(self, batch, index: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch's augmentation and features, from the step's own seed."""
        audio, labels = batch
        rank = self.trainer.global_rank if self.trainer is not None else 0
        generator = torch.Generator().manual_seed(step_seed(epoch, index, rank, "augment"))
        with torch.no_grad():  # grad mode is per thread: this one runs in the background
            return self.featurize_training(audio, labels, generator)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """One loader per evaluation view (:attr:`eval_views`), in that order (one: the loader)."""
        return self._eval_loaders("validation")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_loaders("testing")

    def _eval_loaders(self, split: str) -> DataLoader | list[DataLoader]:
        loaders = [self._loader(split, shuffle=False, view=view) for view in self.eval_views]
        return loaders if len(loaders) > 1 else loaders[0]

    def predict_dataloader(self) -> DataLoader:
        return self._loader("testing", shuffle=False, view=self.eval_views[0])

    # ------------------------------------------------------------------ on the device
    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if not isinstance(batch, (tuple, list)):
            return batch  # not a loader batch: e.g. the model's example_input_array (features)
        audio, labels = batch
        if audio.is_floating_point():
            return batch  # features already: evaluation's, computed once, or training's, computed in the background
        if self.trainer is None or not self.trainer.training:
            return self.featurize(audio), labels
        # The batch being transferred is not yet counted as ready: `ready` is its index in the epoch.
        index = self.trainer.fit_loop.epoch_loop.batch_progress.current.ready
        seed = step_seed(self.trainer.current_epoch, index, self.trainer.global_rank, "augment")
        generator = torch.Generator(device=audio.device).manual_seed(seed)
        return self.featurize_training(audio, labels, generator)

    def featurize(self, audio: torch.Tensor, train_labels: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """int16 audio [B, samples] -> flat features [B, frames * features] on audio's device.
        With ``train_labels`` the training augmentation (random draws from ``generator``) is
        applied first (:meth:`featurize_training`, which also returns the labels it may change).
        Rows longer than a clip (evaluation clips after their lead-in) go through the front end
        whole; the features are the clip's, its last frames."""
        if train_labels is not None:
            return self.featurize_training(audio, train_labels, generator)[0]
        self.frontend.to(audio.device)
        return self.frontend(audio)[:, -self.features.num_frames:].reshape(audio.shape[0], -1)

    def featurize_training(self, audio: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training augmentation, then features: (flat features, labels after any relabelling)."""
        self.frontend.to(audio.device)
        bank = self.lead_in_bank.to(audio.device) if self.lead_in_bank is not None else None
        features, labels = training_features(audio, labels, self.augmentation, self.frontend, self._background_noise().to(audio.device), bank,
                                             self.labels.index(SILENCE_LABEL), self.labels.index(UNKNOWN_LABEL), self.features.sample_rate, generator,
                                             fresh_probability=self.hparams.lead_in_fresh_probability)
        return features.reshape(audio.shape[0], -1), labels

    @torch.no_grad()
    def split_features(self, split: str, clips: int | None = None, seed: int = 0, device: torch.device | str = "cpu",
                       view: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Flat float features [n, frames * features] and labels of a split as evaluation sees
        them (no augmentation), for calibration, export checks and sweeps; ``clips``: a seeded
        random subset of that many; ``view``: of evaluation splits, one of :attr:`eval_views`
        (default the first: after the lead-in where it applies)."""
        if not self.splits:
            self.setup()
        view = view or self.eval_views[0]
        if view not in self.eval_views:
            raise ValueError(f"view must be one of {list(self.eval_views)}, got {view!r}")
        if split in self.eval_features and clips is None:
            data = self.eval_features[split][view]
            return data.features.numpy().astype(np.float32), data.labels.numpy()
        data = self.fresh_clips[split] if view == "fresh" and split in self.fresh_clips else self.splits[split]
        index = np.arange(len(data)) if clips is None else np.sort(np.random.default_rng(seed).permutation(len(data))[:clips])
        if not len(index):
            raise DataError(f"the {split} split of {self.data_dir} has no clips")
        features, labels = [], []
        # Training clips are raw; with a lead-in they are featurized after one from the bank, as
        # training and the board see them (int8 calibration must see that range, not a fresh state's).
        lead_in = split == "training" and self.lead_in_bank is not None
        generator = torch.Generator().manual_seed(seed)
        for start in range(0, len(index), self.hparams.batch_size):
            audio, label = data[list(index[start:start + self.hparams.batch_size])]
            if lead_in:
                self.frontend.to("cpu")
                silence = label == self.labels.index(SILENCE_LABEL)
                features.append(self.lead_in_bank.featurize(self.frontend, audio, silence, self._background_noise(), generator,
                                                            self.hparams.lead_in_fresh_probability).reshape(len(audio), -1))
            else:
                features.append(self.featurize(audio.to(device)).cpu())
            labels.append(label)
        return torch.cat(features).numpy().astype(np.float32), torch.cat(labels).numpy()
