"""Kneser-Ney estimation against hand-computed values, normalisation of every context, the ARPA round trip, the
reader's errors, and scripts/build_lm.py."""
import random

import pytest

from data.manifest import Utterance, write_manifest
from scripts.build_lm import main as build_lm_main
from training.arpa import BOS, EOS, UNK, ArpaError, read_arpa, write_arpa
from training.lm import count_ngrams, discounts, kneser_ney, prune, source_sentences


def random_sentences(num: int, seed: int = 0) -> list[list[str]]:
    """Sentences over 12 words with a preferred successor per word, so that higher orders matter."""
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(12)]
    sentences = []
    for _ in range(num):
        words = [rng.choice(vocabulary)]
        for _ in range(rng.randint(0, 7)):
            follower = vocabulary[(vocabulary.index(words[-1]) + 1) % 12]
            words.append(follower if rng.random() < 0.6 else rng.choice(vocabulary))
        sentences.append(words)
    return sentences


def context_sums(model, contexts) -> list[float]:
    """sum over the vocabulary (<s> excluded, </s> and <unk> included) of P(w | h), per context."""
    vocabulary = [w for w in model.vocabulary if w != BOS]
    return [sum(10 ** model.log10_prob(h, w) for w in vocabulary) for h in contexts]


def test_discounts_follow_chen_and_goodman():
    # n1 = 4, n2 = 2, n3 = 1, n4 = 1 -> Y = 4 / 8 = 0.5, D1 = 1 - 2 Y n2/n1 = 0.5, D2 = 2 - 3 Y n3/n2 = 1.25,
    # D3+ = 3 - 4 Y n4/n3 = 1.0; counts above 4 do not enter
    assert discounts([1, 1, 1, 1, 2, 2, 3, 4, 7]) == pytest.approx((0.5, 1.25, 1.0))
    assert discounts([1, 1, 2]) == (0.5, 1.0, 1.5)  # n3 = 0: the fallback


def test_bigram_model_matches_a_hand_computed_example():
    # <s> a b </s> and <s> a </s>. Unigrams use continuation counts: a 1 ({<s>}), b 1 ({a}), </s> 2 ({a, b});
    # n3 = 0 so both orders use the fallback discounts 0.5 / 1.0 / 1.5. Unigram: T = 4, gamma = (0.5 + 0.5 + 1) / 4
    # = 0.5 spread uniformly over a, b, </s>, <unk>:  P(a) = P(b) = 0.5/4 + 0.5/4 = 0.25, P(</s>) = 1/4 + 0.125,
    # P(<unk>) = 0.125. Bigrams (raw counts): P(a|<s>) = (2 - 1)/2 + 0.5 P(a) = 0.625; after a (T = 2, gamma = 0.5):
    # P(b|a) = 0.5/2 + 0.5 P(b) = 0.375, P(</s>|a) = 0.25 + 0.5 P(</s>) = 0.4375; P(</s>|b) = 0.5 + 0.5 * 0.375.
    model = kneser_ney([["a", "b"], ["a"]], order=2)
    expected = {("a",): 0.25, ("b",): 0.25, ("</s>",): 0.375, (UNK,): 0.125, ("<s>", "a"): 0.625,
                ("a", "b"): 0.375, ("a", "</s>"): 0.4375, ("b", "</s>"): 0.6875}
    listed = {gram: 10 ** p for probs in model.log10_probs for gram, p in probs.items() if gram != (BOS,)}
    assert listed == pytest.approx(expected, abs=1e-12)
    # every back-off weight equals gamma = 0.5 here, so an unseen bigram is half its unigram
    assert 10 ** model.log10_prob([BOS], "b") == pytest.approx(0.5 * 0.25)
    assert 10 ** model.log10_prob(["b"], "zzz") == pytest.approx(0.5 * 0.125)  # unknown word -> <unk>
    assert model.log10_probs[0][(BOS,)] == -99.0


@pytest.mark.parametrize("min_count", [1, 2, 3])
def test_every_context_sums_to_one_with_and_without_pruning(min_count, tmp_path):
    model = kneser_ney(random_sentences(300), order=3, min_count=min_count)
    contexts = [(), (BOS,), ("w3",), ("never", "seen"), *list(model.log10_probs[1])[:40]]
    assert context_sums(model, contexts) == pytest.approx([1.0] * len(contexts), abs=1e-9)
    write_arpa(model, tmp_path / "lm.arpa")
    reread = read_arpa(tmp_path / "lm.arpa")  # 7 decimals of log10: ~2e-7 relative per probability
    assert context_sums(reread, contexts) == pytest.approx([1.0] * len(contexts), abs=2e-5)


