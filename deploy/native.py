"""Build and load the C++ kernels (deploy/csrc/sparse_kernels.cpp), once per source, flags and CPU.

The kernels are plain C++ with a C ABI (no torch headers: a build takes seconds, not minutes) compiled with the
system's C++ compiler (``-O2 -march=native -fopenmp``) into a cache folder named by a hash of the source, the
flags and the CPU's feature flags, so a build is reused by every later process (tests included) and never
reused on another kind of CPU. They are called through ctypes with raw pointers; deploy/kernels.py checks every
shape and dtype first. ``native_kernels()`` returns the library, or None, with one log line saying which is
used and why; callers then use the torch fallback.

Environment: ``SPARSE_DS2_KERNELS`` = ``auto`` (default: build or load, fall back on failure), ``torch`` (never
build; always the fallback) or ``native`` (fail loudly if the build fails). ``SPARSE_DS2_KERNEL_CACHE`` = cache
root (default ``~/.cache/sparse_ds2/kernels``). ``CXX`` = compiler (default ``c++``).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
from pathlib import Path

from data.atomic import atomic_path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "sparse_kernels.cpp"
FLAGS = ["-O2", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]
ABI_VERSION = 1
MODES = ("auto", "torch", "native")


class MatrixView(ctypes.Structure):
    """The C ``Matrix`` struct: raw pointers into a SparseMatrix's tensors (which must outlive it)."""

    _fields_ = [
        ("row_ptr", ctypes.c_void_p), ("col_idx", ctypes.c_void_p), ("values", ctypes.c_void_p),
        ("scales", ctypes.c_void_p), ("rows", ctypes.c_int64), ("cols", ctypes.c_int64),
        ("block_rows", ctypes.c_int64), ("block_cols", ctypes.c_int64), ("num_brows", ctypes.c_int64),
        ("nnz_blocks", ctypes.c_int64), ("index_bytes", ctypes.c_int32), ("value_kind", ctypes.c_int32),
    ]


_MATRIX, _PTR, _I64, _I32, _F32 = (ctypes.POINTER(MatrixView), ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32,
                                   ctypes.c_float)
SIGNATURES = {
    "sds2_abi_version": [],
    "sds2_spmm": [_MATRIX, _PTR, _I64, _PTR, _I32],
    "sds2_ds2_recurrence": [_MATRIX, _PTR, _I64, _I64, _F32, _PTR, _I32],
    "sds2_gru_recurrence": [_MATRIX, _PTR, _PTR, _I64, _I64, _I64, _PTR, _PTR, _I32],
}


def kernel_mode() -> str:
    """The ``SPARSE_DS2_KERNELS`` setting, checked."""
    mode = os.environ.get("SPARSE_DS2_KERNELS", "auto")
    if mode not in MODES:
        raise ValueError(f"SPARSE_DS2_KERNELS={mode!r}; expected one of {MODES}")
    return mode


def _cpu_flags() -> str:
    """The CPU's feature flags (Linux), else the machine name: -march=native code is only valid on such a CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def library_path(compiler: str) -> Path:
    """Cached library of this source + compiler + flags + CPU combination."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), compiler, " ".join(FLAGS), _cpu_flags()):
        key.update(part if isinstance(part, bytes) else part.encode())
    root = Path(os.environ.get("SPARSE_DS2_KERNEL_CACHE", Path.home() / ".cache" / "sparse_ds2" / "kernels"))
    return root / f"sparse_kernels_{key.hexdigest()[:16]}.so"


def build(compiler: str, target: Path) -> None:
    """Compile the kernels into ``target`` atomically (a concurrent build of the same key is harmless)."""
    log.info("deploy kernels: compiling %s -> %s", SOURCE.name, target)
    with atomic_path(target) as tmp:
        command = [*shlex.split(compiler), *FLAGS, str(SOURCE), "-o", str(tmp)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode:
            raise RuntimeError(f"{shlex.join(command)} failed:\n{result.stderr.strip()[-2000:]}")


def load(path: Path) -> ctypes.CDLL:
    """Open the library and declare its functions' argument types."""
    library = ctypes.CDLL(str(path))
    for name, argtypes in SIGNATURES.items():
        function = getattr(library, name)
        function.argtypes, function.restype = argtypes, ctypes.c_int32
    if library.sds2_abi_version() != ABI_VERSION:
        raise RuntimeError(f"{path}: ABI version {library.sds2_abi_version()}, expected {ABI_VERSION}")
    return library


@functools.cache
def native_kernels() -> ctypes.CDLL | None:
    """The compiled kernels (built on first use, then loaded from the cache), or None: the torch fallback."""
    mode = kernel_mode()
    if mode == "torch":
        log.info("deploy kernels: torch fallback (SPARSE_DS2_KERNELS=torch)")
        return None
    compiler = os.environ.get("CXX", "c++")
    try:
        if shutil.which(shlex.split(compiler)[0]) is None:
            raise RuntimeError(f"C++ compiler {compiler!r} not found on PATH")
        path = library_path(compiler)
        if not path.is_file():
            build(compiler, path)
        library = load(path)
    except (OSError, RuntimeError) as error:
        if mode == "native":
            raise RuntimeError(f"SPARSE_DS2_KERNELS=native but the C++ kernels are unusable: {error}") from error
        log.warning("deploy kernels: torch fallback (C++ kernels unusable: %s)", str(error).splitlines()[0])
        return None
    log.info("deploy kernels: native C++ with OpenMP from %s", path)
    return library
