"""Checkpoint averaging (training/averaging.py, scripts/average_checkpoints.py)."""
from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from training.averaging import average_checkpoints
from training.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def checkpoint(step: int, weight: list[float], masks: dict | None = None) -> dict:
    model = OrderedDict(w=torch.tensor(weight), num_batches_tracked=torch.tensor(step))
    return {"step": step, "model": model, "optimizer": {"lr": 1}, "config": {"step": step},
            "pruning": {"method": "none", "masks": masks or {}}}


def test_mean_of_weights_newest_for_the_rest():
    averaged = average_checkpoints([checkpoint(300, [3.0, 6.0]), checkpoint(100, [1.0, 2.0]),
                                    checkpoint(200, [2.0, 1.0])])
    assert torch.allclose(averaged["model"]["w"], torch.tensor([2.0, 3.0]))
    assert int(averaged["model"]["num_batches_tracked"]) == 300  # integers from the newest
    assert averaged["config"] == {"step": 300} and averaged["step"] == 300
    assert "optimizer" not in averaged  # not resumable: no optimizer state pretends to match the weights
    assert [entry["step"] for entry in averaged["averaged_from"]] == [300, 100, 200]


def test_pruned_weights_stay_zero():
    mask = torch.tensor([1.0, 0.0])
    averaged = average_checkpoints([checkpoint(100, [1.0, 2.0]), checkpoint(200, [3.0, 0.0], {"w": mask})])
    assert averaged["model"]["w"].tolist() == [2.0, 0.0]


def test_refuses_different_models_and_nothing():
    with pytest.raises(ValueError, match="not the same model"):
        average_checkpoints([checkpoint(1, [1.0, 2.0]), checkpoint(2, [1.0, 2.0, 3.0])])
    with pytest.raises(ValueError, match="no checkpoints"):
        average_checkpoints([])


def test_script_averages_the_newest_checkpoints_of_a_run(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    for step, value in ((100, 0.0), (200, 2.0), (300, 4.0)):
        save_checkpoint(folder / f"step{step}.pt", checkpoint(step, [value]))
    save_checkpoint(folder / "last.pt", checkpoint(300, [4.0]))  # the newest step again: counted once
    spec = importlib.util.spec_from_file_location("average_checkpoints", ROOT / "scripts" / "average_checkpoints.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main([str(tmp_path / "run"), "--last", "2", "--out", str(tmp_path / "avg.pt")])
    averaged = load_checkpoint(tmp_path / "avg.pt")
    assert averaged["model"]["w"].tolist() == [3.0] and averaged["step"] == 300
    with pytest.raises(SystemExit, match="3 checkpoints"):
        script.main([str(tmp_path / "run"), "--last", "4", "--out", str(tmp_path / "avg4.pt")])
