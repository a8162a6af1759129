"""Duration-bucketed batches with SortaGrad, sharded over data-parallel processes, with a resumable position.

Batches are formed over utterances sorted by duration, each holding at most ``max_frames`` padded feature
frames (batch size x longest utterance), so short utterances travel in large batches and long ones in small
ones. SortaGrad (Deep Speech 2, Sec. 3.1): the first epoch visits batches in increasing length; later
epochs shuffle the order of the batches with a generator seeded by (seed, epoch).

These are *global* batches: they depend only on the utterance lengths, ``max_frames`` and the seed, never on
the number of processes. With ``num_replicas`` processes (torchrun), every process builds the same global
batches in the same order and takes its share ``batch[rank::num_replicas]`` of each: the shares are disjoint,
every process makes the same number of steps, and one optimizer step trains on one global batch whatever the
number of processes. Positions count global batches, so a run can resume on a different number of processes.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


class DurationBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields this process's share (a list of dataset indices) of each global batch.

    ``set_epoch(epoch, start_batch)`` positions it (for resume; ``start_batch`` counts global batches).
    A global batch with fewer utterances than processes leaves some processes without a share: they get a
    copy of one of its utterances instead, and ``has_share`` tells the trainer to give it weight 0.
    """

    def __init__(
        self,
        num_frames: Sequence[int],
        max_frames: int,
        sortagrad: bool = True,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if not num_frames:
            raise ValueError("cannot batch an empty dataset")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        self.batches = _bucket(num_frames, max_frames)
        self.sortagrad, self.shuffle, self.seed = sortagrad, shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Epoch to iterate next, skipping its first ``start_batch`` global batches (already trained on)."""
        self.epoch, self.start_batch = epoch, start_batch

    def epoch_order(self, epoch: int) -> list[list[int]]:
        """The global batches of ``epoch`` in the order they are visited (the same on every process)."""
        if not self.shuffle or (self.sortagrad and epoch == 0):
            return self.batches
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return [self.batches[i] for i in torch.randperm(len(self.batches), generator=generator).tolist()]

    def has_share(self, batch: list[int]) -> bool:
        """Whether this process gets utterances of its own from the global ``batch`` (else a weight-0 copy)."""
        return self.rank < len(batch)

    def shard(self, batch: list[int]) -> list[int]:
        """This process's share of the global ``batch``: ``batch[rank::num_replicas]``, or, when that is empty,
        ``[batch[rank % len(batch)]]`` (a copy, see ``has_share``)."""
        return batch[self.rank :: self.num_replicas] if self.has_share(batch) else [batch[self.rank % len(batch)]]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.epoch_order(self.epoch)[self.start_batch :]:
            yield self.shard(batch)

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
