"""Helpers shared by the benchmark scripts: random batches, timed training steps, writing the markdown table."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from data.atomic import write_text_atomic
from training.loss import ctc_losses


def random_batch(num_features: int, batch: int, seconds: float, device: torch.device, seed: int = 0) -> tuple:
    """(features (batch, num_features, frames), lengths, targets, target_lengths) at 100 frames and 10 labels/s."""
    generator = torch.Generator().manual_seed(seed)
    frames, labels = int(seconds * 100), int(seconds * 10)
    features = torch.randn(batch, num_features, frames, generator=generator).to(device)
    targets = torch.randint(1, 29, (batch * labels,), generator=generator)
    return features, torch.full((batch,), frames, device=device), targets, torch.full((batch,), labels)


def timed_train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: tuple,
    after_step: Callable[[], None] | None = None,
) -> float:
    """Seconds for forward, fp32 CTC, backward, optimizer step and ``after_step`` (e.g. the pruner)."""
    features, lengths, targets, target_lengths = batch
    tic = time.perf_counter()
    log_probs, out_lengths = model(features, lengths)
    losses, _ = ctc_losses(log_probs, out_lengths, targets, target_lengths)
    optimizer.zero_grad(set_to_none=True)
    losses.mean().backward()
    optimizer.step()
    if after_step is not None:
        after_step()
    if features.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - tic


def write_table(lines: list[str], out: Path) -> str:
    """Join a benchmark's markdown ``lines``, write them to ``out`` atomically (folders created), return the table."""
    table = "\n".join(lines)
    write_text_atomic(out, table + "\n")
    return table
