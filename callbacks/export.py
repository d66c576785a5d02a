"""``callbacks.Export``: export the model as training ended -- ONNX, TFLite float/int8 and the
firmware's C sources, every runtime verified on the test split (:mod:`kws.export.pipeline`).

.. code-block:: yaml

    trainer:
      callbacks:
        - class_path: callbacks.Export
          init_args: {calibration_clips: 1000}   # out_dir: default <log dir>/export

or ``--trainer.callbacks+=callbacks.Export`` on the command line. It runs at the end of ``fit`` on
rank 0, from the in-memory model (pruned, quantization-aware trained: whatever training left), with
the fit's data module. An export that fails is reported as a warning and leaves no folder behind;
the fit, its checkpoints and the test after it go on (``python -m kws export --ckpt`` retries).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn

from kws.export import ExportError
from kws.export.pipeline import DEFAULT_CALIBRATION_CLIPS, export_model


class Export(L.Callback):
    """Export at ``on_fit_end`` into ``out_dir`` (default ``<trainer.log_dir>/export``).

    Args:
        out_dir: the output folder, replaced only by a verified export.
        calibration_clips: training clips (no augmentation) that calibrate the int8 model.
    """

    def __init__(self, out_dir: str | None = None, calibration_clips: int = DEFAULT_CALIBRATION_CLIPS):
        if calibration_clips < 1:
            raise ValueError(f"calibration_clips must be >= 1, got {calibration_clips}")
        self.out_dir, self.calibration_clips = out_dir, calibration_clips
        self.report: dict | None = None
        self.error: Exception | None = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return
        out = Path(self.out_dir) if self.out_dir else Path(trainer.log_dir or trainer.default_root_dir) / "export"
        if trainer.datamodule is None:
            self.error = ExportError(
                "callbacks.Export needs the fit's data module (features, calibration and test clips)"
            )
        else:
            try:
                self.report = export_model(
                    pl_module,
                    trainer.datamodule,
                    out,
                    source=f"the model at the end of fit ({trainer.current_epoch} epochs)",
                    calibration_clips=self.calibration_clips,
                )
            except Exception as err:  # the fit's results must survive a failed export
                self.error = err
        if self.error is not None:
            rank_zero_warn(f"Export to {out} failed, nothing written: {type(self.error).__name__}: {self.error}")
