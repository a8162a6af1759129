"""Score every finished row on the dev and test splits of its corpus (the same manifests for all rows of a scale),
and measure what it would take on disk, dense and sparse."""
from __future__ import annotations

import json
import logging

import evaluate
from paper_tables.runner import RowRun

log = logging.getLogger(__name__)
SPLITS = ("dev", "test")
FP32_BYTES = 4


def evaluate_row(run: RowRun, device: str) -> dict[str, dict]:
    """{split: evaluate.py's results row} for the row's final checkpoint (``last.pt``: the end of training, as
    the paper reports; ``best.pt`` of a pruned run can predate its final sparsity). Cached per split in
    ``<run>/eval/<split>/results.json`` (a finished row never changes)."""
    scores = {}
    for split in SPLITS:
        out = run.run_dir / "eval" / split
        cached = out / "results.json"
        if not (cached.is_file() and cached.stat().st_mtime >= (run.run_dir / "summary.json").stat().st_mtime):
            log.info("evaluating %s on %s", run.row.name, split)
            evaluate.main([str(run.last_checkpoint), "--split", split, "--names", run.row.name,
                           "--out", str(out), "--device", device])
        scores[split] = json.loads(cached.read_text())[0]
    return scores


def disk_sizes(run: RowRun, total_params: int) -> dict[str, float]:
    """Model size in MB: dense fp32 (the paper's "268 MB"), and sparse: the pruned matrices in CSR with fp32
    values, int16 column indices (int32 when a matrix has more than 32767 columns) and int32 row pointers, every
    other parameter dense. Computed from the pruning report's shapes and nonzero counts."""
    report = run.run_dir / "pruning_report.json"
    tensors = json.loads(report.read_text())["tensors"] if report.is_file() else []
    pruned_numel = sum(t["numel"] for t in tensors)
    csr_bytes = sum(
        t["nonzeros"] * (FP32_BYTES + (2 if t["shape"][-1] <= 32767 else 4)) + (t["shape"][0] + 1) * 4
        for t in tensors
    )
    dense_rest = (total_params - pruned_numel) * FP32_BYTES
    return {"size_dense_mb": total_params * FP32_BYTES / 1e6, "size_sparse_mb": (dense_rest + csr_bytes) / 1e6}
