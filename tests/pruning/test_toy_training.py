"""A short real training run: a small GRU regressor pruned gradually with Table 1's schedule reaches the
configured sparsity and keeps learning after end_itr (masks frozen, the surviving weights adapt)."""
import pytest
import torch
from torch import nn

from pruning import PruningConfig, build_pruner

NUM_FEATURES = 8


class GruRegressor(nn.Module):
    """rnns.0 = nn.GRU, fc = Sequential of Linear layers: the project's parameter names."""

    def __init__(self, hidden_size: int = 64) -> None:
        super().__init__()
        self.rnns = nn.ModuleList([nn.GRU(NUM_FEATURES, hidden_size, batch_first=True)])
        self.fc = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, NUM_FEATURES) -> (batch, time)."""
        return self.fc(self.rnns[0](x)[0]).squeeze(-1)


def batch(generator: torch.Generator, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Target: running sum of x0 * x1 / sqrt(t) (needs memory and a product); the other features are noise."""
    x = torch.randn(size, 12, NUM_FEATURES, generator=generator)
    return x, (x[..., 0] * x[..., 1]).cumsum(dim=1) / torch.arange(1, 13).float().sqrt()


def test_gradual_pruning_reaches_target_and_loss_keeps_falling_after_end():
    torch.manual_seed(0)
    model = GruRegressor()
    # Table 1 with 8 "epochs" of 50 steps: start 50, ramp 100, end 200 (freq 10 for a run this short).
    pruner = build_pruner(PruningConfig(method="gradual", freq=10, target_sparsity=0.8), model, 50, 8)
    assert (pruner.steps.start, pruner.steps.ramp, pruner.steps.end) == (50, 100, 200)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.995)
    generator, held_out = torch.Generator().manual_seed(0), batch(torch.Generator().manual_seed(1), 256)
    dev_loss = {}
    for step in range(1, 401):
        x, y = batch(generator)
        loss = (model(x) - y).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        pruner.step(step)
        if step in (1, 200, 300, 400):
            with torch.no_grad():
                dev_loss[step] = (model(held_out[0]) - held_out[1]).pow(2).mean().item()
    # Weights grow a little between calibration (step 50) and the last update, so it lands slightly under.
    assert pruner.sparsity() == pytest.approx(0.8, abs=0.02)
    assert dev_loss[200] < 0.2 * dev_loss[1]
    assert dev_loss[400] < dev_loss[300] < dev_loss[200] and dev_loss[400] < 0.8 * dev_loss[200]
