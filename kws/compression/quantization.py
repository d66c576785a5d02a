"""Fake quantization of Conv2d and Linear layers (the math of quantization-aware training, which
``callbacks.QuantizationAwareTraining`` schedules), and post-training quantization at the same
bit widths for comparison.

Each selected layer is replaced by a :class:`QuantWrapper` that holds the original layer (the same
Parameter objects, so an optimizer built earlier stays valid) and, at every forward, fake-quantizes
its input activations, weights and bias -- quantize, clamp, dequantize -- with a straight-through
estimator in the backward pass (the gradient passes where the value lies inside the clamp range).
With ``quantize_output`` the model's last layer also fake-quantizes its output (the logits, as the
int8 model's output tensor holds them), its gradient straight through without the clamp's mask.

Quantization math (``k`` bits; the observed range is first widened to contain 0 so that 0, and so
every pruned weight, is exactly representable):

- ``symmetric``: scale = max(|min|, |max|) / (2^(k-1) - 1), zero point 0, integers in
  [-(2^(k-1) - 1), 2^(k-1) - 1] (the restricted range TFLite's int8 weights use: -127..127).
- ``asymmetric``: scale = (max - min) / (2^k - 1), zero point = round(-min / scale) clamped to the
  range, integers in [0, 2^k - 1].
- scale is at least float32's eps, so an all-zero tensor gives zeros, not NaN.
- bias: int32 with scale = input scale * weight scale and zero point 0, as TFLite does. At 32 bits
  the clamp never matters, so the fake quantization is rounding to that grid (with an STE).

Weight ranges follow the current weights (per tensor, or per output channel with ``per_channel``).
Activation ranges are observed in training mode -- min/max or percentiles of each batch, smoothed
by a moving average -- and kept fixed in eval mode and once frozen. They live in the wrapper's
buffers, and the wrapping is a :mod:`kws.models.surgery` transform, so a checkpoint reloads with its
learned ranges (``KWSModule.load_from_checkpoint`` needs no callback).

Custom rather than ``torch.ao.quantization``: its QAT rewrites modules into its own classes and
observers, which neither pruning's parametrizations nor onnx2tf's export path take; here a
wrapper around the original layer keeps both working, with torch's own fake-quantize ops.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kws.models.surgery import register_transform

QUANTIZABLE = (nn.Conv2d, nn.Linear)
MODES = ("symmetric", "asymmetric")
ACTIVATION_RANGES = ("minmax", "percentile")
MIN_SCALE = torch.finfo(torch.float32).eps
TRANSFORM = "fake_quant"


def check_options(
    weight_bits: int = 8,
    activation_bits: int = 8,
    mode: str = "symmetric",
    per_channel: bool = False,
    activation_range: str = "minmax",
    percentile: float = 99.99,
    momentum: float = 0.99,
    layers: Iterable[str] | None = None,
    activation_mode: str | None = None,
    quantize_output: bool = False,
) -> dict[str, Any]:
    """Validated quantizer options, as the JSON-like params of the ``fake_quant`` transform."""
    for name, bits in (("weight_bits", weight_bits), ("activation_bits", activation_bits)):
        if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 8:
            raise ValueError(f"{name} must be an integer from 2 to 8, got {bits!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be 'symmetric' or 'asymmetric', got {mode!r}")
    if activation_mode is not None and activation_mode not in MODES:
        raise ValueError(f"activation_mode must be 'symmetric', 'asymmetric' or null (= mode), got {activation_mode!r}")
    if activation_range not in ACTIVATION_RANGES:
        raise ValueError(f"activation_range must be 'minmax' or 'percentile', got {activation_range!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if layers is not None:
        layers = list(layers)
        if not layers or not all(isinstance(n, str) for n in layers) or len(set(layers)) != len(layers):
            raise ValueError(
                f"layers must be a non-empty list of distinct module names (or null for all), got {layers!r}"
            )
    return {
        "weight_bits": weight_bits,
        "activation_bits": activation_bits,
        "mode": mode,
        "per_channel": bool(per_channel),
        "activation_range": activation_range,
        "percentile": float(percentile),
        "momentum": float(momentum),
        "layers": layers,
        "activation_mode": activation_mode or mode,
        "quantize_output": bool(quantize_output),
    }


def quant_range(bits: int, mode: str) -> tuple[int, int]:
    """The integer range: [-(2^(k-1)-1), 2^(k-1)-1] symmetric, [0, 2^k-1] asymmetric."""
    if mode == "symmetric":
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def qparams(min_val: Tensor, max_val: Tensor, bits: int, mode: str) -> tuple[Tensor, Tensor]:
    """(scale, int32 zero point) for a range, elementwise (per channel when given vectors)."""
    lo, hi = min_val.clamp(max=0), max_val.clamp(min=0)  # 0 must be exactly representable
    qmin, qmax = quant_range(bits, mode)
    if mode == "symmetric":
        scale = (torch.maximum(-lo, hi) / qmax).clamp(min=MIN_SCALE)
        return scale, torch.zeros_like(scale, dtype=torch.int32)
    scale = ((hi - lo) / (qmax - qmin)).clamp(min=MIN_SCALE)
    return scale, torch.round(-lo / scale).clamp(qmin, qmax).to(torch.int32)


def fake_quantize(
    x: Tensor, scale: Tensor, zero_point: Tensor, bits: int, mode: str, axis: int | None = None
) -> Tensor:
    """Quantize-dequantize ``x`` (per tensor, or per channel along ``axis``); STE gradient."""
    qmin, qmax = quant_range(bits, mode)
    if axis is None:
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax)
    return torch.fake_quantize_per_channel_affine(x, scale, zero_point, axis, qmin, qmax)


def fake_quantize_bias(bias: Tensor, scale: Tensor) -> Tensor:
    """Round to the int32 grid of ``scale`` (zero point 0); identity gradient. No clamp: at 32 bits
    it would only act on |bias| > 2^31 * scale."""
    return bias + (torch.round(bias / scale) * scale - bias).detach()


def percentile_range(x: Tensor, percentile: float) -> tuple[Tensor, Tensor]:
    """Nearest-rank (100 - p)th and pth percentiles of all of ``x``'s values."""
    x = x.flatten()
    n = x.numel()
    # the tolerance keeps e.g. 99.99 % of 10,000 at rank 9,999 despite float error
    k = min(n, max(1, math.ceil(percentile * n / 100 - 1e-6)))
    return x.kthvalue(n - k + 1).values, x.kthvalue(k).values


