"""Compression callbacks composed in one fit: structured + unstructured pruning, then QAT, then
the checkpoint round trip that export and test rely on."""

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from callbacks import Pruning, QuantizationAwareTraining
from kws.compression.quantization import quantizers
from kws.training.module import KWSModule


def loaders(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 1960, generator=g) * 0.5 + y[:, None].float()  # separable
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True), DataLoader(
        TensorDataset(x[:64], y[:64]), batch_size=32
    )


def fit(tmp_path, callbacks, epochs=6):
    torch.manual_seed(0)
    module = KWSModule()
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    train, val = loaders()
    trainer.fit(module, train, val)
    return module, trainer


def test_prune_then_quantize_in_one_fit(tmp_path):
    prune = Pruning(amount=0.5, method="structured", norm="L2", schedule="gradual", start_epoch=0, end_epoch=3)
    qat = QuantizationAwareTraining(
        weight_bits=4,
        activation_bits=4,
        mode="symmetric",
        activation_mode="asymmetric",
        per_channel=True,
        start_epoch=4,
    )
    module, trainer = fit(tmp_path, [prune, qat])
    # masks from epoch 0, quantizers from epoch 4, rebuild at the end: the log replays in that order
    assert [t["name"] for t in module.model_transforms] == [
        "prune_masks",
        "fake_quant",
        "prune_permanent",
        "prune_channels",
    ]
    assert module.model.conv.layer.out_channels == 4 and module.model.fc.layer.in_features == 2000
    assert set(quantizers(module.model)) == {"conv", "fc"}
    # the final checkpoint rebuilds the same small quantized model with no callback configured
    last = trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path
    loaded = KWSModule.load_from_checkpoint(last).eval()
    module.eval()
    x = torch.randn(16, 1960)
    torch.testing.assert_close(loaded(x), module(x), rtol=0, atol=0)
    assert sum(p.numel() for p in loaded.parameters()) == 4 * 80 + 4 + 2000 * 4 + 4


def test_unstructured_zeros_stay_zero_under_fake_quantization(tmp_path):
    prune = Pruning(amount=0.8, method="unstructured", scope="global", schedule="gradual", start_epoch=0, end_epoch=3)
    qat = QuantizationAwareTraining(
        weight_bits=8, activation_bits=8, mode="asymmetric", per_channel=True, start_epoch=2
    )
    module, _ = fit(tmp_path, [prune, qat])
    fc = module.model.fc
    scale, zero_point = fc.weight_qparams()
    from kws.compression.quantization import fake_quantize

    weight = fc.layer.weight.detach()
    quantized = fake_quantize(weight, scale, zero_point, 8, "asymmetric", 0)
    assert (weight == 0).float().mean() > 0.75
    assert torch.equal(quantized[weight == 0], torch.zeros(int((weight == 0).sum())))
