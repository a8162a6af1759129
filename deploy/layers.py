"""Inference-only layers of the deploy runtime: the DS2 RNN, GRU and fully connected layers of models/ with their
matrices in sparse form, each running the sparse kernel or the dense product, whichever the shared Planner
measured to be faster for the layer and the batch's column count.

Same interface and numbers as the modules they replace (models/rnn.py DS2RNN and FusedRNN(nn.GRU),
models/layers.py FullyConnected): (T, batch, in) -> (T, batch, out), zero on padded frames. The batch norms are
the loaded modules themselves, in eval mode. The dense path's matrix is materialised from the sparse one the
first time it is needed (or measured) and then kept.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from deploy import kernels
from deploy.planner import Planner, column_bucket, sparse_candidates
from deploy.sparse import SparseMatrix, as_csr, block_diagonal
from models.layers import clipped_relu, masked_batch_norm
from models.rnn import ClippedRecurrence, gather_time, reverse_index

PLAN_STEPS = 8  # a recurrence's sparse/dense choice is measured on its first PLAN_STEPS steps


def stacked_directions(matrices: list[SparseMatrix]) -> SparseMatrix:
    """One block-diagonal matrix over the directions (CSR when their shapes are not whole blocks)."""
    try:
        return block_diagonal(matrices)
    except ValueError:
        return block_diagonal([as_csr(m) for m in matrices])


def diagonal_blocks(matrix: SparseMatrix, directions: int) -> list[torch.Tensor]:
    """The dense per-direction matrices on the diagonal of a ``stacked_directions`` matrix."""
    dense = matrix.to_dense()
    rows, cols = matrix.shape[0] // directions, matrix.shape[1] // directions
    return [dense[d * rows:(d + 1) * rows, d * cols:(d + 1) * cols] for d in range(directions)]


class SparseLinear(nn.Module):
    """y = x W^T without bias: x (..., in) -> (..., out), W a SparseMatrix (out, in)."""

    def __init__(self, matrix: SparseMatrix, planner: Planner, name: str):
        super().__init__()
        self.matrix, self.planner, self.name = matrix, planner, name

    @functools.cached_property
    def dense_weight(self) -> torch.Tensor:
        return self.matrix.to_dense()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = self.matrix.shape
        flat = x.reshape(-1, cols)  # (N, in)
        runs = {**sparse_candidates(lambda threads: kernels.spmm(self.matrix, flat.t().contiguous(), threads).t()),
                "dense": lambda: F.linear(flat, self.dense_weight)}  # sparse: (in, N) -> (out, N), transposed
        path = self.planner.choose((self.name, column_bucket(flat.shape[0])), runs, x.device)
        return runs[path]().reshape(*x.shape[:-1], rows)


class SparseDS2RNN(nn.Module):
    """models/rnn.py DS2RNN with sparse W (shared by the directions) and U: the directions' U run as one
    block-diagonal (D H, D H) matrix, so a step is one sparse product for both."""

    def __init__(self, norm: nn.BatchNorm1d, biases: list[torch.Tensor], weight_ih: SparseMatrix,
                 weight_hh: list[SparseMatrix], relu_clip: float, planner: Planner, name: str):
        super().__init__()
        self.norm, self.relu_clip, self.planner, self.name = norm, relu_clip, planner, name
        self.register_buffer("bias", torch.stack(biases))  # (D, H)
        self.input = SparseLinear(weight_ih, planner, f"{name}.weight_ih")
        self.recurrent = stacked_directions(weight_hh)

    @functools.cached_property
    def dense_weight_hh_t(self) -> torch.Tensor:
        """(D, H, H) = U^T per direction."""
        return torch.stack([u.t() for u in diagonal_blocks(self.recurrent, self.bias.shape[0])])

    def _sparse(self, inputs: torch.Tensor, threads: int | None = None) -> torch.Tensor:
        """inputs (T, D, B, H) -> hidden (T, D, B, H) through the sparse kernel in (T, D H, B) layout."""
        steps, directions, batch, size = inputs.shape
        flat = inputs.permute(0, 1, 3, 2).reshape(steps, directions * size, batch)
        hidden = kernels.ds2_recurrence(self.recurrent, flat, self.relu_clip, threads)
        return hidden.view(steps, directions, size, batch).permute(0, 1, 3, 2)

    def _dense(self, inputs: torch.Tensor) -> torch.Tensor:
        return ClippedRecurrence.apply(inputs, self.dense_weight_hh_t, self.relu_clip)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (T, batch, in), lengths: (batch,), mask: (T, batch) -> h_fwd + h_bwd: (T, batch, H), 0 on padding."""
        wx = masked_batch_norm(self.norm, self.input(x), mask)  # (T, batch, H)
        reverse = reverse_index(lengths, x.shape[0]) if self.bias.shape[0] == 2 else None
        inputs = torch.stack([wx if d == 0 else gather_time(wx, reverse) for d in range(self.bias.shape[0])],
                             dim=1) + self.bias[:, None]  # (T, D, batch, H)
        short = inputs[:PLAN_STEPS]
        runs = {**sparse_candidates(lambda threads: self._sparse(short, threads)), "dense": lambda: self._dense(short)}
        path = self.planner.choose((f"{self.name}.weight_hh", column_bucket(x.shape[1])), runs, x.device)
        hidden = self._dense(inputs) if path == "dense" else self._sparse(inputs, 1 if path == "sparse-1-thread" else None)
        out = hidden[:, 0] if reverse is None else hidden[:, 0] + gather_time(hidden[:, 1], reverse)
        return out * mask[..., None]


