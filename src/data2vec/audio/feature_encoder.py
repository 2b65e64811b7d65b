"""The speech front end: raw waveform -> frames.

ConvFeatureEncoder    stack of strided 1-D convolutions, each followed by LayerNorm over channels
                      and an activation (one frame per ``prod(conv_stride)`` samples)
FeatureProjection     LayerNorm -> Linear -> dropout, from conv channels to the transformer width
PositionalConvStack   ``num_conv_pos_embeddings`` grouped convolutions over time that together give
                      the relative position signal added to the frames before the transformer

Plus the conv arithmetic that maps a number of samples to a number of frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.layers import activation
from .config import Data2VecAudioConfig


# ---------------------------------------------------------------------------- conv arithmetic
def conv_output_length(length, kernel_size: int, stride: int, padding: int = 0):
    """Frames out of one Conv1d without dilation; ``length`` is an int or an integer tensor."""
    if isinstance(length, torch.Tensor):
        return torch.div(length + 2 * padding - kernel_size, stride, rounding_mode="floor") + 1
    return (length + 2 * padding - kernel_size) // stride + 1


def feature_encoder_output_length(length, config: Data2VecAudioConfig, include_adapter: bool = False):
    """Frames that ``length`` samples give after the conv feature encoder (and the adapter's strided
    convolutions when ``include_adapter``). Works on ints and on integer tensors of lengths."""
    for kernel_size, stride in zip(config.conv_kernel, config.conv_stride):
        length = conv_output_length(length, kernel_size, stride)
    if include_adapter:
        for _ in range(config.num_adapter_layers):
            length = conv_output_length(length, config.adapter_kernel_size, config.adapter_stride, padding=1)
    return length


def minimum_input_length(config: Data2VecAudioConfig, include_adapter: bool = False, frames: int = 1) -> int:
    """The fewest samples that give ``frames`` output frames. For one frame this is the receptive
    field of the conv encoder (400 samples, 25 ms at 16 kHz, for the official checkpoints)."""
    needed = frames  # frames wanted at the output of the current layer, walking backwards
    if include_adapter:
        for _ in range(config.num_adapter_layers):
            needed = max(config.adapter_kernel_size + (needed - 1) * config.adapter_stride - 2, 1)
    for kernel_size, stride in zip(reversed(config.conv_kernel), reversed(config.conv_stride)):
        needed = kernel_size + (needed - 1) * stride
    return needed


# ---------------------------------------------------------------------------- modules
class ConvLayer(nn.Module):
    """Conv1d -> LayerNorm over channels -> activation, on (batch, frames, channels).

    The convolution runs as a 2-D one over a (batch, channels, 1, frames) view in channels-last
    memory, which is the (batch, frames, channels) layout: it reads its input and writes its
    output in the layout that the LayerNorm over channels and the activation read without a copy
    (a 1-D convolution in (batch, channels, frames) needs a transpose copy on each side; this
    halves the feature encoder's time on the CPU). The parameters are the Conv1d's."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, bias: bool, act: str) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size=kernel_size, stride=stride, bias=bias)
        self.norm = nn.LayerNorm(out_channels)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, frames, channels) -> (batch, frames', out_channels), contiguous."""
        weight = self.conv.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (out, in, 1, kernel)
        x = F.conv2d(x.transpose(1, 2).unsqueeze(2), weight, self.conv.bias, stride=(1, self.conv.stride[0]))
        return self.act(self.norm(x.squeeze(2).transpose(1, 2)))


class ConvFeatureEncoder(nn.Module):
    """(batch, samples) waveform -> (batch, frames, conv_dim[-1])."""

    def __init__(self, config: Data2VecAudioConfig) -> None:
        super().__init__()
        in_channels: Sequence[int] = [1, *config.conv_dim[:-1]]
        self.layers = nn.ModuleList(
            ConvLayer(inputs, outputs, kernel, stride, config.conv_bias, config.feat_extract_activation)
            for inputs, outputs, kernel, stride in zip(in_channels, config.conv_dim, config.conv_kernel, config.conv_stride)
        )

    def freeze(self) -> None:
        for parameter in self.parameters():
            parameter.requires_grad = False

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        x = input_values[:, :, None]  # (batch, samples, 1)
        for layer in self.layers:
            x = layer(x)
        return x  # (batch, frames, channels)


class FeatureProjection(nn.Module):
    """Returns (projected frames (batch, frames, hidden), normalised conv features (batch, frames, channels))."""

    def __init__(self, config: Data2VecAudioConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps)
        self.linear = nn.Linear(config.conv_dim[-1], config.hidden_size)
        self.dropout = nn.Dropout(config.feat_proj_dropout)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normalised = self.norm(features)
        return self.dropout(self.linear(normalised)), normalised


class PositionalConvLayer(nn.Module):
    """Grouped 'same' convolution over time -> LayerNorm without affine parameters -> activation,
    on (batch, frames, hidden), run in channels-last memory as ``ConvLayer`` is. An even kernel
    gives one frame too many with padding ``kernel // 2``; the last one is dropped."""

    def __init__(self, config: Data2VecAudioConfig) -> None:
        super().__init__()
        kernel_size = config.conv_pos_kernel_size
        self.conv = nn.Conv1d(
            config.hidden_size,
            config.hidden_size,
            kernel_size=kernel_size,
            padding=kernel_size // 2,
            groups=config.num_conv_pos_embedding_groups,
        )
        self.frames_to_drop = 1 if kernel_size % 2 == 0 else 0
        self.norm = nn.LayerNorm(config.hidden_size, elementwise_affine=False)
        self.act = activation(config.feat_extract_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, frames, hidden) -> (batch, frames, hidden)."""
        weight = self.conv.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (out, in/groups, 1, k)
        x = F.conv2d(
            x.transpose(1, 2).unsqueeze(2), weight, self.conv.bias,
            padding=(0, self.conv.padding[0]), groups=self.conv.groups,
        ).squeeze(2).transpose(1, 2)  # (batch, frames [+ 1], hidden)
        if self.frames_to_drop:
            x = x[:, : -self.frames_to_drop]
        return self.act(self.norm(x))


class PositionalConvStack(nn.Module):
    """(batch, frames, hidden) -> the positional signal of the same shape (added by the caller)."""

    def __init__(self, config: Data2VecAudioConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(PositionalConvLayer(config) for _ in range(config.num_conv_pos_embeddings))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x = hidden_states
        for layer in self.layers:
            x = layer(x)
        return x
