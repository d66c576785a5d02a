"""``callbacks.StreamTest``: at the end of ``fit``, the stream test beside the clip accuracy -- how
many keywords the model hears in long recordings of unseen speakers, and how often it is wrong
(:mod:`kws.streams.evaluate`), and the recognizer settings calibrated for it.

.. code-block:: yaml

    trainer:
      callbacks:
        - class_path: callbacks.StreamTest
          init_args: {budgets: [2, 5, 10], calibrate_fa_per_hour: 10}

Rank 0 streams the validation and test recordings of the fit's data through the model as
training left it (float, on the CPU), writes ``stream_test/`` into the log folder (the DET curve,
every swept setting as CSV, results.json), logs ``stream/recall@<budget>``,
``stream/fa_per_hour@<budget>`` and the DET image to the loggers, and stores the setting
calibrated for ``calibrate_fa_per_hour`` in the module (``KWSModule.recognizer``), so
``final.ckpt`` carries it and ``listen --ckpt`` uses it. The int8 export calibrates its own.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from kws.streams.evaluate import (
    DEFAULT_BUDGETS,
    DEFAULT_CALIBRATION_FA_PER_HOUR,
    STRIDE_MS,
    data_stream_options,
    stream_test,
    table,
)


class StreamTest(L.Callback):
    """The stream test at the end of fit.

    Args:
        budgets: false alarms per hour the recognizer is calibrated for (on the validation
            stream); each is reported on the test stream.
        calibrate_fa_per_hour: the budget whose setting the model keeps (one of ``budgets``).
        stride_ms: time between inferences, as listen and the firmware.
        folder: the output folder's name inside the log folder.
    """

    def __init__(
        self,
        budgets: Sequence[float] = DEFAULT_BUDGETS,
        calibrate_fa_per_hour: float = DEFAULT_CALIBRATION_FA_PER_HOUR,
        stride_ms: int = STRIDE_MS,
        folder: str = "stream_test",
    ):
        if not budgets or any(b <= 0 for b in budgets):
            raise ValueError(f"budgets must be positive false alarms per hour, got {budgets!r}")
        if calibrate_fa_per_hour not in budgets:
            raise ValueError(f"calibrate_fa_per_hour {calibrate_fa_per_hour} must be one of budgets {list(budgets)}")
        if stride_ms <= 0:
            raise ValueError(f"stride_ms must be > 0, got {stride_ms}")
        self.budgets, self.calibrate_fa_per_hour, self.stride_ms, self.folder = (
            [float(b) for b in budgets],
            float(calibrate_fa_per_hour),
            stride_ms,
            folder,
        )
        self.results: dict | None = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        if not trainer.is_global_zero or trainer.fast_dev_run or dm is None:
            return
        model = copy.deepcopy(pl_module.model).cpu().eval()

        @torch.no_grad()
        def classify(x: np.ndarray) -> np.ndarray:
            return torch.softmax(model(torch.from_numpy(x)), -1).numpy().astype(np.float64)

        out = Path(trainer.log_dir or trainer.default_root_dir) / self.folder
        try:
            test = stream_test(
                classify,
                dm.labels,
                dm.features,
                dm.data_dir,
                "float (PyTorch)",
                self.calibrate_fa_per_hour,
                self.budgets,
                self.stride_ms,
                stream_kwargs=data_stream_options(dm),
                out=out,
                log=rank_zero_info,
                title=f"stream test at the end of fit (epoch {trainer.current_epoch})",
            )
        except (ValueError, OSError) as err:
            # Never lose the fit for its report: final.ckpt and the test still follow.
            rank_zero_warn(
                f"StreamTest: the stream test could not run ({err}); the model keeps no calibrated recognizer"
            )
            return
        self.results = test.results
        rank_zero_info(f"{table(self.results, 'float (PyTorch)')}\nStream test: {out}")
        if test.recognizer is not None:
            pl_module.recognizer = test.recognizer.to_dict()
        self._log(trainer, out)

    def _log(self, trainer: L.Trainer, out: Path) -> None:
        from lightning.pytorch.loggers import WandbLogger

        metrics = {}
        for budget, c in self.results["calibrated"].items():
            if c is not None:
                metrics[f"stream/recall@{budget:g}"] = c["testing"]["recall"]
                metrics[f"stream/fa_per_hour@{budget:g}"] = c["testing"]["fa_per_hour"]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            if isinstance(logger, WandbLogger):
                logger.log_image("stream/det", [str(out / "det.png")])
            logger.save()