class SparseGRU(nn.Module):
    """models/rnn.py FusedRNN(nn.GRU) with sparse W_ih and U (one block-diagonal matrix over the directions);
    the dense path is torch's own nn.GRU, built from the dequantised weights when first needed."""

    def __init__(self, norm: nn.BatchNorm1d, weight_ih: list[SparseMatrix], weight_hh: list[SparseMatrix],
                 bias_ih: list[torch.Tensor], bias_hh: list[torch.Tensor], planner: Planner, name: str):
        super().__init__()
        self.norm, self.planner, self.name = norm, planner, name
        self.inputs = nn.ModuleList(SparseLinear(m, planner, f"{name}.weight_ih{i}") for i, m in enumerate(weight_ih))
        self.register_buffer("bias_ih", torch.stack(bias_ih))  # (D, 3H)
        self.register_buffer("bias_hh", torch.cat(bias_hh))  # (D 3H,)
        self.directions = len(weight_hh)
        self.recurrent = stacked_directions(weight_hh)

    @functools.cached_property
    def dense_gru(self) -> nn.GRU:
        """nn.GRU holding the dequantised weights (the dense path)."""
        (rows, in_features), directions = self.inputs[0].matrix.shape, self.directions
        gru = nn.GRU(in_features, rows // 3, bidirectional=directions == 2, device=self.bias_hh.device)
        suffixes = ["_l0", "_l0_reverse"][:directions]
        with torch.no_grad():
            for d, (suffix, weight_hh) in enumerate(zip(suffixes, diagonal_blocks(self.recurrent, directions))):
                getattr(gru, "weight_ih" + suffix).copy_(self.inputs[d].dense_weight)
                getattr(gru, "weight_hh" + suffix).copy_(weight_hh)
                getattr(gru, "bias_ih" + suffix).copy_(self.bias_ih[d])
                getattr(gru, "bias_hh" + suffix).copy_(self.bias_hh.view(directions, -1)[d])
        return gru.eval()

    def _sparse(self, x: torch.Tensor, reverse: torch.Tensor | None, threads: int | None = None) -> torch.Tensor:
        """x (T, batch, in), normalised -> (T, batch, H) summed over directions (padded frames not yet zeroed)."""
        gi = [layer(x) + bias for layer, bias in zip(self.inputs, self.bias_ih)]  # D x (T, batch, 3H)
        if reverse is not None:
            gi[1] = gather_time(gi[1], reverse)
        flat = torch.cat([g.permute(0, 2, 1) for g in gi], dim=1)  # (T, D 3H, batch)
        hidden = kernels.gru_recurrence(self.recurrent, flat.contiguous(), self.bias_hh, len(gi), threads)
        steps, _, batch = hidden.shape
        hidden = hidden.view(steps, len(gi), -1, batch).permute(0, 1, 3, 2)  # (T, D, batch, H)
        return hidden[:, 0] if reverse is None else hidden[:, 0] + gather_time(hidden[:, 1], reverse)

    def _dense(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        out, _ = nn.utils.rnn.pad_packed_sequence(self.dense_gru(packed)[0], total_length=x.shape[0])
        return out.view(*out.shape[:2], self.directions, -1).sum(dim=2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (T, batch, in), lengths: (batch,), mask: (T, batch) -> (T, batch, H), 0 on padding."""
        x = masked_batch_norm(self.norm, x, mask)
        reverse = reverse_index(lengths, x.shape[0]) if self.directions == 2 else None
        short, short_lengths = x[:PLAN_STEPS], lengths.clamp(max=PLAN_STEPS)
        short_reverse = None if reverse is None else reverse_index(short_lengths, short.shape[0])
        runs = {**sparse_candidates(lambda threads: self._sparse(short, short_reverse, threads)),
                "dense": lambda: self._dense(short, short_lengths)}
        path = self.planner.choose((f"{self.name}.gru", column_bucket(x.shape[1])), runs, x.device)
        out = (self._dense(x, lengths) if path == "dense"
               else self._sparse(x, reverse, 1 if path == "sparse-1-thread" else None))
        return out * mask[..., None]


class SparseFullyConnected(nn.Module):
    """models/layers.py FullyConnected with a sparse matrix: clipped ReLU of BN(W x), zero on padded frames."""

    def __init__(self, norm: nn.BatchNorm1d, weight: SparseMatrix, relu_clip: float, planner: Planner, name: str):
        super().__init__()
        self.norm, self.relu_clip = norm, relu_clip
        self.linear = SparseLinear(weight, planner, name)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (T, batch, in), mask: (T, batch) -> (T, batch, out), zero on padded frames."""
        return clipped_relu(masked_batch_norm(self.norm, self.linear(x), mask), self.relu_clip)
