"""The LightningModule: TinyConv, cross-entropy, Adam, accuracy overall and per class."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from kws.models import TinyConv
from kws.models.surgery import parameters_in_plain_order, replay_transforms
from kws.training.checkpoint_file import check_compatible, read_checkpoint
from kws.training.results import format_table, per_class_table
from kws.utils.seeding import step_seed

DEFAULT_LABELS = ("silence", "unknown", "yes", "no")


class KWSModule(L.LightningModule):
    """Trains a keyword-spotting model on features the data module computes.

    Args:
        labels: class names in output order; linked from the data module by the CLI.
        input_shape: (frames, features) of one clip; linked from the data module by the CLI.
        learning_rate: Adam's learning rate.
        weight_decay: Adam's (L2) weight decay.
        dropout: dropout after the convolution.
        channels: convolution output channels (8 in micro_speech).
        lr_schedule: ``constant``; ``cosine`` (annealed to 0 over ``max_epochs``); or ``step``
            (x0.1 at ``lr_step_epoch``, as micro_speech's 0.001 -> 0.0001 recipe).
        lr_step_epoch: the epoch of the ``step`` drop.
        init_from: a checkpoint whose weights (and structure) start training -- e.g. a trained
            float model to fine-tune with pruning or quantization. Unlike ``--ckpt_path`` it
            restores no optimizer, epoch or callback state.
    """

    def __init__(
        self,
        labels: Sequence[str] = DEFAULT_LABELS,
        input_shape: tuple[int, int] = (49, 40),
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        dropout: float = 0.5,
        channels: int = 8,
        lr_schedule: Literal["constant", "cosine", "step"] = "constant",
        lr_step_epoch: int = 40,
        init_from: str | None = None,
    ):
        super().__init__()
        if learning_rate <= 0 or weight_decay < 0:
            raise ValueError(f"need learning_rate > 0 and weight_decay >= 0, got {learning_rate}, {weight_decay}")
        if lr_schedule not in ("constant", "cosine", "step"):
            raise ValueError(f"lr_schedule must be constant, cosine or step, got {lr_schedule!r}")
        self.save_hyperparameters()
        self.labels = list(labels)
        self.model = self.build_model()
        self.loss = nn.CrossEntropyLoss()
        # Lets Lightning's model summary show input/output sizes and FLOPs.
        self.example_input_array = torch.zeros(1, input_shape[0] * input_shape[1])
        n = len(self.labels)
        for stage in ("train", "val", "test"):
            metrics = MetricCollection(
                {"acc": MulticlassAccuracy(n, average="micro"), "class_acc": MulticlassAccuracy(n, average=None)},
                prefix=f"{stage}/",
            )
            setattr(self, f"{stage}_metrics", metrics)
        self.test_confusion = MulticlassConfusionMatrix(n)
        self.test_results: dict | None = None
        # Structural changes made by compression callbacks, replayed on load (kws.models.surgery).
        self.model_transforms: list[dict] = []
        # The command recognizer's settings calibrated for this model on a validation stream
        # (callbacks.StreamTest), saved with it: listen uses them unless told otherwise.
        self.recognizer: dict | None = None
        if init_from:
            self._init_from(init_from)

    def build_model(self) -> nn.Module:
        """A fresh, uncompressed model from the hyperparameters."""
        hp = self.hparams
        return TinyConv(tuple(hp.input_shape), len(hp.labels), channels=hp.channels, dropout=hp.dropout)

    def _init_from(self, path: str) -> None:
        checkpoint = read_checkpoint(path, "model.init_from")
        check_compatible(checkpoint, path, self.hparams.labels, self.hparams.input_shape, option="model.init_from")
        self.on_load_checkpoint(checkpoint)
        self.model.load_state_dict({k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")})

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        features, labels = batch
        logits = self(features)
        loss = self.loss(logits, labels)
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(logits, labels)
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=stage != "train")
        if stage == "test":
            self.test_confusion.update(logits, labels)
        return loss

    def _log_metrics(self, stage: str) -> None:
        metrics = getattr(self, f"{stage}_metrics")
        values = metrics.compute()
        self.log(f"{stage}/acc", values[f"{stage}/acc"], prog_bar=True)
        for label, acc in zip(self.labels, values[f"{stage}/class_acc"]):
            self.log(f"{stage}/acc_{label}", acc)
        metrics.reset()

    def on_train_start(self) -> None:
        # A resumed run restores the scheduler's saved T_max; training longer than first planned
        # (a larger max_epochs) stretches the cosine over the new length instead of restarting it.
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and scheduler.T_max != self.trainer.max_epochs:
                rank_zero_warn(f"max_epochs is {self.trainer.max_epochs}, the checkpoint's cosine schedule ran over {scheduler.T_max}: the schedule is stretched to {self.trainer.max_epochs} from here on")
                scheduler.T_max = max(1, self.trainer.max_epochs)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Dropout draws from the global stream: seed it from the step (kws.utils.seeding) so a resumed
        # run draws what the uninterrupted one did.
        torch.manual_seed(step_seed(self.current_epoch, batch_idx, self.global_rank, "model"))

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def predict_step(self, batch, batch_idx):
        features, labels = batch
        probs = self(features).softmax(-1)
        return {"probabilities": probs, "prediction": probs.argmax(-1), "label": labels}

    def on_train_epoch_end(self):
        self._log_metrics("train")

    def on_validation_epoch_end(self):
        self._log_metrics("val")

    def on_test_epoch_end(self):
        self._log_metrics("test")
        matrix = self.test_confusion.compute().cpu()
        self.test_confusion.reset()
        self.test_results = per_class_table(matrix, self.labels)
        if self.trainer.is_global_zero:
            rank_zero_info(format_table(self.test_results))
            self._save_test_artifacts(matrix)

    def _save_test_artifacts(self, matrix: Tensor) -> None:
        """Confusion-matrix plot and per-class JSON beside the logs; the table to W&B when used."""
        from kws.training.plots import plot_confusion_matrix

        out = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        plot = plot_confusion_matrix(matrix.numpy(), self.labels, out / "confusion_matrix.png")
        (out / "test_results.json").write_text(json.dumps(self.test_results, indent=2))
        rank_zero_info(f"Confusion matrix: {plot}\nPer-class results: {out / 'test_results.json'}")
        for logger in self.loggers:
            if hasattr(logger, "log_table"):  # WandbLogger
                rows = [[r["label"], r["samples"], r["correct"], r["accuracy"]] for r in self.test_results["classes"]]
                rows.append(["total", self.test_results["samples"], self.test_results["correct"], self.test_results["accuracy"]])
                logger.log_table("test/per_class", columns=["label", "samples", "correct", "accuracy"], data=rows)
                logger.log_image("test/confusion_matrix", [str(plot)])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["kws_model_transforms"] = list(self.model_transforms)
        if self.recognizer is not None:
            checkpoint["kws_recognizer"] = dict(self.recognizer)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Rebuild the model's structure (pruned layers, quantizers) before the weights load."""
        # Start from the plain model whatever this module holds now (a later, more compressed
        # state may load an earlier checkpoint), then replay the checkpoint's own log.
        self.model = self.build_model().to(self.device)
        self.model_transforms = []
        replay_transforms(self, checkpoint.get("kws_model_transforms", []))
        self.recognizer = checkpoint.get("kws_recognizer")

    def configure_optimizers(self):
        hp = self.hparams
        parameters = parameters_in_plain_order(self.model, self.build_model())
        optimizer = torch.optim.Adam(parameters, lr=hp.learning_rate, weight_decay=hp.weight_decay)
        if hp.lr_schedule == "constant":
            return optimizer
        if hp.lr_schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.trainer.max_epochs))
        else:
            scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[hp.lr_step_epoch], gamma=0.1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
