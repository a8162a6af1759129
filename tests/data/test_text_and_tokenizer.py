import pytest

from data.text import ALPHABET, normalize_transcript, out_of_alphabet
from data.tokenizer import (
    BLANK_ID, CharTokenizer, SentencePieceTokenizer, TokenizerConfig, build_tokenizer, tokenizer_from_state_dict,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Hello, World!", "hello world"),
        ("  It\u2019s   a well-known café ", "it's a well known cafe"),
        ("rock 'n' roll", "rock n roll"),
        ("42", ""),
    ],
)
def test_normalize_transcript(raw, expected):
    assert normalize_transcript(raw) == expected
    assert not out_of_alphabet(normalize_transcript(raw))


def test_char_tokenizer_has_the_papers_29_outputs_and_round_trips():
    tokenizer = CharTokenizer()
    assert tokenizer.num_classes == 29 and len(ALPHABET) == 28
    ids = tokenizer.encode("it's a test")
    assert BLANK_ID not in ids
    assert tokenizer.decode(ids) == "it's a test"
    assert tokenizer.decode([BLANK_ID, *ids, BLANK_ID]) == "it's a test"


def test_char_tokenizer_rejects_characters_outside_the_alphabet():
    with pytest.raises(ValueError, match="'7'"):
        CharTokenizer().encode("route 7")


def test_sentencepiece_tokenizer_round_trips_through_its_state_dict():
    texts = ["the cat sat on the mat", "a dog sat on a log", "the cat and the dog"] * 20
    tokenizer = build_tokenizer(TokenizerConfig(kind="sentencepiece", vocab_size=30), texts)
    restored = tokenizer_from_state_dict(tokenizer.state_dict())
    assert isinstance(restored, SentencePieceTokenizer)
    ids = restored.encode("the dog sat on the mat")
    assert BLANK_ID not in ids and max(ids) < restored.num_classes
    assert restored.decode(ids) == "the dog sat on the mat"


def test_unknown_tokenizer_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        build_tokenizer(TokenizerConfig(kind="bytes"), [])