def _deepcopy(model: nn.Module) -> nn.Module:
    """copy.deepcopy, which refuses torch.nn.utils.prune's derived ``<name>`` tensors (non-leaf):
    those are copied detached; the copy recomputes them from ``<name>_orig * <name>_mask``."""
    memo = {}
    for module in model.modules():
        for buffer, _ in module.named_buffers(recurse=False):
            name = buffer.removesuffix("_mask")
            if buffer.endswith("_mask") and hasattr(module, f"{name}_orig"):
                derived = getattr(module, name)
                memo[id(derived)] = derived.detach().clone()
    return copy.deepcopy(model, memo)


def _current(layer: nn.Module, name: str) -> Tensor | None:
    """``layer.<name>`` as of now. torch.nn.utils.prune keeps ``<name>_orig`` and ``<name>_mask`` and
    refreshes ``<name>`` in a forward pre-hook of the layer, which the wrapper bypasses."""
    mask = getattr(layer, f"{name}_mask", None)
    if mask is not None:
        return getattr(layer, f"{name}_orig") * mask
    return getattr(layer, name)


class QuantWrapper(nn.Module):
    """Fake-quantizes a Conv2d or Linear layer's input, weight and bias; holds the layer as ``layer``.

    Buffers (saved in the state dict): ``act_min``/``act_max`` (the observed input range),
    ``act_scale``/``act_zero_point``, with ``quantize_output`` the same four ``out_*`` of the
    output (fake-quantized too: the model's int8 logits), and the flags ``observed`` (a range has been seen; until
    then the input and bias stay float), ``enabled`` (off: the plain float layer) and ``frozen``.
    The input range is updated only in training mode while not frozen: new = m * old + (1 - m) *
    batch, the first batch taken as it is.
    """

    def __init__(self, layer: nn.Module, **options: Any):
        """``options``: the quantizer options of :func:`check_options` (all but ``layers``)."""
        super().__init__()
        if not isinstance(layer, QUANTIZABLE):
            raise TypeError(f"QuantWrapper wraps Conv2d or Linear layers, got {type(layer).__name__}")
        if "layers" in options:
            raise TypeError("QuantWrapper takes quantizer options, not `layers`")
        options = check_options(**options)
        del options["layers"]
        for name, value in options.items():
            setattr(self, name, value)  # quantize_output: also fake-quantize the output (the model's logits)
        self.layer = layer
        device = _current(layer, "weight").device
        for name, value in (("act_min", 0.0), ("act_max", 0.0), ("act_scale", 1.0)):
            self.register_buffer(name, torch.tensor(value, device=device))
        self.register_buffer("act_zero_point", torch.tensor(0, dtype=torch.int32, device=device))
        for name, value in (("observed", False), ("enabled", True), ("frozen", False)):
            self.register_buffer(name, torch.tensor(value, device=device))
        if self.quantize_output:  # only then: older checkpoints' state dicts lack these buffers
            for name, value in (("out_min", 0.0), ("out_max", 0.0), ("out_scale", 1.0)):
                self.register_buffer(name, torch.tensor(value, device=device))
            self.register_buffer("out_zero_point", torch.tensor(0, dtype=torch.int32, device=device))

    def extra_repr(self) -> str:
        return (
            f"weight_bits={self.weight_bits}, activation_bits={self.activation_bits}, mode={self.mode}, "
            f"activation_mode={self.activation_mode}, "
            f"per_channel={self.per_channel}, activation_range={self.activation_range}"
        )

    def weight_qparams(self) -> tuple[Tensor, Tensor]:
        """(scale, zero point) of the current weight: shape [] per tensor, [out_channels] per channel."""
        weight = _current(self.layer, "weight").detach()
        if self.per_channel:
            lo, hi = weight.flatten(1).aminmax(dim=1)
        else:
            lo, hi = weight.aminmax()
        return qparams(lo, hi, self.weight_bits, self.mode)

    @torch.no_grad()
    def observe(self, x: Tensor, which: str = "act") -> None:
        """Fold the range of batch ``x`` into the input range (``which`` "act") or the output
        range ("out") and update its scale and zero point. The output range is updated before
        ``observed`` is set, by the same rule, so both move together."""
        x = x.detach().float()
        lo, hi = x.aminmax() if self.activation_range == "minmax" else percentile_range(x, self.percentile)
        m = self.momentum
        low, high = getattr(self, f"{which}_min"), getattr(self, f"{which}_max")
        # torch.where rather than `if self.observed`: no device-to-host sync
        low.copy_(torch.where(self.observed, m * low + (1 - m) * lo, lo))
        high.copy_(torch.where(self.observed, m * high + (1 - m) * hi, hi))
        scale, zero_point = qparams(low, high, self.activation_bits, self.activation_mode)
        getattr(self, f"{which}_scale").copy_(scale)
        getattr(self, f"{which}_zero_point").copy_(zero_point)
        if which == "act" and not self.quantize_output:
            self.observed.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = _current(self.layer, "weight"), _current(self.layer, "bias")
        if not self.enabled:
            return self._layer_forward(x, weight, bias)
        observe = self.training and not self.frozen
        if observe:
            self.observe(x)
        weight_scale, weight_zero_point = self.weight_qparams()
        weight = fake_quantize(
            weight, weight_scale, weight_zero_point, self.weight_bits, self.mode, 0 if self.per_channel else None
        )
        if self.observed or (observe and self.quantize_output):
            x = fake_quantize(x, self.act_scale, self.act_zero_point, self.activation_bits, self.activation_mode)
            if bias is not None:
                bias = fake_quantize_bias(bias, self.act_scale * weight_scale)
        y = self._layer_forward(x, weight, bias)
        if not self.quantize_output:
            return y
        if observe:
            # the output range sees the layer's output as the quantized model computes it
            self.observe(y, "out")
            self.observed.fill_(True)
        if self.observed:
            # Straight through without the clamp's mask: logits beyond a young range would get no
            # gradient (measured: QAT from epoch 0 stayed at chance); the forward is exact either way.
            quantized = fake_quantize(
                y.detach(), self.out_scale, self.out_zero_point, self.activation_bits, self.activation_mode
            )
            y = quantized + (y - y.detach())  # y - y is exactly 0: the values stay the quantized ones
        return y

    def _layer_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if isinstance(self.layer, nn.Conv2d):
            return self.layer._conv_forward(x, weight, bias)
        return F.linear(x, weight, bias)


