"""DS-CNN: the depthwise-separable CNN of MLPerf Tiny's keyword-spotting benchmark (ARM's "Hello
Edge" DS-CNN-S), a larger model beside TinyConv.

Reference: ``mlcommons/tiny`` ``benchmark/training/keyword_spotting/keras_model.py`` (``ds_cnn``):
Conv 10x4 stride 2 ('same') with 64 filters + BN + ReLU, then 4 x [depthwise 3x3 + BN + ReLU,
pointwise 1x1 + BN + ReLU], dropout, an average pool over the whole map, dense to the classes.
Written here in PyTorch; the one change is the first convolution's frequency axis (below).
"""

from __future__ import annotations

from torch import Tensor, nn


def same_output_padding(size: int, kernel: int, stride: int) -> int:
    """The symmetric padding that gives TensorFlow 'SAME''s output length, ceil(size / stride):
    the larger half of 'SAME''s total padding (the export appends zero taps to the kernel so that
    'SAME' pads exactly this much first; :func:`kws.export.graph.same_padding_taps`)."""
    out = -(-size // stride)
    return -(-max((out - 1) * stride + kernel - size, 0) // 2)


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 (one filter per channel, 'same') + BN + ReLU, then pointwise 1x1 + BN + ReLU.
    The convolutions have no bias: the BatchNorm that follows has its own (folded at export)."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        self.depthwise = nn.Conv2d(
            channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=False
        )
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu2(self.bn2(self.pointwise(self.relu1(self.bn1(self.depthwise(x))))))


class DSCNN(nn.Module):
    """MLPerf Tiny's DS-CNN for flat features ``[N, frames * features]`` (as TinyConv takes them).

    Conv2d(1, C, (10, 8), stride (2, 8)) + BN + ReLU -> ``blocks`` x :class:`DepthwiseSeparable`
    -> Dropout -> average pool over the whole map -> Linear(C, classes).

    The first convolution: MLPerf's runs a 10x4 kernel at stride 2 over 49 x 10 MFCCs, giving a
    25 x 5 map. Our front end gives 40 filterbank channels; stride 2 there would give 25 x 20, four
    times the activations (32,000 int8 bytes per 64-channel tensor, two live at once: more than
    the firmware's 64 KB of RAM). A 10x8 kernel at stride (2, 8) reads 8 channels per column and
    gives MLPerf's 25 x 5 map, so the rest of the network, its MACs and its activations are
    MLPerf's. Time axis: 'same' (padding 5, the export makes it TensorFlow 'SAME'); frequency:
    'valid' (8 divides 40).

    Sizes for 49 x 40 inputs, 4 classes, ``channels`` 64 (MLPerf's width, the default): 25,220
    parameters (5,120 first conv, 4 x 4,928 depthwise-separable blocks, 260 classifier, 640 BN
    scales and shifts; BN running statistics are buffers, not parameters). MLPerf's 12-class
    Keras model counts 24,908 (with biases in every conv and BN statistics). Folded for export
    (BN into the convolutions): 24,644 weights and biases, the int8 model's; 2,976,256
    multiply-accumulates per inference (first conv 640,000, each block 584,000, classifier 256).
    Width 48: 15,844 parameters.
    """

    def __init__(
        self,
        input_shape: tuple[int, int] = (49, 40),
        num_classes: int = 4,
        channels: int = 64,
        blocks: int = 4,
        kernel_size: tuple[int, int] = (10, 8),
        stride: tuple[int, int] = (2, 8),
        dropout: float = 0.5,
    ):
        super().__init__()
        if len(input_shape) != 2 or min(input_shape) <= 0:
            raise ValueError(f"input_shape must be (frames, features), got {input_shape}")
        if num_classes < 2 or channels < 1 or blocks < 0:
            raise ValueError(
                f"need num_classes >= 2, channels >= 1 and blocks >= 0, got {num_classes}, {channels}, {blocks}"
            )
        if min(kernel_size) < 1 or min(stride) < 1:
            raise ValueError(f"kernel_size and stride must be positive, got {kernel_size}, {stride}")
        self.input_shape = tuple(input_shape)
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        padding = tuple(
            same_output_padding(n, k, s) for n, k, s in zip(self.input_shape, self.kernel_size, self.stride)
        )
        self.conv = nn.Conv2d(1, channels, self.kernel_size, stride=self.stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.blocks = nn.Sequential(*(DepthwiseSeparable(channels) for _ in range(blocks)))
        self.dropout = nn.Dropout(dropout)
        # A fixed window over the whole map rather than an adaptive pool: ONNX AveragePool,
        # which onnx2tf maps to TFLite's AVERAGE_POOL_2D (a CMSIS-NN kernel), not MEAN.
        self.pool = nn.AvgPool2d(self.feature_map())
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def feature_map(self) -> tuple[int, int]:
        """(H', W') of the first convolution's output, which the blocks keep."""
        return tuple(-(-n // s) for n, s in zip(self.input_shape, self.stride))

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], 1, *self.input_shape)
        x = self.blocks(self.relu(self.bn(self.conv(x))))
        return self.fc(self.flatten(self.pool(self.dropout(x))))
