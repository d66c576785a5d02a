"""A short real run of the product: generated corpus -> `python -m kws fit` (W&B offline + CSV
loggers, best checkpoint, test after fit) -> `python -m kws test` on the saved checkpoint."""

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from datamodules import SpeechCommandsDataModule
from kws.training.module import KWSModule
from tests.helpers import REPO, run_kws


@pytest.fixture(scope="module")
def fitted(tiny_corpus, tmp_path_factory) -> tuple[Path, str]:
    work = tmp_path_factory.mktemp("run")
    proc = run_kws(
        "fit",
        "--config",
        str(REPO / "conf.yaml"),
        "--data.data_dir",
        str(tiny_corpus),
        "--trainer.max_epochs",
        "4",
        "--data.batch_size",
        "32",
        cwd=work,
    )
    return work, proc.stdout + proc.stderr


def test_fit_trains_and_tests(fitted, tiny_corpus):
    work, output = fitted
    run_dir = work / "runs" / "csv" / "version_0"
    results = json.loads((run_dir / "test_results.json").read_text())
    assert [c["label"] for c in results["classes"]] == ["silence", "unknown", "yes", "no"]
    test_files = (tiny_corpus / "testing_list.txt").read_text().split()
    wanted = sum(f.split("/")[0] in ("yes", "no") for f in test_files)
    assert results["classes"][2]["samples"] + results["classes"][3]["samples"] == wanted
    assert f"| total    | {results['samples']:>7} | {results['correct']:>7} |" in output  # the printed table
    # clip accuracy both ways: after a lead-in (the stream's state, the top-level table) and fresh
    assert results["view"] == "lead_in" and set(results["views"]) == {"lead_in", "fresh"}
    assert results["views"]["lead_in"]["correct"] == results["correct"]
    assert results["views"]["fresh"]["samples"] == results["samples"]
    assert "fresh front-end state per clip" in output and (run_dir / "confusion_matrix_fresh.png").is_file()
    header = open(run_dir / "metrics.csv").readline().split(",")
    assert {
        "val/acc",
        "val/lead_in/acc",
        "val/fresh/acc",
        "test/lead_in/acc",
        "test/fresh/acc",
        "test/fresh/acc_no",
    } <= set(header)
    assert (run_dir / "confusion_matrix.png").stat().st_size > 5000
    final = torch.load(run_dir / "checkpoints" / "final.ckpt", map_location="cpu", weights_only=False)
    assert final["epoch"] == 4  # saved after the 4th (last) epoch, whatever the best epoch was
    latest = torch.load(run_dir / "checkpoints" / "latest.ckpt", map_location="cpu", weights_only=False)
    assert latest["global_step"] == final["global_step"]  # rewritten every epoch: the one to resume from
    # it learned something: training loss fell over the epochs
    rows = [r for r in csv.DictReader(open(run_dir / "metrics.csv")) if r.get("train/loss")]
    losses = [float(r["train/loss"]) for r in rows]
    assert len(losses) == 4 and losses[-1] < losses[0]
    # the W&B logger ran offline, with no network
    assert list((work / "runs" / "wandb").glob("offline-run-*"))
    # conf.yaml's StreamTest: the stream test beside the clip accuracy, logged, its files written,
    # and the recognizer it calibrated (or None: no setting within the budget) kept in final.ckpt
    stream = json.loads((run_dir / "stream_test" / "results.json").read_text())
    assert (
        set(stream["calibrated"]) == {"2.0", "5.0", "10.0"}
        and (run_dir / "stream_test" / "det.png").stat().st_size > 5000
    )
    assert "stream/recall@10" in open(run_dir / "metrics.csv").readline()
    chosen = stream["calibrated"]["10.0"]
    kept = final.get("kws_recognizer")
    threshold = chosen and chosen["setting"]["detection_threshold"]
    assert (kept is None) if not chosen else (kept["detection_threshold"] == pytest.approx(threshold))


def test_checkpoint_reloads_and_retests(fitted):
    work, _ = fitted
    best = next((work / "runs" / "csv" / "version_0" / "checkpoints").glob("best-*.ckpt"))
    module = KWSModule.load_from_checkpoint(best, map_location="cpu")
    assert module.labels == ["silence", "unknown", "yes", "no"]
    assert (
        module.hparams.arch == "ds_cnn" and sum(p.numel() for p in module.model.parameters()) == 25_220
    )  # conf.yaml's model
    ckpt = torch.load(best, map_location="cpu", weights_only=False)
    saved = ckpt["datamodule_hyper_parameters"]
    assert saved["features"]["frontend"] == "micro" and saved["lead_in"]["seconds"] == [0.2, 5.0]  # conf.yaml's, nested
    hparams_yaml = (work / "runs" / "csv" / "version_0" / "hparams.yaml").read_text()
    hparams = yaml.load(hparams_yaml, yaml.FullLoader)  # FullLoader: the model's input_shape is a tuple
    assert hparams["augment"]["max_cut"] == 0.6 and hparams["classes"]["training_unknown_percentage"] == 100.0
    dm = SpeechCommandsDataModule.load_from_checkpoint(best)
    assert dm.lead_in.fresh_probability == 0.3 and dm.augment.word_placement and dm.features.frontend == "micro"
    first = json.loads((work / "runs" / "csv" / "version_0" / "test_results.json").read_text())
    run_kws(
        "test",
        "--config",
        str(REPO / "conf.yaml"),
        "--data.data_dir",
        str(ckpt["datamodule_hyper_parameters"]["data_dir"]),
        "--ckpt_path",
        str(best),
        cwd=work,
    )
    again = json.loads((work / "runs" / "csv" / "version_1" / "test_results.json").read_text())
    assert again["confusion_matrix"] == first["confusion_matrix"]  # evaluation is deterministic


def test_predict_writes_what_test_measured(fitted):
    work, _ = fitted
    best = next((work / "runs" / "csv" / "version_0" / "checkpoints").glob("best-*.ckpt"))
    data_dir = torch.load(best, map_location="cpu", weights_only=False)["datamodule_hyper_parameters"]["data_dir"]
    proc = run_kws(
        "predict",
        "--config",
        str(REPO / "conf.yaml"),
        "--data.data_dir",
        str(data_dir),
        "--ckpt_path",
        str(best),
        cwd=work,
    )
    out = Path(work) / proc.stdout.split("Predictions: ")[1].split()[0]
    rows = list(csv.DictReader(open(out)))
    tested = json.loads((work / "runs" / "csv" / "version_0" / "test_results.json").read_text())
    assert len(rows) == tested["samples"]
    assert sum(r["label"] == r["prediction"] for r in rows) == tested["correct"]
    assert all(
        abs(sum(float(r[f"p_{label}"]) for label in ("silence", "unknown", "yes", "no")) - 1) < 1e-3 for r in rows
    )
