"""Build the built-in synthetic English corpus (espeak-ng voices, Markov-chain sentences) and print its size.

    python scripts/prepare_synth.py --size small --out corpora/synth_small [--seed N]

A folder already holding the same corpus is left as it is; a changed config rebuilds it (reusing what it can).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.synth import SYNTH_SIZES, build_synth_corpus, corpus_summary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SYNTH_SIZES), default="small")
    parser.add_argument("--out", type=Path, help="corpus folder (default: corpora/synth_<size>)")
    parser.add_argument("--seed", type=int, help="override the size's seed")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = SYNTH_SIZES[args.size]
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    out_dir = args.out or Path("corpora") / f"synth_{args.size}"
    build_synth_corpus(cfg, out_dir, progress=not args.quiet)
    print(f"{'split':<6} {'utterances':>10} {'hours':>7} {'voices':>6}")
    for split, stats in corpus_summary(out_dir).items():
        print(f"{split:<6} {stats['num_utterances']:>10} {stats['hours']:>7.3f} {stats['num_voices']:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
