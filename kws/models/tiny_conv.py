"""Keyword-spotting models. ``TinyConv`` is TensorFlow micro_speech's ``tiny_conv``."""

from __future__ import annotations

from torch import Tensor, nn


class TinyConv(nn.Module):
    """One strided convolution and one fully connected layer: micro_speech's model.

    Input: flat features ``[N, frames * features]`` (how the firmware hands them over), reshaped
    to ``[N, 1, frames, features]``. Conv2d(1, C, (10, 8), stride 2, padding (5, 3)) -> ReLU ->
    Dropout -> Linear(C * H' * W', classes). For 49 x 40 inputs and 4 classes: 8 x 25 x 20 = 4000
    inputs to the classifier and 16,652 parameters.

    Symmetric padding rather than TensorFlow's asymmetric 'SAME' keeps the graph a plain Conv
    that onnx2tf converts without layout guessing.
    """

    def __init__(
        self,
        input_shape: tuple[int, int] = (49, 40),
        num_classes: int = 4,
        channels: int = 8,
        kernel_size: tuple[int, int] = (10, 8),
        stride: int = 2,
        dropout: float = 0.5,
    ):
        super().__init__()
        if len(input_shape) != 2 or min(input_shape) <= 0:
            raise ValueError(f"input_shape must be (frames, features), got {input_shape}")
        if num_classes < 2 or channels < 1:
            raise ValueError(f"need num_classes >= 2 and channels >= 1, got {num_classes}, {channels}")
        self.input_shape = tuple(input_shape)
        padding = (kernel_size[0] // 2, (kernel_size[1] - 1) // 2)
        self.conv = nn.Conv2d(1, channels, kernel_size, stride=stride, padding=padding)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.flatten = nn.Flatten()  # channel-major: channel c owns columns c*H'*W' ... (c+1)*H'*W'-1
        self.fc = nn.Linear(channels * self.conv_output_size(), num_classes)

    def conv_output_size(self) -> int:
        """H' * W' of one conv output channel."""
        (kh, kw), (ph, pw), (s, _) = self.conv.kernel_size, self.conv.padding, self.conv.stride
        h = (self.input_shape[0] + 2 * ph - kh) // s + 1
        w = (self.input_shape[1] + 2 * pw - kw) // s + 1
        return h * w

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], 1, *self.input_shape)
        return self.fc(self.flatten(self.dropout(self.relu(self.conv(x)))))
