"""Drive ``train.py`` runs one after another, resumably: a finished run is skipped, a killed run resumes from its
``last.pt``, and a run is never silently continued with different settings.

Each run trains in its own ``train.py`` process (a crash or out-of-memory in one run cannot corrupt another).
``<run_dir>/driver.json`` records the overrides it was started with and the wall time of every attempt.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from data.atomic import write_text_atomic

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


class TrainingRun:
    """A named ``train.py`` run folder and what is known about it; ``state_file`` is the driver's record."""

    def __init__(self, name: str, run_dir: str | Path, state_file: str = "driver.json") -> None:
        self.name, self.run_dir, self.state_file = name, Path(run_dir), state_file

    @property
    def state_path(self) -> Path:
        return self.run_dir / self.state_file

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
        """Wall time over all attempts (a resumed run adds up its pieces)."""
        return sum(a["seconds"] or 0.0 for a in self.state().get("attempts", []))


def train_run(run: TrainingRun, overrides: list[str], position: str) -> None:
    """Train (or resume, or skip) one run; raises RuntimeError if train.py fails or the settings changed."""
    state = run.state()
    if state and state["overrides"] != overrides:
        raise RuntimeError(
            f"{run.name} was started with {state['overrides']}, now asked for {overrides}; "
            f"delete {run.run_dir} (or use --restart {run.name}) to train it again with the new settings")
    if run.finished:
        log.info("%s %s: finished earlier (%.1f min), skipped", position, run.name, run.train_seconds() / 60)
        return
    command = [sys.executable, "train.py", *overrides, f"hydra.run.dir={run.run_dir.resolve()}"]
    if run.last_checkpoint.is_file():
        command.append(f"trainer.resume={run.last_checkpoint.resolve()}")
        log.info("%s %s: resuming from %s", position, run.name, run.last_checkpoint)
    else:
        log.info("%s %s: training (%s)", position, run.name, " ".join(overrides))
    run.run_dir.mkdir(parents=True, exist_ok=True)
    attempts = _close_killed_attempt(state.get("attempts", []), run.last_checkpoint)
    tic = time.time()
    attempts.append({"started": tic, "seconds": None, "returncode": None})  # a kill leaves it open
    _write_state(run, overrides, attempts)
    result = subprocess.run(command, cwd=REPO)
    attempts[-1].update(seconds=time.time() - tic, returncode=result.returncode)
    _write_state(run, overrides, attempts)
    if result.returncode != 0 or not run.finished:
        raise RuntimeError(f"{run.name}: train.py exited with {result.returncode}; see its output above (a config "
                           f"error, such as an unknown key, stops it before {run.run_dir / 'train.log'} exists). "
                           "Run the same command again to resume it.")
    log.info("%s %s: done in %.1f min", position, run.name, attempts[-1]["seconds"] / 60)


def _close_killed_attempt(attempts: list[dict], last_checkpoint: Path) -> list[dict]:
    """An attempt killed with the driver has no duration: count it up to its last checkpoint (the work kept)."""
    if attempts and attempts[-1]["seconds"] is None:
        kept = last_checkpoint.stat().st_mtime - attempts[-1]["started"] if last_checkpoint.is_file() else 0.0
        attempts[-1].update(seconds=max(kept, 0.0), returncode="killed")
    return attempts


def _write_state(run: TrainingRun, overrides: list[str], attempts: list[dict]) -> None:
    write_text_atomic(run.state_path, json.dumps({"overrides": overrides, "attempts": attempts}, indent=2) + "\n")
