"""Sparse products and recurrences on a SparseMatrix: the native C++ kernels (deploy/native.py) on the CPU when
they are available, else torch's CSR matmul (any device, cuSPARSE on CUDA), which always works.

Every dense operand is feature-major: x_t is (features, N) with N = batch (or time x batch) columns, so the
output of one product is the input of the next without a transpose. Inputs are checked here (shape, dtype,
device) before any raw pointer reaches the C++ code.
"""
from __future__ import annotations

import ctypes
import weakref

import torch

from deploy.native import MatrixView, native_kernels
from deploy.sparse import SparseMatrix

_VALUE_KINDS = {torch.float32: 0, torch.float16: 1, torch.int8: 2}
_views: weakref.WeakKeyDictionary[SparseMatrix, MatrixView] = weakref.WeakKeyDictionary()


def backend(matrix: SparseMatrix) -> str:
    """"native" when the C++ kernels run this matrix (CPU and the library loaded), else "torch"."""
    return "native" if matrix.device.type == "cpu" and native_kernels() is not None else "torch"


def _view(matrix: SparseMatrix) -> ctypes.POINTER(MatrixView):
    """The C struct over ``matrix``'s tensors, built once per matrix (its tensors are never replaced)."""
    view = _views.get(matrix)
    if view is None:
        for name in ("row_ptr", "col_idx", "values"):
            if not getattr(matrix, name).is_contiguous():
                raise ValueError(f"sparse matrix {name} must be contiguous")
        view = MatrixView(
            matrix.row_ptr.data_ptr(), matrix.col_idx.data_ptr(), matrix.values.data_ptr(),
            None if matrix.scales is None else matrix.scales.data_ptr(), matrix.shape[0], matrix.shape[1],
            matrix.block[0], matrix.block[1], matrix.num_block_rows, matrix.num_blocks,
            matrix.col_idx.element_size(), _VALUE_KINDS[matrix.values.dtype])
        _views[matrix] = view
    return ctypes.byref(view)


def _check(x: torch.Tensor, name: str, shape: tuple[int | None, ...], matrix: SparseMatrix) -> torch.Tensor:
    """``x`` as a contiguous fp32 tensor on the matrix's device with the given shape (None = any size)."""
    if x.dtype != torch.float32 or x.device != matrix.device:
        raise ValueError(f"{name} must be float32 on {matrix.device}, got {x.dtype} on {x.device}")
    if x.dim() != len(shape) or any(want is not None and got != want for got, want in zip(x.shape, shape)):
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {shape} (None = any)")
    return x.contiguous()


def _call(function: ctypes._CFuncPtr, *args) -> None:
    if function(*args) != 0:
        raise RuntimeError(f"native kernel {function.__name__} rejected its matrix (malformed sparse matrix)")


def _threads(threads: int | None) -> int:
    return torch.get_num_threads() if threads is None else threads


def spmm(matrix: SparseMatrix, x_t: torch.Tensor, threads: int | None = None) -> torch.Tensor:
    """y_t = W x_t: matrix (rows, cols), x_t (cols, N) fp32 -> (rows, N) fp32. ``threads``: the native kernel's
    OpenMP threads (default: torch's)."""
    x_t = _check(x_t, "x_t", (matrix.shape[1], None), matrix)
    if backend(matrix) == "torch":
        return torch.sparse.mm(matrix.torch_csr, x_t)
    y_t = x_t.new_empty(matrix.shape[0], x_t.shape[1])
    _call(native_kernels().sds2_spmm, _view(matrix), x_t.data_ptr(), x_t.shape[1], y_t.data_ptr(), _threads(threads))
    return y_t


def ds2_recurrence(matrix: SparseMatrix, inputs: torch.Tensor, clip: float, threads: int | None = None
                   ) -> torch.Tensor:
    """DS2's clipped-ReLU recurrence (models/rnn.py ClippedRecurrence) with a sparse U:
    h_t = min(max(inputs_t + U h_{t-1}, 0), clip), h_{-1} = 0.

    matrix: U (R, R), block-diagonal over directions when R = D * H; inputs (T, R, B) -> hidden (T, R, B).
    ``threads`` as for ``spmm``.
    """
    units = matrix.shape[0]
    if matrix.shape[1] != units:
        raise ValueError(f"recurrent matrix must be square, got {matrix.shape}")
    inputs = _check(inputs, "inputs", (None, units, None), matrix)
    if backend(matrix) == "torch":
        hidden = torch.empty_like(inputs)
        hidden[0] = inputs[0].clamp(0.0, clip)
        for t in range(1, inputs.shape[0]):
            torch.add(inputs[t], torch.sparse.mm(matrix.torch_csr, hidden[t - 1]), out=hidden[t]).clamp_(0.0, clip)
        return hidden
    hidden = torch.empty_like(inputs)
    _call(native_kernels().sds2_ds2_recurrence, _view(matrix), inputs.data_ptr(), inputs.shape[0], inputs.shape[2],
          clip, hidden.data_ptr(), _threads(threads))
    return hidden


def gru_recurrence(matrix: SparseMatrix, gi: torch.Tensor, bias_hh: torch.Tensor, directions: int,
                   threads: int | None = None) -> torch.Tensor:
    """nn.GRU's recurrence with a sparse U (gates r, z, n as torch orders them): gh = U h_{t-1} + b_hh,
    r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z), n = tanh(gi_n + r * gh_n), h_t = (1 - z) n + z h_{t-1}.

    matrix: U (D * 3H, D * H), block-diagonal over the D directions; gi (T, D * 3H, B) = W_ih x + b_ih;
    bias_hh (D * 3H,) -> hidden (T, D * H, B). ``threads`` as for ``spmm``.
    """
    rows, units = matrix.shape
    if rows != 3 * units or units % directions:
        raise ValueError(f"GRU recurrent matrix must be (D * 3H, D * H) for D = {directions}, got {matrix.shape}")
    gi = _check(gi, "gi", (None, rows, None), matrix)
    bias_hh = _check(bias_hh, "bias_hh", (rows,), matrix)
    steps, _, batch = gi.shape
    hidden = gi.new_empty(steps, units, batch)
    if backend(matrix) == "torch":
        size = units // directions
        h = gi.new_zeros(units, batch)
        for t in range(steps):
            gh = (torch.sparse.mm(matrix.torch_csr, h) + bias_hh[:, None]).view(directions, 3, size, batch)
            g = gi[t].view(directions, 3, size, batch)
            r, z = torch.sigmoid(g[:, 0] + gh[:, 0]), torch.sigmoid(g[:, 1] + gh[:, 1])
            n = torch.tanh(g[:, 2] + r * gh[:, 2])
            h = ((1 - z) * n + z * h.view(directions, size, batch)).reshape(units, batch)
            hidden[t] = h
        return hidden
    scratch = gi.new_empty(rows, batch)
    _call(native_kernels().sds2_gru_recurrence, _view(matrix), gi.data_ptr(), bias_hh.data_ptr(), steps, batch,
          directions, scratch.data_ptr(), hidden.data_ptr(), _threads(threads))
    return hidden
