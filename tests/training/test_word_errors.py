import json
import random

import pytest

from scripts.word_errors import main
from training.scoring import score
from training.word_errors import GAP, WordEdits


def test_each_aligned_word_pair_is_counted_once():
    edits = WordEdits.of(["eight four nine", "one two"], ["six four nine five", "two"])
    assert edits.pairs == {("eight", "six"): 1, ("four", "four"): 1, ("nine", "nine"): 1, (GAP, "five"): 1,
                           ("one", GAP): 1, ("two", "two"): 1}
    assert (edits.num_reference_words, edits.num_errors) == (5, 3)
    assert edits.errors() == [(GAP, "five", 1), ("eight", "six", 1), ("one", GAP, 1)]
    assert edits.per_reference_word() == [("eight", 1, 1), ("four", 1, 0), ("nine", 1, 0), ("one", 1, 1),
                                          ("two", 1, 0)]


def test_the_errors_add_up_to_the_corpus_wer():
    rng = random.Random(0)
    vocabulary = "zero one two three four five six seven eight nine".split()
    references = [" ".join(rng.choices(vocabulary, k=rng.randint(1, 7))) for _ in range(50)]
    hypotheses = [" ".join(word for word in ref.split() if rng.random() > 0.1)
                  + " " + " ".join(rng.choices(vocabulary, k=rng.randint(0, 1))) for ref in references]
    hypotheses = [" ".join(rng.choice(vocabulary) if rng.random() < 0.1 else w for w in h.split()) for h in hypotheses]
    edits = WordEdits.of(references, hypotheses)
    assert edits.num_errors > 0
    assert edits.num_errors / edits.num_reference_words == pytest.approx(score(references, hypotheses).wer)


def test_script_writes_the_report_and_the_plot_and_names_a_missing_field(tmp_path, monkeypatch, capsys):
    hyps = tmp_path / "fsdd.hyps.jsonl"
    rows = [{"reference": "eight four", "hypothesis": "six four"}, {"reference": "nine", "hypothesis": "one"}]
    hyps.write_text("".join(json.dumps(row) + "\n" for row in rows))
    monkeypatch.setattr("sys.argv", ["word_errors.py", str(hyps)])
    main()
    markdown = (tmp_path / "fsdd.hypothesis.word_errors.md").read_text()
    assert "2 word errors in 3 reference words (WER 66.67 %)" in markdown and "| eight | six | 1 |" in markdown
    assert (tmp_path / "fsdd.hypothesis.word_errors.png").stat().st_size > 0
    monkeypatch.setattr("sys.argv", ["word_errors.py", str(hyps), "--field", "beam_hypothesis"])
    with pytest.raises(ValueError, match=r"fsdd.hyps.jsonl:1: no 'beam_hypothesis' field"):
        main()
    hyps.write_text(json.dumps(rows[0]) + "\n{truncated\n")
    monkeypatch.setattr("sys.argv", ["word_errors.py", str(hyps)])
    with pytest.raises(ValueError, match=r"fsdd.hyps.jsonl:2: not a JSON line"):
        main()
