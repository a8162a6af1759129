"""Checkpoint -> deploy bundle (deploy/format.py), and the size table of what was exported.

Block shapes: block-pruned checkpoints (``pruning.method: block``) store each pruned matrix as block-CSR with its
group's block shape (the pruning config's ``block`` or the group's override), others as CSR; ``block`` may
force one shape for every matrix.
"""
from __future__ import annotations

import re
from pathlib import Path

from deploy.format import is_sparse_name
from deploy.sparse import SparseMatrix
from training.inference import LoadedModel


def block_shapes(config: dict, names: list[str], block: tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:
    """Block shape per sparse matrix name: ``block`` if given, else from a block-pruning config, else (1, 1)."""
    if block is not None:
        return {name: tuple(block) for name in names}
    pruning = config.get("pruning") or {}
    shapes = {name: (1, 1) for name in names}
    if pruning.get("method") != "block":
        return shapes
    for group in (pruning.get("groups") or {}).values():
        shape = tuple(group.get("block") or pruning["block"])
        for name in names:
            if any(re.search(pattern, name) for pattern in group.get("patterns", [])):
                shapes[name] = (int(shape[0]), int(shape[1]))
    return shapes


def export_model(loaded: LoadedModel, value_dtype: str = "fp32",
                 block: tuple[int, int] | None = None) -> dict:
    """The deploy bundle of a loaded checkpoint (its weights as they are: pruned weights are already zero)."""
    if loaded.model_cfg.rnn_type not in ("rnn", "gru"):
        raise ValueError(f"the deploy runtime runs rnn_type 'rnn' and 'gru', not {loaded.model_cfg.rnn_type!r}")
    state = {name: t.detach().cpu() for name, t in loaded.model.state_dict().items()}
    names = [name for name in state if is_sparse_name(name)]
    config = loaded.checkpoint["config"]
    shapes = block_shapes(config, names, block)
    sparse = {name: SparseMatrix.from_dense(state[name], shapes[name], value_dtype) for name in names}
    checkpoint = loaded.checkpoint
    return {
        "config": {"experiment_name": config.get("experiment_name"), "model": config["model"],
                   "data": config["data"]},
        "frontend": {"feature_stats": checkpoint["feature_stats"], "tokenizer": checkpoint["tokenizer"]},
        "dense": {name: t for name, t in state.items() if name not in sparse},
        "sparse": sparse,
        "meta": {"source": str(checkpoint["path"]), "source_step": checkpoint.get("step"),
                 "code_version": checkpoint.get("code_version"), "value_dtype": value_dtype,
                 "block": {name: list(shape) for name, shape in shapes.items()}},
    }


def size_rows(bundle: dict) -> list[dict]:
    """Per sparse matrix: shape, block, nonzeros, sparsity, dense fp32 bytes and the sparse parts' bytes."""
    rows = []
    for name, matrix in bundle["sparse"].items():
        size = matrix.nbytes()
        numel = matrix.shape[0] * matrix.shape[1]
        rows.append({"name": name, "shape": list(matrix.shape), "block": list(matrix.block), "nnz": matrix.nnz(),
                     "sparsity": 1 - matrix.nnz() / numel, "stored_values": matrix.values.numel(), **size})
    return rows


def size_summary(bundle: dict, path: Path) -> dict:
    """Totals: the sparse matrices dense vs stored, the whole model in fp32 vs the file on disk."""
    rows = size_rows(bundle)
    dense_rest = sum(t.numel() * 4 for t in bundle["dense"].values() if t.is_floating_point())
    totals = {key: sum(r[key] for r in rows) for key in ("dense_fp32", "total", "values", "indices", "row_ptr",
                                                          "scales", "nnz", "stored_values")}
    return {"matrices": rows, "sparse_dense_fp32_bytes": totals["dense_fp32"], "sparse_bytes": totals["total"],
            "sparse_value_bytes": totals["values"], "sparse_index_bytes": totals["indices"] + totals["row_ptr"],
            "scale_bytes": totals["scales"], "nnz": totals["nnz"], "stored_values": totals["stored_values"],
            "model_fp32_bytes": totals["dense_fp32"] + dense_rest, "file_bytes": path.stat().st_size}


def size_markdown(summary: dict) -> str:
    """The size table (MB = 1e6 bytes)."""
    mb = lambda n: f"{n / 1e6:.3f}"
    lines = ["| matrix | shape | block | nonzeros | sparsity | dense fp32 MB | sparse MB | values MB | ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["matrices"]:
        lines.append(f"| {r['name']} | {r['shape'][0]}x{r['shape'][1]} | {r['block'][0]}x{r['block'][1]} "
                     f"| {r['nnz']:,} | {100 * r['sparsity']:.1f}% | {mb(r['dense_fp32'])} | {mb(r['total'])} "
                     f"| {mb(r['values'])} | {r['dense_fp32'] / r['total']:.2f}x |")
    lines.append(f"| **all sparse matrices** | | | {summary['nnz']:,} | | {mb(summary['sparse_dense_fp32_bytes'])} "
                 f"| {mb(summary['sparse_bytes'])} | {mb(summary['sparse_value_bytes'])} "
                 f"| {summary['sparse_dense_fp32_bytes'] / summary['sparse_bytes']:.2f}x |")
    lines.append(f"| **whole model** (fp32 parameters vs deploy file) | | | | | {mb(summary['model_fp32_bytes'])} "
                 f"| {mb(summary['file_bytes'])} | | {summary['model_fp32_bytes'] / summary['file_bytes']:.2f}x |")
    return "\n".join(lines)


def max_weight_error(loaded: LoadedModel, bundle: dict) -> float:
    """Largest |stored - original| over all sparse matrices (0 for fp32)."""
    state = loaded.model.state_dict()
    return max((float((m.to_dense() - state[name].cpu().float()).abs().max()) for name, m in bundle["sparse"].items()),
               default=0.0)
