"""PyTorch -> ONNX: the float model as trained (quantization wrappers stripped, pruning applied,
DS-CNN's BatchNorm folded: :func:`plain_float_model`), rewritten exactly into a graph onnx2tf maps to
TFLite ops with no TRANSPOSE or PAD (:func:`tflite_graph`: TinyConv -> RESHAPE, CONV_2D,
FULLY_CONNECTED; DS-CNN -> RESHAPE, CONV_2D, DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, FULLY_CONNECTED),
and written as ONNX (opset 17, input ``features`` [N, frames * features])."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from kws.compression.quantization import QuantWrapper
from kws.export import ExportError
from kws.models import DSCNN, TinyConv

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "features", "logits"


def _float_layer(layer: nn.Module) -> nn.Module:
    """The float Conv2d/Linear of a layer, a QuantWrapper's ``layer`` for a QAT-trained model."""
    return layer.layer if isinstance(layer, QuantWrapper) else layer


def plain_float_model(model: nn.Module) -> nn.Module:
    """The plain float model to export (CPU, eval) with ``model``'s current weights, of either
    architecture: :func:`float_tinyconv` or :func:`float_dscnn`."""
    if isinstance(model, TinyConv):
        return float_tinyconv(model)
    if isinstance(model, DSCNN):
        return float_dscnn(model)
    raise ExportError(
        f"export supports TinyConv and DSCNN models (model.arch tiny_conv or ds_cnn), got {type(model).__name__}"
    )


def float_tinyconv(model: nn.Module) -> TinyConv:
    """A plain float TinyConv (CPU, eval) with ``model``'s current weights: quantization wrappers
    stripped, pruning masks applied (a parametrized ``weight`` is the masked one), channels as
    pruned."""
    if not isinstance(model, TinyConv):
        raise ExportError(f"export supports TinyConv models, got {type(model).__name__}")
    conv, fc = _float_layer(model.conv), _float_layer(model.fc)
    plain = TinyConv(
        model.input_shape,
        fc.out_features,
        channels=conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride[0],
        dropout=0.0,
    )
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
        taps = [
            same_padding_taps(n, k, s, p)
            for n, k, s, p in zip(model.input_shape, conv.kernel_size, conv.stride, conv.padding)
        ]
        self.same_padding = None not in taps
        weight = conv.weight.detach()
        if self.same_padding:
            weight = nn.functional.pad(weight, (0, taps[1], 0, taps[0]))  # zeros after the last row and column
        self.conv = nn.Conv2d(
            conv.in_channels, conv.out_channels, tuple(weight.shape[2:]), stride=conv.stride, padding=conv.padding
        )
        self.conv.weight.data.copy_(weight)
        self.conv.bias.data.copy_(conv.bias.detach())
        channels, positions = conv.out_channels, model.conv_output_size()
        self.fc = nn.Linear(fc.in_features, fc.out_features)
        # column c * H'W' + p (channel-major) -> p * C + c (channel-last)
        self.fc.weight.data.copy_(
            fc.weight.detach().reshape(-1, channels, positions).transpose(1, 2).reshape(fc.weight.shape)
        )
        self.fc.bias.data.copy_(fc.bias.detach())

    @property
    def same_padding_convs(self) -> list[bool]:
        """Per ONNX Conv node, in graph order: whether it is TensorFlow 'SAME' (auto_pad)."""
        return [self.same_padding]

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(-1, self.frames, self.features, 1).permute(0, 3, 1, 2)
        x = torch.relu(self.conv(x))
        return self.fc(x.permute(0, 2, 3, 1).reshape(-1, self.fc.in_features))


