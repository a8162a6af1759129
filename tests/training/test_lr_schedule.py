"""The learning-rate schedule (training/optim.py): warm-up, per-epoch decay and the final cool-down, as rates."""
import pytest
import torch

from training.config import OptimConfig
from training.optim import build_lr_schedule


def rates(cfg: OptimConfig, steps_per_epoch: int, num_epochs: int) -> list[float]:
    """The learning rate of every optimiser step of the run."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    schedule = build_lr_schedule(cfg, optimizer, steps_per_epoch, num_epochs)
    seen = []
    for _ in range(steps_per_epoch * num_epochs):
        seen.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    return seen


def test_warmup_then_decay_per_epoch():
    seen = rates(OptimConfig(lr=1.0, warmup_steps=4, lr_decay_per_epoch=0.5), steps_per_epoch=10, num_epochs=3)
    assert seen[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert seen[9] == 1.0 and seen[10] == 0.5 and seen[29] == 0.25


def test_cooldown_falls_linearly_to_zero_over_the_last_epochs():
    cfg = OptimConfig(lr=1.0, lr_decay_per_epoch=0.5, cooldown_epochs=1.5)
    seen = rates(cfg, steps_per_epoch=10, num_epochs=4)
    without = rates(OptimConfig(lr=1.0, lr_decay_per_epoch=0.5), steps_per_epoch=10, num_epochs=4)
    assert seen[:25] == without[:25]  # untouched before the last 15 steps
    cooldown = [rate / plain for rate, plain in zip(seen[25:], without[25:])]
    assert cooldown == pytest.approx([(15 - i) / 15 for i in range(15)])  # 1, 14/15, ..., 1/15: never zero
    assert seen[-1] > 0


@pytest.mark.parametrize("cooldown_epochs", [-1.0, 5.0])
def test_a_cooldown_outside_the_run_is_an_error(cooldown_epochs):
    with pytest.raises(ValueError, match="optim.cooldown_epochs"):
        rates(OptimConfig(cooldown_epochs=cooldown_epochs), steps_per_epoch=10, num_epochs=4)
