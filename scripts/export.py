"""Export a pruned checkpoint to deploy files (sparse recurrent, input and FC matrices; deploy/format.py), report
their size against the dense model and, optionally, their WER/CER against the checkpoint's.

    python scripts/export.py outputs/demo_gradual/<run> [--dtype fp32 fp16 int8] [--block auto|none|4x4]
                             [--evaluate test | --manifest m.jsonl] [--out results/export/<name>]

Writes ``<out>/<name>.<dtype>.sds2`` per value type, ``<out>/sizes.md`` (per matrix: nonzeros, dense fp32 MB,
sparse MB), ``<out>/export.json`` (sizes, and the evaluation when asked) and ``<out>/results.md`` (WER/CER of the
checkpoint and of each export, scored by evaluate.py's code; fp32 must equal the checkpoint). Load an export with
``deploy.runtime.load_deployed``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from data.atomic import write_text_atomic
from deploy.export import export_model, max_weight_error, size_markdown, size_summary
from deploy.format import save_bundle
from deploy.runtime import load_deployed
from deploy.sparse import VALUE_DTYPES
from evaluate import SplitPasses, evaluate_checkpoint
from training.inference import load_model
from training.pipeline import manifest_paths

log = logging.getLogger("export")


def parse_block(text: str) -> tuple[int, int] | None:
    """"auto" -> None (from the checkpoint's pruning config), "none" -> (1, 1) (CSR), "RxC" -> (R, C)."""
    if text == "auto":
        return None
    if text == "none":
        return (1, 1)
    try:
        rows, cols = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--block {text!r}: expected auto, none or RxC such as 4x4") from None
    if rows < 1 or cols < 1:
        raise argparse.ArgumentTypeError(f"--block {text!r}: block sides must be positive")
    return rows, cols


def evaluation_table(rows: list[dict]) -> str:
    """WER/CER of the checkpoint (first row) and each export, with the change against the checkpoint."""
    base = rows[0]
    lines = ["| model | file MB | WER % | CER % | WER change (points) | CER change (points) | same hypotheses |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        size = "" if r.get("file_bytes") is None else f"{r['file_bytes'] / 1e6:.3f}"
        lines.append(f"| {r['label']} | {size} | {100 * r['wer']:.2f} | {100 * r['cer']:.2f} "
                     f"| {100 * (r['wer'] - base['wer']):+.2f} | {100 * (r['cer'] - base['cer']):+.2f} "
                     f"| {r['same_hypotheses']}/{r['num_utterances']} |")
    return "\n".join(lines)


def evaluate_all(loaded, exports: dict[str, Path], manifest: Path, out: Path) -> list[dict]:
    """Score the checkpoint and every export on ``manifest`` (CPU); write per-utterance hypotheses."""
    device = torch.device("cpu")
    passes = SplitPasses(device)
    base_row, base_records = evaluate_checkpoint(loaded, manifest, passes)
    rows = [{**base_row, "label": "checkpoint (masked dense)", "file_bytes": None,
             "same_hypotheses": len(base_records)}]
    for dtype, path in exports.items():
        deployed = load_deployed(path, device)
        row, records = evaluate_checkpoint(deployed, manifest, passes)
        same = sum(a["hypothesis"] == b["hypothesis"] for a, b in zip(base_records, records))
        rows.append({**row, "label": f"export {dtype}", "file_bytes": path.stat().st_size, "same_hypotheses": same,
                     "kernel_choices": [{**d, "key": list(d["key"])} for d in deployed.planner.report()]})
        write_text_atomic(out / f"{dtype}.hyps.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="checkpoint file or run folder (best.pt preferred)")
    parser.add_argument("--dtype", nargs="+", default=["fp32"], choices=sorted(VALUE_DTYPES),
                        help="value types to export (one file each)")
    parser.add_argument("--block", type=parse_block, default=None,
                        help="auto (block-CSR for block-pruned checkpoints), none (CSR) or RxC")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--evaluate", choices=["train", "dev", "test"], help="score on this split of the corpus")
    source.add_argument("--manifest", type=Path, help="score on this JSONL manifest")
    parser.add_argument("--out", type=Path, help="output folder (default results/export/<name>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    loaded = load_model(args.checkpoint)
    out = args.out or Path("results/export") / loaded.name
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"checkpoint": loaded.checkpoint["path"], "exports": {}}
    exports: dict[str, Path] = {}
    for dtype in args.dtype:
        bundle = export_model(loaded, dtype, args.block)
        path = exports[dtype] = out / f"{loaded.name}.{dtype}.sds2"
        save_bundle(path, bundle)
        summary = size_summary(bundle, path)
        report["exports"][dtype] = {"path": str(path), "max_weight_error": max_weight_error(loaded, bundle), **summary}
        print(f"\n{path} ({dtype}; largest weight change {report['exports'][dtype]['max_weight_error']:.3g})\n"
              + size_markdown(summary))
    (out / "sizes.md").write_text("\n\n".join(
        f"## {dtype}\n\n{size_markdown(entry)}" for dtype, entry in report["exports"].items()) + "\n")
    if args.evaluate or args.manifest:
        manifest = args.manifest or manifest_paths(loaded.data_cfg, progress=False)[args.evaluate]
        report["evaluation"] = evaluate_all(loaded, exports, manifest, out)
        table = evaluation_table(report["evaluation"])
        write_text_atomic(out / "results.md", table + "\n")
        print(f"\n{manifest}\n{table}")
    write_text_atomic(out / "export.json", json.dumps(report, indent=2, default=str) + "\n")
    return report


if __name__ == "__main__":
    main()
