"""The LightningModule: a keyword-spotting model (TinyConv by default), cross-entropy, Adam,
accuracy overall and per class."""

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

from datamodules.classes import EVAL_VIEWS
from kws.models import ARCHITECTURES, build_model
from kws.models.surgery import parameters_in_plain_order, replay_transforms
from kws.streams.recognize import RecognizerSettings
from kws.training.checkpoint_file import check_compatible, read_checkpoint
from kws.training.results import format_table, per_class_table
from kws.utils.seeding import step_seed

DEFAULT_LABELS = ("silence", "unknown", "yes", "no")
VIEW_TITLES = {"lead_in": "after a lead-in (the stream's front-end state)", "fresh": "fresh front-end state per clip"}


class KWSModule(L.LightningModule):
    """Trains a keyword-spotting model on features the data module computes.

    Args:
        labels: class names in output order; linked from the data module by the CLI.
        input_shape: (frames, features) of one clip; linked from the data module by the CLI.
        learning_rate: Adam's learning rate.
        weight_decay: Adam's (L2) weight decay.
        arch: the model, one of :data:`kws.models.ARCHITECTURES` (``tiny_conv``: micro_speech's).
        dropout: dropout before the classifier.
        channels: the model's width (TinyConv: convolution output channels, 8 in micro_speech);
            null: the architecture's default.
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
        arch: str = "tiny_conv",
        dropout: float = 0.5,
        channels: int | None = None,
        lr_schedule: Literal["constant", "cosine", "step"] = "constant",
        lr_step_epoch: int = 40,
        init_from: str | None = None,
    ):
        super().__init__()
        if learning_rate <= 0 or weight_decay < 0:
            raise ValueError(f"need learning_rate > 0 and weight_decay >= 0, got {learning_rate}, {weight_decay}")
        if arch not in ARCHITECTURES:
            raise ValueError(f"model.arch must be one of {list(ARCHITECTURES)}, got {arch!r}")
        if lr_schedule not in ("constant", "cosine", "step"):
            raise ValueError(f"lr_schedule must be constant, cosine or step, got {lr_schedule!r}")
        self.save_hyperparameters()
        self.labels = list(labels)
        self.model = self.build_model()
        self.loss = nn.CrossEntropyLoss()
        # Lets Lightning's model summary show input/output sizes and FLOPs.
        self.example_input_array = torch.zeros(1, input_shape[0] * input_shape[1])
        n = len(self.labels)

        def accuracy() -> MetricCollection:
            return MetricCollection(
                {"acc": MulticlassAccuracy(n, average="micro"), "class_acc": MulticlassAccuracy(n, average=None)}
            )

        self.train_metrics = accuracy()
        # one set per evaluation view (EVAL_VIEWS), picked by the loader's dataloader_idx
        self.val_metrics = nn.ModuleDict({view: accuracy() for view in EVAL_VIEWS})
        self.test_metrics = nn.ModuleDict({view: accuracy() for view in EVAL_VIEWS})
        self.test_confusion = nn.ModuleDict({view: MulticlassConfusionMatrix(n) for view in EVAL_VIEWS})
        self.test_results: dict | None = None
        # Structural changes made by compression callbacks, replayed on load (kws.models.surgery).
        self.model_transforms: list[dict] = []
        # The command recognizer's settings calibrated for this model on a validation stream
        # (callbacks.StreamTest), saved with it: listen uses them unless told otherwise
        # (kws.streams.recognize.RecognizerSettings.to_dict()).
        self.recognizer: dict | None = None
        if init_from:
            self._init_from(init_from)

    def build_model(self) -> nn.Module:
        """A fresh, uncompressed model from the hyperparameters."""
        hp = self.hparams
        return build_model(
            hp.get("arch", "tiny_conv"), tuple(hp.input_shape), len(hp.labels), channels=hp.channels, dropout=hp.dropout
        )

    def _init_from(self, path: str) -> None:
        checkpoint = read_checkpoint(path, "model.init_from")
        check_compatible(checkpoint, path, self.hparams.labels, self.hparams.input_shape, option="model.init_from")
        self.on_load_checkpoint(checkpoint)
        self.model.load_state_dict(
            {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def eval_views(self) -> tuple[str, ...]:
        """The evaluation views of the data module's loaders, in order (one view, ``lead_in``,
        without a data module that says otherwise: a bare evaluation loader)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return tuple(getattr(datamodule, "eval_views", ("lead_in",)))

    def _step(self, batch: tuple[Tensor, Tensor], stage: str, dataloader_idx: int = 0) -> Tensor:
        features, labels = batch
        logits = self(features)
        loss = self.loss(logits, labels)
        if stage == "train":
            self.train_metrics.update(logits, labels)
            self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(labels))
            return loss
        view = self.eval_views()[dataloader_idx]
        getattr(self, f"{stage}_metrics")[view].update(logits, labels)
        # the first view's loss is the stage's (val/loss: the board's view when there is a lead-in)
        name = f"{stage}/loss" if dataloader_idx == 0 else f"{stage}/{view}/loss"
        self.log(
            name,
            loss,
            prog_bar=stage != "test",
            on_step=False,
            on_epoch=True,
            batch_size=len(labels),
            sync_dist=True,
            add_dataloader_idx=False,
        )
        if stage == "test":
            self.test_confusion[view].update(logits, labels)
        return loss

    def _log_metrics(self, stage: str) -> None:
        """``<stage>/acc`` (with several views: their mean, what model selection then maximizes,
        so one set of weights serves both), and per view ``<stage>/<view>/acc`` and
        ``<stage>/<view>/acc_<label>`` (the first view's per-class accuracies also as
        ``<stage>/acc_<label>``)."""
        if stage == "train":
            values = self.train_metrics.compute()
            self.log("train/acc", values["acc"], prog_bar=True)
            for label, acc in zip(self.labels, values["class_acc"]):
                self.log(f"train/acc_{label}", acc)
            self.train_metrics.reset()
            return
        views = self.eval_views()
        accuracies = []
        for i, view in enumerate(views):
            metrics = getattr(self, f"{stage}_metrics")[view]
            values = metrics.compute()
            accuracies.append(values["acc"])
            if len(views) > 1:
                self.log(f"{stage}/{view}/acc", values["acc"], prog_bar=True)
            for label, acc in zip(self.labels, values["class_acc"]):
                self.log(f"{stage}/{view}/acc_{label}" if len(views) > 1 else f"{stage}/acc_{label}", acc)
                if i == 0 and len(views) > 1:
                    self.log(f"{stage}/acc_{label}", acc)
            metrics.reset()
        self.log(f"{stage}/acc", torch.stack(accuracies).mean(), prog_bar=True)

    def on_train_start(self) -> None:
        # A resumed run restores the scheduler's saved T_max; training longer than first planned
        # (a larger max_epochs) stretches the cosine over the new length instead of restarting it.
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if (
                isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
                and scheduler.T_max != self.trainer.max_epochs
            ):
                rank_zero_warn(
                    f"max_epochs is {self.trainer.max_epochs}, the checkpoint's cosine schedule ran over "
                    f"{scheduler.T_max}: the schedule is stretched to {self.trainer.max_epochs} from here on"
                )
                scheduler.T_max = max(1, self.trainer.max_epochs)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Dropout draws from the global stream: seed it from the step (kws.utils.seeding) so a resumed
        # run draws what the uninterrupted one did.
        torch.manual_seed(step_seed(self.current_epoch, batch_idx, self.global_rank, "model"))

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._step(batch, "val", dataloader_idx)

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._step(batch, "test", dataloader_idx)

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
        views = self.eval_views()
        matrices = {}
        for view in views:
            matrices[view] = self.test_confusion[view].compute().cpu()
            self.test_confusion[view].reset()
        # The first view's table at the top level (the board's view where there is a lead-in),
        # every view's under "views".
        tables = {view: per_class_table(matrix, self.labels) for view, matrix in matrices.items()}
        self.test_results = {**tables[views[0]], "view": views[0], "views": tables}
        if self.trainer.is_global_zero:
            for view in views:
                rank_zero_info(f"Test clips, {VIEW_TITLES[view]}:\n{format_table(tables[view])}")
            self._save_test_artifacts(matrices)

    def _save_test_artifacts(self, matrices: dict[str, Tensor]) -> None:
        """Confusion-matrix plots and per-class JSON beside the logs; the tables to W&B when used."""
        from kws.training.plots import plot_confusion_matrix

        out = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        plots = {}
        for i, (view, matrix) in enumerate(matrices.items()):
            name = "confusion_matrix.png" if i == 0 else f"confusion_matrix_{view}.png"
            plots[view] = plot_confusion_matrix(matrix.numpy(), self.labels, out / name)
        (out / "test_results.json").write_text(json.dumps(self.test_results, indent=2))
        rank_zero_info(
            f"Confusion matrices: {', '.join(map(str, plots.values()))}\nPer-class results: {out / 'test_results.json'}"
        )
        for logger in self.loggers:
            if hasattr(logger, "log_table"):  # WandbLogger
                for view, table in self.test_results["views"].items():
                    rows = [[r["label"], r["samples"], r["correct"], r["accuracy"]] for r in table["classes"]]
                    rows.append(["total", table["samples"], table["correct"], table["accuracy"]])
                    logger.log_table(
                        f"test/{view}/per_class", columns=["label", "samples", "correct", "accuracy"], data=rows
                    )
                    logger.log_image(f"test/{view}/confusion_matrix", [str(plots[view])])

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
        if self.recognizer is not None and "inference_stride_ms" not in self.recognizer:
            # Saved before the settings carried their stride and ignored labels: calibrated at the
            # one stride the stream test then had (100 ms), with the default ignored labels.
            self.recognizer = RecognizerSettings(**self.recognizer, inference_stride_ms=100).to_dict()

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
