"""Never silent, for runs: a resumed fit keeps its metrics, a refused run leaves nothing behind, a bad
option or command is one line naming it (the promises of tests/test_promises.py, for `fit`)."""

import csv

import pytest

from tests.helpers import REPO, make_corpus
from tests.test_promises import cli, kws, one_clear_error


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("runs") / "corpus", lists=True)


def test_a_resumed_fit_keeps_the_earlier_epochs_rows_of_metrics_csv(tmp_path, corpus):
    """Lightning's CSVLogger deletes metrics.csv in a folder in use; the resumed fit appends."""
    quick = tmp_path / "quick.yaml"
    quick.write_text(
        "trainer:\n  logger:\n    - class_path: lightning.pytorch.loggers.CSVLogger\n      init_args: "
        "{save_dir: runs, name: csv}\n"
        "  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
        "      init_args: {filename: latest, enable_version_counter: false}\n"
        "model: {arch: tiny_conv}\n"
    )
    base = [
        "--config",
        str(REPO / "conf.yaml"),
        "--config",
        str(quick),
        "--data.data_dir",
        str(corpus),
        "--test_after_fit",
        "false",
    ]
    first = kws("fit", *base, "--trainer.max_epochs", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "runs" / "csv" / "version_0"
    resumed = kws(
        "fit", *base, "--trainer.max_epochs", "2", "--ckpt_path", str(run / "checkpoints" / "latest.ckpt"), cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert sorted({int(r["epoch"]) for r in rows if r.get("val/acc")}) == [0, 1]
    assert [d.name for d in (tmp_path / "runs" / "csv").iterdir()] == ["version_0"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["fit", "--data.batchsize", "3"], "--data.batchsize"),
        (["fit", "--data.batch_size", "ten"], "data.batch_size"),
        (["test", "--bogus"], "--bogus"),
    ],
)
def test_a_bad_option_gets_one_line_not_the_usage(tmp_path, args, needle):
    proc = kws(args[0], "--config", str(REPO / "conf.yaml"), *args[1:], cwd=tmp_path)
    one_clear_error(proc, needle)
    assert f"python -m kws {args[0]} --help" in proc.stderr
    assert len(proc.stderr.splitlines()) <= 4, proc.stderr  # no usage screen before it


def test_max_epochs_0_is_named(tmp_path, corpus):
    proc = kws("fit", *cli(corpus, "--trainer.max_epochs", "0"), cwd=tmp_path)
    one_clear_error(proc, "max_epochs")


def test_a_mistyped_command_lists_every_command(tmp_path):
    proc = kws("fitt", cwd=tmp_path)
    assert (
        proc.returncode == 2
        and "did you mean 'fit'" in proc.stderr
        and "stream-test" in proc.stderr
        and "export" in proc.stderr
    )