def quantizers(model: nn.Module) -> dict[str, QuantWrapper]:
    """The model's QuantWrappers by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QuantWrapper)}


def quantizable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv2d/Linear layers by name, a wrapped layer listed under its wrapper's name."""
    wrapped = {f"{name}.layer" for name in quantizers(model)}
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, (*QUANTIZABLE, QuantWrapper)) and name not in wrapped
    }


def select_layers(model: nn.Module, layers: Iterable[str] | None = None) -> list[str]:
    """The names to quantize: ``layers``, or all; unknown names raise, listing the available ones."""
    available = list(quantizable_layers(model))
    if layers is None:
        return available
    unknown = [name for name in layers if name not in available]
    if unknown:
        raise ValueError(f"layers {unknown} are not Conv2d/Linear layers of the model; available: {available}")
    return list(layers)


@register_transform(TRANSFORM)
def wrap_fake_quant(model: nn.Module, **options: Any) -> nn.Module:
    """Replace the selected layers (``layers``, default all Conv2d/Linear) by QuantWrappers.
    ``options`` are those of :func:`check_options`."""
    options = check_options(**options)
    layers = quantizable_layers(model)
    selected = select_layers(model, options.pop("layers"))
    # quantize_output: only the model's last layer (the last registered; TinyConv's and DSCNN's fc)
    last = list(layers)[-1]
    for name in selected:
        if isinstance(layers[name], QuantWrapper):
            raise ValueError(f"layer {name!r} is already fake-quantized")
        parent, _, attr = name.rpartition(".")
        output = options["quantize_output"] and name == last
        wrapper = QuantWrapper(layers[name], **{**options, "quantize_output": output})
        setattr(model.get_submodule(parent), attr, wrapper)
    return model


