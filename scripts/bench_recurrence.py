"""What the custom DS2 recurrence costs: forward + backward time of one bidirectional clipped-ReLU RNN layer
(models.rnn.DS2RNN: shared input matrix, masked batch norm, hand-written backward through time) against torch's
fused nn.RNN(nonlinearity="relu", bidirectional=True) of the same size, and against the same DS2 recurrence
differentiated by plain autograd step by step. Prints a markdown table.

The layers differ beyond the recurrence: DS2RNN computes one input projection (W is shared by the directions)
where nn.RNN computes two, and adds a batch norm of W x. On a shared CPU, compare ratios from one run.

    python scripts/bench_recurrence.py                       # CPU, default shapes
    python scripts/bench_recurrence.py --device cuda --shapes 32x300x1760 16x300x2560
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from models import rnn as ds2_rnn  # noqa: E402


class AutogradRecurrence(torch.autograd.Function):
    """Drop-in for models.rnn.ClippedRecurrence that leaves the backward to autograd (one graph node per step)."""

    @staticmethod
    def apply(inputs: torch.Tensor, weight_hh_t: torch.Tensor, clip: float) -> torch.Tensor:
        """inputs (T, D, batch, H), weight_hh_t (D, H, H) -> hidden (T, D, batch, H)."""
        hidden = [inputs[0].clamp(0.0, clip)]
        for t in range(1, inputs.shape[0]):
            hidden.append(torch.baddbmm(inputs[t], hidden[-1], weight_hh_t).clamp(0.0, clip))
        return torch.stack(hidden)


def time_ms(step: Callable[[], None], repeats: int, device: torch.device) -> float:
    """Best wall time of ``step`` in milliseconds over ``repeats`` calls after one warm-up call (the minimum, as
    the least disturbed by other processes on a shared machine)."""
    times = []
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(1000 * (time.perf_counter() - start))
    return min(times)


def bench_shape(batch: int, steps: int, hidden: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Forward + backward milliseconds of each implementation on a full (unpadded) batch (T, batch, H)."""
    x = torch.randn(steps, batch, hidden, device=device)
    lengths = torch.full((batch,), steps, device=device)
    mask = torch.ones(steps, batch, dtype=torch.bool, device=device)
    ds2 = ds2_rnn.DS2RNN(hidden, hidden, bidirectional=True, relu_clip=20.0).to(device)
    fused = nn.RNN(hidden, hidden, nonlinearity="relu", bidirectional=True).to(device)

    def run_ds2() -> None:
        ds2(x, lengths, mask).sum().backward()

    def run_fused() -> None:
        fused(x)[0].sum().backward()

    custom = time_ms(run_ds2, repeats, device)
    original, ds2_rnn.ClippedRecurrence = ds2_rnn.ClippedRecurrence, AutogradRecurrence
    try:
        plain = time_ms(run_ds2, repeats, device)
    finally:
        ds2_rnn.ClippedRecurrence = original
    return {"fused": time_ms(run_fused, repeats, device), "ds2": custom, "autograd": plain}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["16x200x320", "32x100x320", "8x200x704", "4x100x1760"],
                        help="batch x time x hidden")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads on CPU (0 = default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    lines = [
        f"device: {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; forward + backward, "
        f"best of {args.repeats}",
        "",
        "| batch | time | hidden | nn.RNN relu (ms) | DS2RNN (ms) | ratio | DS2 plain autograd (ms) | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for shape in args.shapes:
        batch, steps, hidden = map(int, shape.split("x"))
        ms = bench_shape(batch, steps, hidden, args.repeats, device)
        lines.append(f"| {batch} | {steps} | {hidden} | {ms['fused']:.1f} | {ms['ds2']:.1f} | "
                     f"{ms['ds2'] / ms['fused']:.2f} | {ms['autograd']:.1f} | {ms['autograd'] / ms['fused']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
