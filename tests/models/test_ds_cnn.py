"""DS-CNN (model.arch ds_cnn): its size and shapes, build_model and the arch option, and the
compression and profiling paths it shares with TinyConv (QAT, unstructured pruning; structured
pruning refused by name)."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from callbacks import Pruning
from kws.compression.quantization import QuantWrapper, post_training_quantize, quantizers, wrap_fake_quant
from kws.models import ARCHITECTURES, DSCNN, TinyConv, build_model
from kws.models.ds_cnn import same_output_padding
from kws.tools.profile import count_flops, profile_layers
from kws.training.module import KWSModule

MACS = 25 * 5 * 64 * 80 + 4 * (25 * 5 * 64 * 9 + 25 * 5 * 64 * 64) + 64 * 4  # conv, 4 blocks, fc


def test_parameter_count_and_shapes():
    model = DSCNN((49, 40), num_classes=4)
    assert sum(p.numel() for p in model.parameters()) == 25_220
    # weights and biases once BatchNorm is folded into the convolutions: what the int8 model holds
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert (
        sum(
            m.weight.numel() + m.out_features if isinstance(m, nn.Linear) else m.weight.numel() + m.out_channels
            for m in convs
        )
        == 24_644
    )
    assert model.input_shape == (49, 40) and model.feature_map() == (25, 5)
    assert model.conv.padding == (5, 0) and model.pool.kernel_size == (25, 5)
    assert len(model.blocks) == 4 and all(block.depthwise.groups == 64 for block in model.blocks)
    model.eval()
    x = torch.randn(3, 1960)
    assert model(x).shape == (3, 4)
    with torch.no_grad():
        assert model.bn(model.conv(x.reshape(3, 1, 49, 40))).shape == (3, 64, 25, 5)


def test_same_output_padding_gives_tensorflow_same_lengths():
    for size, kernel, stride in ((49, 10, 2), (40, 8, 8), (25, 3, 1), (40, 4, 2), (98, 10, 2)):
        padding = same_output_padding(size, kernel, stride)
        assert (size + 2 * padding - kernel) // stride + 1 == -(-size // stride), (size, kernel, stride)


def test_width_and_other_feature_settings():
    assert sum(p.numel() for p in DSCNN(channels=48).parameters()) == 15_844
    model = DSCNN((98, 32), num_classes=12).eval()
    assert model.feature_map() == (49, 4)
    assert model(torch.zeros(2, 98 * 32)).shape == (2, 12)


def test_build_model_and_the_arch_option():
    assert ARCHITECTURES == ("tiny_conv", "ds_cnn")
    assert isinstance(build_model("tiny_conv", (49, 40), 4), TinyConv)
    model = build_model("ds_cnn", (49, 40), 4, dropout=0.2)
    assert isinstance(model, DSCNN) and model.fc.in_features == 64 and model.dropout.p == 0.2
    assert build_model("ds_cnn", (49, 40), 4, channels=32).fc.in_features == 32
    with pytest.raises(ValueError, match=r"model.arch must be one of \['tiny_conv', 'ds_cnn'\], got 'dscnn'"):
        build_model("dscnn", (49, 40), 4)
    with pytest.raises(ValueError, match=r"model.arch must be one of"):
        KWSModule(arch="resnet")
    module = KWSModule(arch="ds_cnn")
    assert isinstance(module.model, DSCNN) and module.hparams.arch == "ds_cnn"


def test_bad_shapes_rejected():
    with pytest.raises(ValueError, match="input_shape"):
        DSCNN((49,))
    with pytest.raises(ValueError, match="num_classes"):
        DSCNN(num_classes=1)
    with pytest.raises(ValueError, match="kernel_size and stride"):
        DSCNN(stride=(0, 8))


def test_profile_counts_every_layer():
    model = DSCNN()
    assert count_flops(model, (1960,)) == 2 * MACS + 4  # + the classifier's bias adds (the convolutions have none)
    profile = profile_layers(model, (1960,))
    rows = {row["name"]: row for row in profile["layers"]}
    assert profile["total"]["parameters"] == 25_220
    assert (
        rows["blocks.0.depthwise"]["flops"] == 2 * 25 * 5 * 64 * 9
        and rows["blocks.3.pointwise"]["parameters"] == 64 * 64
    )
    # BatchNorm folds into the convolution before it: an int32 bias in the int8 model
    assert rows["blocks.0.bn1"]["bytes_int8"] == 4 * 64
    assert profile["total"]["bytes_int8"] == 5_120 + 4 * (576 + 4_096) + 256 + 4 * (9 * 64 + 4)


def test_quantization_aware_training_wraps_every_conv():
    torch.manual_seed(0)
    model = wrap_fake_quant(DSCNN(), per_channel=True)
    wrapped = quantizers(model)
    assert len(wrapped) == 10 and isinstance(model.blocks[0].depthwise, QuantWrapper)
    model.train()
    x = torch.randn(8, 1960) * 5
    model(x).sum().backward()
    assert model.blocks[2].depthwise.layer.weight.grad is not None
    assert all(bool(q.observed) for q in wrapped.values())
    quantized = post_training_quantize(DSCNN().eval(), [x], per_channel=True)
    assert len(quantizers(quantized)) == 10 and quantized(x).shape == (8, 4)


def bound(callback: Pruning) -> KWSModule:
    torch.manual_seed(0)
    module = KWSModule(arch="ds_cnn")
    callback.setup(SimpleNamespace(max_epochs=10), module, "fit")
    return module


def test_unstructured_pruning_reaches_depthwise_layers():
    pruning = Pruning(0.5, scope="global")
    module = bound(pruning)
    assert "blocks.0.depthwise" in pruning._names and len(pruning._names) == 10
    pruning.prune(module, 0)
    report = pruning.sparsity_report(module.model)
    assert report["pruning/sparsity"] == pytest.approx(0.5, abs=1e-3)
    module.eval()
    x = torch.randn(4, 1960)
    before = module(x)
    pruning.make_permanent(module)
    torch.testing.assert_close(module(x), before)


def test_structured_pruning_is_refused_naming_the_option():
    with pytest.raises(
        ValueError,
        match=r"method 'structured' removes TinyConv's conv channels .* a DSCNN \(model.arch\).* "
        r"use method 'unstructured'",
    ):
        bound(Pruning(0.5, method="structured"))
