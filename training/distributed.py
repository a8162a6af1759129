"""Data-parallel training under torchrun: process group, device per process, loss normalisation, mask checks,
sharded evaluation.

One optimizer step trains on one *global* batch (data/sampler.py), split over the processes. Each process
computes the CTC losses of its share; the gradient DistributedDataParallel averages must be that of the mean
loss over the whole global batch, so each process back-propagates ``sum of its losses * world / N`` with N the
number of utterances counted on all processes (DDP divides the summed gradients by ``world``). One process gives
the plain mean, exactly as a single-process run. Batch norm statistics stay per process (DS2's data
parallelism; nn.SyncBatchNorm would need CUDA and the project's masked batch norm).

Pruning masks are computed on every process from identical weights (the same gradients reach every replica),
so they agree by construction; ``check_masks_agree`` verifies it at every mask update (pitfall 13).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from data.dataset import SpeechDataset
from data.manifest import Utterance
from training.evaluation import EvaluationResult, evaluate_dataset
from training.scoring import score

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes (torchrun's RANK, LOCAL_RANK, WORLD_SIZE)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs, metrics and TensorBoard."""
        return self.rank == 0


SINGLE_PROCESS = World()


def world_from_env(env: dict[str, str] | None = None) -> World:
    """The World torchrun describes in the environment (a single process when WORLD_SIZE is unset)."""
    env = os.environ if env is None else env
    try:
        world = World(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)))
    except ValueError as error:
        raise ValueError(f"RANK, LOCAL_RANK and WORLD_SIZE must be integers: {error}") from None
    if not 0 <= world.rank < world.size:
        raise ValueError(f"RANK={world.rank} is outside WORLD_SIZE={world.size}")
    return world


