"""Duration-bucketed batches with SortaGrad and a resumable position.

Batches are formed over utterances sorted by duration, each holding at most ``max_frames`` padded feature
frames (batch size x longest utterance), so short utterances travel in large batches and long ones in small
ones. SortaGrad (Deep Speech 2, Sec. 3.1): the first epoch visits batches in increasing length; later
epochs shuffle the order of the batches with a generator seeded by (seed, epoch).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch


class DurationBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields lists of dataset indices; ``set_epoch(epoch, start_batch)`` positions it (for resume)."""

    def __init__(
        self,
        num_frames: Sequence[int],
        max_frames: int,
        sortagrad: bool = True,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        if not num_frames:
            raise ValueError("cannot batch an empty dataset")
        self.batches = _bucket(num_frames, max_frames)
        self.sortagrad, self.shuffle, self.seed = sortagrad, shuffle, seed
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Epoch to iterate next, skipping its first ``start_batch`` batches (already trained on)."""
        self.epoch, self.start_batch = epoch, start_batch

    def epoch_order(self, epoch: int) -> list[list[int]]:
        """The batches of ``epoch`` in the order they are visited."""
        if not self.shuffle or (self.sortagrad and epoch == 0):
            return self.batches
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return [self.batches[i] for i in torch.randperm(len(self.batches), generator=generator).tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_order(self.epoch)[self.start_batch :]

    def __len__(self) -> int:
        return len(self.batches) - self.start_batch


def _bucket(num_frames: Sequence[int], max_frames: int) -> list[list[int]]:
    """Greedy batches over indices sorted by length; padded size len(batch) * longest <= max_frames."""
    order = sorted(range(len(num_frames)), key=lambda i: (num_frames[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        if current and (len(current) + 1) * num_frames[index] > max_frames:
            batches.append(current)
            current = []
        current.append(index)
    batches.append(current)
    return batches
