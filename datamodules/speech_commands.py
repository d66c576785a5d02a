"""Google Speech Commands as a LightningDataModule: the dataset's split, silence and unknown
classes, background noise, time shift, and the feature front end -- batch-wise on the device.

The pipeline, and where each step runs:

1. ``prepare_data`` (once per node): download the archive (or generate the offline stand-in
   corpus), then decode every clip once into a memory-mapped int16 cache (:mod:`.audio_cache`).
2. ``setup``, a step per module: assign clips to train/val/test (:mod:`.split_assignment`), pick
   each split's keyword, unknown and silence clips (:mod:`.class_sampling`), build the lead-ins
   (:mod:`.lead_in_setup`), featurize validation and test once (:mod:`.evaluation_features`),
   and print how many clips each class has in each split.
3. DataLoader: each batch is one gather from the cache (``[B, samples]`` int16).
4. ``on_after_batch_transfer`` (on the training device): time shift and noise mixing for
   training batches, then the front end (``micro`` or ``mfcc``) -> flat ``[B, frames*features]``.

The options come in groups, nested keys of ``data`` in a config (``data.augment.max_cut``): each
a frozen dataclass that checks itself (:class:`~datamodules.training_features.Augmentation`,
:class:`~datamodules.lead_in.LeadInConfig`, :class:`~datamodules.classes.ClassShares`,
:class:`~kws.audio.settings.FeatureSettings`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import torch
from filelock import FileLock
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from datamodules.audio_cache import DecodeReport, load_or_build_cache
from datamodules.augment import BackgroundNoise
from datamodules.batches import ClipBatches, FeatureBatches, whole_batch
from datamodules.class_sampling import sample_classes
from datamodules.classes import EVAL_VIEWS, ClassShares, counts_table
from datamodules.config_checks import as_config, plain
from datamodules.evaluation_features import evaluation_features
from datamodules.layout import (
    BACKGROUND_NOISE_DIR,
    SILENCE_LABEL,
    UNKNOWN_LABEL,
    DataError,
    has_corpus,
    scan_corpus,
)
from datamodules.lead_in import LeadInBank, LeadInConfig, lead_in_applies
from datamodules.lead_in_setup import evaluation_lead_ins, training_bank
from datamodules.noise_parts import read_noise_parts
from datamodules.prefetch import BackgroundFeatures
from datamodules.renamed_keys import nest_flat_keys
from datamodules.split_assignment import empty_split_check, split_assignment
from datamodules.training_features import Augmentation, training_features
from datamodules.word_extent import word_extents
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
        classes: the silence and unknown classes' sizes (:class:`~datamodules.classes.ClassShares`).
        validation_percentage / testing_percentage: for the hash split when the lists are absent.
        holdout_dialect: a dialect of the synthetic corpus (e.g. ``en-gb-scotland``) held out of
            training and validation: all its clips go to the test split (:mod:`datamodules.holdout`).
        features: the front end and framing (:class:`~kws.audio.settings.FeatureSettings`).
        augment: the training augmentation (:class:`~datamodules.training_features.Augmentation`).
        lead_in: featurize clips as a stream does, the front end's state carried in from preceding
            audio (:class:`~datamodules.lead_in.LeadInConfig`). Validation and test are then
            measured both ways, after the lead-in and from a fresh state (:attr:`eval_views`).
        noise_split: cut each background recording in time into training / validation / testing
            parts (:mod:`datamodules.noise_parts`): each split mixes and makes silence from its own.
        batch_size, num_workers: DataLoader settings.
        resample: resample clips at another rate instead of refusing them.
        skip_bad_files: leave unreadable clips out (counted and listed) instead of failing.
        cache_dir: where decoded audio is cached; default ``<data_dir>/.cache``.
        seed: seed of the silence/unknown selection and of the evaluation noise.
    """

    def __init__(
        self,
        data_dir: str = "data/speech_commands_v0.02",
        synthetic: bool = False,
        download: bool = False,
        wanted_words: Sequence[str | bool] = ("yes", "no"),  # bool only to catch YAML's unquoted yes/no
        classes: ClassShares = ClassShares(),
        validation_percentage: float = 10.0,
        testing_percentage: float = 10.0,
        holdout_dialect: str | None = None,
        features: FeatureSettings = FeatureSettings(),
        augment: Augmentation = Augmentation(),
        lead_in: LeadInConfig = LeadInConfig(),
        noise_split: bool = False,
        batch_size: int = 100,
        num_workers: int = 0,
        resample: bool = False,
        skip_bad_files: bool = False,
        cache_dir: str | None = None,
        seed: int = RANDOM_SEED,
    ):
        super().__init__()
        self.save_hyperparameters()
        unquoted = [w for w in wanted_words if isinstance(w, bool)]
        if unquoted:
            raise ValueError(
                f"data.wanted_words holds {unquoted} (booleans): YAML reads bare yes/no/on/off as "
                'booleans; quote the words, e.g. wanted_words: ["yes", "no"]'
            )
        if not wanted_words or len(set(wanted_words)) != len(wanted_words):
            raise ValueError(f"wanted_words must be a non-empty list of distinct words, got {list(wanted_words)}")
        reserved = {SILENCE_LABEL, UNKNOWN_LABEL, BACKGROUND_NOISE_DIR} & set(wanted_words)
        if reserved:
            raise ValueError(f"wanted_words may not contain {sorted(reserved)}")
        for name in ("validation_percentage", "testing_percentage"):
            if not 0 <= getattr(self.hparams, name) <= 100:
                raise ValueError(f"data.{name} must be within [0, 100], got {getattr(self.hparams, name)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.classes: ClassShares = as_config(ClassShares, classes, "classes")
        self.features: FeatureSettings = as_config(FeatureSettings, features, "features")
        self.augment: Augmentation = as_config(Augmentation, augment, "augment")
        self.lead_in: LeadInConfig = as_config(LeadInConfig, lead_in, "lead_in")
        # Plain values in hparams (hparams.yaml, checkpoints): a checkpoint is opened with
        # weights_only=True, which refuses kws classes.
        groups = ("classes", "features", "augment", "lead_in")
        self.save_hyperparameters({group: plain(getattr(self, group)) for group in groups})
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_dir / ".cache"
        self.labels = [SILENCE_LABEL, UNKNOWN_LABEL, *wanted_words]
        self.frontend = build_frontend(self.features)
        self.noise: BackgroundNoise | None = None  # the training split's
        self.noises: dict[str, BackgroundNoise] = {}
        self.lead_in_bank: LeadInBank | None = None
        self.uses_lead_in = lead_in_applies(
            self.lead_in, self.features.frontend, self.features.sample_rate, self.features.stride_ms, rank_zero_info
        )
        self.splits: dict[str, ClipBatches] = {}
        self.fresh_clips: dict[str, ClipBatches] = {}  # evaluation clips without their lead-in
        self.eval_features: dict[str, dict[str, FeatureBatches]] = {}  # split -> view -> features
        self.counts: dict[str, dict[str, int]] = {}
        self.decode_report = DecodeReport()
        self.cache_files: list[str] = []

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, **kwargs):
        """Lightning's, also for a checkpoint saved before the option groups: its flat keys are
        read into their groups (Lightning would drop them silently, leaving the defaults)."""
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        saved = checkpoint.get(cls.CHECKPOINT_HYPER_PARAMS_KEY)
        if isinstance(saved, dict) and nest_flat_keys(saved) != saved:
            checkpoint[cls.CHECKPOINT_HYPER_PARAMS_KEY] = nest_flat_keys(saved)
            checkpoint_path = io.BytesIO()
            torch.save(checkpoint, checkpoint_path)
            checkpoint_path.seek(0)
        return super().load_from_checkpoint(checkpoint_path, map_location, hparams_file, **kwargs)

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
        if not has_corpus(self.data_dir) and (self.hparams.synthetic or self.hparams.download):
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(self.data_dir.parent / f".{self.data_dir.name}.lock"):
                if not has_corpus(self.data_dir):
                    self._fetch_corpus()
        elif self.hparams.synthetic:  # a generated corpus of an older generator is made anew, with its own arguments
            from datamodules.synthetic import refresh_corpus

            with FileLock(self.data_dir.parent / f".{self.data_dir.name}.lock"):
                refresh_corpus(self.data_dir)
        self._load_audio()

    def _fetch_corpus(self) -> None:
        from datamodules.synthetic import fetch_corpus

        fetch_corpus(self.data_dir, self.hparams.synthetic, self.hparams.wanted_words, self.features.sample_rate)

    def _load_audio(self) -> tuple[np.ndarray, list[str], list[str]]:
        """(the decoded clips, the files they are, every clip file found)."""
        words = scan_corpus(self.data_dir, wanted_words=self.hparams.wanted_words)
        files = [f for fs in words.values() for f in fs]
        audio, kept, self.decode_report = load_or_build_cache(
            self.data_dir,
            files,
            self.cache_dir,
            self.features.sample_rate,
            self.features.clip_samples,
            resample=self.hparams.resample,
            skip_bad_files=self.hparams.skip_bad_files,
        )
        return audio, kept, files

    # ------------------------------------------------------------------ splits (every rank)
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        hp = self.hparams
        audio, files, scanned = self._load_audio()
        self.cache_files = files  # relative path of each cache row
        assignment = split_assignment(
            self.data_dir, files, set(scanned), hp.validation_percentage, hp.testing_percentage, hp.holdout_dialect
        )
        extents = word_extents(audio, self.features.sample_rate) if self.uses_lead_in else None

        def lead_in(split: str, clips: np.ndarray, rows: np.ndarray) -> np.ndarray:
            return evaluation_lead_ins(
                clips, rows, split, audio, extents, assignment, self._background_noise(split), self.lead_in, hp.seed
            )

        clips = sample_classes(
            audio,
            files,
            assignment,
            self.labels,
            self.classes,
            hp.seed,
            self._background_noise,
            empty_split_check(self.data_dir, hp.wanted_words),
            lead_in if self.uses_lead_in else None,
        )
        self.splits, self.fresh_clips, self.counts = clips.splits, clips.fresh, clips.counts
        self.noise = self._background_noise()
        if self.uses_lead_in:
            self.lead_in_bank = training_bank(
                self.frontend,
                self._background_noise("training"),
                audio,
                extents,
                files,
                assignment,
                self.lead_in,
                self.augment,
                self.classes,
                self.features,
                hp.seed,
                hp.noise_split,
                self.cache_dir,
            )
        self.eval_features = evaluation_features(
            self.splits, self.fresh_clips, self.eval_views, self.featurize, self.input_shape
        )
        rank_zero_info(self.summary())

    def _background_noise(self, split: str = "training") -> BackgroundNoise:
        """The background recordings (each split's part of them with ``noise_split``)."""
        split = split if self.hparams.noise_split else "training"
        if split in self.noises:
            return self.noises[split]
        parts = read_noise_parts(
            self.data_dir / BACKGROUND_NOISE_DIR,
            split if self.hparams.noise_split else None,
            self.features.sample_rate,
            self.features.clip_samples,
            resample=self.hparams.resample,
        )
        recordings = [torch.from_numpy(samples.copy()) for samples in parts.values()]
        self.noises[split] = BackgroundNoise(recordings, self.features.clip_samples)
        return self.noises[split]

    def summary(self) -> str:
        """Clips per class per split: the table printed at set-up."""
        title = (
            f"Speech Commands data from {self.data_dir} ({self.features.frontend} front end, "
            f"{self.decode_report.summary()})"
        )
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
            data,
            sampler=sampler,
            batch_size=self.hparams.batch_size,
            collate_fn=whole_batch,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
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

    def featurize(
        self, audio: torch.Tensor, train_labels: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """int16 audio [B, samples] -> flat features [B, frames * features] on audio's device.
        With ``train_labels`` the training augmentation (random draws from ``generator``) is
        applied first (:meth:`featurize_training`, which also returns the labels it may change).
        Rows longer than a clip (evaluation clips after their lead-in) go through the front end
        whole; the features are the clip's, its last frames."""
        if train_labels is not None:
            return self.featurize_training(audio, train_labels, generator)[0]
        self.frontend.to(audio.device)
        return self.frontend(audio)[:, -self.features.num_frames :].reshape(audio.shape[0], -1)

    def featurize_training(
        self, audio: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training augmentation, then features: (flat features, labels after any relabelling)."""
        self.frontend.to(audio.device)
        bank = self.lead_in_bank.to(audio.device) if self.lead_in_bank is not None else None
        noise = self._background_noise().to(audio.device)
        features, labels = training_features(
            audio,
            labels,
            self.augment,
            self.frontend,
            noise,
            bank,
            self.labels.index(SILENCE_LABEL),
            self.labels.index(UNKNOWN_LABEL),
            self.features.sample_rate,
            generator,
            fresh_probability=self.lead_in.fresh_probability,
        )
        return features.reshape(audio.shape[0], -1), labels

    @torch.no_grad()
    def split_features(
        self,
        split: str,
        clips: int | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        view: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
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
        index = (
            np.arange(len(data))
            if clips is None
            else np.sort(np.random.default_rng(seed).permutation(len(data))[:clips])
        )
        if not len(index):
            raise DataError(f"the {split} split of {self.data_dir} has no clips")
        features, labels = [], []
        # Training clips are raw; with a lead-in they are featurized after one from the bank, as
        # training and the board see them (int8 calibration must see that range, not a fresh state's).
        lead_in = split == "training" and self.lead_in_bank is not None
        generator = torch.Generator().manual_seed(seed)
        for start in range(0, len(index), self.hparams.batch_size):
            audio, label = data[list(index[start : start + self.hparams.batch_size])]
            if lead_in:
                self.frontend.to("cpu")
                silence = label == self.labels.index(SILENCE_LABEL)
                features.append(
                    self.lead_in_bank.featurize(
                        self.frontend,
                        audio,
                        silence,
                        self._background_noise(),
                        generator,
                        self.lead_in.fresh_probability,
                    ).reshape(len(audio), -1)
                )
            else:
                features.append(self.featurize(audio.to(device)).cpu())
            labels.append(label)
        return torch.cat(features).numpy().astype(np.float32), torch.cat(labels).numpy()