def set_quant_state(model: nn.Module, enabled: bool | None = None, frozen: bool | None = None) -> None:
    """Switch fake quantization on/off or freeze/unfreeze the input ranges of every wrapper."""
    for wrapper in quantizers(model).values():
        if enabled is not None:
            wrapper.enabled.fill_(enabled)
        if frozen is not None:
            wrapper.frozen.fill_(frozen)


def _split(batch: Tensor | tuple | list) -> tuple[Tensor, Tensor | None]:
    """(features, labels or None) of a batch given as a tensor or a (features, labels) tuple."""
    if isinstance(batch, (tuple, list)):
        return batch[0], batch[1] if len(batch) > 1 else None
    return batch, None


def post_training_quantize(model: nn.Module, calibration_batches: Iterable, **options: Any) -> nn.Module:
    """A fake-quantized copy of ``model``, its input ranges calibrated on ``calibration_batches``
    (tensors or (features, labels) tuples) and frozen; returned in eval mode.

    ``options`` are those of :func:`check_options`. The batches are concatenated and run as one, so
    each range is that of the whole calibration set (TFLite's representative-dataset calibration;
    ``momentum`` then plays no part).
    """
    quantized = wrap_fake_quant(_deepcopy(model), **options)
    features = [_split(b)[0] for b in calibration_batches]
    if not features:
        raise ValueError("calibration_batches is empty")
    device = next(quantized.parameters()).device
    quantized.eval()
    for wrapper in quantizers(quantized).values():
        wrapper.train()  # observe ranges; dropout and the rest stay in eval mode
    with torch.no_grad():
        quantized(torch.cat(features).to(device))
    set_quant_state(quantized, frozen=True)
    return quantized.eval()


@torch.no_grad()
def compare_models(float_model: nn.Module, quant_model: nn.Module, batches: Iterable) -> dict[str, float]:
    """Both models in eval mode on ``batches``: ``agreement`` (fraction of equal top-1 predictions),
    ``prob_mse`` (mean over samples and classes of the squared difference of softmax
    probabilities), and ``float_acc``/``quant_acc`` when every batch has labels (counted by
    torchmetrics)."""
    from torchmetrics.classification import MulticlassAccuracy

    modes = float_model.training, quant_model.training
    float_model.eval()
    quant_model.eval()
    device = next(float_model.parameters()).device, next(quant_model.parameters()).device
    metrics: dict[str, MulticlassAccuracy] = {}
    n, squared, labelled = 0, 0.0, True
    for batch in batches:
        features, labels = _split(batch)
        p_float = float_model(features.to(device[0])).softmax(-1).cpu()
        p_quant = quant_model(features.to(device[1])).softmax(-1).cpu()
        if not metrics:
            metrics = {
                k: MulticlassAccuracy(p_float.shape[-1], average="micro")
                for k in ("agreement", "float_acc", "quant_acc")
            }
        metrics["agreement"].update(p_quant, p_float.argmax(-1))
        n += len(features)
        squared += float(((p_float - p_quant) ** 2).mean(-1).sum())
        if labels is None:
            labelled = False
        else:
            metrics["float_acc"].update(p_float, labels.cpu())
            metrics["quant_acc"].update(p_quant, labels.cpu())
    float_model.train(modes[0])
    quant_model.train(modes[1])
    if not n:
        raise ValueError("batches is empty")
    result = {"agreement": float(metrics["agreement"].compute()), "prob_mse": squared / n}
    if labelled:
        result.update(float_acc=float(metrics["float_acc"].compute()), quant_acc=float(metrics["quant_acc"].compute()))
    return result


def applied_options(module: nn.Module) -> dict[str, Any] | None:
    """The params of the ``fake_quant`` transform in a KWSModule's transform log, None if absent."""
    return next((t["params"] for t in module.model_transforms if t["name"] == TRANSFORM), None)
