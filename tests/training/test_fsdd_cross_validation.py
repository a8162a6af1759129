"""scripts/fsdd_cross_validation.py: fold planning, and one fold end to end on a small FSDD-layout folder."""
import json

import pytest

from scripts.fsdd_cross_validation import Fold, fold_overrides, main, speaker_folds, summarise, top_error
from tests.data.test_fsdd import write_source


def test_every_speaker_is_tested_once_and_tunes_the_fold_before_it():
    speakers = ["george", "jackson", "lucas", "nicolas", "yweweler"]
    folds = speaker_folds(speakers)
    assert [f.test for f in folds] == speakers and sorted(f.dev for f in folds) == speakers
    for fold in folds:
        assert len({fold.test, fold.dev, *fold.train}) == 5 and len(fold.train) == 3
    # the recipe's own split is the fold that tests on jackson
    assert folds[1] == Fold("jackson", "lucas", ("george", "nicolas", "yweweler"))
    with pytest.raises(ValueError, match="at least 3 distinct speakers"):
        speaker_folds(["a", "b"])
    with pytest.raises(ValueError, match="at least 3 distinct speakers"):
        speaker_folds(["a", "b", "a"])


def test_fold_overrides_set_the_speakers_and_a_corpus_folder_per_fold(tmp_path):
    args = fold_overrides(Fold("dan", "ann", ("bob", "cat")), "fsdd", tmp_path, ["optim.lr=1e-3"])
    assert args[:4] == ["experiment=fsdd", "data.fsdd.train_speakers=[bob,cat]", "data.fsdd.dev_speakers=[ann]",
                        "data.fsdd.test_speakers=[dan]"]
    assert args[4] == f"data.corpus_dir={tmp_path.resolve() / 'dan'}" and args[-1] == "optim.lr=1e-3"


def test_summary_is_the_mean_and_spread_over_folds():
    rows = [{"beam_wer": 4.0}, {"beam_wer": 8.0}]
    assert summarise(rows, ("beam_wer",)) == {"beam_wer": (6.0, 2.0)}


def test_one_fold_trains_evaluates_twice_reports_and_skips_on_a_rerun(tmp_path):
    pytest.importorskip("flashlight.lib.text.decoder.kenlm", reason="needs the optional extra 'lm'")
    source = write_source(tmp_path / "src")
    argv = ["--speakers", "ann", "bob", "cat", "dan", "--folds", "cat", "--out", str(tmp_path / "cv"),
            "--corpora", str(tmp_path / "corpora"), "--average-last", "1", "--batch-norm-utterances", "4",
            "--beam", "4", "--set", f"data.fsdd.source_dir={source}", "data.fsdd.num_train=8",
            "data.fsdd.num_dev=3", "data.fsdd.num_test=3", "data.fsdd.synth_train=0", "model=ds2_tiny",
            "trainer.num_epochs=1", "trainer.progress=false", "trainer.threads=2"]
    (row,) = main(argv)
    assert (row["test"], row["dev"], row["train"]) == ("cat", "dan", "ann bob")
    run = tmp_path / "cv" / "runs" / "cat"
    config = (run / ".hydra" / "config.yaml").read_text()
    assert "- cat" in config and str(tmp_path / "corpora" / "cat") in config
    adapted = json.loads((run / "eval_test_adapted" / "results.json").read_text())[0]
    assert adapted["batch_norm_adapted"] and row["adapted_beam_wer"] == pytest.approx(100 * adapted["beam_wer"])
    assert 0 <= row["beam_wer"] and row["test_words"] > 0 and row["train_minutes"] > 0
    report = json.loads((tmp_path / "cv" / "cross_validation.json").read_text())
    assert report["mean"]["beam_wer"] == pytest.approx(row["beam_wer"]) and report["std"]["beam_wer"] == 0
    assert "| cat | dan | ann bob |" in (tmp_path / "cv" / "cross_validation.md").read_text()
    assert f"| {row['top_beam_error']} |" in (tmp_path / "cv" / "cross_validation.md").read_text()
    assert (tmp_path / "cv" / "cross_validation.png").stat().st_size > 0
    header, line = (tmp_path / "cv" / "cross_validation.csv").read_text().splitlines()
    assert header.split(",")[:4] == ["test", "dev", "train", "greedy_wer"] and line.startswith("cat,dan,ann bob,")
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("results.json")}
    assert main(argv) == [row]                                         # nothing is trained or evaluated again
    assert {p: p.stat().st_mtime_ns for p in run.rglob("results.json")} == stamps
    with pytest.raises(SystemExit):
        main([*argv[:4], "--folds", "eve"])


def test_the_most_frequent_beam_error_is_named_with_its_count(tmp_path):
    hyps = tmp_path / "fsdd.hyps.jsonl"
    lines = [{"reference": "one two", "hypothesis": "x", "beam_hypothesis": "nine two"},
             {"reference": "one four", "hypothesis": "x", "beam_hypothesis": "nine"}]
    hyps.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert top_error(hyps) == "one -> nine x2"
    hyps.write_text(json.dumps({"reference": "one", "hypothesis": "two", "beam_hypothesis": "one"}) + "\n")
    assert top_error(hyps) == "none"
