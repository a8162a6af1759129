"""Average the model weights of several checkpoints of one run (training/averaging.py) into a new checkpoint.

    python scripts/average_checkpoints.py outputs/fsdd/<run> --last 3 --out outputs/fsdd/<run>/checkpoints/avg.pt
    python scripts/average_checkpoints.py a.pt b.pt c.pt --out avg.pt

A run folder contributes its newest ``--last`` checkpoints by step (``step<N>.pt`` and ``last.pt``; keep more of
them with ``trainer.keep_checkpoints``). The result evaluates like any checkpoint: ``python evaluate.py avg.pt``.

``--batch-norm-utterances N`` re-estimates the average's batch-norm statistics on N random training utterances
(without augmentation; training/batch_norm.py), as stochastic weight averaging does: the mean of the checkpoints'
running statistics is not the statistics of their mean weights.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from data.manifest import read_manifest  # noqa: E402
from training.averaging import average_checkpoints  # noqa: E402
from training.batch_norm import recompute_batch_norm  # noqa: E402
from training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from training.inference import evaluation_data, model_from_checkpoint  # noqa: E402
from training.pipeline import manifest_paths  # noqa: E402
from training.trainer import pick_device  # noqa: E402


def newest_checkpoints(run: Path, count: int) -> list[dict]:
    """The ``count`` checkpoints of a run folder with the highest steps (duplicates, such as last.pt linked to the
    newest step file, counted once)."""
    folder = run / "checkpoints" if (run / "checkpoints").is_dir() else run
    by_step = {}
    for path in sorted(folder.glob("step*.pt")) + [folder / "last.pt"]:
        if path.is_file():
            checkpoint = load_checkpoint(path)
            by_step.setdefault(checkpoint["step"], checkpoint)
    if len(by_step) < count:
        raise SystemExit(f"{run}: {len(by_step)} checkpoints with distinct steps, --last asks for {count}")
    return [by_step[step] for step in sorted(by_step)[-count:]]


def with_training_statistics(checkpoint: dict, count: int, device: torch.device, seed: int = 0) -> dict:
    """``checkpoint`` with its batch-norm statistics re-estimated on ``count`` random training utterances of its own
    corpus (un-augmented, validated as for training: unusable ones are skipped and counted in the log)."""
    loaded = model_from_checkpoint(checkpoint, device)
    train = read_manifest(manifest_paths(loaded.data_cfg, progress=False)["train"])
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()[:count]
    report, dataset = evaluation_data(loaded, [train[i] for i in order], "train")
    recompute_batch_norm(loaded.model, dataset, device, loaded.data_cfg.max_frames_per_batch, progress=True)
    state = loaded.model.state_dict()
    return {**checkpoint, "model": {name: state[name].cpu() for name in checkpoint["model"]},
            "batch_norm_statistics": {"split": "train", "utterances": len(report.kept), "seed": seed}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", type=Path, help="checkpoint files, or one run folder with --last")
    parser.add_argument("--last", type=int, help="average the newest N checkpoints of the run folder given")
    parser.add_argument("--out", type=Path, required=True, help="where to write the averaged checkpoint")
    parser.add_argument("--batch-norm-utterances", type=int, default=0, metavar="N",
                        help="re-estimate the batch-norm statistics of the average on N random training utterances "
                             "(default 0: the mean of the checkpoints' statistics)")
    parser.add_argument("--device", default="auto", help="device of that pass (default: auto, CUDA when available)")
    args = parser.parse_args(argv)
    if args.batch_norm_utterances < 0:
        parser.error(f"--batch-norm-utterances must be 0 or more, got {args.batch_norm_utterances}")
    if args.last is not None:
        if len(args.inputs) != 1 or not args.inputs[0].is_dir():
            parser.error("--last takes exactly one run folder")
        checkpoints = newest_checkpoints(args.inputs[0], args.last)
    else:
        checkpoints = [load_checkpoint(path) for path in args.inputs]
    averaged = average_checkpoints(checkpoints)
    if args.batch_norm_utterances:
        averaged = with_training_statistics(averaged, args.batch_norm_utterances, pick_device(args.device))
    save_checkpoint(args.out, {k: v for k, v in averaged.items() if k != "format_version"})
    steps = ", ".join(str(c["step"]) for c in checkpoints)
    print(f"{args.out}: mean of {len(checkpoints)} checkpoints (steps {steps}); "
          f"{sum(t.numel() for t in averaged['model'].values() if torch.is_tensor(t)):,} values"
          + (f"; batch-norm statistics from {averaged['batch_norm_statistics']['utterances']} training utterances"
             if args.batch_norm_utterances else ""))


if __name__ == "__main__":
    main()
