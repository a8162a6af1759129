"""Which words a model gets wrong: word confusions from evaluate.py's ``<name>.hyps.jsonl`` files.

    python scripts/word_errors.py outputs/fsdd/run1/compare/fsdd.hyps.jsonl                     # greedy
    python scripts/word_errors.py outputs/fsdd/run1/compare/fsdd.hyps.jsonl --field beam_hypothesis

Prints, and writes next to each input as ``<name>.<field>.word_errors.md``, the most frequent errors
(substitutions ``ref -> hyp``, deletions ``ref -> <gap>``, insertions ``<gap> -> hyp``) and the error rates of
the ``--words`` most frequent reference words; ``<name>.<field>.word_errors.png`` is their confusion matrix (rows:
what was said; columns: what was recognised among the same words, the last one a deletion; substitutions by other
words are in the table only). Counts come from the same alignment as the corpus WER (training/word_errors.py), so
the errors add up to WER x reference words.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matplotlib.figure import Figure  # noqa: E402

from training.word_errors import GAP, WordEdits, read_hyps  # noqa: E402


def report(edits: WordEdits, title: str, top: int, num_words: int) -> str:
    """Markdown: the WER's numerator, the ``top`` most frequent errors, the error rates of the ``num_words`` most
    frequent reference words."""
    total = edits.num_reference_words
    lines = [f"# {title}", "", f"{edits.num_errors} word errors in {total} reference words "
             f"(WER {100 * edits.num_errors / total:.2f} %)", "", "| reference | recognised as | count |",
             "|---|---|---|"]
    lines += [f"| {ref} | {hyp} | {count} |" for ref, hyp, count in edits.errors()[:top]]
    lines += ["", "| reference word | occurrences | errors | error rate % |", "|---|---|---|---|"]
    lines += [f"| {word} | {seen} | {wrong} | {100 * wrong / seen:.1f} |"
              for word, seen, wrong in edits.per_reference_word()[:num_words]]
    return "\n".join(lines) + "\n"


def plot_confusions(edits: WordEdits, num_words: int, path: Path, title: str) -> None:
    """Confusion matrix (counts) of the ``num_words`` most frequent reference words, diagonal greyed out so the
    errors stand out, written to ``path`` (PNG)."""
    words = sorted(word for word, _, _ in edits.per_reference_word()[:num_words])
    columns = words + [GAP]
    counts = [[edits.pairs[ref, hyp] for hyp in columns] for ref in words]
    off_diagonal = [[0 if ref == hyp else count for hyp, count in zip(columns, row)] for ref, row in zip(words, counts)]
    fig = Figure(figsize=(2 + 0.55 * len(columns), 1.5 + 0.45 * len(words)))
    ax = fig.subplots()
    image = ax.imshow(off_diagonal, cmap="Reds", aspect="auto")
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                        color="grey" if i == j else ("w" if image.norm(count) > 0.5 else "k"))
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    ax.set_yticks(range(len(words)), words)
    ax.set_xlabel("recognised as")
    ax.set_ylabel("reference")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="errors")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("hyps", nargs="+", type=Path, help="evaluate.py <name>.hyps.jsonl files")
    parser.add_argument("--field", default="hypothesis", choices=["hypothesis", "beam_hypothesis"])
    parser.add_argument("--top", type=int, default=15, help="errors listed (default 15)")
    parser.add_argument("--words", type=int, default=15, help="most frequent reference words in the per-word table and the confusion plot (default 15)")
    args = parser.parse_args()
    for path in args.hyps:
        edits = WordEdits.of(*read_hyps(path, args.field))
        stem = path.name.removesuffix(".hyps.jsonl")
        title = f"{path.parent.name}/{stem}, {args.field}"
        text = report(edits, title, args.top, args.words)
        print(text)
        markdown, plot = (path.with_name(f"{stem}.{args.field}.word_errors.{ext}") for ext in ("md", "png"))
        markdown.write_text(text)
        plot_confusions(edits, args.words, plot, title)
        print(f"wrote {markdown} and {plot}\n")


if __name__ == "__main__":
    main()
