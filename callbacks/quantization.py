"""``callbacks.QuantizationAwareTraining``: fake quantization from a chosen epoch, a toggle in the
YAML. The quantization math, the wrappers and post-training quantization are in
:mod:`kws.compression.quantization`; this file only decides when they apply.

Usage (``conf.yaml``)::

    trainer:
      callbacks:
        - class_path: callbacks.QuantizationAwareTraining
          init_args: {weight_bits: 8, start_epoch: 5}

The defaults are TFLite's int8 scheme, so that ``callbacks.Export`` writes exactly the model QAT
trained (:mod:`kws.export.qat_int8`): symmetric int8 weights per output channel (tflite-micro's
reference and CMSIS-NN kernels both take per-channel CONV_2D and FULLY_CONNECTED), asymmetric int8
activations, and the logits fake-quantized as the int8 output holds them.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from kws.compression.quantization import (
    TRANSFORM,
    applied_options,
    check_options,
    quantizers,
    select_layers,
    set_quant_state,
)
from kws.models.surgery import apply_transform


class QuantizationAwareTraining(L.Callback):
    """Quantization-aware training: from ``start_epoch`` the model's Conv2d/Linear layers are
    fake-quantized (see :mod:`kws.compression.quantization` for the math).

    Args:
        weight_bits, activation_bits: 2 to 8.
        mode: ``symmetric`` or ``asymmetric`` (weights, and activations unless activation_mode).
        activation_mode: mode of the activations (default ``asymmetric``, TFLite's); None = ``mode``.
        quantize_output: also fake-quantize the last layer's output (the logits), observed like
            the inputs: the int8 model's output tensor.
        per_channel: weight ranges per output channel instead of per tensor.
        activation_range: ``minmax`` or ``percentile`` of each training batch.
        percentile: p in (0, 100]: the range is the (100-p)th to pth percentile.
        momentum: m in [0, 1) of the range's moving average, new = m * old + (1 - m) * batch.
        start_epoch: train in float before it; wrap the layers at its start.
        freeze_epoch: stop updating activation ranges from this epoch (None: never).
        layers: module names within ``pl_module.model`` to quantize (None: all Conv2d/Linear).

    Needs a module with ``model`` and ``model_transforms`` (:class:`kws.KWSModule`). A model whose
    transform log already holds the quantization (resumed or reloaded) is not wrapped again; it
    keeps the checkpoint's quantizer settings, while start/freeze follow this callback.
    """

    def __init__(
        self,
        weight_bits: int = 8,
        activation_bits: int = 8,
        mode: Literal["symmetric", "asymmetric"] = "symmetric",
        per_channel: bool = True,
        activation_range: Literal["minmax", "percentile"] = "minmax",
        percentile: float = 99.99,
        momentum: float = 0.99,
        start_epoch: int = 0,
        freeze_epoch: int | None = None,
        layers: list[str] | None = None,
        activation_mode: Literal["symmetric", "asymmetric"] | None = "asymmetric",
        quantize_output: bool = True,
    ):
        self.quant_options = check_options(
            weight_bits,
            activation_bits,
            mode,
            per_channel,
            activation_range,
            percentile,
            momentum,
            layers,
            activation_mode,
            quantize_output,
        )
        if not isinstance(start_epoch, int) or start_epoch < 0:
            raise ValueError(f"start_epoch must be an integer >= 0, got {start_epoch!r}")
        if freeze_epoch is not None and (not isinstance(freeze_epoch, int) or freeze_epoch <= start_epoch):
            raise ValueError(
                f"freeze_epoch must be an integer after start_epoch ({start_epoch}) or null, got {freeze_epoch!r}: "
                "ranges are observed from start_epoch until freeze_epoch"
            )
        self.start_epoch, self.freeze_epoch = start_epoch, freeze_epoch

    def state_dict(self) -> dict[str, Any]:
        return {**self.quant_options, "start_epoch": self.start_epoch, "freeze_epoch": self.freeze_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # The configuration wins (the model's quantizers come from the checkpoint's transform log anyway).
        differing = {k: v for k, v in state_dict.items() if v != self.state_dict().get(k)}
        if differing:
            rank_zero_warn(
                f"QuantizationAwareTraining: the checkpoint was trained with {differing}; "
                f"continuing with {self.state_dict()}"
            )

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not hasattr(pl_module, "model_transforms"):
            raise TypeError(
                "QuantizationAwareTraining needs a module with `model` and `model_transforms` (kws.KWSModule)"
            )
        select_layers(pl_module.model, self.quant_options["layers"])
        from callbacks.export import Export

        if any(isinstance(c, Export) for c in trainer.callbacks):
            from kws.export.qat_int8 import check_exportable

            # refuse before training what the int8 export could not hold exactly; a resumed model keeps its own options
            check_exportable(applied_options(pl_module) or self.quant_options, pl_module.model)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if epoch < self.start_epoch:
            return
        if applied_options(pl_module) is None:
            apply_transform(pl_module, TRANSFORM, **self.quant_options)
            rank_zero_info(f"Epoch {epoch}: fake quantization of {list(quantizers(pl_module.model))}")
        set_quant_state(pl_module.model, frozen=self.freeze_epoch is not None and epoch >= self.freeze_epoch)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_config(trainer, pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_config(trainer, pl_module)

    def _log_config(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The quantization in effect (the model's, when wrapped) as hyperparameters of every logger."""
        applied = applied_options(pl_module)
        config = {
            **(applied or self.quant_options),
            "start_epoch": self.start_epoch,
            "freeze_epoch": self.freeze_epoch,
            "quantized_layers": list(quantizers(pl_module.model)),
        }
        for logger in trainer.loggers:
            logger.log_hyperparams({"quantization": config})
        ranges = {
            name: (round(float(q.act_min), 4), round(float(q.act_max), 4))
            for name, q in quantizers(pl_module.model).items()
        }
        rank_zero_info(f"Quantization: {config}; input ranges {ranges}")
