"""Compressed sparse matrices of the deploy format: CSR, or block-CSR for block-pruned weights, with compact
indices and fp32, fp16 or int8 values.

A (rows, cols) weight W is stored as block rows of ``block = (br, bc)`` (CSR is block (1, 1)); the matrix is
padded with zeros to whole blocks, and only blocks holding a nonzero are kept:

    row_ptr  int32 (ceil(rows / br) + 1,)  offsets of each block row's blocks in col_idx
    col_idx  int16 (unsigned bits, when ceil(cols / bc) <= 65536) else int32 (num_blocks,)  block column
    values   (num_blocks * br * bc,) blocks row-major inside: fp32, fp16, or int8 codes q
    scales   fp32 (rows,) for int8 only: W[r, c] = scales[r] * q, scales[r] = max_c |W[r, c]| / 127

int8 is symmetric per-row quantisation: the rounding error of each weight is at most scales[r] / 2.
Narang et al. (section 6) count the values alone (268 MB -> about 32 MB at 88 % sparsity); ``nbytes`` counts
the indices and row pointers too.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import torch

VALUE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "int8": torch.int8}
UINT16_LIMIT = 1 << 16
FP16_MAX = 65504.0


def _to_index_tensor(indices: torch.Tensor, num_block_cols: int) -> torch.Tensor:
    """Block column indices as int16 holding unsigned 16-bit values when they fit, else int32."""
    if num_block_cols <= UINT16_LIMIT:
        return torch.where(indices >= 1 << 15, indices - UINT16_LIMIT, indices).to(torch.int16)
    return indices.to(torch.int32)


def _quantize(blocks: torch.Tensor, block_rows: int, rows: int, value_dtype: str
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """blocks: (num_blocks, br, bc) fp32 with block rows given by ``block_rows`` (num_blocks,)
    -> (values flattened in ``value_dtype``, per-row scales (rows,) for int8 else None)."""
    if value_dtype == "fp32":
        return blocks.reshape(-1).clone(), None
    if value_dtype == "fp16":
        largest = float(blocks.abs().max()) if blocks.numel() else 0.0
        if largest > FP16_MAX:
            raise ValueError(f"a weight of magnitude {largest:g} does not fit fp16 (max {FP16_MAX:g}); use fp32 or int8")
        return blocks.reshape(-1).half(), None
    br = blocks.shape[1]
    padded_rows = -(-rows // br) * br
    row_of = (block_rows[:, None] * br + torch.arange(br)).reshape(-1)  # matrix row of each block row (nb * br,)
    row_max = torch.zeros(padded_rows).scatter_reduce(
        0, row_of, blocks.abs().amax(dim=2).reshape(-1), "amax", include_self=True)[:rows]
    scales = torch.where(row_max > 0, row_max / 127.0, torch.ones_like(row_max))
    padded_scales = torch.cat([scales, torch.ones(padded_rows - rows)])
    codes = torch.round(blocks / padded_scales[row_of].view(-1, br, 1)).clamp_(-127, 127).to(torch.int8)
    return codes.reshape(-1), scales


@dataclass(eq=False)
class SparseMatrix:
    """One weight matrix in (block-)CSR form (module docstring). Build with ``from_dense``; the tensors are
    never modified afterwards (the native kernels keep pointers to them)."""

    shape: tuple[int, int]
    block: tuple[int, int]
    row_ptr: torch.Tensor
    col_idx: torch.Tensor
    values: torch.Tensor
    scales: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.shape, self.block = tuple(int(s) for s in self.shape), tuple(int(b) for b in self.block)
        rows, cols = self.shape
        br, bc = self.block
        if rows < 1 or cols < 1 or br < 1 or bc < 1:
            raise ValueError(f"sparse matrix: bad shape {self.shape} or block {self.block}")
        if self.row_ptr.dtype != torch.int32 or self.row_ptr.shape != (self.num_block_rows + 1,):
            raise ValueError(f"sparse matrix {self.shape}: row_ptr must be int32 of length {self.num_block_rows + 1}")
        if self.col_idx.dtype not in (torch.int16, torch.int32) or self.col_idx.dim() != 1:
            raise ValueError("sparse matrix: col_idx must be a 1-D int16 or int32 tensor")
        if self.values.dtype not in VALUE_DTYPES.values() or self.values.numel() != self.col_idx.numel() * br * bc:
            raise ValueError(f"sparse matrix: values must be fp32/fp16/int8 with {br * bc} per stored block")
        if (self.values.dtype == torch.int8) != (self.scales is not None):
            raise ValueError("sparse matrix: int8 values need per-row scales, other types none")
        if self.scales is not None and (self.scales.dtype != torch.float32 or self.scales.shape != (rows,)):
            raise ValueError(f"sparse matrix: scales must be float32 of shape ({rows},)")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dense(cls, weight: torch.Tensor, block: tuple[int, int] = (1, 1),
                   value_dtype: str = "fp32") -> SparseMatrix:
        """Compress a 2-D weight: blocks of ``block`` holding any nonzero are kept (zeros inside them too)."""
        if weight.dim() != 2:
            raise ValueError(f"only matrices can be stored sparse, got shape {tuple(weight.shape)}")
        if value_dtype not in VALUE_DTYPES:
            raise ValueError(f"value dtype {value_dtype!r}; expected one of {sorted(VALUE_DTYPES)}")
        weight = weight.detach().to("cpu", torch.float32)
        rows, cols = weight.shape
        br, bc = int(block[0]), int(block[1])
        nbr, nbc = -(-rows // br), -(-cols // bc)
        padded = torch.zeros(nbr * br, nbc * bc)
        padded[:rows, :cols] = weight
        grid = padded.view(nbr, br, nbc, bc).transpose(1, 2)  # (nbr, nbc, br, bc)
        occupied = grid.ne(0).any(dim=3).any(dim=2)  # (nbr, nbc)
        block_rows, block_cols = occupied.nonzero(as_tuple=True)  # row-major order: sorted by block row
        counts = torch.bincount(block_rows, minlength=nbr)
        row_ptr = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]).to(torch.int32)
        values, scales = _quantize(grid[block_rows, block_cols], block_rows, rows, value_dtype)
        return cls((rows, cols), (br, bc), row_ptr, _to_index_tensor(block_cols, nbc), values, scales)

    # ------------------------------------------------------------------ properties
    @property
    def num_block_rows(self) -> int:
        return -(-self.shape[0] // self.block[0])

    @property
    def num_blocks(self) -> int:
        return self.col_idx.numel()

    @property
    def value_dtype(self) -> str:
        return next(name for name, dtype in VALUE_DTYPES.items() if dtype == self.values.dtype)

    @property
    def device(self) -> torch.device:
        return self.values.device

    def nnz(self) -> int:
        """Nonzero weights (explicit zeros inside stored blocks excluded)."""
        return int(torch.count_nonzero(self.values))

    def nbytes(self) -> dict[str, int]:
        """Bytes of each part and in total, against the dense fp32 matrix."""
        parts = {"values": self.values.numel() * self.values.element_size(),
                 "indices": self.col_idx.numel() * self.col_idx.element_size(),
                 "row_ptr": self.row_ptr.numel() * 4,
                 "scales": 0 if self.scales is None else self.scales.numel() * 4}
        return {**parts, "total": sum(parts.values()), "dense_fp32": self.shape[0] * self.shape[1] * 4}

    # ------------------------------------------------------------------ conversions
    def block_col_indices(self) -> torch.Tensor:
        """col_idx as int64 block column numbers (undoing the unsigned 16-bit storage)."""
        return self.col_idx.long() & 0xFFFF if self.col_idx.dtype == torch.int16 else self.col_idx.long()

    def block_row_indices(self) -> torch.Tensor:
        """Block row of every stored block (num_blocks,) int64."""
        counts = (self.row_ptr[1:] - self.row_ptr[:-1]).long()
        return torch.repeat_interleave(torch.arange(self.num_block_rows, device=counts.device), counts)

    def dequantized_values(self) -> torch.Tensor:
        """Stored values as fp32 blocks (num_blocks, br, bc), int8 codes times their row scales."""
        br, bc = self.block
        blocks = self.values.float().view(-1, br, bc)
        if self.scales is None:
            return blocks
        padded = torch.cat([self.scales, self.scales.new_ones(self.num_block_rows * br - self.shape[0])])
        rows = self.block_row_indices()[:, None] * br + torch.arange(br, device=blocks.device)
        return blocks * padded[rows][..., None]

    def to_dense(self) -> torch.Tensor:
        """The (rows, cols) fp32 matrix these values represent (dequantised)."""
        rows, cols = self.shape
        br, bc = self.block
        grid = torch.zeros(self.num_block_rows, -(-cols // bc), br, bc, device=self.device)
        grid[self.block_row_indices(), self.block_col_indices()] = self.dequantized_values()
        return grid.transpose(1, 2).reshape(grid.shape[0] * br, -1)[:rows, :cols].contiguous()

    def to(self, device: torch.device | str) -> SparseMatrix:
        """A copy on ``device`` (the native kernels need the CPU)."""
        move = lambda t: None if t is None else t.to(device)
        return SparseMatrix(self.shape, self.block, move(self.row_ptr), move(self.col_idx), move(self.values),
                            move(self.scales))

    @functools.cached_property
    def torch_csr(self) -> torch.Tensor:
        """torch's sparse CSR tensor of the dequantised fp32 matrix (the fallback kernel); built once."""
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": known, and tested here
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return self.to_dense().to_sparse_csr()

    # ------------------------------------------------------------------ serialisation
    def state_dict(self) -> dict:
        """Plain tensors and ints (loadable with ``torch.load(weights_only=True)``)."""
        state = {"shape": list(self.shape), "block": list(self.block), "row_ptr": self.row_ptr,
                 "col_idx": self.col_idx, "values": self.values}
        if self.scales is not None:
            state["scales"] = self.scales
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> SparseMatrix:
        missing = {"shape", "block", "row_ptr", "col_idx", "values"} - set(state)
        if missing:
            raise ValueError(f"sparse matrix entry lacks {sorted(missing)}")
        return cls(tuple(state["shape"]), tuple(state["block"]), state["row_ptr"], state["col_idx"], state["values"],
                   state.get("scales"))


