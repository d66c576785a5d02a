"""callbacks.Profile: the JSON and the metrics it writes during a fit with pruning, the table it
prints, its options, and what it logs to each logger (the profile itself is in tests/tools)."""

import csv
import json
import logging
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.loggers import CSVLogger

from callbacks import Profile
from kws.models import TinyConv
from kws.tools.profile import profile_model
from kws.training.module import KWSModule
from tests.helpers import random_loader as loaders

INPUT = (1960,)


def test_callback_writes_json_and_logs(pruned_fit):
    trainer, callback, _ = pruned_fit
    run_path = Path(trainer.log_dir)
    start = json.loads((run_path / "profile_fit_start.json").read_text())
    end = json.loads((run_path / "profile.json").read_text())
    assert start["total"]["parameters"] == 16_652 and start["total"]["flops"] == 676_004
    assert end["total"]["parameters"] == 8_328 and end["total"]["flops"] == 338_004  # the rebuilt model
    assert set(end["latency_ms"]["cpu"]) == {"1", "8"}
    assert callback.profiles["fit_end"]["total"] == end["total"]
    with open(run_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = {k: float(v) for row in rows for k, v in row.items() if v}
    assert logged["profile/parameters"] == 8_328 and logged["profile/fit_start/parameters"] == 16_652
    assert logged["profile/flops"] == 338_004 and logged["profile/latency_cpu_b1_ms"] > 0


def test_callback_prints_the_table(caplog, tmp_path):
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[Profile(batch_sizes=[1], min_run_time=0.01, devices=["cpu"])],
        limit_train_batches=1,
    )
    with caplog.at_level(logging.INFO):
        trainer.fit(KWSModule(), loaders())
    assert (
        "16,652" in caplog.text
        and "676.00 k" in caplog.text
        and f"Profile (fit_end): {tmp_path / 'profile.json'}" in caplog.text
    )


def test_callback_checks_its_options():
    for kwargs, message in [
        ({"when": "fit"}, "when must be"),
        ({"batch_sizes": [0]}, "batch_sizes"),
        ({"min_run_time": 0}, "min_run_time"),
        ({"filename": "a/b.json"}, "filename"),
    ]:
        with pytest.raises(ValueError, match=message):
            Profile(**kwargs)


def test_wandb_gets_the_layer_table_other_loggers_scalars_only():
    from types import SimpleNamespace
    from unittest.mock import MagicMock

    from lightning.pytorch.loggers import WandbLogger

    profile = profile_model(TinyConv(), INPUT, batch_sizes=(1,), devices=["cpu"], min_run_time=0.01)
    wandb, csv_logger = MagicMock(spec=WandbLogger), MagicMock(spec=CSVLogger)
    Profile._log(SimpleNamespace(loggers=[wandb, csv_logger], global_step=7), profile, "profile/")
    for logger in (wandb, csv_logger):
        metrics = logger.log_metrics.call_args.args[0]
        assert (
            metrics["profile/parameters"] == 16_652
            and metrics["profile/flops"] == 676_004
            and "profile/latency_cpu_b1_ms" in metrics
        )
        assert logger.log_metrics.call_args.kwargs == {"step": 7}
    assert not hasattr(csv_logger, "log_table")  # a CSV logger gets scalars only
    table = wandb.log_table.call_args
    assert table.args[0] == "profile/layers" and table.kwargs["columns"][0] == "name"
    assert [row[0] for row in table.kwargs["data"]] == ["conv", "relu", "dropout", "flatten", "fc", "total"]
    assert table.kwargs["data"][-1][3] == 16_652
