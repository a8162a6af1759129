"""Tokenizers mapping transcripts to CTC label ids; id 0 is always the CTC blank.

``char`` (default): the paper's 29 outputs, blank + space + apostrophe + a-z.
``sentencepiece``: a unigram/BPE model trained on the training transcripts (ids shifted by one for the blank).
Both serialise to a small dict stored in every checkpoint, so a checkpoint decodes on its own.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Iterable, Protocol

from data.text import ALPHABET

BLANK_ID = 0


@dataclass
class TokenizerConfig:
    """kind: "char" or "sentencepiece"; vocab_size and model_type apply to sentencepiece only."""

    kind: str = "char"
    vocab_size: int = 128
    model_type: str = "unigram"


class Tokenizer(Protocol):
    num_classes: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def state_dict(self) -> dict: ...


class CharTokenizer:
    """Characters of :data:`data.text.ALPHABET`; ``encode`` raises on characters outside it."""

    def __init__(self) -> None:
        self.symbols = ["<blank>", *ALPHABET]
        self._ids = {symbol: index for index, symbol in enumerate(self.symbols)}
        self.num_classes = len(self.symbols)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._ids[ch] for ch in text]
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} of {text!r} is outside the alphabet") from err

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.symbols[i] for i in ids if i != BLANK_ID)

    def state_dict(self) -> dict:
        return {"kind": "char", "symbols": "".join(self.symbols[1:])}


class SentencePieceTokenizer:
    """A sentencepiece model; CTC id = sentencepiece id + 1 (unk is sentencepiece id 0)."""

    def __init__(self, model_proto: bytes) -> None:
        import sentencepiece

        self.model_proto = model_proto
        self._sp = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
        self.num_classes = self._sp.get_piece_size() + 1

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, model_type: str = "unigram") -> "SentencePieceTokenizer":
        """Train on transcripts (no BOS/EOS; characters restricted to the alphabet)."""
        import sentencepiece

        model = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(list(texts)), model_writer=model, vocab_size=vocab_size,
            model_type=model_type, character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=0,
            hard_vocab_limit=False, minloglevel=2,
        )
        return cls(model.getvalue())

    def encode(self, text: str) -> list[int]:
        return [i + 1 for i in self._sp.encode(text)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode([i - 1 for i in ids if i != BLANK_ID])

    def state_dict(self) -> dict:
        return {"kind": "sentencepiece", "model_proto": self.model_proto}


def build_tokenizer(cfg: TokenizerConfig, train_texts: Iterable[str]) -> Tokenizer:
    """Tokenizer of kind ``cfg.kind``; sentencepiece is trained on ``train_texts``."""
    if cfg.kind == "char":
        return CharTokenizer()
    if cfg.kind == "sentencepiece":
        return SentencePieceTokenizer.train(train_texts, cfg.vocab_size, cfg.model_type)
    raise ValueError(f"unknown tokenizer kind {cfg.kind!r}; expected 'char' or 'sentencepiece'")


def tokenizer_from_state_dict(state: dict) -> Tokenizer:
    """Rebuild the tokenizer stored in a checkpoint."""
    if state["kind"] == "char":
        tokenizer = CharTokenizer()
        if state["symbols"] != "".join(tokenizer.symbols[1:]):
            raise ValueError("checkpoint was trained with a different character alphabet")
        return tokenizer
    if state["kind"] == "sentencepiece":
        return SentencePieceTokenizer(state["model_proto"])
    raise ValueError(f"unknown tokenizer kind in checkpoint: {state['kind']!r}")
