"""Evaluate checkpoints on a manifest: greedy CTC decoding, corpus-level WER/CER, per-utterance outputs.

    python evaluate.py outputs/demo/<run> [more runs or .pt files] [--split test | --manifest m.jsonl]
                       [--baseline NAME] [--out results/eval]

Writes ``<out>/<name>.hyps.jsonl`` (reference, hypothesis, loss per utterance), ``<out>/results.json`` and
``<out>/results.md``, and prints the table. Validation during training uses the same scorer.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import torch

from data.manifest import read_manifest
from training.evaluation import evaluate_dataset
from training.inference import LoadedModel, load_model
from training.pipeline import manifest_paths, validated
from training.trainer import pick_device

log = logging.getLogger("evaluate")


def evaluate_checkpoint(loaded: LoadedModel, manifest: Path, device: torch.device) -> tuple[dict, list[dict]]:
    """Score one model on ``manifest``; returns its results row and per-utterance records."""
    utterances = validated(
        read_manifest(manifest), loaded.frontend, loaded.model.output_lengths, math.inf, str(manifest)
    )
    dataset = loaded.frontend.dataset(utterances.kept, loaded.data_cfg, train=False)
    result = evaluate_dataset(loaded.model, dataset, device, loaded.data_cfg.max_frames_per_batch, progress=True)
    total, nonzero = loaded.num_parameters()
    row = {
        "name": loaded.name,
        "checkpoint": loaded.checkpoint["path"],
        "rnn_type": loaded.model_cfg.rnn_type,
        "units": loaded.model_cfg.rnn_hidden_size,
        "params": total,
        "nonzero_params": nonzero,
        "sparsity": 1 - nonzero / total,
        "manifest": str(manifest),
        "skipped_utterances": utterances.num_skipped,
        "loss": result.loss,
        **result.scores.as_dict(),
    }
    return row, result.records


def add_relative(rows: list[dict], baseline: str | None) -> None:
    """Relative performance as the paper defines it: (CER_baseline - CER) / CER_baseline."""
    base = next((r for r in rows if r["name"] == baseline), None)
    if baseline and base is None:
        raise ValueError(f"baseline {baseline!r} is not among the evaluated models: {[r['name'] for r in rows]}")
    for row in rows:
        row["relative_cer"] = (base["cer"] - row["cer"]) / base["cer"] if base and base["cer"] > 0 else None


def markdown_table(rows: list[dict]) -> str:
    lines = ["| model | units | params | nonzero | sparsity | WER % | CER % | relative |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        relative = "" if r.get("relative_cer") is None else f"{100 * r['relative_cer']:+.2f}%"
        lines.append(f"| {r['name']} | {r['units']} | {r['params'] / 1e6:.2f} M | {r['nonzero_params'] / 1e6:.2f} M "
                     f"| {100 * r['sparsity']:.1f}% | {100 * r['wer']:.2f} | {100 * r['cer']:.2f} | {relative} |")
    return "\n".join(lines)


def unique_names(models: list[LoadedModel], names: list[str] | None) -> list[str]:
    """Given names, else experiment names, made unique with the run folder where they collide."""
    if names:
        if len(names) != len(models):
            raise ValueError(f"{len(names)} --names for {len(models)} checkpoints")
        return names
    plain = [m.name for m in models]
    return [
        n if plain.count(n) == 1 else f"{n}@{Path(m.checkpoint['path']).parents[1].name}" for n, m in zip(plain, models)
    ]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files or run folders (best.pt preferred)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--manifest", type=Path, help="JSONL manifest to evaluate on")
    source.add_argument("--split", default="test", choices=["train", "dev", "test"],
                        help="split of each model's own training corpus (default: test)")
    parser.add_argument("--names", nargs="+", help="row names, one per checkpoint")
    parser.add_argument("--baseline", help="row name that relative CER is measured against")
    parser.add_argument("--out", type=Path, default=Path("results/eval"), help="output folder")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = pick_device(args.device)

    models = [load_model(path, device) for path in args.checkpoints]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, loaded in zip(unique_names(models, args.names), models):
        manifest = args.manifest or manifest_paths(loaded.data_cfg, progress=False)[args.split]
        row, records = evaluate_checkpoint(loaded, manifest, device)
        row["name"] = name
        rows.append(row)
        with (args.out / f"{name}.hyps.jsonl").open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(record) + "\n" for record in records)
    add_relative(rows, args.baseline)
    table = markdown_table(rows)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "results.md").write_text(table + "\n")
    print(table)
    return rows


if __name__ == "__main__":
    main()
