"""Recurrent layers of Deep Speech 2. Each maps (T, batch, in) -> (T, batch, H) and respects sequence lengths.

"rnn": DS2's vanilla RNN (Amodei et al. 2016, eq. 3 and section 3.2), as in Narang et al. 2017:
    h_fwd_t = min(max(BN(W x)_t + U_fwd h_fwd_{t-1} + b_fwd, 0), clip), h_bwd_t likewise backwards in time with
    U_bwd and b_bwd; the input matrix W is shared by both directions and the output is h_fwd + h_bwd.
cuDNN has no clipped ReLU, so the recurrence is written here (``ClippedRecurrence``).
"gru" / "lstm": torch's fused nn.GRU / nn.LSTM on packed sequences, directions summed.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.layers import masked_batch_norm


class ClippedRecurrence(torch.autograd.Function):
    """h_t = min(max(inputs_t + h_{t-1} U^T, 0), clip) with h_{-1} = 0, for D independent directions at once.

    Forward: one batched matmul (torch.baddbmm over the D directions) per step, written into a preallocated
    output. Backward (hand-written, through time): per step one bmm for the carried gradient; the gradient of U
    is a single contraction over all steps afterwards. The clip mask comes from the outputs, so only the outputs
    are kept for backward.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # fp32 recurrence under autocast
    def forward(ctx, inputs: torch.Tensor, weight_hh_t: torch.Tensor, clip: float) -> torch.Tensor:
        """inputs: (T, D, batch, H) = W x_t + b per direction; weight_hh_t: (D, H, H) = U^T per direction
        -> hidden states (T, D, batch, H)."""
        hidden = torch.empty_like(inputs)
        hidden[0] = inputs[0].clamp(0.0, clip)
        for t in range(1, inputs.shape[0]):
            torch.baddbmm(inputs[t], hidden[t - 1], weight_hh_t, out=hidden[t]).clamp_(0.0, clip)
        ctx.save_for_backward(hidden, weight_hh_t)
        ctx.clip = clip
        return hidden

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        """grad_hidden: (T, D, batch, H) -> (grad of inputs (T, D, batch, H), grad of weight_hh_t (D, H, H), None)."""
        hidden, weight_hh_t = ctx.saved_tensors
        active = (hidden > 0) & (hidden < ctx.clip)  # d h_t / d pre_t, (T, D, batch, H)
        weight_hh = weight_hh_t.transpose(1, 2)  # (D, H, H) = U
        grad_pre = torch.empty_like(hidden)
        carry = torch.zeros_like(hidden[0])  # dL/dh_t through h_{t+1}, (D, batch, H)
        for t in range(hidden.shape[0] - 1, -1, -1):
            torch.add(grad_hidden[t], carry, out=grad_pre[t]).mul_(active[t])
            if t:
                torch.bmm(grad_pre[t], weight_hh, out=carry)
        # dL/dU^T = sum_t h_{t-1}^T grad_pre_t, per direction
        grad_weight = torch.einsum("tdbi,tdbj->dij", hidden[:-1], grad_pre[1:])
        return grad_pre, grad_weight, None


