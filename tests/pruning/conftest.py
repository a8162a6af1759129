"""A stand-in for the project's DeepSpeech2 with the same parameter naming (models/ is not imported)."""
from __future__ import annotations

import pytest
import torch
from torch import nn


class RnnLayer(nn.Module):
    """Batch norm over features, then a GRU: parameters rnns.<i>.bn.*, rnns.<i>.rnn.weight_ih_l0, ..."""

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(input_size)
        self.rnn = nn.GRU(input_size, hidden_size, batch_first=True, bidirectional=bidirectional)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, features) -> (batch, time, hidden * directions)."""
        return self.rnn(self.bn(x.transpose(1, 2)).transpose(1, 2))[0]


class TinyDS2(nn.Module):
    """conv (never pruned by default), rnns = ModuleList of GRU layers, fc = Sequential of Linear layers."""

    def __init__(self, num_features: int = 8, hidden_size: int = 24, num_layers: int = 2, num_outputs: int = 5,
                 bidirectional: bool = True) -> None:
        super().__init__()
        directions = 2 if bidirectional else 1
        self.conv = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2))
        self.rnns = nn.ModuleList(
            RnnLayer(num_features if i == 0 else hidden_size * directions, hidden_size, bidirectional)
            for i in range(num_layers)
        )
        self.fc = nn.Sequential(nn.Linear(hidden_size * directions, hidden_size), nn.ReLU(),
                                nn.Linear(hidden_size, num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, num_features) -> (batch, time, num_outputs)."""
        x = self.conv(x.unsqueeze(1)).mean(dim=1)
        for layer in self.rnns:
            x = layer(x)
        return self.fc(x)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (two threads on a loaded 2-core machine are ~50x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def model() -> TinyDS2:
    torch.manual_seed(0)
    return TinyDS2()


@pytest.fixture
def normal_model() -> TinyDS2:
    """A wider stand-in whose matrices are drawn from N(0, 1): expected sparsity at eps is P(|w| < eps)."""
    torch.manual_seed(0)
    model = TinyDS2(num_features=32, hidden_size=64)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_()
    return model
