"""Training throughput: audio seconds trained per wall-clock second, for model configs on random batches.

    python scripts/bench_train.py                                   # the small CPU configs
    python scripts/bench_train.py --models ds2_rnn_paper ds2_gru_paper --steps 3   # paper configs, few steps

Each model trains ``--steps`` SGD steps (after one warm-up step) on batches of ``--batch`` utterances of
``--seconds`` seconds of random features; prints a markdown table and writes it to ``--out``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from data.features import FeatureExtractor  # noqa: E402
from data.tokenizer import CharTokenizer  # noqa: E402
from models.config import build_model  # noqa: E402
from training.compose import compose_config  # noqa: E402
from training.benchmark import random_batch, timed_train_step, write_table  # noqa: E402
from training.trainer import pick_device  # noqa: E402


def audio_seconds_per_second(model_name: str, batch: int, seconds: float, steps: int, device: torch.device) -> dict:
    """Train ``steps`` steps (after one warm-up step) on a random batch; returns the throughput row."""
    cfg = compose_config([f"model={model_name}"])
    extractor = FeatureExtractor(cfg.data.features, cfg.data.sample_rate)
    model = build_model(cfg.model, extractor.num_features, CharTokenizer().num_classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)
    inputs = random_batch(extractor.num_features, batch, seconds, device)
    timed_train_step(model, optimizer, inputs)  # warm-up
    elapsed = sum(timed_train_step(model, optimizer, inputs) for _ in range(steps))
    params = sum(p.numel() for p in model.parameters())
    return {"model": model_name, "params_m": params / 1e6, "step_s": elapsed / steps,
            "audio_s_per_s": batch * seconds * steps / elapsed}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["ds2_rnn_small", "ds2_gru_small"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("results/bench_train.md"))
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    rows = [audio_seconds_per_second(m, args.batch, args.seconds, args.steps, device) for m in args.models]
    lines = [f"device: {device}, threads: {torch.get_num_threads()}, batch {args.batch} x {args.seconds} s", "",
             "| model | params | step time | audio s / s |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['params_m']:.2f} M | {r['step_s']:.3f} s | {r['audio_s_per_s']:.1f} |" for r in rows]
    return write_table(lines, args.out)


if __name__ == "__main__":
    print(main())