# ---------------------------------------------------------------------------------- DS-CNN
def fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """``conv`` then ``bn`` (eval: running statistics) as one convolution with a bias:
    w' = w * g, b' = (b - mean) * g + beta, g = gamma / sqrt(var + eps) per output channel.
    TFLite has no BatchNorm kernel; folded, a depthwise-separable block is two convolutions."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    folded = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        groups=conv.groups,
    )
    folded.weight.data.copy_(conv.weight.detach() * scale.reshape(-1, 1, 1, 1))
    folded.bias.data.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return folded


def float_dscnn(model: DSCNN) -> DSCNN:
    """A plain float DSCNN (CPU, eval) computing what ``model`` computes in eval mode: quantization
    wrappers stripped, pruning masks applied, then every BatchNorm folded into the convolution
    before it (the BN modules become Identity)."""
    if not isinstance(model, DSCNN):
        raise ExportError(f"float_dscnn takes a DSCNN, got {type(model).__name__}")
    fc = _float_layer(model.fc)
    plain = DSCNN(
        model.input_shape,
        fc.out_features,
        channels=fc.in_features,
        blocks=len(model.blocks),
        kernel_size=model.kernel_size,
        stride=model.stride,
        dropout=0.0,
    )
    state = {}
    for name, layer in plain.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            source = _float_layer(model.get_submodule(name))
            state.update(
                {
                    f"{name}.{key}": getattr(source, key)
                    for key in ("weight", "bias")
                    if getattr(source, key) is not None
                }
            )
        elif isinstance(layer, nn.BatchNorm2d):
            state.update({f"{name}.{key}": value for key, value in model.get_submodule(name).state_dict().items()})
    try:
        plain.load_state_dict(
            {k: v.detach().cpu().float() if v.is_floating_point() else v.cpu() for k, v in state.items()}
        )
    except RuntimeError as err:
        raise ExportError(f"the model's layers do not fit DSCNN's shape rules: {err}") from err
    plain.eval()
    plain.conv, plain.bn = fold_batch_norm(plain.conv, plain.bn), nn.Identity()
    for block in plain.blocks:
        block.depthwise, block.bn1 = fold_batch_norm(block.depthwise, block.bn1), nn.Identity()
        block.pointwise, block.bn2 = fold_batch_norm(block.pointwise, block.bn2), nn.Identity()
    return plain.eval()


class DSCNNGraph(nn.Module):
    """A BN-folded DSCNN (:func:`float_dscnn`) rewritten, exactly, into what onnx2tf converts
    without layout glue:

    - the flat input reshaped to NHWC and transposed to NCHW, as in :class:`TFLiteGraph`;
    - every convolution TensorFlow 'SAME' where it can be (``same_padding_convs``): the first one
      gets zero taps appended, the 3x3 depthwise (padding 1) and 1x1 pointwise (padding 0) are
      'SAME' as they are;
    - the pool an ONNX AveragePool over the whole map (TFLite AVERAGE_POOL_2D, a CMSIS-NN
      kernel), its [N, C, 1, 1] output flattened as it is: at one position channel-last is
      channel-major, so the classifier needs no permutation.
    """

    def __init__(self, model: DSCNN):
        super().__init__()
        if not all(
            isinstance(bn, nn.Identity)
            for bn in (model.bn, *(b for block in model.blocks for b in (block.bn1, block.bn2)))
        ):
            raise ExportError("DSCNNGraph takes a DSCNN with its BatchNorm folded (kws.export.graph.float_dscnn)")
        self.frames, self.features = model.input_shape
        convs, sizes = [model.conv], [model.input_shape]
        for block in model.blocks:
            convs += [block.depthwise, block.pointwise]
            sizes += [model.feature_map()] * 2
        self.convs, self.same_padding_convs = nn.ModuleList(), []
        for conv, size in zip(convs, sizes):
            taps = [
                same_padding_taps(n, k, s, p) for n, k, s, p in zip(size, conv.kernel_size, conv.stride, conv.padding)
            ]
            same = None not in taps
            weight = nn.functional.pad(conv.weight.detach(), (0, taps[1], 0, taps[0])) if same else conv.weight.detach()
            rewritten = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                tuple(weight.shape[2:]),
                stride=conv.stride,
                padding=conv.padding,
                groups=conv.groups,
            )
            rewritten.weight.data.copy_(weight)
            rewritten.bias.data.copy_(conv.bias.detach())
            self.convs.append(rewritten)
            self.same_padding_convs.append(same)
        self.pool = tuple(model.pool.kernel_size)
        self.fc = nn.Linear(model.fc.in_features, model.fc.out_features)
        self.fc.load_state_dict(model.fc.state_dict())

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(-1, self.frames, self.features, 1).permute(0, 3, 1, 2)
        for conv in self.convs:
            x = torch.relu(conv(x))
        # No padding here, so count_include_pad changes nothing; False keeps onnx2tf from adding
        # STRIDED_SLICE ops (it rescales a count_include_pad pool whose kernel is not square).
        x = nn.functional.avg_pool2d(x, self.pool, count_include_pad=False)
        return self.fc(x.permute(0, 2, 3, 1).reshape(-1, self.fc.in_features))


def tflite_graph(model: nn.Module) -> nn.Module:
    """The onnx2tf-friendly rewrite of a plain float model (:func:`plain_float_model`)."""
    if isinstance(model, TinyConv):
        return TFLiteGraph(model)
    if isinstance(model, DSCNN):
        return DSCNNGraph(model)
    raise ExportError(f"export supports TinyConv and DSCNN models, got {type(model).__name__}")


def export_onnx(model: nn.Module, path: Path) -> None:
    """A plain float model (:func:`plain_float_model`) as ONNX (opset 17, ``features``
    [N, frames * features] -> ``logits``), through :func:`tflite_graph`; checked with onnx.checker."""
    import onnx

    graph = tflite_graph(model).eval()
    example = torch.zeros(1, model.input_shape[0] * model.input_shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
            dynamo=False,
        )
    proto = onnx.load(str(path))
    convs = [node for node in proto.graph.node if node.op_type == "Conv"]
    if len(convs) != len(graph.same_padding_convs):
        raise ExportError(
            f"the ONNX graph has {len(convs)} Conv nodes, the model {len(graph.same_padding_convs)} convolutions"
        )
    for conv, same in zip(convs, graph.same_padding_convs):
        if same:
            del conv.attribute[[a.name for a in conv.attribute].index("pads")]
            conv.attribute.append(onnx.helper.make_attribute("auto_pad", "SAME_UPPER"))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"the exported ONNX graph is invalid: {err}") from err
    onnx.save(proto, str(path))
