"""callbacks.QuantizationAwareTraining: its options, the layers it names at set-up, and QAT in a
real Lightning fit with checkpoint reload and resume (the fake-quantization math is in
tests/compression/test_quantization.py)."""

import lightning as L
import pytest
import torch
from lightning.pytorch.core.saving import load_hparams_from_yaml
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from callbacks import QuantizationAwareTraining
from kws.compression.quantization import QuantWrapper, post_training_quantize, quantizers
from kws.models import TinyConv
from kws.training.module import KWSModule


@pytest.mark.parametrize(
    "options,message",
    [
        ({"weight_bits": 1}, "weight_bits must be an integer from 2 to 8, got 1"),
        ({"activation_bits": 9}, "activation_bits must be an integer from 2 to 8, got 9"),
        ({"weight_bits": 8.0}, "weight_bits"),
        ({"mode": "affine"}, "mode must be 'symmetric' or 'asymmetric', got 'affine'"),
        ({"activation_range": "mean"}, "activation_range must be 'minmax' or 'percentile'"),
        ({"percentile": 0}, r"percentile must be in \(0, 100\], got 0"),
        ({"percentile": 100.5}, "percentile must be in"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
        ({"momentum": -0.1}, "momentum must be in"),
        ({"layers": []}, "layers must be a non-empty list"),
        ({"layers": ["fc", "fc"]}, "distinct module names"),
        ({"start_epoch": -1}, "start_epoch must be an integer >= 0"),
        ({"start_epoch": 2, "freeze_epoch": 2}, r"freeze_epoch must be an integer after start_epoch \(2\)"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        QuantizationAwareTraining(**options)


def test_unknown_layers_named_at_setup():
    callback = QuantizationAwareTraining(layers=["conv", "classifier"])
    with pytest.raises(
        ValueError,
        match=r"layers \['classifier'\] are not Conv2d/Linear layers of the model; available: \['conv', 'fc'\]",
    ):
        callback.setup(L.Trainer(logger=False), KWSModule(), "fit")
    with pytest.raises(ValueError, match="classifier"):
        post_training_quantize(TinyConv(), [torch.zeros(1, 1960)], layers=["classifier"])


# ---------------------------------------------------------------- Lightning: QAT fit, reload, resume
def loader(seed: int, n: int = 96) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(n, 1960, generator=generator)
    return DataLoader(TensorDataset(features, torch.randint(0, 4, (n,), generator=generator)), batch_size=32)


class Probe(L.Callback):
    """Records, per epoch, whether the model is wrapped, its conv weight, and the conv input range."""

    def __init__(self):
        self.wrapped, self.weights, self.ranges, self.val_ranges = {}, {}, [], []

    def on_train_epoch_end(self, trainer, pl_module):
        epoch, conv = trainer.current_epoch, pl_module.model.conv
        self.wrapped[epoch] = isinstance(conv, QuantWrapper)
        self.weights[epoch] = (conv.layer if self.wrapped[epoch] else conv).weight.detach().clone()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if isinstance(pl_module.model.conv, QuantWrapper):
            self.ranges.append(
                (trainer.current_epoch, pl_module.model.conv.act_min.item(), pl_module.model.conv.act_max.item())
            )

    def on_validation_epoch_start(self, trainer, pl_module):
        self.val_ranges.append(
            [b.clone() for b in pl_module.model.conv.buffers()] if quantizers(pl_module.model) else None
        )

    def on_validation_epoch_end(self, trainer, pl_module):
        self.on_validation_epoch_start(trainer, pl_module)


def fit(root, callback, max_epochs, ckpt_path=None, logger=False):
    L.seed_everything(0)
    module, probe = KWSModule(learning_rate=0.01), Probe()
    trainer = L.Trainer(
        max_epochs=max_epochs,
        logger=logger,
        enable_checkpointing=True,
        default_root_dir=root,
        accelerator="cpu",
        callbacks=[callback, probe],
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(module, loader(0), loader(1), ckpt_path=ckpt_path)
    return module, probe, trainer.checkpoint_callback.best_model_path


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # the resumed run logs elsewhere, on purpose
def test_qat_fit_reload_and_resume(tmp_path):
    options = dict(weight_bits=6, activation_bits=7, mode="asymmetric", per_channel=True, momentum=0.5)
    module, probe, ckpt = fit(tmp_path / "a", QuantizationAwareTraining(**options, start_epoch=1), max_epochs=2)
    assert probe.wrapped == {0: False, 1: True}  # epoch 0 float, epoch 1 quantized
    assert not torch.equal(probe.weights[0], probe.weights[1])  # training went on through the wrappers
    assert [t["name"] for t in module.model_transforms] == ["fake_quant"]
    assert module.model_transforms[0]["params"]["mode"] == "asymmetric"
    epoch1 = [r for r in probe.ranges if r[0] == 1]
    assert len(epoch1) == 3 and len({r[1:] for r in epoch1}) == 3  # ranges updated at each step
    for before, after in zip(probe.val_ranges[-2], probe.val_ranges[-1]):  # validation changed nothing
        assert torch.equal(before, after)

    # the checkpoint rebuilds the quantized model, ranges included, with no callback involved
    saved = torch.load(ckpt, weights_only=False)
    assert saved["callbacks"]["QuantizationAwareTraining"]["start_epoch"] == 1
    loaded = KWSModule.load_from_checkpoint(ckpt).eval()
    module.eval()
    assert isinstance(loaded.model.conv, QuantWrapper) and isinstance(loaded.model.fc, QuantWrapper)
    assert loaded.state_dict().keys() == module.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in module.state_dict().items())
    x = next(iter(loader(2)))[0]
    torch.testing.assert_close(loaded(x), module(x), rtol=0, atol=0)

    # resume: not wrapped twice; frozen from epoch 2; the configuration (freeze_epoch) wins
    with pytest.warns(UserWarning, match="freeze_epoch"):
        resumed, probe, _ = fit(
            tmp_path / "b",
            QuantizationAwareTraining(**options, start_epoch=1, freeze_epoch=2),
            3,
            ckpt,
            CSVLogger(tmp_path / "b"),
        )
    assert [t["name"] for t in resumed.model_transforms] == ["fake_quant"]
    frozen = loaded.model.conv.act_min.item(), loaded.model.conv.act_max.item()
    assert [r[1:] for r in probe.ranges] == [frozen] * 3 and bool(resumed.model.conv.frozen)
    assert not torch.equal(probe.weights[2], loaded.model.conv.layer.weight)
    hparams = load_hparams_from_yaml(next((tmp_path / "b").rglob("hparams.yaml")))
    assert hparams["quantization"] == {
        **options,
        "activation_range": "minmax",
        "percentile": 99.99,
        "layers": None,
        "activation_mode": "asymmetric",
        "quantize_output": True,
        "start_epoch": 1,
        "freeze_epoch": 2,
        "quantized_layers": ["conv", "fc"],
    }
