"""Gradual (Algorithm 1) and block pruning on frozen weights drawn from N(0, 1), where the expected sparsity at a
threshold eps is P(|w| < eps) = erf(eps / sqrt(2))."""
import math

import pytest
import torch

from pruning import PruningConfig, build_pruner
from pruning.config import GroupConfig, default_groups
from pruning.criterion import kth_smallest

WINDOW = dict(start_step=10, ramp_step=40, end_step=100, freq=5)  # last update at step 95


def expected_final_eps(q: float, m: float) -> float:
    """Algorithm 1 by hand at itr = 95: theta = 2 q freq / (2 (40 - 10) + 3 (100 - 40)), phi = m theta."""
    theta = 2 * q * 5 / (2 * 30 + 3 * 60)
    return (theta * (40 - 10 + 1) + m * theta * (95 - 40 + 1)) / 5


def run(pruner, last_step: int) -> None:
    for step in range(1, last_step + 1):
        pruner.step(step)


def test_full_schedule_reaches_the_analytic_sparsity(normal_model):
    groups = default_groups()
    groups["recurrent"].q, groups["input"].q = 1.0, 1.6449
    groups["fc"].q, groups["fc"].ramp_multiple = 0.5, 2.0
    pruner = build_pruner(PruningConfig(method="gradual", groups=groups, **WINDOW), normal_model, 10, 10)
    run(pruner, 150)
    for group, q, m in [("recurrent", 1.0, 1.5), ("input", 1.6449, 1.5), ("fc", 0.5, 2.0)]:
        expected = math.erf(expected_final_eps(q, m) / math.sqrt(2))
        assert pruner.scalars()[f"sparsity/{group}"] == pytest.approx(expected, abs=0.01), group


def test_automatic_calibration_gives_about_ninety_percent(normal_model):
    pruner = build_pruner(PruningConfig(method="gradual", **WINDOW), normal_model, 10, 10)
    run(pruner, 9)
    assert pruner.calibration == {} and pruner.sparsity() == 0.0
    run(pruner, 150)
    q = pruner.calibration["rnns.1.rnn.weight_hh_l0"]["q"]
    assert q == pytest.approx(1.6449, abs=0.05)  # 90th percentile of |N(0, 1)|
    assert pruner.sparsity() == pytest.approx(math.erf(expected_final_eps(1.6449, 1.5) / math.sqrt(2)), abs=0.01)


def test_masks_update_only_at_freq_multiples_inside_the_window_and_freeze_after(model):
    pruner = build_pruner(PruningConfig(method="gradual", q_percentile=50.0, **WINDOW), model, 10, 10)
    generator = torch.Generator().manual_seed(0)
    changed_at, masks_at_end = [], None
    for step in range(1, 160):
        with torch.no_grad():  # weights keep moving, so any recomputation would change the masks
            for t in pruner.tensors:
                t.param.add_(0.05 * torch.randn(t.param.shape, generator=generator))
        if pruner.step(step):
            changed_at.append(step)
        if step == 100:
            masks_at_end = {n: m.clone() for n, m in pruner.masks.items()}
        for t in pruner.tensors:
            assert (t.param[~pruner.masks[t.name]] == 0).all()
    assert changed_at == list(range(15, 100, 5))
    assert sorted({h["step"] for h in pruner.history}) == list(range(15, 100, 5))
    assert all(torch.equal(pruner.masks[n], m) for n, m in masks_at_end.items())
    assert pruner.sparsity() > 0.3


def test_a_pruned_weight_can_come_back_at_the_next_update(model):
    pruner = build_pruner(PruningConfig(method="gradual", **WINDOW), model, 10, 10)
    run(pruner, 50)
    name = "fc.0.weight"
    index = tuple(int(i) for i in (~pruner.masks[name]).nonzero()[0])
    with torch.no_grad():
        model.fc[0].weight[index] = 10.0  # grew far above the threshold (gradients are not masked)
    pruner.step(51)
    assert model.fc[0].weight[index] == 0.0  # not an update step: still masked
    with torch.no_grad():
        model.fc[0].weight[index] = 10.0
    pruner.step(55)
    assert pruner.masks[name][index] and model.fc[0].weight[index] == 10.0


def test_target_sparsity_solve_reaches_each_group_target(normal_model):
    groups = default_groups()
    groups["recurrent"].target_sparsity, groups["input"].target_sparsity = 0.6, 0.75
    groups["fc"].ramp_multiple = 2.0
    cfg = PruningConfig(method="gradual", groups=groups, target_sparsity=0.9, **WINDOW)
    pruner = build_pruner(cfg, normal_model, 10, 10)
    run(pruner, 120)
    scalars = pruner.scalars()
    for group, target in [("recurrent", 0.6), ("input", 0.75), ("fc", 0.9)]:
        assert scalars[f"sparsity/{group}"] == pytest.approx(target, abs=0.002), group  # exact up to 1/n


def test_q_from_a_dense_checkpoint(model, tmp_path):
    dense = {name: 3.0 * value for name, value in model.state_dict().items()}
    torch.save({"model": dense, "step": 7}, tmp_path / "dense.pt")
    pruner = build_pruner(PruningConfig(method="gradual", q_from=str(tmp_path / "dense.pt"), **WINDOW), model, 10, 10)
    for name in ("rnns.0.rnn.weight_hh_l0", "fc.0.weight"):
        expected = kth_smallest([dense[name].abs()], 0.9)
        assert pruner.calibration[name]["q"] == pytest.approx(expected)
        assert pruner.calibration[name]["q"] == pytest.approx(3 * kth_smallest([model.state_dict()[name].abs()], 0.9))
    run(pruner, 20)  # no recalibration from the model's own weights at start_itr
    assert pruner.calibration["fc.0.weight"]["q"] == pytest.approx(kth_smallest([dense["fc.0.weight"].abs()], 0.9))
    for broken, error in [({**dense, "fc.2.weight": dense["fc.2.weight"][:2]}, "fc.2.weight has shape"),
                          ({k: v for k, v in dense.items() if k != "fc.2.weight"}, "lacks .*fc.2.weight")]:
        torch.save({"model": broken}, tmp_path / "broken.pt")
        with pytest.raises(ValueError, match=error):
            build_pruner(PruningConfig(method="gradual", q_from=str(tmp_path / "broken.pt"), **WINDOW), model, 10, 10)


def test_block_pruning_zeroes_whole_blocks_including_edge_blocks(normal_model):
    groups = {"recurrent": GroupConfig(patterns=[r"rnns\.\d+\..*weight_hh"], block=[5, 7]),
              "fc": GroupConfig(patterns=[r"^fc\..*weight$"])}  # 192 x 64 by 5 x 7: edge blocks 2 x 1
    cfg = PruningConfig(method="block", groups=groups, block=[4, 4], target_sparsity=0.8, **WINDOW)
    pruner = build_pruner(cfg, normal_model, 10, 10)
    run(pruner, 120)
    for t in pruner.tensors:
        rows, cols = (5, 7) if t.group == "recurrent" else (4, 4)
        zero = (t.param == 0).reshape(t.param.shape[0], -1)
        blocks = [zero[i: i + rows, j: j + cols] for i in range(0, zero.shape[0], rows)
                  for j in range(0, zero.shape[1], cols)]
        assert all(b.all() or not b.any() for b in blocks), t.name
        assert sum(bool(b.all()) for b in blocks) / len(blocks) == pytest.approx(0.8, abs=0.03), t.name
