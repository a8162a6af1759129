"""The convolutional front-end's CPU paths: milliseconds per forward + backward of each conv layer, each way.

    python scripts/bench_conv.py                        # ds2_rnn_small's two layers, batches 20 x 3 s and 1 x 4 s
    python scripts/bench_conv.py --model ds2_rnn_paper --batches 4x2

Ways: oneDNN in the default (contiguous) layout, torch's native kernel (oneDNN off), oneDNN channels-last, the
stride-phase split (models.layers.phase_split_conv2d) and ``ConvBlock.convolve`` (what the model runs). The
backward computes the weight's gradient, and the input's for every layer but the first (as in training). Every way
is checked against plain ``F.conv2d`` first. Prints a markdown table and writes it to ``--out``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from data.features import FeatureExtractor  # noqa: E402
from models.layers import ConvBlock, phase_split_conv2d  # noqa: E402
from training.benchmark import write_table  # noqa: E402
from training.compose import compose_config  # noqa: E402


def plain(block: ConvBlock, x: torch.Tensor) -> torch.Tensor:
    conv = block.conv
    return F.conv2d(x, conv.weight, None, conv.stride, conv.padding)


def native(block: ConvBlock, x: torch.Tensor) -> torch.Tensor:
    onednn_was_enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        return plain(block, x)
    finally:
        torch.backends.mkldnn.enabled = onednn_was_enabled


def channels_last(block: ConvBlock, x: torch.Tensor) -> torch.Tensor:
    conv, layout = block.conv, torch.channels_last
    return F.conv2d(x.contiguous(memory_format=layout), conv.weight.contiguous(memory_format=layout), None,
                    conv.stride, conv.padding)


def phase_split(block: ConvBlock, x: torch.Tensor) -> torch.Tensor:
    return phase_split_conv2d(x, block.conv.weight, block.conv.stride, block.conv.padding)


WAYS: dict[str, Callable[[ConvBlock, torch.Tensor], torch.Tensor]] = {
    "oneDNN": plain, "native": native, "oneDNN channels-last": channels_last, "phase split": phase_split,
    "ConvBlock.convolve": ConvBlock.convolve,
}


def milliseconds(way: Callable, block: ConvBlock, x: torch.Tensor, rounds: int) -> float:
    """Mean wall-clock ms of forward + backward over ``rounds`` (after one warm-up)."""
    def step() -> None:
        block.zero_grad(set_to_none=True)
        way(block, x).sum().backward()
    step()
    tic = time.perf_counter()
    for _ in range(rounds):
        step()
    return (time.perf_counter() - tic) / rounds * 1e3


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ds2_rnn_small")
    parser.add_argument("--batches", nargs="+", default=["20x3", "1x4"], help="utterances x seconds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path("results/bench_conv.md"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose_config([f"model={args.model}"])
    num_features = FeatureExtractor(cfg.data.features, cfg.data.sample_rate).num_features
    model_cfg = cfg.model
    torch.manual_seed(0)
    lines = [f"{args.model}, torch {torch.__version__}, {torch.get_num_threads()} threads; ms per forward + backward",
             "", "| layer | batch | " + " | ".join(WAYS) + " |", "|---|---|" + "---|" * len(WAYS)]
    for batch_spec in args.batches:
        batch, seconds = batch_spec.split("x")
        x = torch.randn(int(batch), 1, num_features, int(float(seconds) * 100))
        in_channels = 1
        for index, (channels, kernel, stride) in enumerate(
                zip(model_cfg.conv_channels, model_cfg.conv_kernels, model_cfg.conv_strides)):
            block = ConvBlock(in_channels, channels, list(kernel), list(stride), model_cfg.relu_clip)
            x.requires_grad_(index > 0)
            reference = plain(block, x)
            for name, way in WAYS.items():
                torch.testing.assert_close(way(block, x), reference, rtol=1e-4, atol=1e-4, msg=name)
            times = [milliseconds(way, block, x, args.rounds) for way in WAYS.values()]
            lines.append(f"| conv{index + 1} {kernel[0]}x{kernel[1]}, {in_channels} -> {channels} | {batch_spec} s | "
                         + " | ".join(f"{t:.1f}" for t in times) + " |")
            x, in_channels = reference.detach(), channels
    return write_table(lines, args.out)


if __name__ == "__main__":
    print(main())
