"""Beam search with a word LM on synthetic log-probabilities: the LM fixes an acoustically ambiguous word, beam 1
without an LM is greedy decoding, tuning finds the LM weight, and a missing flashlight-text gives a clear error."""
import sys

import pytest
import torch

from data.tokenizer import BLANK_ID, CharTokenizer
from training.arpa import write_arpa
from training.beam import (
    BeamSearchDecoder,
    BeamSettings,
    DecoderUnavailable,
    decoder_tokens,
    lexicon_words,
)
from training.beam_evaluation import tune
from training.lm import kneser_ney
from training.scoring import greedy_decode


def _has_flashlight() -> bool:
    try:
        import flashlight.lib.text.decoder.kenlm  # noqa: F401
    except ImportError:
        return False
    return True


requires_lm = pytest.mark.skipif(not _has_flashlight(), reason="needs the optional extra 'lm' (flashlight-text)")

TOKENIZER = CharTokenizer()
CORPUS = [["the", "cat", "sat", "on", "the", "mat"]] * 5 + [["a", "hat", "on", "a", "cat"], ["the", "hat"]]


def emissions(text: str, confusions: dict[int, dict[str, float]] | None = None) -> torch.Tensor:
    """Log-probabilities spelling ``text`` (one frame per character, a blank frame after each) where character
    position ``i`` in ``confusions`` gets the probabilities given there instead of being certain; (frames, 29)."""
    probs = torch.full((2 * len(text), TOKENIZER.num_classes), 1e-30)  # peaky, as trained CTC models are
    for i, ch in enumerate(text):
        for symbol, p in (confusions or {}).get(i, {ch: 1.0}).items():
            probs[2 * i, TOKENIZER.symbols.index(symbol)] = p
        probs[2 * i + 1, BLANK_ID] = 1.0
    return (probs / probs.sum(dim=1, keepdim=True)).log()


@pytest.fixture(scope="module")
def lm_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "cat.arpa"
    write_arpa(kneser_ney(CORPUS, order=3), path)
    return path


@requires_lm
def test_the_lm_recovers_a_word_the_acoustics_get_wrong(lm_path):
    text = "the cat sat on the mat"
    # the "m" of "mat" sounds more like "h": greedy decoding says "hat", the LM knows "on the mat"
    log_probs = emissions(text, {text.index("mat"): {"h": 0.6, "m": 0.4}})
    assert greedy_decode(log_probs[None], torch.tensor([len(log_probs)]), TOKENIZER) == ["the cat sat on the hat"]
    decoder = BeamSearchDecoder(TOKENIZER, lm_path)
    assert decoder.decode([log_probs], BeamSettings(beam_size=20, lm_weight=2.0)) == [text]
    assert decoder.decode([log_probs], BeamSettings(beam_size=20, lm_weight=0.0)) == ["the cat sat on the hat"]


@requires_lm
def test_beam_of_one_without_an_lm_is_greedy_decoding():
    generator = torch.Generator().manual_seed(0)
    batch = (3 * torch.randn(6, 40, TOKENIZER.num_classes, generator=generator)).log_softmax(dim=-1)
    greedy = greedy_decode(batch, torch.full((6,), 40), TOKENIZER)
    beam = BeamSearchDecoder(TOKENIZER).decode(list(batch), BeamSettings(beam_size=1))
    assert beam == [" ".join(text.split()) for text in greedy] and any(beam)


@requires_lm
def test_tuning_picks_the_lm_weight_that_fixes_the_errors(lm_path):
    texts = ["the cat sat on the mat", "a hat on a cat"]
    batch = [emissions(texts[0], {20: {"h": 0.6, "m": 0.4}}), emissions(texts[1], {2: {"c": 0.6, "h": 0.4}})]
    settings, grid = tune(BeamSearchDecoder(TOKENIZER, lm_path), batch, texts, beam_size=20,
                          lm_weights=[0.0, 2.0], word_scores=[0.0, 1.0])
    assert settings == BeamSettings(20, 2.0, 0.0) and len(grid) == 4
    assert min(r["wer"] for r in grid) == 0.0 and max(r["wer"] for r in grid if r["lm_weight"] == 0.0) > 0


