"""Per-layer pruning report (JSON + markdown) and a plot of sparsity and threshold against step per group."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from pruning.pruner import Pruner


def _markdown(method: str, rows: list[dict[str, Any]], sparsity: float) -> str:
    lines = [f"# Pruning report ({method})", ""]
    if not rows:
        return "\n".join(lines + ["No pruned tensors (dense baseline).", ""])
    lines += ["| tensor | group | shape | nonzeros | numel | sparsity | threshold |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        lines.append(f"| {r['name']} | {r['group']} | {shape} | {r['nonzeros']:,} | {r['numel']:,} "
                     f"| {100 * r['sparsity']:.2f}% | {r['threshold']:.4g} |")
    nonzeros, numel = sum(r["nonzeros"] for r in rows), sum(r["numel"] for r in rows)
    lines.append(f"| **all** | | | {nonzeros:,} | {numel:,} | {100 * sparsity:.2f}% | |")
    return "\n".join(lines + [""])


def _plot(history: list[dict[str, Any]], path: Path) -> None:
    fig = Figure(figsize=(7, 6))  # no pyplot: renders with Agg, touches no global backend state
    ax_sparsity, ax_threshold = fig.subplots(2, 1, sharex=True)
    for group in dict.fromkeys(h["group"] for h in history):
        points = [h for h in history if h["group"] == group]
        steps = [h["step"] for h in points]
        ax_sparsity.plot(steps, [100 * h["sparsity"] for h in points], marker=".", label=group)
        ax_threshold.plot(steps, [h["threshold"] for h in points], marker=".", label=group)
    if not history:
        ax_sparsity.text(0.5, 0.5, "no mask updates", ha="center", va="center", transform=ax_sparsity.transAxes)
    ax_sparsity.set_ylabel("sparsity (%)")
    ax_threshold.set_ylabel("threshold (mean over tensors)")
    ax_threshold.set_xlabel("step")
    for ax in (ax_sparsity, ax_threshold):
        ax.grid(alpha=0.3)
        if history:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_pruning_report(pruner: Pruner, out_dir: str | Path) -> str:
    """Write ``pruning_report.json``, ``pruning_report.md`` and ``sparsity_schedule.png`` into ``out_dir``;
    returns the markdown table."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, sparsity = pruner.report(), pruner.sparsity()
    summary = {"method": pruner.method, "sparsity": sparsity, "tensors": rows, "history": pruner.history}
    (out / "pruning_report.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = _markdown(pruner.method, rows, sparsity)
    (out / "pruning_report.md").write_text(table)
    _plot(pruner.history, out / "sparsity_schedule.png")
    return table
