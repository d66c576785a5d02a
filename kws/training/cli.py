"""``python -m kws fit|validate|test|predict --config conf.yaml``: Lightning's CLI over KWSModule
and SpeechCommandsDataModule. The data module's labels and feature shape are linked into the
model, so the model's sizes always follow the feature settings."""

from __future__ import annotations

import csv
import os
import re
import sys
from pathlib import Path

# TensorFlow (pulled in by some tools) and W&B are chatty; keep the console for training output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("WANDB_SILENT", "true")

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI  # noqa: E402

from datamodules import SpeechCommandsDataModule  # noqa: E402
from datamodules.renamed_keys import renamed_hint  # noqa: E402
from kws.training.checkpoint_file import FEATURE_KEYS, CheckpointError, check_compatible, read_checkpoint  # noqa: E402
from kws.training.module import KWSModule  # noqa: E402
from kws.utils.threads import share_cpu_threads  # noqa: E402

# ckpt_path values Lightning resolves itself (within a fit), not files.
SPECIAL_CKPT_PATHS = ("best", "last", "hpc", "registry")
# Lightning's CSVLogger deletes metrics.csv in a folder in use; a resumed fit gets kws's, which appends.
LIGHTNING_CSV_LOGGER = "lightning.pytorch.loggers.CSVLogger"
APPENDING_CSV_LOGGER = "kws.training.csv_logger.CSVLogger"
# version_N folders this process claimed and has not used yet: removed again if the run fails first.
CLAIMED: list[Path] = []


