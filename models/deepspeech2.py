"""Deep Speech 2 (Amodei et al., 2016) as pruned by Narang et al. (ICLR 2017): conv front-end, recurrent stack,
optional row convolution, fully connected layer, output projection to the CTC symbols.

Parameter names are part of the interface: the pruning code selects input matrices by ``weight_ih``, recurrent
matrices by ``weight_hh`` and the fully connected matrix as ``fc.linear.weight``.
"""
from __future__ import annotations

import torch
from torch import nn

from models.layers import ConvBlock, FullyConnected, Lookahead, time_mask
from models.rnn import make_rnn_layer


class DeepSpeech2(nn.Module):
    """features (batch, num_features, T) -> CTC log-probabilities (batch, T', num_classes).

    num_features: input frequency bins (161 for DS2's linear spectrogram).
    num_classes: output symbols including the CTC blank (29 for characters).
    conv_channels, conv_kernels, conv_strides: one entry per conv layer; kernels and strides as (freq, time).
    rnn_type: "rnn" (DS2 clipped-ReLU RNN), "gru" or "lstm".
    rnn_hidden_size, num_rnn_layers, bidirectional: the recurrent stack (directions summed, width rnn_hidden_size).
    lookahead_context: future frames of DS2's row convolution after the stack (0 = none; unidirectional only).
    fc_hidden_size: width of the fully connected layer (0 = none).
    relu_clip: the clipped ReLU's ceiling.
    dropout: training-time dropout on the input of recurrent layers 2..n, of the FC layer and of the output layer
        (not in the paper; a regulariser for small corpora). Padded frames stay zero.
    """

    def __init__(
        self, num_features: int, num_classes: int, conv_channels: list[int], conv_kernels: list[list[int]],
        conv_strides: list[list[int]], rnn_type: str, rnn_hidden_size: int, num_rnn_layers: int,
        bidirectional: bool, lookahead_context: int, fc_hidden_size: int, relu_clip: float = 20.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not conv_channels or not len(conv_channels) == len(conv_kernels) == len(conv_strides):
            raise ValueError("conv_channels, conv_kernels and conv_strides need one entry per conv layer (1 or more)")
        if num_rnn_layers < 1:
            raise ValueError(f"num_rnn_layers must be at least 1, got {num_rnn_layers}")
        if lookahead_context and bidirectional:
            raise ValueError("lookahead_context is for unidirectional models only")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers = zip([1, *conv_channels[:-1]], conv_channels, conv_kernels, conv_strides, strict=True)
        self.conv = nn.ModuleList(ConvBlock(*args, relu_clip) for args in layers)
        freq = num_features
        for block in self.conv:
            freq = block.output_size(freq, dim=0)
        sizes = [conv_channels[-1] * freq] + [rnn_hidden_size] * num_rnn_layers
        self.rnns = nn.ModuleList(
            make_rnn_layer(rnn_type, size, rnn_hidden_size, bidirectional, relu_clip) for size in sizes[:-1]
        )
        self.lookahead = Lookahead(rnn_hidden_size, lookahead_context) if lookahead_context else None
        self.fc = FullyConnected(rnn_hidden_size, fc_hidden_size, relu_clip) if fc_hidden_size else None
        self.output = nn.Linear(fc_hidden_size or rnn_hidden_size, num_classes)
        self.dropout = nn.Dropout(dropout)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(batch,) input frames -> (batch,) output frames, from the conv modules' own time arithmetic."""
        for block in self.conv:
            lengths = block.output_size(lengths, dim=1)
        return lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features: (batch, num_features, T) float, lengths: (batch,) long
        -> (log_probs (batch, T', num_classes), out_lengths (batch,) long)."""
        x = (features * time_mask(lengths, features.shape[-1]).t()[:, None]).unsqueeze(1)  # (batch, 1, F, T)
        for block in self.conv:
            x, lengths = block(x, lengths)  # (batch, C, F', T')
        batch, channels, freq, steps = x.shape
        x = x.permute(3, 0, 1, 2).reshape(steps, batch, channels * freq)  # (T', batch, C * F')
        mask = time_mask(lengths, steps)  # (T', batch)
        for index, rnn in enumerate(self.rnns):
            x = rnn(x if index == 0 else self.dropout(x), lengths, mask)  # (T', batch, H)
        if self.lookahead is not None:
            x = self.lookahead(x)
        if self.fc is not None:
            x = self.fc(self.dropout(x), mask)  # (T', batch, fc_hidden_size)
        log_probs = self.output(self.dropout(x)).log_softmax(dim=-1)  # (T', batch, num_classes)
        return log_probs.transpose(0, 1), lengths
