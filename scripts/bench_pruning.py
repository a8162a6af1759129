"""What pruning during training costs: step time with and without the gradual pruner, in one run.

    python scripts/bench_pruning.py [--model ds2_rnn_small] [--steps 300] [--freq 100]

Two copies of the same model train on the same random batch, their steps interleaved so machine noise hits both
alike: one dense, one with Narang et al.'s gradual pruner (masks recomputed every ``--freq`` steps, applied after
every step). Prints a markdown table (mean and median step time, the pruner's own time) and writes it to --out.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from data.tokenizer import CharTokenizer  # noqa: E402
from models.config import build_model  # noqa: E402
from pruning.config import PruningConfig, build_pruner  # noqa: E402
from training.benchmark import random_batch, timed_train_step  # noqa: E402
from training.compose import compose_config  # noqa: E402
from training.trainer import pick_device  # noqa: E402


def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    """Per-step seconds of the dense run, the pruned run, and of the pruner's own ``step`` calls."""
    cfg = compose_config([f"model={args.model}"])
    device = pick_device(args.device)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(build_model(cfg.model, 161, CharTokenizer().num_classes).to(device))
    dense, pruned = models
    optimizers = [torch.optim.SGD(m.parameters(), lr=1e-5, momentum=0.9, nesterov=True) for m in models]
    pruning = PruningConfig(method="gradual", start_step=1, ramp_step=args.steps // 2, end_step=args.steps + 1,
                            freq=args.freq, target_sparsity=0.9)
    pruner = build_pruner(pruning, pruned, steps_per_epoch=args.steps, num_epochs=1)
    batch = random_batch(161, args.batch, args.seconds, device)
    times: dict[str, list[float]] = {"dense": [], "pruned": [], "pruner": []}
    step = 0

    def prune() -> None:
        tic = time.perf_counter()
        pruner.step(step)
        times["pruner"].append(time.perf_counter() - tic)

    for model, optimizer in zip(models, optimizers):  # warm-up
        timed_train_step(model, optimizer, batch)
    for step in range(1, args.steps + 1):
        runs = [("dense", dense, optimizers[0], None), ("pruned", pruned, optimizers[1], prune)]
        for name, model, optimizer, after in runs if step % 2 else runs[::-1]:
            times[name].append(timed_train_step(model, optimizer, batch, after))
    times["sparsity"] = [pruner.sparsity()]
    return times


def table(times: dict[str, list[float]], args: argparse.Namespace) -> str:
    dense, pruned, pruner = times["dense"], times["pruned"], times["pruner"]
    ratio = statistics.mean(pruned) / statistics.mean(dense)
    return "\n".join([
        f"{args.model}, batch {args.batch} x {args.seconds} s, {args.steps} steps, freq {args.freq}, "
        f"device {pick_device(args.device)}, {torch.get_num_threads()} threads; final sparsity {times['sparsity'][0]:.3f}",
        "",
        "| run | mean step | median step |",
        "|---|---|---|",
        f"| dense | {1e3 * statistics.mean(dense):.1f} ms | {1e3 * statistics.median(dense):.1f} ms |",
        f"| gradual pruning | {1e3 * statistics.mean(pruned):.1f} ms | {1e3 * statistics.median(pruned):.1f} ms |",
        f"| pruner.step alone | {1e3 * statistics.mean(pruner):.2f} ms | {1e3 * statistics.median(pruner):.2f} ms |",
        "",
        f"overhead: {100 * (ratio - 1):+.1f}% of mean step time "
        f"(pruner.step alone: {100 * sum(pruner) / sum(dense):.2f}% of the dense training time)",
    ])


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ds2_rnn_small")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--freq", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("results/bench_pruning.md"))
    args = parser.parse_args(argv)
    result = table(measure(args), args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(result + "\n")
    return result


if __name__ == "__main__":
    print(main())