def test_pruning_keeps_contexts_and_suffixes_of_kept_ngrams():
    sentences = random_sentences(300)
    full, pruned = kneser_ney(sentences, 3), kneser_ney(sentences, 3, min_count=3)
    assert len(pruned.log10_probs[2]) < len(full.log10_probs[2]) and pruned.vocabulary == full.vocabulary
    for gram in pruned.log10_probs[2]:
        assert gram[:-1] in pruned.log10_probs[1] and gram[1:] in pruned.log10_probs[1]
    raw = count_ngrams(sentences, 3)
    kept = prune(raw, 3)
    assert all(raw[2][gram] >= 3 for gram in kept[2])


def test_higher_order_model_fits_held_out_text_of_the_same_source_better():
    train, held_out = random_sentences(400, seed=1), random_sentences(100, seed=2)
    def held_out_log10_prob(model):
        return sum(model.sentence_log10_prob(s) for s in held_out)

    assert held_out_log10_prob(kneser_ney(train, 2)) > held_out_log10_prob(kneser_ney(train, 1)) + 10


def test_reserved_tokens_and_empty_input_are_rejected():
    with pytest.raises(ValueError, match="reserved"):
        count_ngrams([["a", "<s>"]], 2)
    with pytest.raises(ValueError, match="order"):
        count_ngrams([["a"]], 0)
    with pytest.raises(ValueError, match="no sentences"):
        kneser_ney([], 2)


def test_arpa_round_trip_and_reader_errors(tmp_path):
    model = kneser_ney(random_sentences(50), order=3)
    path = tmp_path / "lm.arpa"
    write_arpa(model, path)
    reread = read_arpa(path)
    assert reread.order == 3 and reread.vocabulary == model.vocabulary
    for ours, theirs in zip(model.log10_probs + model.log10_backoffs, reread.log10_probs + reread.log10_backoffs):
        assert ours.keys() == theirs.keys() and all(abs(ours[g] - theirs[g]) < 1e-7 for g in ours)
    text = path.read_text()
    cases = [
        (text.replace("\\end\\", ""), "no \\\\end\\\\"),
        (text.replace("ngram 3=", "ngram 3=1"), "declares n-gram counts"),
        (text.replace("\\3-grams:\n", "\\3-grams:\n-1.0\tonly two\n", 1), r"lm-bad\.arpa:\d+: a 3-gram"),
        (text.replace("\\2-grams:\n", "\\2-grams:\nx\ta b\n", 1), "not a number"),
    ]
    for broken, message in cases:
        (tmp_path / "lm-bad.arpa").write_text(broken)
        with pytest.raises(ArpaError, match=message):
            read_arpa(tmp_path / "lm-bad.arpa")
    with pytest.raises(ArpaError, match="not found"):
        read_arpa(tmp_path / "missing.arpa")


def test_build_lm_script_writes_an_arpa_and_reports_perplexity(tmp_path, capsys):
    texts = [" ".join(s) for s in random_sentences(60)]
    write_manifest(tmp_path / "train.jsonl", [Utterance(f"{i}.wav", 1.0, t) for i, t in enumerate(texts)])
    write_manifest(tmp_path / "dev.jsonl", [Utterance("x.wav", 1.0, "w1 w2 unseen"), Utterance("y.wav", 1.0, "")])
    model = build_lm_main([str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "lm" / "3.arpa"), "--order", "3",
                           "--eval", str(tmp_path / "dev.jsonl")])
    assert read_arpa(tmp_path / "lm" / "3.arpa").vocabulary == model.vocabulary
    assert "OOV rate 33.3%" in capsys.readouterr().out
    char_model = build_lm_main([str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "lm" / "c.arpa"), "--order", "4",
                                "--unit", "char", "--eval", str(tmp_path / "dev.jsonl")])
    assert set(char_model.vocabulary) - {BOS, EOS, UNK} == set("".join(texts).replace(" ", "|"))
    assert "OOV rate 50.0%" in capsys.readouterr().out  # "w1|w2|unseen": the 6 letters of "unseen" never occur


def test_text_files_are_normalised_lm_sources_and_a_missing_one_is_named(tmp_path, caplog):
    text = tmp_path / "lm_text.txt"
    text.write_text("The cat, sat!\n\nWell-known don't\nin 1990\n", encoding="utf-8")
    write_manifest(tmp_path / "train.jsonl", [Utterance("a.wav", 1.0, "a dog")])
    assert source_sentences([tmp_path / "train.jsonl", text]) == [
        ["a", "dog"], ["the", "cat", "sat"], ["well", "known", "don't"], ["in"]]
    assert "1 of 4 lines hold digits" in caplog.text and "skipped 1 empty" in caplog.text
    assert source_sentences([text], unit="char")[0] == list("the|cat|sat")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        source_sentences([tmp_path / "missing.txt"])
