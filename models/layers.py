"""Building blocks of Deep Speech 2 (Amodei et al., 2016) that respect sequence lengths.

Every block takes the valid-frame mask of its input and returns padded frames set to zero, so that an utterance
gives the same output alone and inside a padded batch (docs/pitfalls.md item 8).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def clipped_relu(x: torch.Tensor, clip: float) -> torch.Tensor:
    """DS2's activation min(max(x, 0), clip)."""
    return F.hardtanh(x, 0.0, clip)


def time_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(batch,) lengths -> (max_length, batch) bool mask, True on valid frames."""
    return torch.arange(max_length, device=lengths.device)[:, None] < lengths[None, :]


def masked_batch_norm(norm: nn.BatchNorm1d, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sequence-wise batch normalisation (DS2 section 3.2): statistics over valid frames only.

    x: (*mask.shape, C) or (*mask.shape, C, L) with channels C (a trailing L is pooled into the statistics, as
    BatchNorm2d pools height and width); mask: bool, True on valid frames. The valid frames are gathered into
    (num_valid, C[, L]) and go through ``norm`` (so training updates its running statistics exactly as
    nn.BatchNorm does); padded frames of the result are 0.
    """
    return x.new_zeros(x.shape).index_put((mask,), norm(x[mask]))


def phase_split_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                       padding: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d(x, weight, stride=stride, padding=padding)`` computed as a stride-1 convolution (space-to-depth).

    x: (batch, C, F, T), weight: (C_out, C, kF, kT) -> (batch, C_out, F', T') with F' = (F + 2 pF - kF) // sF + 1
    (and T' alike). With the input zero-padded, output frame i is sum_k w[k] x[s i + k]; writing k = s j + r,
    it is sum_r sum_j w[s j + r] x[s (i + j) + r]: a stride-1 convolution of the s phases x[s m + r] (stacked as
    channels) with the phase kernels w[s j + r], each ceil(k / s) taps long (zero taps pad w to a multiple of s).
    So the result equals the strided convolution's up to float rounding, with C sF sT input channels.
    """
    batch, channels, *size = x.shape
    out_channels, _, *kernel = weight.shape
    out_size = [(n + 2 * p - k) // s + 1 for n, p, k, s in zip(size, padding, kernel, stride)]
    taps = [-(-k // s) for k, s in zip(kernel, stride)]
    span = [s * (o - 1 + t) for s, o, t in zip(stride, out_size, taps)]  # input frames the output reads
    # F.pad's last pair pads the last dimension; a negative right pad drops frames no output reads.
    x = F.pad(x, (padding[1], span[1] - size[1] - padding[1], padding[0], span[0] - size[0] - padding[0]))
    (stride_f, stride_t), (taps_f, taps_t) = stride, taps
    x = x.reshape(batch, channels, span[0] // stride_f, stride_f, span[1] // stride_t, stride_t)
    x = x.permute(0, 1, 3, 5, 2, 4).reshape(batch, channels * stride_f * stride_t, span[0] // stride_f, -1)
    weight = F.pad(weight, (0, taps_t * stride_t - kernel[1], 0, taps_f * stride_f - kernel[0]))
    weight = weight.reshape(out_channels, channels, taps_f, stride_f, taps_t, stride_t)
    weight = weight.permute(0, 1, 3, 5, 2, 4).reshape(out_channels, channels * stride_f * stride_t, taps_f, taps_t)
    channels_last = torch.channels_last
    return F.conv2d(x.contiguous(memory_format=channels_last), weight.contiguous(memory_format=channels_last))


class ConvBlock(nn.Module):
    """Conv2d over (frequency, time) + batch norm + clipped ReLU, with "same"-style padding of k // 2 per side.

    Output sizes follow the conv module's own kernel, stride, padding and dilation (floor arithmetic).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: list[int], stride: list[int], relu_clip: float):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, tuple(kernel), tuple(stride), padding=(kernel[0] // 2, kernel[1] // 2),
            bias=False,  # the batch norm's shift replaces it
        )
        self.norm = nn.BatchNorm1d(out_channels)
        self.relu_clip = relu_clip

    def output_size(self, size: int | torch.Tensor, dim: int) -> int | torch.Tensor:
        """Output size along ``dim`` (0 = frequency, 1 = time) of an input of ``size`` frames or bins."""
        conv = self.conv
        span = conv.dilation[dim] * (conv.kernel_size[dim] - 1) + 1
        return (size + 2 * conv.padding[dim] - span) // conv.stride[dim] + 1

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        """The bare convolution, (batch, C_in, F, T) -> (batch, C_out, F', T').

        On a CPU, oneDNN (torch's default convolution there) is slow for this front-end in its plain layout. The
        same convolution runs as a stride-1 convolution over the stride phases (``phase_split_conv2d``) for a
        single-channel input, and in the channels-last layout otherwise. Forward and backward on 20 x 3 s, against
        plain oneDNN: 34.9 instead of 177.7 ms in ds2_rnn_small's 41x11 first layer, 72.8 instead of 129.6 ms in
        its 21x11 second one; on 1 x 4 s, 3.2 ms in the first against 179.6 (oneDNN) and 19.7 (torch's native
        kernel). 2 threads, torch 2.14.1, AMD EPYC; ``scripts/bench_conv.py``, docs/results.md. GPUs keep cuDNN's
        own choice.
        """
        conv = self.conv
        if x.device.type != "cpu":
            return conv(x)
        if conv.in_channels == 1:
            return phase_split_conv2d(x, conv.weight, conv.stride, conv.padding)
        channels_last = torch.channels_last
        return F.conv2d(x.contiguous(memory_format=channels_last), conv.weight.contiguous(memory_format=channels_last),
                        None, conv.stride, conv.padding)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (batch, C_in, F, T), zero beyond ``lengths`` -> ((batch, C_out, F', T') zero beyond the new lengths,
        new lengths (batch,))."""
        x = self.convolve(x)
        lengths = self.output_size(lengths, dim=1)
        mask = time_mask(lengths, x.shape[-1]).t()  # (batch, T')
        x = masked_batch_norm(self.norm, x.permute(0, 3, 1, 2), mask)  # (batch, T', C_out, F')
        return clipped_relu(x, self.relu_clip).permute(0, 2, 3, 1), lengths


class FullyConnected(nn.Module):
    """DS2's fully connected layer: Linear without bias + sequence-wise batch norm + clipped ReLU.

    Parameters in*out + 2*out (the paper counts h*h + 2h for in = out = h).
    """

    def __init__(self, in_features: int, out_features: int, relu_clip: float):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.norm = nn.BatchNorm1d(out_features)
        self.relu_clip = relu_clip

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (T, batch, in), mask: (T, batch) -> (T, batch, out), zero on padded frames."""
        return clipped_relu(masked_batch_norm(self.norm, self.linear(x), mask), self.relu_clip)


class Lookahead(nn.Module):
    """DS2's row convolution (section 3.5) for unidirectional models: r_t = sum_{j=0..context} W_j * h_{t+j},
    depthwise (one filter row per feature), future frames only; frames past an utterance's end count as 0."""

    def __init__(self, num_features: int, context: int):
        super().__init__()
        self.context = context
        self.conv = nn.Conv1d(num_features, num_features, context + 1, groups=num_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (T, batch, H), zero on padded frames (as the recurrent layers return it) -> (T, batch, H), zero on
        padded frames too (no bias, and a padded frame only sees later, padded frames)."""
        x = self.conv(F.pad(x.permute(1, 2, 0), (0, self.context)))  # (batch, H, T + context) -> (batch, H, T)
        return x.permute(2, 0, 1)
