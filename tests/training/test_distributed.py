"""Training at scale, checked for real on this CPU: a 2-process DDP fit (gloo) through `python -m
kws fit` against the single-process run, and resuming from a checkpoint against an uninterrupted
run (with pruning and QAT, augmentation and dropout on)."""

import copy
from pathlib import Path

import lightning as L
import torch
import yaml

from callbacks import Pruning, QuantizationAwareTraining
from datamodules import SpeechCommandsDataModule
from kws.training.module import KWSModule
from tests.helpers import REPO, run_kws

# Differences in float summation order between one process and two (gloo's all-reduce, half
# batches) grow through Adam's steps: measured 1.4e-8 after 3 epochs (18 steps).
DDP_WEIGHT_TOLERANCE = 1e-6
EPOCHS = 3
# conf.yaml's stream-training augmentations draw per clip: off, as the rest of the augmentation.
STREAM_AUGMENTATION_OFF = [
    ("lead_in.enabled", "false"),
    ("augment.word_placement", "false"),
    ("augment.neighbour_probability", "0"),
    ("augment.speed_probability", "0"),
    ("augment.eq_probability", "0"),
    ("augment.reverb_probability", "0"),
]


def training_clips(corpus: Path) -> int:
    dm = SpeechCommandsDataModule(data_dir=str(corpus), synthetic=False, classes=dict(silence_percentage=0))
    dm.prepare_data()
    dm.setup()
    return len(dm.splits["training"])


def fit(work: Path, corpus: Path, *args: str) -> tuple[dict, str]:
    """`python -m kws fit` with augmentation (conf.yaml's too), dropout and the silence class (noise
    drawn per rank) off, so that one process and two see the same batches; CSV logging only. Returns the final
    checkpoint and metrics.csv."""
    override = work / "override.yaml"
    override.write_text(
        yaml.safe_dump(
            {
                "trainer": {
                    "logger": {
                        "class_path": "lightning.pytorch.loggers.CSVLogger",
                        "init_args": {"save_dir": "runs", "name": "csv"},
                    },
                    "callbacks": [
                        {
                            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                            "init_args": {"monitor": "val/acc", "mode": "max"},
                        }
                    ],
                    "enable_progress_bar": False,
                },
            }
        )
    )
    run_kws(
        "fit",
        "--config",
        str(REPO / "conf.yaml"),
        "--config",
        str(override),
        "--data.data_dir",
        str(corpus),
        "--trainer.max_epochs",
        str(EPOCHS),
        "--test_after_fit",
        "false",
        "--model.dropout",
        "0",
        "--data.augment.background_frequency",
        "0",
        "--data.augment.time_shift_ms",
        "0",
        "--data.classes.silence_percentage",
        "0",
        "--data.classes.training_unknown_percentage",
        "null",
        # TinyConv: without BatchNorm, whose per-rank batch statistics would make DDP differ from
        # one process by design (conf/cluster.yaml syncs them for DS-CNN: sync_batchnorm)
        "--model.arch",
        "tiny_conv",
        *[arg for name, value in STREAM_AUGMENTATION_OFF for arg in (f"--data.{name}", value)],
        *args,
        cwd=work,
    )
    final = torch.load(
        work / "runs" / "csv" / "version_0" / "checkpoints" / "final.ckpt", map_location="cpu", weights_only=False
    )
    return final, (work / "runs" / "csv" / "version_0" / "metrics.csv").read_text()


def test_ddp_two_processes_match_one(tiny_corpus, tmp_path):
    clips = training_clips(tiny_corpus)
    # A global batch that splits evenly over 2 ranks and divides the epoch: then rank r's batch k
    # holds positions [kB, (k+1)B) of the same permutation at r, r+2, ..., as one process's batch k.
    batch = next((b for b in range(16, 65, 2) if clips % b == 0), None)
    assert batch, f"no even batch size in [16, 64] divides the {clips} training clips"
    (single_dir := tmp_path / "single").mkdir()
    (ddp_dir := tmp_path / "ddp").mkdir()
    single, _ = fit(
        single_dir,
        tiny_corpus,
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "1",
        "--data.batch_size",
        str(batch),
    )
    ddp, metrics = fit(
        ddp_dir,
        tiny_corpus,
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        "--data.batch_size",
        str(batch // 2),
    )
    assert ddp["global_step"] == single["global_step"] == EPOCHS * clips // batch
    for name, weight in single["state_dict"].items():
        difference = (ddp["state_dict"][name] - weight).abs().max().item()
        print(f"DDP vs one process, {name}: max |difference| {difference:.1e}")  # pytest -s shows it
        assert difference <= DDP_WEIGHT_TOLERANCE, f"{name}: DDP differs from one process by {difference:.2e}"
    losses = [
        float(line.split(",")[header.index("train/loss")])
        for header in [metrics.splitlines()[0].split(",")]
        for line in metrics.splitlines()[1:]
        if line.split(",")[header.index("train/loss")]
    ]
    assert len(losses) == EPOCHS and losses[-1] < losses[0]  # it trains


def _trainer(folder: Path, max_epochs: int) -> L.Trainer:
    callbacks = [
        Pruning(amount=0.5, schedule="gradual", start_epoch=0, end_epoch=3),
        QuantizationAwareTraining(start_epoch=1, per_channel=True, activation_mode="asymmetric"),
        L.pytorch.callbacks.ModelCheckpoint(dirpath=folder, filename="{epoch}", save_top_k=-1, every_n_epochs=1),
    ]
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        callbacks=callbacks,
        default_root_dir=folder,
    )


