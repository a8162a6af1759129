"""The Pruner: masks survive optimizers, GRUs keep working, state round-trips bit for bit, hard/AGP are exact."""
import copy
import io

import pytest
import torch

from pruning import NoPruner, PruningConfig, build_pruner
from pruning.config import default_groups
from pruning.schedule import ScheduleSteps, agp_sparsity

WINDOW = dict(start_step=4, ramp_step=12, end_step=30, freq=2)


def train_steps(model, pruner, optimizer, first: int, last: int, check_masks: bool = True) -> None:
    """Loop order of the trainer: backward -> optimizer.step() -> pruner.step(step)."""
    generator = torch.Generator().manual_seed(1)
    for step in range(first, last + 1):
        x = torch.randn(4, 6, 8, generator=generator)
        loss = model(x).pow(2).mean() + sum(p.pow(2).sum() for p in model.parameters() if p.dim() >= 2) * 1e-3
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        pruner.step(step)
        if check_masks:
            for t in pruner.tensors:
                assert (t.param[~pruner.masks[t.name]] == 0).all(), (step, t.name)


@pytest.mark.parametrize("make_optimizer", [
    lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    lambda p: torch.optim.Adam(p, lr=1e-2),
    lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
], ids=["sgd-nesterov", "adam", "adamw"])
def test_masked_weights_are_exactly_zero_after_every_optimizer_step(model, make_optimizer):
    pruner = build_pruner(PruningConfig(method="gradual", **WINDOW), model, 10, 10)
    train_steps(model, pruner, make_optimizer(model.parameters()), 1, 34)
    assert pruner.sparsity() > 0.3


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_pruned_keeps_pruned_gradients_zero_only_when_asked(model, freeze):
    cfg = PruningConfig(method="hard", target_sparsity=0.7, start_step=1, freeze_pruned=freeze)
    pruner = build_pruner(cfg, model, 10, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    train_steps(model, pruner, optimizer, 1, 5)  # also checks the pruned weights stay exactly zero
    for t in pruner.tensors:
        mask = pruner.masks[t.name]
        assert bool((t.param.grad[~mask] == 0).all()) == freeze, t.name  # the paper: gradients not masked
        assert t.param.grad[mask].any()


def test_masks_applied_to_a_gru_equal_a_dense_copy_zeroed_by_hand(model):
    pruner = build_pruner(PruningConfig(method="hard", target_sparsity=0.6, start_step=1), model, 10, 1)
    by_hand = copy.deepcopy(model)
    x = torch.randn(3, 7, 8)
    model.eval(), by_hand.eval()
    dense_output = model(x)
    pruner.step(1)
    with torch.no_grad():
        params = dict(by_hand.named_parameters())
        for name, mask in pruner.masks.items():
            params[name][~mask] = 0.0
    assert not torch.allclose(model(x), dense_output)
    torch.testing.assert_close(model(x), by_hand(x), rtol=0, atol=0)


def test_model_state_dict_keys_unchanged_and_load_strictly_into_a_dense_model(model):
    keys = list(model.state_dict())
    build_pruner(PruningConfig(method="gradual", **WINDOW), model, 10, 10)
    assert list(model.state_dict()) == keys
    copy.deepcopy(model).load_state_dict(model.state_dict(), strict=True)


def save_and_load(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("method", ["gradual", "block", "agp"])
def test_state_round_trip_continues_bit_identically(model, method):
    cfg = PruningConfig(method=method, target_sparsity=0.8 if method == "agp" else None, **WINDOW)
    initial = copy.deepcopy(model.state_dict())
    make_optimizer = lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)  # noqa: E731

    uninterrupted = build_pruner(cfg, model, 10, 10)
    optimizer = make_optimizer(model)
    train_steps(model, uninterrupted, optimizer, 1, 15)
    checkpoint = save_and_load({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "pruning": uninterrupted.state_dict()})
    train_steps(model, uninterrupted, optimizer, 16, 34)

    resumed_model = copy.deepcopy(model)
    resumed_model.load_state_dict(initial)  # a fresh model: different weights until the checkpoint is loaded
    resumed = build_pruner(cfg, resumed_model, 10, 10)
    resumed_model.load_state_dict(checkpoint["model"])
    resumed.load_state_dict(checkpoint["pruning"])
    optimizer = make_optimizer(resumed_model)
    optimizer.load_state_dict(checkpoint["optimizer"])
    train_steps(resumed_model, resumed, optimizer, 16, 34)

    assert all(torch.equal(resumed.masks[n], m) for n, m in uninterrupted.masks.items())
    assert resumed.thresholds == uninterrupted.thresholds and resumed.history == uninterrupted.history
    assert resumed.state_dict().get("calibration") == uninterrupted.state_dict().get("calibration")
    assert len(uninterrupted.history) > 3 * 2 and uninterrupted.sparsity() > 0.3


def test_load_state_dict_rejects_another_method_or_other_tensors(model):
    gradual = build_pruner(PruningConfig(method="gradual", **WINDOW), model, 10, 10)
    with pytest.raises(ValueError, match="method 'gradual'"):
        NoPruner().load_state_dict(gradual.state_dict())
    groups = {"fc": default_groups()["fc"]}
    fc_only = build_pruner(PruningConfig(method="gradual", groups=groups, **WINDOW), model, 10, 10)
    with pytest.raises(ValueError, match="unexpected.*rnns.0.rnn.weight_hh_l0"):
        fc_only.load_state_dict(gradual.state_dict())


@pytest.mark.parametrize("scope", ["tensor", "group"])
def test_hard_pruning_gives_exactly_the_target_in_every_group(model, scope):
    groups = default_groups()
    groups["recurrent"].target_sparsity, groups["fc"].target_sparsity = 0.5, 0.75
    cfg = PruningConfig(method="hard", groups=groups, target_sparsity=0.9, start_step=3, scope=scope)
    pruner = build_pruner(cfg, model, 10, 1)
    assert not pruner.step(1) and not pruner.step(2) and pruner.sparsity() == 0.0
    assert pruner.step(3)
    for group, target in [("recurrent", 0.5), ("input", 0.9), ("fc", 0.75)]:
        members = [t.param for t in pruner.tensors if t.group == group]
        units = [[p] for p in members] if scope == "tensor" else [members]
        for unit in units:
            zeros = sum(int((p == 0).sum()) for p in unit)
            assert zeros == round(target * sum(p.numel() for p in unit)), group
    masks = {n: m.clone() for n, m in pruner.masks.items()}
    assert not pruner.step(4) and all(torch.equal(pruner.masks[n], m) for n, m in masks.items())


def test_agp_hits_its_cubic_targets(model):
    steps = ScheduleSteps(start=10, ramp=10, end=50, freq=10)
    pruner = build_pruner(PruningConfig(method="agp", target_sparsity=0.8, start_step=10, end_step=50, freq=10),
                          model, 10, 10)
    for step in range(1, 70):
        pruner.step(step)
        if step % 10 == 0 and 10 <= step <= 50:
            target = agp_sparsity(step, 0.0, 0.8, steps)
            for t in pruner.tensors:
                assert int((t.param == 0).sum()) == round(target * t.param.numel()), (step, t.name)
    assert [h["step"] for h in pruner.history if h["group"] == "fc"] == [10, 20, 30, 40, 50]
    assert pruner.sparsity() == pytest.approx(0.8, abs=0.005)


def test_no_pruner_is_a_no_op_with_the_same_interface(model):
    before = copy.deepcopy(model.state_dict())
    pruner = build_pruner(PruningConfig(), model, 10, 10)
    assert isinstance(pruner, NoPruner)
    assert pruner.step(1) is False and pruner.sparsity() == 0.0 and pruner.report() == []
    assert pruner.scalars() == {} and pruner.history == []
    pruner.load_state_dict(save_and_load(pruner.state_dict()))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