def test_lexicon_skips_words_the_model_cannot_spell_and_tokens_rename_the_space(caplog):
    tokens = decoder_tokens(TOKENIZER)
    assert tokens[BLANK_ID] == "<blank>" and tokens[TOKENIZER.symbols.index(" ")] == "|" and len(tokens) == 29
    assert lexicon_words(["<s>", "</s>", "<unk>", "cat", "don't", "Cat", "naïve", "r2d2"], tokens) == ["cat", "don't"]
    assert "skipped 3 of 5" in caplog.text
    with pytest.raises(ValueError, match="no word"):
        lexicon_words(["UPPER"], tokens)


@requires_lm
def test_bad_inputs_name_the_problem(lm_path):
    class PieceTokenizer:  # a sentencepiece-like tokenizer: no character symbols
        num_classes = 10

    with pytest.raises(ValueError, match="character tokenizer"):
        BeamSearchDecoder(PieceTokenizer(), lm_path)
    with pytest.raises(ValueError, match="beam size"):
        BeamSettings(beam_size=0)
    with pytest.raises(ValueError, match=r"\(frames, 29\)"):
        BeamSearchDecoder(TOKENIZER).decode([torch.zeros(5, 7)], BeamSettings())


def test_missing_flashlight_text_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "flashlight.lib.text.decoder.kenlm", None)  # import now raises ImportError
    with pytest.raises(DecoderUnavailable, match=r"optional extra 'lm'.*Greedy decoding works without it"):
        BeamSearchDecoder(TOKENIZER)


@requires_lm
def test_a_character_lm_spells_a_word_the_acoustics_get_wrong(tmp_path):
    from training.lm import source_sentences
    from data.manifest import Utterance, write_manifest

    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, [Utterance(str(tmp_path / "x.wav"), 1.0, " ".join(words)) for words in CORPUS])
    sentences = source_sentences([manifest], unit="char")
    assert sentences[-1] == list("the|hat")
    path = tmp_path / "char.arpa"
    write_arpa(kneser_ney(sentences, order=5), path)
    # "mat" heard as "hat" or "nat": the word LM would need both words in its lexicon; characters need none
    text = "the cat sat on the mat"
    log_probs = emissions(text, {text.index("mat"): {"n": 0.6, "m": 0.4}})
    decoder = BeamSearchDecoder(TOKENIZER, path, lm_unit="char")
    assert decoder.decode([log_probs], BeamSettings(beam_size=20, lm_weight=0.0)) == ["the cat sat on the nat"]
    assert decoder.decode([log_probs], BeamSettings(beam_size=20, lm_weight=1.0)) == [text]
    # a word it never saw is still spelled as heard
    unseen = "the dog"
    assert decoder.decode([emissions(unseen)], BeamSettings(beam_size=20, lm_weight=0.5)) == [unseen]


@requires_lm
def test_a_word_lm_given_as_a_character_lm_is_refused(lm_path):
    with pytest.raises(ValueError, match="word LM"):
        BeamSearchDecoder(TOKENIZER, lm_path, lm_unit="char")


def test_tuning_minimises_the_metric_asked_for(monkeypatch):
    from types import SimpleNamespace

    from training import beam_evaluation

    scores = {0.0: (0.50, 0.30), 1.0: (0.40, 0.35)}  # lm_weight -> (WER, CER): the two metrics disagree
    monkeypatch.setattr(beam_evaluation, "beam_evaluate", lambda decoder, emissions, references, settings: SimpleNamespace(
        scores=SimpleNamespace(wer=scores[settings.lm_weight][0], cer=scores[settings.lm_weight][1])))
    by_wer, _ = tune(None, [], [], beam_size=5, lm_weights=[0.0, 1.0], word_scores=[0.0])
    by_cer, grid = tune(None, [], [], beam_size=5, lm_weights=[0.0, 1.0], word_scores=[0.0], metric="cer")
    assert (by_wer.lm_weight, by_cer.lm_weight, len(grid)) == (1.0, 0.0, 2)
    with pytest.raises(ValueError, match="'wer' or 'cer'"):
        tune(None, [], [], beam_size=5, metric="loss")
