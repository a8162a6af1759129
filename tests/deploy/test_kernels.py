"""Sparse kernels against dense references, on the native C++ path (built once into the kernel cache; skipped
only where no compiler works) and on the torch fallback (no compiler involved)."""
from __future__ import annotations

import logging

import pytest
import torch

from deploy import kernels, native
from deploy.sparse import SparseMatrix, block_diagonal
from models.rnn import ClippedRecurrence


@pytest.fixture(params=["native", "torch"])
def backend(request, monkeypatch):
    """Run the test once with the native kernels and once with the torch fallback."""
    monkeypatch.setenv("SPARSE_DS2_KERNELS", "auto" if request.param == "native" else "torch")
    native.native_kernels.cache_clear()
    if request.param == "native" and native.native_kernels() is None:
        pytest.skip("the native kernels cannot be built here (see the log line for why)")
    yield request.param
    native.native_kernels.cache_clear()


def sparse_weight(rows: int, cols: int, sparsity: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=generator) * (torch.rand(rows, cols, generator=generator) >= sparsity)


@pytest.mark.parametrize("block", [(1, 1), (3, 2)])
@pytest.mark.parametrize("value_dtype", ["fp32", "fp16", "int8"])
def test_spmm_equals_the_dense_product_of_the_stored_matrix(backend, block, value_dtype):
    matrix = SparseMatrix.from_dense(sparse_weight(41, 29, 0.7, seed=0), block, value_dtype)
    assert kernels.backend(matrix) == backend
    for columns in (1, 3, 16, 21):  # every register-block width of the native kernel, and a remainder
        x_t = torch.randn(29, columns)
        torch.testing.assert_close(kernels.spmm(matrix, x_t), matrix.to_dense() @ x_t, rtol=1e-5, atol=1e-5)


def test_spmm_on_two_threads_with_a_balanced_split(backend):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    weight = sparse_weight(400, 300, 0.5, seed=1)
    weight[:100] = 0.0  # uneven rows: the split must still cover every row exactly once
    matrix = SparseMatrix.from_dense(weight)
    x_t = torch.randn(300, 2)
    try:
        torch.testing.assert_close(kernels.spmm(matrix, x_t), weight @ x_t, rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("block", [(1, 1), (4, 4)])
def test_ds2_recurrence_equals_the_dense_clipped_recurrence(backend, block):
    size, steps, batch = 24, 7, 3
    weights = [sparse_weight(size, size, 0.6, seed=s) / 2 for s in (2, 3)]  # two directions
    matrix = block_diagonal([SparseMatrix.from_dense(w, block) for w in weights])
    inputs = torch.randn(steps, 2, batch, size) * 3  # (T, D, B, H): some units clip at 0 and at 2
    expected = ClippedRecurrence.apply(inputs, torch.stack([w.t() for w in weights]), 2.0)
    flat = inputs.permute(0, 1, 3, 2).reshape(steps, 2 * size, batch)
    hidden = kernels.ds2_recurrence(matrix, flat, 2.0).view(steps, 2, size, batch).permute(0, 1, 3, 2)
    torch.testing.assert_close(hidden, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("value_dtype", ["fp32", "int8"])
def test_gru_recurrence_equals_torch_gru_per_direction(backend, value_dtype):
    size, steps, batch, inputs_size = 16, 6, 2, 5
    grus = [torch.nn.GRU(inputs_size, size).requires_grad_(False) for _ in range(2)]
    for seed, gru in enumerate(grus):
        gru.weight_hh_l0.copy_(sparse_weight(3 * size, size, 0.5, seed=seed))
    matrices = [SparseMatrix.from_dense(g.weight_hh_l0, value_dtype=value_dtype) for g in grus]
    for g, m in zip(grus, matrices):
        g.weight_hh_l0.copy_(m.to_dense())  # the reference uses the stored (for int8: dequantised) weights
    x = torch.randn(steps, batch, inputs_size)
    gi = torch.cat([(x @ g.weight_ih_l0.t() + g.bias_ih_l0).permute(0, 2, 1) for g in grus], dim=1)
    bias = torch.cat([g.bias_hh_l0 for g in grus])
    hidden = kernels.gru_recurrence(block_diagonal(matrices), gi.contiguous(), bias, 2)  # (T, 2 H, B)
    expected = torch.cat([g(x)[0].permute(0, 2, 1) for g in grus], dim=1)
    torch.testing.assert_close(hidden, expected, rtol=1e-5, atol=1e-5)


def test_bad_operands_are_rejected_before_any_kernel_runs(backend):
    matrix = SparseMatrix.from_dense(torch.eye(4))
    with pytest.raises(ValueError, match="x_t has shape"):
        kernels.spmm(matrix, torch.randn(5, 2))
    with pytest.raises(ValueError, match="float32"):
        kernels.spmm(matrix, torch.randn(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="square"):
        kernels.ds2_recurrence(SparseMatrix.from_dense(torch.ones(4, 3)), torch.randn(2, 4, 1), 20.0)
    with pytest.raises(ValueError, match="GRU recurrent matrix"):
        kernels.gru_recurrence(matrix, torch.randn(2, 4, 1), torch.zeros(4), 1)


def test_an_unusable_compiler_falls_back_to_torch_with_a_log_line(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("SPARSE_DS2_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    monkeypatch.setenv("SPARSE_DS2_KERNELS", "auto")
    native.native_kernels.cache_clear()
    with caplog.at_level(logging.INFO, logger="deploy.native"):
        assert native.native_kernels() is None
    assert "torch fallback" in caplog.text and "no-such-compiler-xyz" in caplog.text
    assert kernels.backend(SparseMatrix.from_dense(torch.eye(2))) == "torch"
    monkeypatch.setenv("SPARSE_DS2_KERNELS", "native")
    native.native_kernels.cache_clear()
    with pytest.raises(RuntimeError, match="SPARSE_DS2_KERNELS=native"):
        native.native_kernels()
    native.native_kernels.cache_clear()


def test_the_kernel_mode_setting_is_checked(monkeypatch):
    monkeypatch.setenv("SPARSE_DS2_KERNELS", "fast")
    native.native_kernels.cache_clear()
    with pytest.raises(ValueError, match="SPARSE_DS2_KERNELS"):
        native.native_kernels()
    native.native_kernels.cache_clear()


def test_a_built_library_is_reused_from_the_cache(monkeypatch, caplog):
    monkeypatch.setenv("SPARSE_DS2_KERNELS", "auto")
    native.native_kernels.cache_clear()
    if native.native_kernels() is None:
        pytest.skip("the native kernels cannot be built here")
    native.native_kernels.cache_clear()
    with caplog.at_level(logging.INFO, logger="deploy.native"):
        assert native.native_kernels() is not None
    assert "compiling" not in caplog.text and "native C++" in caplog.text
    native.native_kernels.cache_clear()
