"""evaluate.py with --beam: greedy and beam results side by side, an LM built from the training transcripts, tuning
on dev, a user's ARPA file, argument errors, and greedy evaluation without flashlight-text."""
import json
import sys

import pytest

import evaluate
from data.manifest import read_manifest
from training.beam import DecoderUnavailable
from training.evaluation import evaluate_dataset

pytestmark = pytest.mark.slow


def test_beam_results_sit_next_to_greedy_ones(tiny_run, tiny_corpus, tmp_path):
    pytest.importorskip("flashlight.lib.text.decoder.kenlm", reason="needs the optional extra 'lm'")
    out = tmp_path / "eval"
    rows = evaluate.main([str(tiny_run), str(tiny_run), "--names", "a", "b", "--baseline", "a", "--out", str(out),
                          "--beam", "4", "--lm", "train", "--lm-order", "2", "--tune", "--tune-lm-weights", "0", "1",
                          "--tune-word-scores", "-1", "0"])
    for row in rows:
        assert {"name", "cer", "wer", "params", "nonzero_params", "sparsity", "relative_cer"} <= set(row)
        assert row["beam_size"] == 4 and 0 <= row["beam_cer"] and 0 <= row["beam_wer"]
        assert row["tuned_on"] == str(tiny_corpus["dev"]) and row["lm_weight"] in (0, 1)
    assert rows[1]["beam_relative_cer"] == 0.0 and rows[0]["lm"] == rows[1]["lm"]  # one LM for one training set
    assert (out / "lm").is_dir() and rows[0]["lm"].startswith(str(out / "lm"))
    grid = json.loads((out / "a.tuning.json").read_text())
    assert [(g["lm_weight"], g["word_score"]) for g in grid] == [(0, -1), (0, 0), (1, -1), (1, 0)]
    assert (out / "a.tuning.png").stat().st_size > 0
    hyps = [json.loads(line) for line in (out / "a.hyps.jsonl").read_text().splitlines()]
    assert len(hyps) == 8 and all("beam_hypothesis" in h and "hypothesis" in h for h in hyps)
    table = (out / "results.md").read_text()
    assert "| beam WER % | beam CER % |" in table and "tuned on dev" in table and f"LM: `{rows[0]['lm']}`" in table
    assert json.loads((out / "results.json").read_text())[1]["beam_cer"] == rows[1]["beam_cer"]

    # the same LM as a user's ARPA file, with fixed weights
    [row] = evaluate.main([str(tiny_run), "--out", str(tmp_path / "user"), "--beam", "4", "--lm", rows[0]["lm"],
                           "--lm-weight", "0.5", "--word-score", "-2"])
    assert (row["lm"], row["lm_weight"], row["word_score"], row["tuned_on"]) == (rows[0]["lm"], 0.5, -2.0, None)


def test_each_split_is_decoded_once_for_greedy_beam_and_tuning(tiny_run, tiny_corpus, tmp_path, monkeypatch):
    pytest.importorskip("flashlight.lib.text.decoder.kenlm", reason="needs the optional extra 'lm'")
    decoded = []

    def counted(model, dataset, *args, **kwargs):
        result = evaluate_dataset(model, dataset, *args, **kwargs)
        decoded.append((len(dataset), kwargs.get("keep_emissions"), len(result.emissions or [])))
        return result

    monkeypatch.setattr(evaluate, "evaluate_dataset", counted)
    [row] = evaluate.main([str(tiny_run), "--split", "test", "--beam", "4", "--lm", "train", "--lm-order", "2",
                           "--tune", "--tune-lm-weights", "0", "--tune-word-scores", "0", "--out", str(tmp_path / "e")])
    assert row["tuned_on"] == str(tiny_corpus["dev"]) and row["beam_wer"] >= 0
    sizes = [len(read_manifest(tiny_corpus[split])) for split in ("test", "dev")]
    assert decoded == [(n, True, n) for n in sizes]  # one pass per split; it kept the log-probabilities

    decoded.clear()
    evaluate.main([str(tiny_run), "--split", "test", "--out", str(tmp_path / "greedy")])
    assert decoded == [(sizes[0], False, 0)]  # greedy only: nothing kept


def test_greedy_evaluation_needs_no_flashlight_and_beam_search_names_the_extra(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "flashlight.lib.text.decoder.kenlm", None)  # as if not installed
    [row] = evaluate.main([str(tiny_run), "--out", str(tmp_path / "greedy")])
    assert "beam_cer" not in row and "beam WER" not in (tmp_path / "greedy" / "results.md").read_text()
    with pytest.raises(DecoderUnavailable, match="optional extra 'lm'"):
        evaluate.main([str(tiny_run), "--out", str(tmp_path / "beam"), "--beam", "4"])
    assert not (tmp_path / "beam").exists()  # before any evaluation


@pytest.mark.parametrize("argv, message", [
    (["--lm", "train"], "need --beam"),
    (["--beam", "4", "--tune"], "--tune needs --lm"),
    (["--beam", "0"], "at least 1"),
    (["--beam", "4", "--lm", "nope.arpa"], "no ARPA file at nope.arpa"),
    (["--beam", "4", "--lm", "train", "--lm-order", "1"], "--lm-order must be at least 2"),
])
def test_inconsistent_beam_options_and_missing_files_are_rejected_up_front(argv, message, capsys):
    with pytest.raises(SystemExit):
        evaluate.parse_args(["run", *argv])
    assert message in capsys.readouterr().err
