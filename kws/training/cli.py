"""``python -m kws fit|validate|test|predict --config conf.yaml``: Lightning's CLI over KWSModule
and SpeechCommandsDataModule. The data module's labels and feature shape are linked into the
model, so the model's sizes always follow the feature settings."""
from __future__ import annotations

import csv
import os
from pathlib import Path

# TensorFlow (pulled in by some tools) and W&B are chatty; keep the console for training output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("WANDB_SILENT", "true")

from lightning.pytorch.cli import LightningCLI  # noqa: E402

from datamodules import SpeechCommandsDataModule  # noqa: E402
from kws.training.module import KWSModule  # noqa: E402
from kws.utils.threads import share_cpu_threads  # noqa: E402


class KWSCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.labels", "model.labels", apply_on="instantiate")
        parser.link_arguments("data.input_shape", "model.input_shape", apply_on="instantiate")
        parser.add_argument("--test_after_fit", type=bool, default=True, help="After fit, test a checkpoint (fit only).")
        parser.add_argument("--test_ckpt", type=str, default="best", choices=["best", "final"], help="Which checkpoint test_after_fit tests: the best on validation, or final.ckpt, the model as training ended (use final with pruning or quantization: the compressed model).")

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
            writer.writerow(["label", "prediction", *(f"p_{l}" for l in labels)])
            for batch in batches:
                for y, p, probs in zip(batch["label"].tolist(), batch["prediction"].tolist(), batch["probabilities"].tolist()):
                    writer.writerow([labels[y], labels[p], *(f"{x:.4f}" for x in probs)])
        print(f"Predictions: {out}")

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        # seed_everything as given: Lightning replaces `true` by the seed it draws.
        config = self.config.get(self.config.get("subcommand")) or self.config
        self.seed_given = config.get("seed_everything")

    def before_fit(self) -> None:
        share_cpu_threads(self.trainer.num_devices)
        seed = self.seed_given
        if self.trainer.world_size > 1 and (seed is None or isinstance(seed, bool)):
            # Processes started separately (srun) would each draw their own seed, and their data
            # shards would then overlap and miss clips.
            raise ValueError(f"seed_everything is {seed!r}: with {self.trainer.world_size} processes it must be an integer, the same in every process (e.g. seed_everything: 0)")

    def after_fit(self) -> None:
        if self.trainer.fast_dev_run:
            return
        # Lightning's last.ckpt is only refreshed when a top-k checkpoint is saved, so the model
        # as training ended (pruned and rebuilt, quantized) is saved here explicitly.
        callback = self.trainer.checkpoint_callback
        folder = Path(callback.dirpath) if callback and callback.dirpath else Path(self.trainer.log_dir or self.trainer.default_root_dir) / "checkpoints"
        final = folder / "final.ckpt"
        self.trainer.save_checkpoint(final)
        if self.config.fit.get("test_after_fit", True):
            which = self.config.fit.get("test_ckpt", "best")
            ckpt = str(final) if which == "final" or not callback else "best"
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)


def cli_main(args: list[str] | None = None) -> KWSCLI:
    return KWSCLI(KWSModule, SpeechCommandsDataModule, args=args, save_config_kwargs={"overwrite": True})
