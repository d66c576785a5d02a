"""``callbacks.Profile``: parameters, bytes (float32/int8), FLOPs, activation memory and latency of
the model, per layer and in total (:func:`kws.tools.profile.profile_model`).

.. code-block:: yaml

    trainer:
      callbacks:
        - class_path: callbacks.Profile
          init_args: {batch_sizes: [1, 256], min_run_time: 0.2, when: fit_end}

At the end of ``fit`` (default; ``fit_start`` or ``both`` too) rank 0 profiles a copy of
``pl_module.model`` -- as training left it: pruned and rebuilt, quantization-wrapped -- on the CPU
and, when present, the GPU. It prints the table, writes the JSON into the log folder
(``trainer.log_dir``, else ``default_root_dir``) and logs the totals as ``profile/...`` scalars to
every logger, plus the per-layer table to W&B. ``python -m kws profile --ckpt PATH`` does the same
for a saved checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from kws.tools.profile import (
    DEFAULT_BATCH_SIZES,
    format_profile_table,
    module_input_shape,
    profile_model,
    write_profile,
)
from kws.utils.timing import DEFAULT_MIN_RUN_TIME

WHEN = ("fit_start", "fit_end", "both")
SCALARS = (
    "parameters",
    "nonzero_parameters",
    "bytes_float32",
    "bytes_int8",
    "bytes_int8_nonzero",
    "flops",
    "peak_activation_bytes",
)
TABLE_COLUMNS = (
    "name",
    "type",
    "output_shape",
    "parameters",
    "nonzero_parameters",
    "bytes_float32",
    "bytes_int8",
    "flops",
    "activation_bytes",
)


class Profile(L.Callback):
    """Profile the model at the start and/or end of ``fit``.

    Args:
        batch_sizes: batch sizes timed (batch 1 and a large batch by default).
        min_run_time: seconds of timed forward passes per batch size and device (the median is
            reported; ``torch.utils.benchmark.Timer``).
        when: ``fit_end`` (the final model: pruned, rebuilt, quantized), ``fit_start`` or ``both``.
        filename: the JSON file in the log folder; a ``fit_start`` profile goes to
            ``<stem>_fit_start.json`` and logs as ``profile/fit_start/...``.
        devices: devices timed (default: CPU, and CUDA when available).
        threads: CPU threads while timing (default: torch's setting; 1 is steadier on a busy machine).

    Skipped in ``fast_dev_run`` (no log folder, a smoke test). ``self.profiles`` keeps the
    results by hook name.
    """

    def __init__(
        self,
        batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
        min_run_time: float = DEFAULT_MIN_RUN_TIME,
        when: Literal["fit_start", "fit_end", "both"] = "fit_end",
        filename: str = "profile.json",
        devices: list[str] | None = None,
        threads: int | None = None,
    ):
        if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
            raise ValueError(f"batch_sizes must be a non-empty list of positive integers, got {batch_sizes!r}")
        if not min_run_time > 0:
            raise ValueError(f"min_run_time must be > 0 seconds, got {min_run_time!r}")
        if when not in WHEN:
            raise ValueError(f"when must be one of {WHEN}, got {when!r}")
        if not filename or Path(filename).name != filename or not filename.endswith(".json"):
            raise ValueError(
                f"filename must be a plain .json file name (written into the log folder), got {filename!r}"
            )
        self.batch_sizes, self.min_run_time, self.when, self.filename = list(batch_sizes), min_run_time, when, filename
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or null, got {threads}")
        self.devices, self.threads = devices, threads
        self.profiles: dict[str, dict] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.when in ("fit_start", "both"):
            self._profile(trainer, pl_module, "fit_start")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.when in ("fit_end", "both"):
            self._profile(trainer, pl_module, "fit_end")

    def _profile(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return
        # profile_model measures a CPU copy (and a copy per device): the training model is left as it is.
        profile = profile_model(
            pl_module.model,
            module_input_shape(pl_module),
            self.batch_sizes,
            self.devices,
            self.min_run_time,
            self.threads,
        )
        profile["source"] = f"{stage} (epoch {trainer.current_epoch}, step {trainer.global_step})"
        self.profiles[stage] = profile
        stem = Path(self.filename).stem
        name = self.filename if stage == "fit_end" else f"{stem}_{stage}.json"
        path = write_profile(profile, Path(trainer.log_dir or trainer.default_root_dir) / name)
        rank_zero_info(f"{format_profile_table(profile)}\nProfile ({stage}): {path}")
        self._log(trainer, profile, "profile/" if stage == "fit_end" else f"profile/{stage}/")

    @staticmethod
    def _log(trainer: L.Trainer, profile: dict, prefix: str) -> None:
        from lightning.pytorch.loggers import WandbLogger

        metrics = {f"{prefix}{key}": float(profile["total"][key]) for key in SCALARS}
        for device, by_batch in profile["latency_ms"].items():
            metrics.update({f"{prefix}latency_{device}_b{batch}_ms": ms for batch, ms in by_batch.items()})
        rows = [[str(row[c]) if c == "output_shape" else row[c] for c in TABLE_COLUMNS] for row in profile["layers"]]
        rows.append(["total", "", "", *(profile["total"][c] for c in TABLE_COLUMNS[3:])])
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            if isinstance(logger, WandbLogger):
                logger.log_table(f"{prefix}layers", columns=list(TABLE_COLUMNS), data=rows)
            logger.save()  # at fit end the loggers have already flushed once
