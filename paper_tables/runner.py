"""Train the rows of a table one after another, resumably: finished rows are skipped, a killed row resumes
from its ``last.pt``, and a row is never silently continued with different settings.

Each row trains in its own ``train.py`` process (a crash or out-of-memory in one row cannot corrupt another)
in ``<out>/runs/<row>/``. ``<out>/runs/<row>/row.json`` records the overrides it was started with and the wall
time of every attempt.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from data.atomic import write_text_atomic
from paper_tables.rows import Row, Scale

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


@dataclass
class RowRun:
    """A row's run folder and what is known about it."""

    row: Row
    run_dir: Path

    @property
    def state_path(self) -> Path:
        return self.run_dir / "row.json"

    @property
    def finished(self) -> bool:
        """train.py writes summary.json only when it reached the end of training."""
        return (self.run_dir / "summary.json").is_file()

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def state(self) -> dict:
        return json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}

    def train_seconds(self) -> float:
        """Wall time over all attempts (a resumed row adds up its pieces)."""
        return sum(a["seconds"] or 0.0 for a in self.state().get("attempts", []))

    def pruned_sparsity(self) -> float:
        """Fraction of zeros over the pruned tensors at the end of training (pruning_report.json)."""
        report = self.run_dir / "pruning_report.json"
        if not self.finished or not report.is_file():
            raise RuntimeError(f"row {self.row.name} has not finished training ({self.run_dir}); "
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


def train_row(run: RowRun, overrides: list[str], position: str) -> None:
    """Train (or resume, or skip) one row; raises RuntimeError if train.py fails or the settings changed."""
    state = run.state()
    if state and state["overrides"] != overrides:
        raise RuntimeError(
            f"row {run.row.name} was started with {state['overrides']}, now asked for {overrides}; "
            f"delete {run.run_dir} (or use --restart {run.row.name}) to train it again with the new settings")
    if run.finished:
        log.info("%s %s: finished earlier (%.1f min), skipped", position, run.row.name, run.train_seconds() / 60)
        return
    command = [sys.executable, "train.py", *overrides, f"hydra.run.dir={run.run_dir}"]
    if run.last_checkpoint.is_file():
        command.append(f"trainer.resume={run.last_checkpoint}")
        log.info("%s %s: resuming from %s", position, run.row.name, run.last_checkpoint)
    else:
        log.info("%s %s: training (%s)", position, run.row.name, " ".join(overrides))
    run.run_dir.mkdir(parents=True, exist_ok=True)
    attempts = _close_killed_attempt(state.get("attempts", []), run.last_checkpoint)
    tic = time.time()
    attempts.append({"started": tic, "seconds": None, "returncode": None})  # a kill leaves it open
    _write_state(run, overrides, attempts)
    result = subprocess.run(command, cwd=REPO)
    attempts[-1].update(seconds=time.time() - tic, returncode=result.returncode)
    _write_state(run, overrides, attempts)
    if result.returncode != 0 or not run.finished:
        raise RuntimeError(f"row {run.row.name}: train.py exited with {result.returncode}; see "
                           f"{run.run_dir / 'train.log'}. Run the same command again to resume it.")
    log.info("%s %s: done in %.1f min", position, run.row.name, attempts[-1]["seconds"] / 60)


def _close_killed_attempt(attempts: list[dict], last_checkpoint: Path) -> list[dict]:
    """An attempt killed with the driver has no duration: count it up to its last checkpoint (the work kept)."""
    if attempts and attempts[-1]["seconds"] is None:
        kept = last_checkpoint.stat().st_mtime - attempts[-1]["started"] if last_checkpoint.is_file() else 0.0
        attempts[-1].update(seconds=max(kept, 0.0), returncode="killed")
    return attempts


def _write_state(run: RowRun, overrides: list[str], attempts: list[dict]) -> None:
    write_text_atomic(run.state_path, json.dumps({"overrides": overrides, "attempts": attempts}, indent=2) + "\n")


def train_rows(runs: dict[str, RowRun], scale: Scale, extra: list[str]) -> None:
    """Train every row in order (the hard rows come after the gradual rows they match)."""
    for index, run in enumerate(runs.values(), start=1):
        train_row(run, row_overrides(run, scale, runs, extra), f"[{index}/{len(runs)}]")
