"""TinyConv's shape contract and the LightningModule's metrics and table."""

import pytest
import torch

from kws.audio.features import FeatureSettings
from kws.models import TinyConv
from kws.training.module import KWSModule
from kws.training.results import format_table, per_class_table


def test_parameter_count_matches_micro_speech():
    model = TinyConv((49, 40), num_classes=4)
    assert sum(p.numel() for p in model.parameters()) == 16_652
    assert model.fc.in_features == 4000
    assert model(torch.zeros(3, 1960)).shape == (3, 4)


def test_sizes_follow_feature_settings():
    settings = FeatureSettings(window_ms=25, stride_ms=10, num_features=32)
    model = TinyConv(settings.input_shape, num_classes=12)
    assert settings.input_shape == (98, 32)
    assert model.fc.in_features == 8 * ((98 + 10 - 10) // 2 + 1) * ((32 + 6 - 8) // 2 + 1)
    assert model(torch.zeros(2, 98 * 32)).shape == (2, 12)


def test_flatten_is_channel_major():
    """Channel c of the conv output owns fc columns c*500 .. c*500+499 (what structured pruning relies on)."""
    model = TinyConv().eval()
    x = torch.randn(1, 1960)
    with torch.no_grad():
        conv = model.relu(model.conv(x.reshape(1, 1, 49, 40)))
        keep = torch.zeros(4000)
        keep[2 * 500 : 3 * 500] = 1  # only channel 2's columns
        out = torch.nn.functional.linear(conv.flatten(1) * keep, model.fc.weight, model.fc.bias)
        conv_only2 = torch.zeros_like(conv)
        conv_only2[:, 2] = conv[:, 2]
        assert torch.allclose(out, model.fc(conv_only2.flatten(1)))


def test_bad_shapes_rejected():
    with pytest.raises(ValueError, match="input_shape"):
        TinyConv((49,))
    with pytest.raises(ValueError, match="num_classes"):
        TinyConv(num_classes=1)
    with pytest.raises(ValueError, match="lr_schedule"):
        KWSModule(lr_schedule="linear")


def test_per_class_table():
    matrix = torch.tensor([[5, 0, 0, 0], [1, 3, 0, 0], [0, 0, 4, 1], [0, 0, 0, 6]])
    results = per_class_table(matrix, ["silence", "unknown", "yes", "no"])
    assert [r["samples"] for r in results["classes"]] == [5, 4, 5, 6]
    assert [r["correct"] for r in results["classes"]] == [5, 3, 4, 6]
    assert results["accuracy"] == pytest.approx(18 / 20)
    table = format_table(results)
    assert "| unknown  |       4 |       3 |   75.00% |" in table
    assert table.splitlines()[-1] == "| total    |      20 |      18 |   90.00% |"
