"""Check a manifest before training: lists every utterance the trainer would skip, and why.

    python scripts/validate_manifest.py corpora/synth_small/train.jsonl [--config model=ds2_rnn_small ...]

Exits with status 1 when any utterance is unusable (missing or unreadable audio, empty transcript,
characters outside the alphabet, longer than data.max_duration, too short for its transcript under the
configured model's front-end).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from data.features import FeatureExtractor  # noqa: E402
from data.manifest import read_manifest  # noqa: E402
from data.tokenizer import CharTokenizer  # noqa: E402
from data.validate import output_frames_counter, validate_utterances  # noqa: E402
from models.config import build_model  # noqa: E402
from training.compose import compose_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifests", nargs="+", type=Path)
    parser.add_argument("--config", nargs="*", default=[], help="config overrides, e.g. model=ds2_gru_small")
    args = parser.parse_args(argv)
    cfg = compose_config(args.config)
    extractor = FeatureExtractor(cfg.data.features, cfg.data.sample_rate)
    tokenizer = CharTokenizer()
    with torch.device("meta"):
        model = build_model(cfg.model, extractor.num_features, tokenizer.num_classes)
    output_frames = output_frames_counter(extractor.num_frames, extractor.sample_rate, model.output_lengths)

    status = 0
    for manifest in args.manifests:
        report = validate_utterances(read_manifest(manifest), tokenizer.encode, output_frames, cfg.data.max_duration)
        print(f"{manifest}: {report.summary()}")
        if report.num_skipped:
            print(report.details(limit=1000))
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
