"""Train the rows of a table one after another, resumably (training/run_driver.py), each in
``<out>/runs/<row>/``; ``<out>/runs/<row>/row.json`` records the overrides it was started with and the wall time
of every attempt."""
from __future__ import annotations

import json
from pathlib import Path

from paper_tables.rows import Row, Scale
from training.run_driver import TrainingRun, train_run


class RowRun(TrainingRun):
    """A row's run folder (``row.json``: the driver's record) and what is known about it."""

    def __init__(self, row: Row, run_dir: str | Path) -> None:
        super().__init__(row.name, run_dir, state_file="row.json")
        self.row = row

    def pruned_sparsity(self) -> float:
        """Fraction of zeros over the pruned tensors at the end of training (pruning_report.json)."""
        report = self.run_dir / "pruning_report.json"
        if not self.finished or not report.is_file():
            raise RuntimeError(f"row {self.name} has not finished training ({self.run_dir}); "
                               f"the hard rows need its final sparsity")
        tensors = json.loads(report.read_text())["tensors"]
        return 1 - sum(t["nonzeros"] for t in tensors) / sum(t["numel"] for t in tensors)


def row_overrides(run: RowRun, scale: Scale, runs: dict[str, RowRun], extra: list[str]) -> list[str]:
    """train.py arguments of a row: its experiment config, the scale's overrides, the user's extras and, for a
    hard row, the sparsity its gradual counterpart reached (rounded to 1e-4 so a resume sees the same value)."""
    args = [f"experiment={scale.config_folder}/{run.row.name}", *scale.overrides, *extra]
    if run.row.matches:
        args.append(f"pruning.target_sparsity={runs[run.row.matches].pruned_sparsity():.4f}")
    return args


def train_rows(runs: dict[str, RowRun], scale: Scale, extra: list[str]) -> None:
    """Train every row in order (the hard rows come after the gradual rows they match)."""
    for index, run in enumerate(runs.values(), start=1):
        train_run(run, row_overrides(run, scale, runs, extra), f"[{index}/{len(runs)}]")
