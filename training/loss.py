"""CTC loss in fp32 with infeasible utterances detected and counted, never silently zeroed (pitfall 2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from data.tokenizer import BLANK_ID


def ctc_min_frames_batch(targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """(batch,) fewest frames CTC needs per utterance: labels plus adjacent repeats.

    targets: (sum of target_lengths,) concatenated label ids; target_lengths: (batch,).
    """
    needed = []
    for labels in torch.split(targets, target_lengths.tolist()):
        needed.append(len(labels) + int((labels[1:] == labels[:-1]).sum()))
    return torch.tensor(needed, dtype=torch.long)


def ctc_losses(
    log_probs: torch.Tensor,
    out_lengths: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-utterance CTC negative log-likelihood (summed over frames) and a feasibility mask.

    log_probs: (batch, time, num_classes), any float dtype (cast to fp32 here); out_lengths: (batch,).
    Returns (losses (batch,), feasible (batch,) bool). Infeasible utterances (fewer output frames than
    labels plus repeats) have loss 0 and no gradient; callers count them.
    """
    feasible = out_lengths.cpu() >= ctc_min_frames_batch(targets.cpu(), target_lengths.cpu())
    losses = F.ctc_loss(
        log_probs.float().transpose(0, 1),  # (time, batch, classes) as CTCLoss expects
        targets.to(log_probs.device),
        out_lengths,
        target_lengths.to(log_probs.device),
        blank=BLANK_ID,
        reduction="none",
        zero_infinity=True,
    )
    return losses, feasible.to(losses.device)
