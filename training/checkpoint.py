"""Checkpoints: one dict per file, written atomically, with a format version (pitfalls 3, 4 and 9).

A checkpoint holds model, optimizer, LR schedule, sampler position, RNG states, step and epoch, resolved
config, feature statistics, tokenizer and pruning state. Run folders keep ``last.pt`` (newest), ``best.pt``
(lowest dev CER) and ``step_<N>.pt``; "newest" is decided by the step stored inside, never by file times.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.atomic import atomic_path

FORMAT_VERSION = 1


def code_version() -> str:
    """The git commit of the code (with ``-dirty`` for uncommitted changes), or "unknown"."""
    root = Path(__file__).resolve().parents[1]
    try:
        run = lambda *args: subprocess.run(  # noqa: E731
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        return run("rev-parse", "--short", "HEAD") + ("-dirty" if run("status", "--porcelain", "-uno") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temp file in the same folder, then rename: a kill never leaves half a file."""
    with atomic_path(path) as tmp:
        torch.save({"format_version": FORMAT_VERSION, **state}, tmp)


def link_checkpoint(source: Path, alias: Path) -> None:
    """Make ``alias`` name the same checkpoint as ``source`` (hard link, else copy), atomically."""
    with atomic_path(alias) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def load_checkpoint(path: str | Path, prefer: tuple[str, ...] = ("last.pt", "best.pt")) -> dict[str, Any]:
    """Load a checkpoint file, or the first of ``prefer`` found in a run folder, onto the CPU."""
    path = resolve_checkpoint(path, prefer)
    state = torch.load(path, map_location="cpu", weights_only=False)
    version = state.get("format_version") if isinstance(state, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {version!r}, this code reads format {FORMAT_VERSION}")
    state["path"] = str(path)
    return state


def resolve_checkpoint(path: str | Path, prefer: tuple[str, ...] = ("last.pt", "best.pt")) -> Path:
    """A checkpoint file as given, or the first of ``prefer`` inside a run folder."""
    path = Path(path)
    if path.is_dir():
        for name in prefer:
            for candidate in (path / name, path / "checkpoints" / name):
                if candidate.is_file():
                    return candidate
        raise FileNotFoundError(f"no checkpoint ({' or '.join(prefer)}) in run folder {path}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) random states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