class KWSArgumentParser(LightningArgumentParser):
    """Bad options end in the error alone (not ~100 lines of usage first), and a flat data key of
    before the option groups (``data.max_cut``) names its new place (``data.augment.max_cut``)."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error or os.environ.get("JSONARGPARSE_DEBUG"):
            return super().error(message, ex)
        self._logger.error(message)
        parser = getattr(ex, "subcommand_parser", None) or self
        hint = renamed_hint(message)
        prog = parser.prog.replace(" [options]", "").replace("__main__.py", "python -m kws")
        sys.stderr.write(f"error: {message.rstrip()}\n{hint}(all options: {prog} --help)\n")
        self.exit(2)


class KWSCLI(LightningCLI):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, parser_class=KWSArgumentParser, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.labels", "model.labels", apply_on="instantiate")
        parser.link_arguments("data.input_shape", "model.input_shape", apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit", type=bool, default=True, help="After fit, test a checkpoint (fit only)."
        )
        parser.add_argument(
            "--test_ckpt",
            type=str,
            default="best",
            choices=["best", "final"],
            help="Which checkpoint test_after_fit tests: the best on validation, or final.ckpt, "
            "the model as training ended (use final with pruning or quantization: the compressed model).",
        )
        parser.add_argument(
            "--allow_untrained",
            type=bool,
            default=False,
            help="validate/test/predict without --ckpt_path: measure the untrained model (refused otherwise).",
        )

    def after_predict(self) -> None:
        """Write the predictions of ``predict`` to ``predictions.csv`` beside the logs."""
        batches = self.trainer.predict_loop.predictions
        if not batches or not self.trainer.is_global_zero:
            return
        labels = self.datamodule.labels
        out = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "predictions.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "prediction", *(f"p_{name}" for name in labels)])
            for batch in batches:
                for y, p, probs in zip(
                    batch["label"].tolist(), batch["prediction"].tolist(), batch["probabilities"].tolist()
                ):
                    writer.writerow([labels[y], labels[p], *(f"{x:.4f}" for x in probs)])
        print(f"Predictions: {out}")

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        config = self._subcommand_config()
        # seed_everything as given: Lightning replaces `true` by the seed it draws.
        self.seed_given = config.get("seed_everything")
        # Lightning's own checkpoint loading (--ckpt_path) may not run pickled code either.
        if "weights_only" in config and config.get("weights_only") is None:
            config["weights_only"] = True
        # Lightning reads the checkpoint's hyperparameters next: it must be a kws checkpoint, and
        # safe to open, before anything else touches it.
        ckpt = config.get("ckpt_path")
        if ckpt is not None and ckpt not in SPECIAL_CKPT_PATHS:
            read_checkpoint(ckpt, "--ckpt_path")

    def _subcommand_config(self):
        return self.config.get(self.config.get("subcommand")) or self.config

    def before_instantiate_classes(self) -> None:
        claim_log_versions(self._subcommand_config(), self.config.get("subcommand"))

    def _check_checkpoint(self, subcommand: str) -> None:
        """A --ckpt_path is a readable kws checkpoint trained for this run's labels, input shape and
        front end; validate/test/predict without one are refused unless --allow_untrained."""
        config = self._subcommand_config()
        ckpt = config.get("ckpt_path")
        if ckpt is None:
            if subcommand != "fit" and not config.get("allow_untrained"):
                raise CheckpointError(
                    f"{subcommand} needs --ckpt_path, a checkpoint saved by `python -m kws fit` "
                    "(runs/csv/version_N/checkpoints/*.ckpt); "
                    f"pass --allow_untrained true to {subcommand} the untrained model"
                )
            return
        if ckpt in SPECIAL_CKPT_PATHS:
            return
        dm = self.datamodule
        features = {key: getattr(dm.features, key) for key in FEATURE_KEYS}
        check_compatible(read_checkpoint(ckpt, "--ckpt_path"), ckpt, dm.labels, dm.input_shape, features, "--ckpt_path")

    def before_validate(self) -> None:
        self._check_checkpoint("validate")

    def before_test(self) -> None:
        self._check_checkpoint("test")

    def before_predict(self) -> None:
        self._check_checkpoint("predict")

    def before_fit(self) -> None:
        self._check_checkpoint("fit")
        init_from = self.model.hparams.get("init_from")
        if init_from:
            dm = self.datamodule
            features = {key: getattr(dm.features, key) for key in FEATURE_KEYS}
            check_compatible(
                read_checkpoint(init_from, "model.init_from"),
                init_from,
                dm.labels,
                dm.input_shape,
                features,
                "model.init_from",
            )
        if self.trainer.max_epochs == 0:
            raise ValueError(
                "trainer.max_epochs is 0: fit would train nothing and leave no checkpoint to test; set max_epochs >= 1"
            )
        if self.model.hparams.lr_schedule == "cosine" and (
            self.trainer.max_epochs is None or self.trainer.max_epochs < 1
        ):
            raise ValueError(
                f"model.lr_schedule cosine anneals over trainer.max_epochs, which is {self.trainer.max_epochs}: "
                "set a number of epochs, or lr_schedule constant or step"
            )
        share_cpu_threads(self.trainer.num_devices)
        seed = self.seed_given
        if self.trainer.world_size > 1 and (seed is None or isinstance(seed, bool)):
            # Processes started separately (srun) would each draw their own seed, and their data
            # shards would then overlap and miss clips.
            raise ValueError(
                f"seed_everything is {seed!r}: with {self.trainer.world_size} processes it must be an integer, "
                "the same in every process (e.g. seed_everything: 0)"
            )

    def after_fit(self) -> None:
        if self.trainer.fast_dev_run:
            return
        # Lightning's last.ckpt is only refreshed when a top-k checkpoint is saved, so the model
        # as training ended (pruned and rebuilt, quantized) is saved here explicitly.
        callback = self.trainer.checkpoint_callback
        folder = (
            Path(callback.dirpath)
            if callback and callback.dirpath
            else Path(self.trainer.log_dir or self.trainer.default_root_dir) / "checkpoints"
        )
        final = folder / "final.ckpt"
        self.trainer.save_checkpoint(final)
        if self.config.fit.get("test_after_fit", True):
            which = self.config.fit.get("test_ckpt", "best")
            ckpt = str(final) if which == "final" or not callback else "best"
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)


def _rank() -> int:
    """This process's global rank as its launcher tells it (before any trainer exists)."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def claim_log_versions(config, subcommand: str | None) -> None:
    """Give each CSV logger without a version a ``version_N`` folder claimed with an atomic mkdir,
    so two runs started at once in the same ``runs/`` never share one. A fit resumed from a
    checkpoint inside ``<save_dir>/<name>/version_N/`` continues in that folder (its best
    checkpoint, metrics and config stay together). Only rank 0 claims; other ranks only write
    through rank 0's broadcast paths."""
    loggers = config.get("trainer", {}).get("logger")
    if not isinstance(loggers, list) or _rank() != 0:
        return
    ckpt = (
        Path(config.get("ckpt_path") or "").resolve()
        if subcommand == "fit" and config.get("ckpt_path") not in (None, *SPECIAL_CKPT_PATHS)
        else None
    )
    for logger in loggers:
        if (
            not str(getattr(logger, "class_path", "")).endswith("CSVLogger")
            or logger.init_args.get("version") is not None
        ):
            continue
        root = Path(logger.init_args.get("save_dir") or ".") / (logger.init_args.get("name") or "lightning_logs")
        if ckpt is not None and ckpt.parent.name == "checkpoints" and ckpt.parent.parent.parent == root.resolve():
            if logger.class_path == LIGHTNING_CSV_LOGGER:
                logger.class_path = APPENDING_CSV_LOGGER  # the earlier epochs' rows of metrics.csv stay
            logger.init_args.version = (
                int(ckpt.parent.parent.name.split("_")[-1])
                if re.fullmatch(r"version_\d+", ckpt.parent.parent.name)
                else ckpt.parent.parent.name
            )
            continue
        root.mkdir(parents=True, exist_ok=True)
        taken = [int(d.name[8:]) for d in root.iterdir() if re.fullmatch(r"version_\d+", d.name)]
        version = max(taken, default=-1) + 1
        while True:
            try:
                (root / f"version_{version}").mkdir()
                CLAIMED.append(root / f"version_{version}")
                break
            except FileExistsError:  # another run claimed it between the listing and the mkdir
                version += 1
        logger.init_args.version = version


def release_unused_versions() -> None:
    """Remove the version_N folders this process claimed but never wrote to (a run refused before
    training: a bad option, checkpoint or data folder), so runs/ holds only runs."""
    while CLAIMED:
        folder = CLAIMED.pop()
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass


def cli_main(args: list[str] | None = None) -> KWSCLI:
    try:
        return KWSCLI(KWSModule, SpeechCommandsDataModule, args=args, save_config_kwargs={"overwrite": True})
    except BaseException:
        release_unused_versions()
        raise
    finally:
        CLAIMED.clear()
