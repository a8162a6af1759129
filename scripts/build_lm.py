"""Build a word (or character) n-gram language model (ARPA) from the transcripts of manifests and from text files.

    python scripts/build_lm.py corpora/synth_small/train.jsonl --out lm/synth_small-3gram.arpa [--order 3]
                               [--min-count 2] [--eval corpora/synth_small/dev.jsonl]
    python scripts/build_lm.py corpora/synth_small/train.jsonl --unit char --order 6 --out lm/synth_small-6gram-char.arpa
    python scripts/build_lm.py corpora/synth_small/train.jsonl corpora/synth_small/lm_text.txt --out lm/big-3gram.arpa

A source ending in ``.jsonl`` is a manifest; any other is a text file of one sentence per line, normalised to the
alphabet like transcripts (``scripts/prepare_synth.py --lm-text N`` writes one; LibriSpeech's
``librispeech-lm-norm.txt`` is one). Interpolated modified Kneser-Ney (training/lm.py), written atomically; ``--min-count`` drops n-grams of order 2 and
above seen fewer times. ``--eval`` reports perplexity and the out-of-vocabulary rate on held-out transcripts.
Use the file with ``python evaluate.py <run> --beam 50 --lm <file>`` (and ``--lm-unit char`` for a character LM, whose
perplexity is per character, the space included).
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.arpa import NgramModel
from training.lm import build_lm, source_sentences


def perplexity(model: NgramModel, sentences: list[list[str]]) -> tuple[float, float]:
    """(perplexity over tokens and </s>, out-of-vocabulary rate over tokens) of held-out sentences."""
    vocabulary = set(model.vocabulary)
    log10_total = sum(model.sentence_log10_prob(words) for words in sentences)
    num_words = sum(len(words) for words in sentences)
    num_oov = sum(word not in vocabulary for words in sentences for word in words)
    return 10 ** (-log10_total / (num_words + len(sentences))), num_oov / max(num_words, 1)


def main(argv: list[str] | None = None) -> NgramModel:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", type=Path,
                        help="JSONL manifests and text files (one sentence a line) the LM is trained on")
    parser.add_argument("--out", type=Path, required=True, help="ARPA file to write")
    parser.add_argument("--order", type=int, default=3, help="n-gram order (default: 3)")
    parser.add_argument("--unit", choices=["word", "char"], default="word", help="n-grams of words or characters")
    parser.add_argument("--min-count", type=int, default=1,
                        help="drop n-grams of order >= 2 seen fewer times (default: 1, keep all)")
    parser.add_argument("--eval", nargs="+", type=Path, metavar="MANIFEST",
                        help="report perplexity and OOV rate on these manifests' (or text files') sentences")
    args = parser.parse_args(argv)
    if args.order < 1 or args.min_count < 1:
        parser.error("--order and --min-count must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    model = build_lm(args.sources, args.out, args.order, args.min_count, args.unit)
    print(f"wrote {args.out}: {args.order}-gram, n-grams per order "
          f"{[len(p) for p in model.log10_probs]}, {time.perf_counter() - start:.1f} s")
    if args.eval:
        ppl, oov = perplexity(model, source_sentences(args.eval, args.unit))
        print(f"held-out ({', '.join(map(str, args.eval))}): perplexity {ppl:.1f} "
              f"(log10 {math.log10(ppl):.3f}), OOV rate {100 * oov:.1f}%")
    return model


if __name__ == "__main__":
    main()
