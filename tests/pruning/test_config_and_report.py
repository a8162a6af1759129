"""configs/pruning/*.yaml against the schema, build_pruner's name lookup, and the written report."""
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError

from pruning import PruningConfig, build_pruner
from pruning.config import PRUNERS
from pruning.report import write_pruning_report

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "pruning"
METHODS = ["none", "gradual", "hard", "agp", "block"]


def load(method: str):
    return OmegaConf.merge(OmegaConf.structured(PruningConfig), OmegaConf.load(CONFIG_DIR / f"{method}.yaml"))


@pytest.mark.parametrize("method", METHODS)
def test_each_yaml_builds_its_pruner(model, method):
    pruner = build_pruner(load(method), model, steps_per_epoch=50, num_epochs=20)
    assert isinstance(pruner, PRUNERS[method]) and pruner.method == method
    if method != "none":
        assert pruner.steps.start == 50 and pruner.steps.end == 500  # Table 1: after epoch 1, 50% of training


def test_explicit_steps_override_epoch_defaults(model):
    cfg = load("gradual")
    cfg.ramp_step, cfg.freq = 120, 10
    pruner = build_pruner(cfg, model, steps_per_epoch=50, num_epochs=20)
    assert (pruner.steps.start, pruner.steps.ramp, pruner.steps.end, pruner.steps.freq) == (50, 120, 500, 10)


def test_unknown_method_and_misspelt_keys_raise(model):
    with pytest.raises(ValueError, match="unknown pruning method 'magic'"):
        build_pruner(PruningConfig(method="magic"), model, 10, 10)
    with pytest.raises(ConfigKeyError, match="target_sparsty"):
        OmegaConf.merge(OmegaConf.structured(PruningConfig), {"target_sparsty": 0.9})


def test_impossible_schedules_and_missing_targets_raise(model):
    with pytest.raises(ValueError, match="start <= ramp <= end"):
        build_pruner(load("gradual"), model, steps_per_epoch=50, num_epochs=2)  # ramp (25) before start (50)
    with pytest.raises(ValueError, match="no mask update"):
        build_pruner(PruningConfig(method="gradual", start_step=0, ramp_step=50, end_step=90), model, 10, 10)
    with pytest.raises(ValueError, match="needs target_sparsity"):
        build_pruner(PruningConfig(method="hard"), model, 10, 10)
    with pytest.raises(ValueError, match="start >= 1"):
        build_pruner(PruningConfig(method="hard", target_sparsity=0.5, start_step=0), model, 10, 10)
    with pytest.raises(ValueError, match="start <= end"):
        build_pruner(PruningConfig(method="agp", target_sparsity=0.5, start_step=60, end_step=50), model, 10, 10)


@pytest.mark.parametrize("method", ["gradual", "none"])
def test_report_files(model, tmp_path, method):
    cfg = PruningConfig(method=method, start_step=2, ramp_step=6, end_step=12, freq=2)
    pruner = build_pruner(cfg, model, 10, 10)
    for step in range(1, 15):
        pruner.step(step)
    write_pruning_report(pruner, tmp_path)
    report = json.loads((tmp_path / "pruning_report.json").read_text())
    assert report["tensors"] == pruner.report() and report["method"] == method
    assert report["sparsity"] == pytest.approx(pruner.sparsity())
    markdown = (tmp_path / "pruning_report.md").read_text()
    assert all(row["name"] in markdown for row in pruner.report())
    assert (tmp_path / "sparsity_schedule.png").read_bytes()[:4] == b"\x89PNG"
    if method == "gradual":
        assert {h["step"] for h in report["history"]} == {4, 6, 8, 10}
        row = report["tensors"][0]
        assert row["numel"] - row["nonzeros"] == int((~pruner.masks[row["name"]]).sum()) > 0
        assert set(pruner.scalars()) == {f"{k}/{g}" for k in ("sparsity", "threshold")
                                         for g in ("recurrent", "input", "fc")} | {"sparsity/all"}
