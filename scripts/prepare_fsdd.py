"""Build the connected-digits corpus from the Free Spoken Digit Dataset and print its size.

    python scripts/prepare_fsdd.py [--source ../shared/data/fsdd] [--out corpora/fsdd_digits] [--seed N]
    python scripts/prepare_fsdd.py --source ~/free-spoken-digit-dataset --test-speakers theo

Utterances of 1-7 digits of one speaker, joined with random pauses, resampled to 16 kHz, with light noise;
dev and test speakers never occur in training. The defaults are those of ``configs/data/fsdd_digits.yaml``
(what ``python train.py experiment=fsdd`` builds on demand). A folder holding the same corpus is left as it is.
Writes ``<out>/preparation_report.{json,md}``: source recordings skipped (by kind, file named) or changed.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omegaconf import OmegaConf

from data.fsdd import FsddConfig, build_fsdd_corpus, corpus_summary

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "data" / "fsdd_digits.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", help="the FSDD repository or its recordings/ folder")
    parser.add_argument("--out", type=Path, default=Path("corpora/fsdd_digits"), help="corpus folder")
    parser.add_argument("--seed", type=int)
    for split in ("train", "dev", "test"):
        parser.add_argument(f"--{split}-speakers", nargs="+", metavar="NAME")
        parser.add_argument(f"--num-{split}", type=int, metavar="N", help=f"{split} utterances")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    defaults = OmegaConf.to_container(OmegaConf.load(CONFIG).fsdd)
    overrides = {"source_dir": args.source, "seed": args.seed}
    for split in ("train", "dev", "test"):
        overrides[f"{split}_speakers"] = getattr(args, f"{split}_speakers")
        overrides[f"num_{split}"] = getattr(args, f"num_{split}")
    try:
        cfg = FsddConfig(**{**defaults, **{k: v for k, v in overrides.items() if v is not None}})
        build_fsdd_corpus(cfg, args.out, progress=not args.quiet)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    print(f"{'split':<6} {'utterances':>10} {'hours':>7} {'digits':>7} {'recordings':>10}  speakers")
    for split, stats in corpus_summary(args.out).items():
        print(f"{split:<6} {stats['num_utterances']:>10} {stats['hours']:>7.3f} {stats['num_digits']:>7} "
              f"{stats['num_recordings']:>10}  {', '.join(stats['speakers'])}")
    print(f"config: {dataclasses.asdict(cfg)}")
    print(f"report: {args.out / 'preparation_report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
