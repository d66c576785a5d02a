"""PyTorch -> ONNX: the float TinyConv as trained (quantization wrappers stripped, pruning applied),
rewritten exactly into a graph onnx2tf maps to TFLite's RESHAPE, CONV_2D, FULLY_CONNECTED with no
TRANSPOSE or PAD, and written as ONNX (opset 17, input ``features`` [N, frames * features])."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from kws.compression.quantization import QuantWrapper
from kws.export import ExportError
from kws.models import TinyConv

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "features", "logits"


def _float_layer(layer: nn.Module) -> nn.Module:
    """The float Conv2d/Linear of a layer, a QuantWrapper's ``layer`` for a QAT-trained model."""
    return layer.layer if isinstance(layer, QuantWrapper) else layer


def float_tinyconv(model: nn.Module) -> TinyConv:
    """A plain float TinyConv (CPU, eval) with ``model``'s current weights: quantization wrappers
    stripped, pruning masks applied (a parametrized ``weight`` is the masked one), channels as
    pruned."""
    if not isinstance(model, TinyConv):
        raise ExportError(f"export supports TinyConv models, got {type(model).__name__}")
    conv, fc = _float_layer(model.conv), _float_layer(model.fc)
    plain = TinyConv(model.input_shape, fc.out_features, channels=conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride[0], dropout=0.0)
    if plain.conv.padding != conv.padding or plain.conv.stride != conv.stride or plain.fc.in_features != fc.in_features:
        raise ExportError(f"the model's layers {conv} / {fc} are not TinyConv's shape rules")
    state = {"conv.weight": conv.weight, "conv.bias": conv.bias, "fc.weight": fc.weight, "fc.bias": fc.bias}
    plain.load_state_dict({k: v.detach().cpu().float() for k, v in state.items()})
    return plain.eval()


def same_padding_taps(size: int, kernel: int, stride: int, padding: int) -> int | None:
    """Zero taps to append to a kernel so that TensorFlow's 'SAME' padding computes exactly what
    PyTorch's symmetric ``padding`` does along one axis; None if no number of taps can.

    'SAME' pads (out - 1) * stride + kernel - size in total, the smaller half first. It matches
    when the output length agrees and its leading pad equals ``padding``: appending zero taps
    grows the total without changing the result."""
    out = (size + 2 * padding - kernel) // stride + 1
    if -(-size // stride) != out:
        return None
    for extra in range(kernel + 1):
        if (size + 2 * padding - kernel - extra) // stride + 1 != out:
            return None
        if max((out - 1) * stride + kernel + extra - size, 0) // 2 == padding:
            return extra
    return None


class TFLiteGraph(nn.Module):
    """TinyConv rewritten, exactly, into the form onnx2tf converts without layout glue.

    - The flat input is reshaped to NHWC [N, frames, features, 1] and then transposed to NCHW:
      onnx2tf recognises that transpose as its own layout change and drops it (a direct reshape
      to [N, 1, frames, features] becomes RESHAPE + TRANSPOSE).
    - TinyConv's symmetric padding is no TensorFlow padding mode, so onnx2tf would emit a PAD op.
      The kernel gets zero taps appended (:func:`same_padding_taps`) so that TensorFlow's 'SAME'
      gives the same result, and :func:`export_onnx` marks the ONNX Conv ``auto_pad=SAME_UPPER``.
    - The conv output is flattened channel-last, with the fully connected weight's columns
      permuted to match, so no transpose back to channel-major is needed before the FC layer.
    """

    def __init__(self, model: TinyConv):
        super().__init__()
        conv, fc = model.conv, model.fc
        self.frames, self.features = model.input_shape
        taps = [same_padding_taps(n, k, s, p) for n, k, s, p in zip(model.input_shape, conv.kernel_size, conv.stride, conv.padding)]
        self.same_padding = None not in taps
        weight = conv.weight.detach()
        if self.same_padding:
            weight = nn.functional.pad(weight, (0, taps[1], 0, taps[0]))  # zeros after the last row and column
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, tuple(weight.shape[2:]), stride=conv.stride, padding=conv.padding)
        self.conv.weight.data.copy_(weight)
        self.conv.bias.data.copy_(conv.bias.detach())
        channels, positions = conv.out_channels, model.conv_output_size()
        self.fc = nn.Linear(fc.in_features, fc.out_features)
        # column c * H'W' + p (channel-major) -> p * C + c (channel-last)
        self.fc.weight.data.copy_(fc.weight.detach().reshape(-1, channels, positions).transpose(1, 2).reshape(fc.weight.shape))
        self.fc.bias.data.copy_(fc.bias.detach())

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(-1, self.frames, self.features, 1).permute(0, 3, 1, 2)
        x = torch.relu(self.conv(x))
        return self.fc(x.permute(0, 2, 3, 1).reshape(-1, self.fc.in_features))


def export_onnx(model: TinyConv, path: Path) -> None:
    """``model`` as ONNX (opset 17, ``features`` [N, frames * features] -> ``logits``), through
    :class:`TFLiteGraph`; checked with onnx.checker."""
    import onnx

    graph = TFLiteGraph(model).eval()
    example = torch.zeros(1, model.input_shape[0] * model.input_shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            graph, (example,), str(path), opset_version=OPSET, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}}, dynamo=False,
        )
    proto = onnx.load(str(path))
    if graph.same_padding:
        (conv,) = [node for node in proto.graph.node if node.op_type == "Conv"]
        del conv.attribute[[a.name for a in conv.attribute].index("pads")]
        conv.attribute.append(onnx.helper.make_attribute("auto_pad", "SAME_UPPER"))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"the exported ONNX graph is invalid: {err}") from err
    onnx.save(proto, str(path))