def block_diagonal(matrices: list[SparseMatrix]) -> SparseMatrix:
    """diag(M_0, M_1, ...) of matrices with one block shape and value type, as one matrix: the directions of a
    bidirectional layer then run as one product per step. Each matrix's rows and columns must be whole blocks
    (else rebuild them as CSR with ``as_csr``)."""
    first = matrices[0]
    if len(matrices) == 1:
        return first
    br, bc = first.block
    for m in matrices:
        if m.block != first.block or m.values.dtype != first.values.dtype:
            raise ValueError("block_diagonal: matrices differ in block shape or value type")
        if m.shape[0] % br or m.shape[1] % bc:
            raise ValueError(f"block_diagonal: shape {m.shape} is not whole blocks of {m.block}")
    row_ptrs, cols, offset_blocks, offset_cols = [first.row_ptr[:1]], [], 0, 0
    for m in matrices:
        row_ptrs.append(m.row_ptr[1:] + offset_blocks)
        cols.append(m.block_col_indices() + offset_cols // bc)
        offset_blocks, offset_cols = offset_blocks + m.num_blocks, offset_cols + m.shape[1]
    scales = None if first.scales is None else torch.cat([m.scales for m in matrices])
    return SparseMatrix((sum(m.shape[0] for m in matrices), offset_cols), (br, bc), torch.cat(row_ptrs),
                        _to_index_tensor(torch.cat(cols), -(-offset_cols // bc)),
                        torch.cat([m.values for m in matrices]), scales)


def as_csr(matrix: SparseMatrix) -> SparseMatrix:
    """The same stored values as element-wise CSR (block (1, 1)): explicit zeros and padding dropped, int8 codes
    and scales kept as they are (no re-quantisation)."""
    if matrix.block == (1, 1):
        return matrix
    rows, cols = matrix.shape
    br, bc = matrix.block
    codes = torch.zeros(matrix.num_block_rows, -(-cols // bc), br, bc, dtype=matrix.values.dtype)
    codes[matrix.block_row_indices(), matrix.block_col_indices()] = matrix.values.view(-1, br, bc)
    codes = codes.transpose(1, 2).reshape(codes.shape[0] * br, -1)[:rows, :cols]
    row, col = codes.nonzero(as_tuple=True)
    row_ptr = torch.cat([torch.zeros(1, dtype=torch.int64), torch.bincount(row, minlength=rows).cumsum(0)])
    return SparseMatrix(matrix.shape, (1, 1), row_ptr.to(torch.int32), _to_index_tensor(col, cols),
                        codes[row, col].clone(), matrix.scales)
