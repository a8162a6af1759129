"""Which weights to prune: pure functions from weights to scores, and from scores to boolean keep-masks.

A mask is ``True`` where the weight is kept. Scores are |w| (Narang et al. 2017) or, for block pruning, the
max |w| of each block (Narang, Undersander, Diamos 2017, "Block-Sparse Recurrent Neural Networks").
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def magnitude_scores(weight: torch.Tensor) -> torch.Tensor:
    """|w|, in fp32, same shape as ``weight``."""
    return weight.detach().abs().float()


def block_scores(weight: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """Max |w| of each (block[0] x block[1]) block: shape (ceil(rows / b0), ceil(cols / b1)).

    The weight is viewed as 2-D (rows = dim 0, columns = all other dims flattened). Edge blocks of shapes not
    divisible by the block are smaller; they are padded with zeros, which leaves the max of |w| unchanged.
    """
    rows, cols = block
    scores = magnitude_scores(weight).reshape(weight.shape[0], -1)
    scores = F.pad(scores, (0, -scores.shape[1] % cols, 0, -scores.shape[0] % rows))
    num_rows, num_cols = scores.shape[0] // rows, scores.shape[1] // cols
    return scores.reshape(num_rows, rows, num_cols, cols).amax(dim=(1, 3))


def expand_block_mask(block_mask: torch.Tensor, shape: torch.Size, block: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`block_scores`' layout: one mask entry per block -> a mask of the weight's ``shape``."""
    rows, cols = block
    full = block_mask.repeat_interleave(rows, dim=0).repeat_interleave(cols, dim=1)
    return full[: shape[0], : math.prod(shape[1:])].reshape(shape)


def threshold_mask(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Algorithm 1: keep ``scores > threshold`` (the printed ``<`` is a typo; weights above are kept)."""
    return scores > threshold


def kth_smallest(scores: list[torch.Tensor], fraction: float) -> float:
    """The score v such that round(fraction * n) of the pooled scores are <= v (0.0 when that count is 0).

    ``threshold_mask(scores, v)`` then prunes exactly that many (absent ties). Used as the percentile of
    |w| in Eq. 1 (fraction 0.9) and to solve target sparsities. Uses kthvalue, so it has no size limit.
    """
    flat = torch.cat([s.reshape(-1) for s in scores])
    k = round(fraction * flat.numel())
    return 0.0 if k == 0 else float(torch.kthvalue(flat, k).values)


def smallest_masks(scores: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """Prune exactly round(sparsity * n) of the smallest pooled scores; one keep-mask per input tensor.

    Ties are broken by position (stable sort), so the result is deterministic (identical on every replica).
    """
    flat = torch.cat([s.reshape(-1) for s in scores])
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[torch.argsort(flat, stable=True)[: round(sparsity * flat.numel())]] = False
    parts = keep.split([s.numel() for s in scores])
    return [part.reshape(s.shape) for part, s in zip(parts, scores)]
