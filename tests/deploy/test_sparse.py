"""SparseMatrix: exact CSR / block-CSR round trips, compact indices, fp16 and int8 values and their error bounds."""
from __future__ import annotations

import io

import pytest
import torch

from deploy.sparse import SparseMatrix, as_csr, block_diagonal
from pruning.criterion import expand_block_mask


def sparse_weight(rows: int, cols: int, sparsity: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, cols, generator=generator)
    return weight * (torch.rand(rows, cols, generator=generator) >= sparsity)


def test_csr_round_trip_is_exact_with_int16_indices_and_int32_row_pointers():
    weight = sparse_weight(37, 53, 0.8)
    matrix = SparseMatrix.from_dense(weight)
    assert torch.equal(matrix.to_dense(), weight)
    assert matrix.col_idx.dtype == torch.int16 and matrix.row_ptr.dtype == torch.int32
    assert matrix.nnz() == matrix.num_blocks == int(torch.count_nonzero(weight))
    size = matrix.nbytes()
    assert size["values"] == 4 * matrix.nnz() and size["indices"] == 2 * matrix.nnz()
    assert size["total"] == size["values"] + size["indices"] + 4 * 38 and size["dense_fp32"] == 4 * 37 * 53


def test_column_indices_past_32767_survive_the_unsigned_16_bit_storage():
    weight = torch.zeros(2, 40000)
    weight[0, [5, 32767, 32768, 39999]] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    weight[1, 35000] = -5.0
    matrix = SparseMatrix.from_dense(weight)
    assert matrix.col_idx.dtype == torch.int16
    assert torch.equal(matrix.to_dense(), weight)
    assert SparseMatrix.from_dense(torch.zeros(1, 70000)).col_idx.dtype == torch.int32


def test_block_csr_keeps_whole_blocks_including_edge_blocks():
    block = (4, 4)
    keep = torch.rand(3, 4, generator=torch.Generator().manual_seed(1)) > 0.5  # (ceil(10/4), ceil(13/4)) blocks
    weight = torch.randn(10, 13) * expand_block_mask(keep, torch.Size((10, 13)), block)
    weight[0, 0] = 0.0  # an explicit zero inside a kept block is stored, and still zero
    matrix = SparseMatrix.from_dense(weight, block)
    assert torch.equal(matrix.to_dense(), weight)
    assert matrix.num_blocks == int(keep.sum()) and matrix.values.numel() == 16 * int(keep.sum())
    assert matrix.row_ptr.shape == (4,)


def test_int8_values_are_within_half_a_quantisation_step_of_each_row():
    weight = sparse_weight(20, 30, 0.5) * torch.logspace(-3, 1, 20)[:, None]  # rows of very different scales
    weight[7] = 0.0
    matrix = SparseMatrix.from_dense(weight, value_dtype="int8")
    assert matrix.values.dtype == torch.int8 and matrix.scales.shape == (20,)
    error = (matrix.to_dense() - weight).abs()
    assert torch.all(error <= matrix.scales[:, None] / 2 * (1 + 1e-5))
    assert torch.equal(matrix.scales[:6], weight.abs().amax(dim=1)[:6] / 127)
    assert matrix.to_dense()[7].abs().sum() == 0 and matrix.to_dense()[weight == 0].abs().sum() == 0


def test_fp16_values_round_to_nearest_and_overflow_is_an_error():
    weight = sparse_weight(16, 16, 0.5)
    matrix = SparseMatrix.from_dense(weight, value_dtype="fp16")
    assert matrix.values.dtype == torch.float16 and matrix.nbytes()["values"] == 2 * matrix.nnz()
    assert torch.all((matrix.to_dense() - weight).abs() <= weight.abs() * 2.0 ** -11)
    with pytest.raises(ValueError, match="fp16"):
        SparseMatrix.from_dense(weight * 1e5, value_dtype="fp16")


def test_block_diagonal_and_as_csr_keep_the_stored_codes():
    first = SparseMatrix.from_dense(sparse_weight(8, 8, 0.5, seed=2), (4, 2), "int8")
    second = SparseMatrix.from_dense(sparse_weight(8, 8, 0.5, seed=3), (4, 2), "int8")
    both = block_diagonal([first, second])
    assert both.shape == (16, 16) and both.block == (4, 2)
    assert torch.equal(both.to_dense(), torch.block_diag(first.to_dense(), second.to_dense()))
    csr = as_csr(both)
    assert csr.block == (1, 1) and torch.equal(csr.to_dense(), both.to_dense())
    with pytest.raises(ValueError, match="whole blocks"):
        block_diagonal([SparseMatrix.from_dense(torch.ones(6, 6), (4, 4))] * 2)


def test_state_dict_round_trip_through_a_weights_only_load():
    matrix = SparseMatrix.from_dense(sparse_weight(9, 7, 0.6), (2, 3), "int8")
    buffer = io.BytesIO()
    torch.save(matrix.state_dict(), buffer)
    buffer.seek(0)
    loaded = SparseMatrix.from_state_dict(torch.load(buffer, weights_only=True))
    assert loaded.shape == (9, 7) and loaded.block == (2, 3)
    assert torch.equal(loaded.to_dense(), matrix.to_dense()) and torch.equal(loaded.scales, matrix.scales)


def test_bad_input_is_rejected_with_the_input_named():
    with pytest.raises(ValueError, match="only matrices"):
        SparseMatrix.from_dense(torch.ones(4))
    with pytest.raises(ValueError, match="value dtype"):
        SparseMatrix.from_dense(torch.ones(2, 2), value_dtype="bf16")
    good = SparseMatrix.from_dense(torch.eye(3))
    with pytest.raises(ValueError, match="row_ptr"):
        SparseMatrix((3, 3), (1, 1), good.row_ptr.long(), good.col_idx, good.values)
    with pytest.raises(ValueError, match="scales"):
        SparseMatrix((3, 3), (1, 1), good.row_ptr, good.col_idx, good.values.to(torch.int8))
    with pytest.raises(ValueError, match="lacks"):
        SparseMatrix.from_state_dict({"shape": [3, 3]})
