"""Lightning's CSVLogger, but a fit resumed into its ``version_N`` folder keeps the earlier epochs'
rows of ``metrics.csv``: Lightning's writer deletes the file when it finds the folder in use
(``_check_log_dir_exists``), so a resumed run's metrics.csv would start at the resumed epoch."""

from __future__ import annotations

import csv

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # Keep metrics.csv and take its columns, so new rows append under the same header (a new
        # column rewrites the file with the old rows, as Lightning does within one run).
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = sorted(next(csv.reader(file), []))


class CSVLogger(LightningCSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` whose metrics.csv survives a resume (appended to)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
