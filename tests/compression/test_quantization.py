"""Fake quantization: the math by hand, the STE, per-channel ranges, pruned zeros, and PTQ against
the float model (the QuantizationAwareTraining callback is in tests/callbacks/test_quantization.py)."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from callbacks import QuantizationAwareTraining
from kws.compression.quantization import (
    MIN_SCALE,
    QuantWrapper,
    compare_models,
    fake_quantize,
    post_training_quantize,
    qparams,
    quantizers,
    set_quant_state,
    wrap_fake_quant,
)
from kws.models import TinyConv

X = torch.tensor([-1.2, -0.5, 0.0, 0.3, 1.0, 3.0])  # min -1.2, max 3.0

# By hand. symmetric: scale = 3.0 / (2^(k-1) - 1), q = round(x / scale) in [-(2^(k-1)-1), 2^(k-1)-1].
# asymmetric: scale = 4.2 / (2^k - 1), zp = round(1.2 / scale), q = round(x / scale) + zp in [0, 2^k-1];
# the value is (q - zp) * scale, listed below as q - zp.
HAND = [
    # mode, bits, scale, zero point, (q - zp) per value of X
    (
        "symmetric",
        8,
        3.0 / 127,
        0,
        [-51, -21, 0, 13, 42, 127],
    ),  # -1.2/s = -50.8, -0.5/s = -21.2, 0.3/s = 12.7, 1/s = 42.3
    ("symmetric", 4, 3.0 / 7, 0, [-3, -1, 0, 1, 2, 7]),  # x/s = -2.8, -1.17, 0, 0.7, 2.33, 7
    ("symmetric", 2, 3.0, 0, [0, 0, 0, 0, 0, 1]),  # x/s = -0.4, -0.17, 0, 0.1, 0.33, 1
    (
        "asymmetric",
        8,
        4.2 / 255,
        73,
        [-73, -30, 0, 18, 61, 182],
    ),  # zp = round(72.86); x/s = -72.86, -30.36, 0, 18.21, 60.7, 182.1
    ("asymmetric", 4, 0.28, 4, [-4, -2, 0, 1, 4, 11]),  # zp = round(4.29); x/s = -4.29, -1.79, 0, 1.07, 3.57, 10.71
    ("asymmetric", 2, 1.4, 1, [-1, 0, 0, 0, 1, 2]),  # zp = round(0.86); x/s = -0.86, -0.36, 0, 0.21, 0.71, 2.14
]


@pytest.mark.parametrize("mode,bits,scale,zero_point,q", HAND)
def test_quantization_math_by_hand(mode, bits, scale, zero_point, q):
    expected = torch.tensor(q, dtype=torch.float32) * scale
    s, z = qparams(X.min(), X.max(), bits, mode)
    assert s.item() == pytest.approx(scale, rel=1e-6) and z.item() == zero_point
    torch.testing.assert_close(fake_quantize(X, s, z, bits, mode), expected)
    # the same through a wrapper: X as a Linear weight, and X as the layer's input
    layer = nn.Linear(6, 1, bias=False)
    layer.weight.data = X[None].clone()
    wrapper = QuantWrapper(layer, weight_bits=bits, activation_bits=bits, mode=mode, momentum=0.0)
    ws, wz = wrapper.weight_qparams()
    assert ws.item() == pytest.approx(scale, rel=1e-6) and wz.item() == zero_point
    wrapper(X[None])  # training mode: observes the input range
    assert (wrapper.act_min.item(), wrapper.act_max.item()) == pytest.approx((-1.2, 3.0))
    assert wrapper.act_scale.item() == pytest.approx(scale, rel=1e-6) and wrapper.act_zero_point.item() == zero_point
    wrapper.eval()
    torch.testing.assert_close(
        wrapper(X[None]), (expected @ expected)[None, None]
    )  # quantized input . quantized weight


def test_straight_through_estimator():
    # 4-bit symmetric, scale 0.1: representable -0.7 .. 0.7; values rounding outside are clamped
    x = torch.tensor([-1.0, -0.74, -0.5, 0.0, 0.3, 0.74, 0.76, 2.0], requires_grad=True)
    y = fake_quantize(x, torch.tensor(0.1), torch.tensor(0, dtype=torch.int32), 4, "symmetric")
    torch.testing.assert_close(y.detach(), torch.tensor([-0.7, -0.7, -0.5, 0.0, 0.3, 0.7, 0.7, 0.7]))
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 0, 0]
    # through a wrapper whose input range is frozen at [-1, 1]: inputs outside get no gradient
    layer = nn.Linear(3, 1, bias=False)
    layer.weight.data.fill_(1.0)
    wrapper = QuantWrapper(layer)
    wrapper(torch.tensor([[-1.0, 0.0, 1.0]]))
    set_quant_state(wrapper, frozen=True)
    x = torch.tensor([[-2.0, 0.5, 3.0]], requires_grad=True)
    wrapper(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.0, 1.0, 0.0]]))
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0  # the weights learn


def test_per_channel_ranges():
    model = TinyConv()
    with torch.no_grad():  # output channel c spans about (c + 1) times the range of channel 0
        model.conv.weight.mul_(torch.arange(1, 9.0).view(8, 1, 1, 1))
    wrap_fake_quant(model, per_channel=True)
    for wrapper, channels in ((model.conv, 8), (model.fc, 4)):
        weight = wrapper.layer.weight.detach()
        scale, zero_point = wrapper.weight_qparams()
        assert scale.shape == zero_point.shape == (channels,)
        torch.testing.assert_close(scale, weight.flatten(1).abs().amax(1) / 127)
        quantized = fake_quantize(weight, scale, zero_point, 8, "symmetric", axis=0)
        for c in range(channels):  # each channel quantized with its own range alone
            s, z = qparams(weight[c].min(), weight[c].max(), 8, "symmetric")
            torch.testing.assert_close(quantized[c], fake_quantize(weight[c], s, z, 8, "symmetric"))
    assert model.conv.weight_qparams()[0].unique().numel() == 8
    per_tensor = wrap_fake_quant(TinyConv(), per_channel=False)
    assert per_tensor.conv.weight_qparams()[0].shape == ()


@pytest.mark.parametrize("mode", ["symmetric", "asymmetric"])
def test_zero_range_and_pruned_zeros(mode):
    # all zeros: weights, bias and input give a tiny positive scale and zeros, not NaN
    layer = nn.Linear(5, 3)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    wrapper = QuantWrapper(layer, mode=mode)
    out = wrapper(torch.zeros(2, 5))
    assert torch.equal(out, torch.zeros(2, 3))
    assert wrapper.act_scale.item() == MIN_SCALE and wrapper.weight_qparams()[0].item() == MIN_SCALE
    # a range is widened to contain 0: [0.5, 2] is quantized as [0, 2], [-2, -0.5] as [-2, 0]
    scale, zero_point = qparams(torch.tensor(0.5), torch.tensor(2.0), 8, mode)
    assert scale.item() == pytest.approx(2 / (127 if mode == "symmetric" else 255)) and zero_point.item() == 0
    scale, zero_point = qparams(torch.tensor(-2.0), torch.tensor(-0.5), 8, mode)
    assert scale.item() == pytest.approx(2 / (127 if mode == "symmetric" else 255))
    assert zero_point.item() == (0 if mode == "symmetric" else 255)
    # pruned zeros (in otherwise positive weights) are on the grid: they stay exactly 0
    layer = nn.Linear(40, 6)
    with torch.no_grad():
        layer.weight.uniform_(0.2, 1.0)
    prune.l1_unstructured(layer, "weight", amount=0.5)
    wrapper = QuantWrapper(layer, mode=mode, weight_bits=3, per_channel=True)
    scale, zero_point = wrapper.weight_qparams()
    quantized = fake_quantize(layer.weight_orig * layer.weight_mask, scale, zero_point, 3, mode, axis=0)
    assert (quantized[layer.weight_mask == 0] == 0).all() and (quantized[layer.weight_mask == 1] != 0).all()


class Mask(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight):
        return weight * self.mask


@pytest.mark.parametrize("how", ["prune", "parametrize"])
def test_wrapper_follows_masks_and_weight_updates(how):
    # torch.nn.utils.prune: weight = weight_orig * weight_mask, refreshed only by the layer's own
    # forward pre-hook; parametrize: weight = mask(original) at every access
    torch.manual_seed(0)
    layer = nn.Linear(40, 6)
    if how == "prune":
        prune.l1_unstructured(layer, "weight", amount=0.5)
        original, mask = layer.weight_orig, layer.weight_mask
    else:
        parametrize.register_parametrization(layer, "weight", Mask(torch.rand(6, 40) > 0.5))
        original, mask = layer.parametrizations.weight.original, layer.parametrizations.weight[0].mask
    wrapper = QuantWrapper(layer)
    set_quant_state(wrapper, enabled=False)
    with torch.no_grad():
        original.add_(1.0)  # as an optimizer step would (a prune layer.weight is now stale)
    x = torch.randn(4, 40)
    torch.testing.assert_close(wrapper(x), nn.functional.linear(x, original * mask, layer.bias), rtol=0, atol=0)
    set_quant_state(wrapper, enabled=True)
    wrapper(x).sum().backward()
    assert (original.grad[mask == 0] == 0).all() and (original.grad[mask == 1] != 0).any()
    copy = post_training_quantize(nn.Sequential(layer), [x])  # masked models deep-copy and calibrate
    assert (copy[0].weight_qparams()[0] == wrapper.weight_qparams()[0]).all()


def test_bias_on_the_int32_grid_of_input_times_weight_scale():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -0.5, 0.25], [0.1, 0.2, -0.05]]))
        layer.bias.copy_(torch.tensor([0.123456, -0.0031]))
    wrapper = QuantWrapper(layer, per_channel=True)
    wrapper(torch.tensor([[-2.0, 0.0, 3.0]]))
    wrapper.eval()
    # input scale 3/127; weight scales 1/127 and 0.2/127 per output channel
    grid = torch.tensor([3 / 127 * 1 / 127, 3 / 127 * 0.2 / 127])
    expected = torch.round(layer.bias.detach() / grid) * grid
    torch.testing.assert_close(wrapper(torch.zeros(1, 3))[0], expected)  # zero input: output = bias
    assert not torch.allclose(expected, layer.bias.detach(), rtol=0, atol=1e-6)  # the rounding did something


def test_range_moving_average_percentile_and_eval():
    wrapper = QuantWrapper(nn.Linear(4, 2), momentum=0.9)
    wrapper(torch.tensor([[-1.0, 0.0, 1.0, 2.0]]))  # the first batch is taken as it is
    assert (wrapper.act_min.item(), wrapper.act_max.item()) == pytest.approx((-1.0, 2.0))
    wrapper(torch.tensor([[-3.0, 0.0, 1.0, 4.0]]))  # 0.9 * old + 0.1 * batch
    assert (wrapper.act_min.item(), wrapper.act_max.item()) == pytest.approx((-1.2, 2.2))
    # eval mode neither updates the range nor changes its output
    wrapper.eval()
    before = {k: v.clone() for k, v in wrapper.state_dict().items()}
    x = torch.randn(8, 4) * 10
    first = wrapper(x)
    assert torch.equal(wrapper(x), first)
    assert all(torch.equal(v, wrapper.state_dict()[k]) for k, v in before.items())
    # nearest-rank percentile: of 1..1000 and one outlier, the 99th percentile is 991 and the 1st is 11
    wrapper = QuantWrapper(nn.Linear(1001, 1), activation_range="percentile", percentile=99.0, mode="asymmetric")
    values = torch.cat([torch.arange(1.0, 1001.0), torch.tensor([1e6])])
    wrapper(values[torch.randperm(1001)][None])
    assert (wrapper.act_min.item(), wrapper.act_max.item()) == (11.0, 991.0)
    assert wrapper.act_scale.item() == pytest.approx(991 / 255)  # range widened to contain 0


def test_only_named_layers_and_disable():
    model = wrap_fake_quant(TinyConv(), layers=["fc"])
    assert isinstance(model.conv, nn.Conv2d) and isinstance(model.fc, QuantWrapper)
    with pytest.raises(ValueError, match="already fake-quantized"):
        wrap_fake_quant(model, layers=["fc"])
    # disabled: exactly the float model
    float_model = TinyConv().eval()
    quant = wrap_fake_quant(copy.deepcopy(float_model), weight_bits=2, activation_bits=2)
    x = torch.randn(3, 1960)
    set_quant_state(quant, enabled=False)
    assert torch.equal(quant(x), float_model(x))
    set_quant_state(quant, enabled=True)
    quant.train()(x)
    assert not torch.allclose(quant.eval()(x), float_model(x))


# ---------------------------------------------------------------- PTQ against the float model
@pytest.fixture(scope="module")
def trained():
    """TinyConv trained briefly on separable random data: 4 prototypes + noise."""
    torch.manual_seed(0)
    prototypes = torch.randn(4, 1960)

    def batch(n):
        labels = torch.randint(0, 4, (n,))
        return prototypes[labels] + 8 * torch.randn(n, 1960), labels

    model = TinyConv(dropout=0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(40):
        features, labels = batch(64)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(features), labels).backward()
        optimizer.step()
    return model.eval(), [batch(128) for _ in range(2)], [batch(128) for _ in range(4)]


@pytest.mark.parametrize("mode,per_channel", [("symmetric", True), ("asymmetric", False)])
def test_ptq_against_float(trained, mode, per_channel):
    model, calibration, held_out = trained
    results = {}
    for bits in (8, 4, 2):
        quant = post_training_quantize(
            model, calibration, weight_bits=bits, activation_bits=bits, mode=mode, per_channel=per_channel
        )
        assert all(bool(q.frozen) and bool(q.observed) for q in quantizers(quant).values())
        results[bits] = compare_models(model, quant, held_out)
    assert quantizers(model) == {}  # the float model is left as it was
    assert results[8]["float_acc"] > 0.85  # trained-ish, not saturated: quantization error can show
    assert results[8]["agreement"] > 0.95 and results[8]["prob_mse"] < 1e-4
    assert abs(results[8]["quant_acc"] - results[8]["float_acc"]) < 0.02
    assert results[8]["prob_mse"] < results[4]["prob_mse"] < results[2]["prob_mse"]
    assert results[2]["agreement"] < results[8]["agreement"] - 0.1
    unlabelled = compare_models(model, quant, [f for f, _ in held_out])
    assert unlabelled == {"agreement": results[2]["agreement"], "prob_mse": pytest.approx(results[2]["prob_mse"])}


def test_activation_mode_splits_weights_and_activations():
    """TFLite's int8 scheme: symmetric weights (zero point 0), asymmetric activations."""
    from kws.compression.quantization import QuantWrapper

    torch.manual_seed(0)
    wrapper = QuantWrapper(
        nn.Linear(6, 3), weight_bits=4, activation_bits=4, mode="symmetric", activation_mode="asymmetric"
    ).train()
    wrapper(torch.rand(32, 6) * 5)  # non-negative inputs, as the features are
    _, weight_zero = wrapper.weight_qparams()
    assert int(weight_zero.abs().max()) == 0
    assert int(wrapper.act_zero_point) == 0 and float(wrapper.act_scale) == pytest.approx(float(wrapper.act_max) / 15)
    with pytest.raises(ValueError, match="activation_mode"):
        QuantizationAwareTraining(activation_mode="affine")