def pick_device(name: str, world: World = SINGLE_PROCESS) -> torch.device:
    """"auto" -> CUDA when available, else CPU. With several processes, CUDA means GPU LOCAL_RANK."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
    if world.size > 1 and device.type == "cuda":
        if device.index is not None:
            raise ValueError(f"trainer.device={name} would put all {world.size} processes on one GPU; use "
                             "'auto' or 'cuda' under torchrun (each process takes GPU LOCAL_RANK)")
        device = torch.device("cuda", world.local_rank)
    return device


@contextmanager
def distributed_session(device_name: str, timeout_minutes: float = 30.0) -> Iterator[World]:
    """The process group for a torchrun launch (NCCL on CUDA, gloo on CPU), torn down on exit.

    Without torchrun (WORLD_SIZE unset or 1) nothing is initialised. torchrun's env:// rendezvous supplies
    MASTER_ADDR and MASTER_PORT; ``timeout_minutes`` bounds how long a collective waits for a slow rank.
    """
    world = world_from_env()
    if world.size == 1:
        yield world
        return
    device = pick_device(device_name, world)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size,
                            timeout=timedelta(minutes=timeout_minutes),
                            device_id=device if device.type == "cuda" else None)
    log.info("process %d of %d (local rank %d) on %s, backend %s", world.rank, world.size, world.local_rank,
             device, dist.get_backend())
    try:
        yield world
        dist.barrier()  # no process tears down while another still needs a collective
    finally:
        dist.destroy_process_group()


def in_turn(world: World, work: Callable[[], T]) -> T:
    """Run ``work`` (e.g. building a cached corpus) on rank 0 first, then on the first process of every other
    node (a no-op there on a shared file system), then everywhere else: never two writers on one file system."""
    if world.size == 1:
        return work()
    result = work() if world.is_main else None
    dist.barrier()
    if not world.is_main and world.local_rank == 0:
        result = work()
    dist.barrier()
    return work() if world.local_rank != 0 else result


def broadcast_from_main(value: Any, world: World) -> Any:
    """Rank 0's ``value`` (picklable) on every process."""
    if world.size == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def wrap_model(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` (parameters untouched, so the pruner's references and nn.GRU's
    flat weights stay valid); the model itself for a single process."""
    if world.size == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


class StepTotals(NamedTuple):
    """One step summed over all processes: mean loss per counted utterance (nan when none), utterances
    counted, infeasible utterances (too few output frames), feature frames trained on."""

    loss: float
    count: int
    infeasible: int
    frames: int


def batch_loss(losses: torch.Tensor, feasible: torch.Tensor, feature_lengths: torch.Tensor, has_share: bool,
               world: World) -> tuple[torch.Tensor | None, StepTotals]:
    """The loss to back-propagate on this process and the step's totals over all processes.

    losses, feasible: (local batch,) per-utterance CTC losses and feasibility; feature_lengths: (local batch,).
    ``has_share`` False marks a weight-0 copy (data/sampler.py). One process: the mean over feasible
    utterances, as before distributed training existed (bit for bit). Several: ``sum * world / N`` (module
    docstring), after one all-reduce of (loss sum, count, infeasible, frames). None when nothing is counted.
    """
    if world.size == 1:
        infeasible, frames = int((~feasible).sum()), int(feature_lengths.sum())
        if not feasible.any():
            return None, StepTotals(float("nan"), 0, infeasible, frames)
        loss = losses[feasible].mean()
        return loss, StepTotals(loss.item(), int(feasible.sum()), infeasible, frames)
    counted = feasible & has_share
    local = losses[counted].sum()
    totals = torch.stack([local.detach().double(), counted.sum().double(),
                          (~feasible & has_share).sum().double(),
                          feature_lengths.sum().double().to(losses.device) * has_share])
    dist.all_reduce(totals)
    loss_sum, count, infeasible, frames = totals.tolist()
    if count == 0:
        return None, StepTotals(float("nan"), 0, int(infeasible), int(frames))
    return local * (world.size / count), StepTotals(loss_sum / count, int(count), int(infeasible), int(frames))


def mask_checksums(masks: dict[str, torch.Tensor]) -> torch.Tensor:
    """(num_masks, 2) int64: per mask the number of kept weights and the sum of a hash of their positions.

    The hash mixes the position non-linearly (multiply, xor-shift, multiply, xor-shift, all below 2^31), so two
    masks with the same count but different kept positions almost surely differ; the sums are exact in int64
    for masks of up to 2^32 weights.
    """
    rows = []
    for mask in masks.values():
        flat = mask.flatten()
        h = torch.arange(flat.numel(), device=flat.device, dtype=torch.int64) * 2654435761 % 2**31
        h = (h ^ (h >> 13)) * 1103515245 % 2**31
        rows.append(torch.stack([flat.sum(dtype=torch.int64), (h ^ (h >> 16))[flat].sum()]))
    return torch.stack(rows) if rows else torch.zeros(0, 2, dtype=torch.int64)


def check_masks_agree(masks: dict[str, torch.Tensor], world: World, step: int) -> None:
    """Compare the checksums of the pruning masks of all processes; raise RuntimeError naming every mask that
    differs (on every process, so the whole run stops instead of hanging)."""
    if world.size == 1 or not masks:
        return
    local = mask_checksums(masks)
    gathered = [torch.empty_like(local) for _ in range(world.size)]
    dist.all_gather(gathered, local)
    names = list(masks)
    differs = torch.stack([(other != gathered[0]).any(dim=1) for other in gathered]).any(dim=0)  # (num_masks,)
    differing = [names[i] for i in differs.nonzero()[:, 0].tolist()]
    if differing:
        detail = "; ".join(
            f"{name}: kept per rank {[int(g[names.index(name), 0]) for g in gathered]}" for name in differing
        )
        raise RuntimeError(f"pruning masks differ across the {world.size} processes at step {step} "
                           f"(rank {world.rank} reporting): {detail}")
    if world.is_main:
        log.info("step %d: pruning masks agree on all %d processes (%d tensors)", step, world.size, len(masks))


def sync_buffers(model: torch.nn.Module, world: World) -> None:
    """Copy rank 0's buffers (batch norm running statistics) to every process.

    DDP broadcasts them before each training forward, so after the last one each process holds its own."""
    if world.size == 1:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def evaluate_sharded(
    model: torch.nn.Module,
    utterances: list[Utterance],
    make_dataset: Callable[[list[Utterance]], SpeechDataset],
    device: torch.device,
    max_frames_per_batch: int,
    world: World,
) -> EvaluationResult:
    """``evaluate_dataset`` with utterance i decoded by process i % world, the records gathered back into
    manifest order and scored by the one corpus-level scorer; every process returns the same result.

    Call ``sync_buffers`` first so every process decodes with rank 0's batch norm statistics.
    """
    if world.size == 1:
        return evaluate_dataset(model, make_dataset(utterances), device, max_frames_per_batch)
    share = utterances[world.rank :: world.size]
    records = evaluate_dataset(model, make_dataset(share), device, max_frames_per_batch).records if share else []
    gathered: list[list[dict]] = [[] for _ in range(world.size)]
    dist.all_gather_object(gathered, records)
    merged = [gathered[i % world.size][i // world.size] for i in range(len(utterances))]
    scores = score([r["reference"] for r in merged], [r["hypothesis"] for r in merged])
    loss = float(torch.tensor([r["loss"] for r in merged]).mean())
    return EvaluationResult(scores, loss, merged)
