"""``callbacks.Pruning``: progressive pruning as a toggle in the YAML. It prunes at the start of
each epoch from ``start_epoch`` to ``end_epoch`` (epochs count from 0, as
``trainer.current_epoch``), keeps the masks fixed while the remaining epochs fine-tune, and at
the end of the last training epoch makes them permanent. For structured pruning the convolution
then loses its pruned output channels and the fully connected layer the matching input columns,
so parameters, FLOPs, file size and latency really fall. The pruning itself is
:class:`kws.compression.pruning.Pruner`; this file only says when.

.. code-block:: yaml

    trainer:
      callbacks:
        - class_path: callbacks.Pruning
          init_args:
            {amount: 0.8, method: unstructured, scope: global, schedule: gradual, start_epoch: 2, end_epoch: 20}

(Add it to the ``callbacks`` list of conf.yaml: a list in a second ``--config`` replaces the first's.)
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from kws.compression.pruning import Pruner, parameter_counts


class Pruning(Pruner, L.Callback):
    """A :class:`~kws.compression.pruning.Pruner` (same arguments) run by Lightning's hooks.

    Logs ``pruning/sparsity`` (zero weights over all pruned layers), ``pruning/sparsity/<layer>``
    and, for structured, ``pruning/channels/<layer>`` (channels kept) every epoch. The masks are
    made permanent at the end of the last epoch (``max_epochs`` or ``max_steps``), or in
    ``on_train_end`` when training stops otherwise (early stopping). ``python -m kws fit`` then
    writes ``final.ckpt``, which holds the pruned (and, structured, smaller) model; Lightning's
    ``last.ckpt`` is only refreshed with a top-k save, so it may hold an earlier, masked state
    (which reloads too).
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if trainer.max_epochs is not None and self.end_epoch >= trainer.max_epochs > 0:
            raise ValueError(
                f"end_epoch={self.end_epoch} must be below "
                f"trainer.max_epochs={trainer.max_epochs} (epochs count from 0)"
            )
        if not hasattr(pl_module, "model_transforms"):
            raise ValueError(
                f"Pruning needs a module with a model surgery log (kws.KWSModule), got {type(pl_module).__name__}"
            )
        self.bind(pl_module.model)
        self._before = parameter_counts(pl_module.model)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start_epoch <= trainer.current_epoch <= self.end_epoch:
            self.prune(pl_module, trainer.current_epoch)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for key, value in self.sparsity_report(pl_module.model).items():
            pl_module.log(key, value)
        last_epoch = (
            trainer.current_epoch + 1 >= trainer.max_epochs > 0 or 0 <= trainer.max_steps <= trainer.global_step
        )
        if last_epoch:
            self._finish(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, pl_module)

    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # No mask: pruning never started, or it is already permanent (e.g. a resumed final checkpoint).
        if self.has_masks(pl_module.model):
            rank_zero_info(self.make_permanent(pl_module, trainer.optimizers))
