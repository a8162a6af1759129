"""The table's figures: CER against nonzero parameters (the paper's argument), training and dev loss per row
(the paper's Figure 1) and sparsity against step."""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from paper_tables.runner import RowRun
from training.run_log import MetricsLog

MARKERS = {"dense": "o", "gradual": "^", "hard": "x"}
COLORS = {"rnn": "tab:blue", "gru": "tab:orange"}


def plot_cer_vs_params(records: list[dict], path: Path) -> None:
    """Test CER (%) against nonzero parameters (log scale): dense, gradually and hard-pruned rows by marker."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for method, marker in MARKERS.items():
        for family, color in COLORS.items():
            points = [r for r in records if r["method"] == method and r["family"] == family]
            if points:
                ax.scatter([r["nonzero_params"] for r in points], [100 * r["test_cer"] for r in points],
                           marker=marker, color=color, label=f"{family.upper()} {method}")
    for r in records:
        ax.annotate(r["row"], (r["nonzero_params"], 100 * r["test_cer"]), fontsize=7,
                    textcoords="offset points", xytext=(4, 3))
    ax.set_xscale("log")
    ax.set_xlabel("nonzero parameters")
    ax.set_ylabel("test CER (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_loss_curves(runs: list[RowRun], path: Path) -> None:
    """Training loss (left) and dev loss (right) against step, one line per row, RNN rows above GRU rows."""
    families = [f for f in COLORS if any(run.row.family == f for run in runs)]
    fig = Figure(figsize=(11, 3.8 * max(len(families), 1)))
    axes = fig.subplots(max(len(families), 1), 2, squeeze=False)
    for (train_ax, dev_ax), family in zip(axes, families):
        for run in (run for run in runs if run.row.family == family):
            records = MetricsLog(run.run_dir / "metrics.jsonl").records()
            style = {"marker": MARKERS[run.row.method], "markersize": 3, "label": run.row.name}
            train = [(r["step"], r["loss"]) for r in records if "loss" in r]
            dev = [(r["step"], r["dev_loss"]) for r in records if "dev_loss" in r]
            if train:
                train_ax.plot(*zip(*train), alpha=0.8, **{**style, "marker": None})
            if dev:
                dev_ax.plot(*zip(*dev), **style)
        for ax, what in ((train_ax, "training"), (dev_ax, "dev")):
            ax.set_title(f"{family.upper()} rows: {what} CTC loss")
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_sparsity(runs: list[RowRun], path: Path) -> None:
    """Sparsity of the pruned matrices (%) against step for every pruned row (from the training log)."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for run in (run for run in runs if run.row.method != "dense"):
        points = [(r["step"], 100 * r["sparsity"]) for r in MetricsLog(run.run_dir / "metrics.jsonl").records()
                  if "loss" in r and "sparsity" in r]
        if points:
            ax.plot(*zip(*points), label=run.row.name, linestyle="-" if run.row.method == "gradual" else "--")
    ax.set_xlabel("step")
    ax.set_ylabel("sparsity of pruned matrices (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