def reverse_index(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(T, batch) time index that reverses each sequence within its length and leaves padded frames in place:
    t -> length - 1 - t for t < length. It is its own inverse."""
    t = torch.arange(max_length, device=lengths.device)[:, None]  # (T, 1)
    return torch.where(t < lengths, lengths - 1 - t, t)


def gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x: (T, batch, H), index: (T, batch) -> (T, batch, H) with out[t, b] = x[index[t, b], b]."""
    return x.gather(0, index[..., None].expand_as(x))


class DS2RNN(nn.Module):
    """DS2 vanilla RNN layer with clipped ReLU (module docstring). Parameters: weight_ih (H, in); per direction
    weight_hh_fwd / weight_hh_bwd (H, H) and bias_fwd / bias_bwd (H,); the batch norm of W x (2 H).
    A bidirectional layer has in*H + 2*H*H + 2*H + 2*H parameters."""

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool, relu_clip: float):
        super().__init__()
        self.directions = ("fwd", "bwd") if bidirectional else ("fwd",)
        self.relu_clip = relu_clip
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.norm = nn.BatchNorm1d(hidden_size)
        for direction in self.directions:
            self.register_parameter(f"weight_hh_{direction}", nn.Parameter(torch.empty(hidden_size, hidden_size)))
            self.register_parameter(f"bias_{direction}", nn.Parameter(torch.empty(hidden_size)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)) for all matrices and biases, as torch's nn.RNN."""
        bound = 1.0 / math.sqrt(self.weight_ih.shape[0])
        for param in self.parameters(recurse=False):
            nn.init.uniform_(param, -bound, bound)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (T, batch, in), lengths: (batch,), mask: (T, batch) -> h_fwd + h_bwd: (T, batch, H), 0 on padding."""
        wx = masked_batch_norm(self.norm, nn.functional.linear(x, self.weight_ih), mask)  # (T, batch, H)
        reverse = reverse_index(lengths, x.shape[0]) if len(self.directions) == 2 else None
        inputs = torch.stack([
            (wx if d == "fwd" else gather_time(wx, reverse)) + getattr(self, f"bias_{d}") for d in self.directions
        ], dim=1)  # (T, D, batch, H); the backward direction runs forwards over each reversed sequence
        weight_hh_t = torch.stack([getattr(self, f"weight_hh_{d}").t() for d in self.directions])  # (D, H, H)
        hidden = ClippedRecurrence.apply(inputs, weight_hh_t, self.relu_clip)  # (T, D, batch, H)
        out = hidden[:, 0] if reverse is None else hidden[:, 0] + gather_time(hidden[:, 1], reverse)
        return out * mask[..., None]


class FusedRNN(nn.Module):
    """torch's fused nn.GRU / nn.LSTM (parameters untouched, so cuDNN keeps its flat weights) on packed sequences,
    after a sequence-wise batch norm of the input; a bidirectional layer sums its two directions."""

    def __init__(self, rnn_class: type[nn.RNNBase], input_size: int, hidden_size: int, bidirectional: bool):
        super().__init__()
        self.norm = nn.BatchNorm1d(input_size)
        self.rnn = rnn_class(input_size, hidden_size, bidirectional=bidirectional)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (T, batch, in), lengths: (batch,), mask: (T, batch) -> (T, batch, H), 0 on padding."""
        packed = pack_padded_sequence(masked_batch_norm(self.norm, x, mask), lengths.cpu(), enforce_sorted=False)
        out, _ = pad_packed_sequence(self.rnn(packed)[0], total_length=x.shape[0])  # (T, batch, D * H)
        num_directions = 2 if self.rnn.bidirectional else 1
        return out.view(*out.shape[:2], num_directions, -1).sum(dim=2)


RNN_LAYERS: dict[str, Callable[[int, int, bool, float], nn.Module]] = {
    "rnn": DS2RNN,
    "gru": lambda input_size, hidden_size, bidirectional, relu_clip: FusedRNN(
        nn.GRU, input_size, hidden_size, bidirectional),
    "lstm": lambda input_size, hidden_size, bidirectional, relu_clip: FusedRNN(
        nn.LSTM, input_size, hidden_size, bidirectional),
}


def make_rnn_layer(
    rnn_type: str, input_size: int, hidden_size: int, bidirectional: bool, relu_clip: float
) -> nn.Module:
    """The recurrent layer named ``rnn_type`` ("rnn", "gru" or "lstm"); raises ValueError on other names."""
    if rnn_type not in RNN_LAYERS:
        raise ValueError(f"unknown rnn_type {rnn_type!r}; expected one of {sorted(RNN_LAYERS)}")
    return RNN_LAYERS[rnn_type](input_size, hidden_size, bidirectional, relu_clip)
