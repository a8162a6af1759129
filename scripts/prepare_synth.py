"""Build the built-in synthetic English corpus (espeak-ng voices, Markov-chain sentences) and print its size.

    python scripts/prepare_synth.py --size small --out corpora/synth_small [--seed N] [--lm-text 200000]

A folder already holding the same corpus is left as it is; a changed config rebuilds it (reusing what it can).
``--lm-text N`` also writes ``<out>/lm_text.txt``: N more sentences from the corpus's text source, none of them a
transcript of any split, to train a language model on (``scripts/build_lm.py``), as LibriSpeech's LM corpus is
text from books its recordings do not read.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.synth import SYNTH_SIZES, build_synth_corpus, corpus_summary, write_lm_text  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SYNTH_SIZES), default="small")
    parser.add_argument("--out", type=Path, help="corpus folder (default: corpora/synth_<size>)")
    parser.add_argument("--seed", type=int, help="override the size's seed")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--lm-text", type=int, metavar="N",
                        help="also write N sentences for a language model to <out>/lm_text.txt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = SYNTH_SIZES[args.size]
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    out_dir = args.out or Path("corpora") / f"synth_{args.size}"
    build_synth_corpus(cfg, out_dir, progress=not args.quiet)
    if args.lm_text is not None:
        if args.lm_text < 1:
            parser.error("--lm-text must be at least 1")
        write_lm_text(cfg, args.lm_text, out_dir / "lm_text.txt")
    print(f"{'split':<6} {'utterances':>10} {'hours':>7} {'voices':>6}")
    for split, stats in corpus_summary(out_dir).items():
        print(f"{split:<6} {stats['num_utterances']:>10} {stats['hours']:>7.3f} {stats['num_voices']:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