def _run(corpus: Path, folder: Path, ckpt_path: str | None = None) -> KWSModule:
    L.seed_everything(0)
    dm = SpeechCommandsDataModule(data_dir=str(corpus), synthetic=False, batch_size=32)  # augmentation on
    module = KWSModule(labels=dm.labels, input_shape=dm.input_shape, lr_schedule="cosine")  # dropout 0.5
    _trainer(folder, 4).fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module


def test_resume_gives_the_uninterrupted_weights(tiny_corpus, tmp_path):
    whole = _run(tiny_corpus, tmp_path / "whole")
    # A fresh trainer and module, resumed from the end of epoch 2 of 4: the global random stream
    # is where a fresh start leaves it, not where epoch 2 left it.
    resumed = _run(tiny_corpus, tmp_path / "resumed", ckpt_path=str(tmp_path / "whole" / "epoch=1.ckpt"))
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert any("act_scale" in k for k in a), "QAT state expected"
    assert (a["model.fc.layer.weight"] == 0).float().mean() >= 0.49, (
        "pruned weights expected (masks made permanent at fit end)"
    )
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"resumed run differs from the uninterrupted one in {different}"
    checkpoint = torch.load(tmp_path / "whole" / "epoch=1.ckpt", map_location="cpu", weights_only=False)
    halfway = copy.deepcopy(checkpoint["state_dict"])
    assert any(not torch.equal(halfway[k], a[k]) for k in halfway if k in a), "the last two epochs changed nothing"


def test_cluster_config_under_slurm(monkeypatch):
    """conf/cluster.yaml with the environment srun gives task 5 of 2 nodes x 4 tasks (as
    conf/slurm.sbatch launches it): Lightning picks SLURM, DDP, and this task's ranks."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment
    from lightning.pytorch.utilities.rank_zero import rank_zero_only as lightning_rank_zero_only
    from lightning_utilities.core.rank_zero import rank_zero_only as utilities_rank_zero_only

    from kws.training.cli import KWSCLI

    slurm = {
        "SLURM_NTASKS": "8",
        "SLURM_NTASKS_PER_NODE": "4",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODELIST": "gpu[07-08]",
        "SLURM_JOB_NAME": "kws",
        "SLURM_JOB_ID": "4242",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
    }
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    for key in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):  # seed_everything sets them: restore afterwards
        monkeypatch.delenv(key, raising=False)
    # The trainer sets the process-wide rank for rank_zero_* helpers to 5: put 0 back afterwards.
    for holder in (lightning_rank_zero_only, utilities_rank_zero_only):
        monkeypatch.setattr(holder, "rank", holder.rank)
    cli = KWSCLI(
        KWSModule,
        SpeechCommandsDataModule,
        run=False,
        args=[
            "--config",
            str(REPO / "conf.yaml"),
            "--config",
            str(REPO / "conf" / "cluster.yaml"),
            "--trainer.accelerator",
            "cpu",
        ],
    )
    trainer = cli.trainer
    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    assert type(trainer.strategy).__name__ == "DDPStrategy"
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (8, 5, 1, 1)
    assert trainer.strategy.cluster_environment.main_address == "gpu07"
    assert cli.datamodule.hparams.download and not cli.datamodule.hparams.synthetic
    assert "#SBATCH --ntasks-per-node=4" in (REPO / "conf" / "slurm.sbatch").read_text()


def test_evaluation_shards_count_every_clip_once(tiny_corpus):
    """Under DDP the validation and test loaders shard the split without the padding repeats of
    Lightning's default sampler: the ranks' shards together hold each clip exactly once."""
    from types import SimpleNamespace

    dm = SpeechCommandsDataModule(data_dir=str(tiny_corpus), synthetic=False)
    dm.setup()
    clips = len(dm.splits["validation"])
    seen = []
    for rank in range(4):  # 4 ranks: the split does not divide evenly
        dm.trainer = SimpleNamespace(world_size=4, global_rank=rank)
        seen += list(dm.val_dataloader().sampler)
    dm.trainer = None
    assert clips % 4 and sorted(seen) == list(range(clips))


def test_several_processes_need_an_integer_seed(tiny_corpus, tmp_path):
    """seed_everything: true lets every process (every srun task) draw its own seed; their data
    shards would then overlap. fit refuses before training."""
    proc = run_kws(
        "fit",
        "--config",
        str(REPO / "conf.yaml"),
        "--data.data_dir",
        str(tiny_corpus),
        "--seed_everything",
        "true",
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.logger",
        "false",
        "--trainer.callbacks",
        "[]",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0 and "must be an integer, the same in every process" in proc.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.ckpt"))
