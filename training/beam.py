"""CTC beam search with an n-gram language model: flashlight-text's decoders via torchaudio's ``ctc_decoder``.

A hypothesis ``y`` of the emissions ``x`` is scored as in Deep Speech 2 (Amodei et al., 2016):

    Q(y) = ln P_ctc(y | x) + lm_weight * log10 P_lm(y) + word_score * words(y)

(KenLM, inside flashlight-text, scores in log10). The words come from a lexicon built from the LM's vocabulary and
spelled with the model's characters, each spelling ending in the word separator (the space, "|" here); a frame
that emits only the separator is appended to every utterance so that the last word ends like the others. Words
outside the LM's vocabulary cannot be produced: that is the price of the lexicon, measured in docs/decoding.md.

With a character LM (``lm_unit="char"``, :func:`training.lm.build_lm` with ``unit="char"``) the decoder is
lexicon-free: the LM scores every emitted character, the separator included, in place of ``log10 P_lm(y)``, and
``word_score`` is added per separator (flashlight's silence score), so any spelling can be produced. Without an LM
the decoder is lexicon-free as well (a plain CTC prefix beam search over characters).

flashlight-text is the optional extra ``lm`` (``pip install -e '.[lm]'``); greedy decoding never needs it.
"""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from data.tokenizer import BLANK_ID, Tokenizer
from training.arpa import BOS, EOS, UNK, read_arpa
from training.lm import CHAR_SEPARATOR, UNITS

log = logging.getLogger(__name__)

SEPARATOR = CHAR_SEPARATOR
#: log-probability of the other classes in the appended separator frame (finite: flashlight adds scores)
_IMPOSSIBLE = -1e4


class DecoderUnavailable(ImportError):
    """flashlight-text (with its KenLM extension) is not installed."""


def require_decoder():
    """torchaudio's ``ctc_decoder``, flashlight's ``Dictionary`` and ``KenLM``, or a clear error naming the extra."""
    try:
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary
        from torchaudio.models.decoder import ctc_decoder
    except (ImportError, RuntimeError) as err:  # torchaudio raises RuntimeError when flashlight-text is missing
        raise DecoderUnavailable(
            "beam search needs flashlight-text with KenLM, the optional extra 'lm': "
            f"pip install -e '.[lm]' (or pip install flashlight-text). Greedy decoding works without it. ({err})"
        ) from err
    return ctc_decoder, Dictionary, KenLM


@dataclass(frozen=True)
class BeamSettings:
    """beam_size: hypotheses kept per frame; lm_weight, word_score: the weights of Q(y) (ignored without an LM)."""

    beam_size: int = 50
    lm_weight: float = 1.0
    word_score: float = 0.0

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam size must be at least 1, got {self.beam_size}")


def decoder_tokens(tokenizer: Tokenizer) -> list[str]:
    """Token names in CTC id order for flashlight: the tokenizer's symbols with the space renamed to "|"."""
    symbols = getattr(tokenizer, "symbols", None)
    if symbols is None or " " not in symbols:
        raise ValueError(f"beam search needs a character tokenizer with a space symbol; got {type(tokenizer).__name__}")
    return [SEPARATOR if symbol == " " else symbol for symbol in symbols]


def lexicon_words(vocabulary: Sequence[str], tokens: Sequence[str]) -> list[str]:
    """The LM words the model can spell; words with other characters are skipped, counted and logged."""
    spellable = set(tokens[BLANK_ID + 1:]) - {SEPARATOR}
    words, skipped = [], []
    for word in vocabulary:
        if word in (BOS, EOS, UNK):
            continue
        (words if set(word) <= spellable else skipped).append(word)
    if skipped:
        log.warning("lexicon: skipped %d of %d LM words with characters the model cannot emit, e.g. %s",
                    len(skipped), len(skipped) + len(words), skipped[:5])
    if not words:
        raise ValueError("no word of the language model can be spelled with the model's characters")
    return words


def check_char_vocabulary(vocabulary: Sequence[str], tokens: Sequence[str]) -> None:
    """Raise ValueError when a character LM holds entries that are not the model's characters (a word LM, say)."""
    foreign = [w for w in vocabulary if w not in (BOS, EOS, UNK) and w not in tokens[BLANK_ID + 1:]]
    if foreign:
        raise ValueError(f"a character LM's entries must be the model's characters (space as {SEPARATOR!r}); "
                         f"this one holds {len(foreign)} others, e.g. {foreign[:5]}: a word LM? (lm unit 'word')")


class BeamSearchDecoder:
    """Beam search over per-utterance log-probabilities, with the LM of ``lm_path`` (ARPA; over words or, with
    ``lm_unit="char"``, characters) or without LM."""

    def __init__(self, tokenizer: Tokenizer, lm_path: str | Path | None = None, lm_unit: str = "word") -> None:
        if lm_unit not in UNITS:
            raise ValueError(f"lm_unit must be one of {UNITS}, got {lm_unit!r}")
        self._ctc_decoder, dictionary, kenlm = require_decoder()
        self.tokenizer = tokenizer
        self.tokens = decoder_tokens(tokenizer)
        self.lm_path = None if lm_path is None else Path(lm_path)
        self.lm_unit = lm_unit
        self._decoders: dict[BeamSettings, object] = {}
        if self.lm_path is None:
            return
        self._files = tempfile.TemporaryDirectory(prefix="lexicon-")
        if lm_unit == "char":  # the LM's dictionary is the tokens (torchaudio's own mapping of a path maps none)
            check_char_vocabulary(read_arpa(self.lm_path).vocabulary, self.tokens)
            token_list = Path(self._files.name) / "tokens.txt"
            token_list.write_text("".join(f"{t}\n" for t in self.tokens), encoding="utf-8")
            self._lm = kenlm(str(self.lm_path), dictionary(str(token_list)))
            log.info("beam search LM %s: characters, lexicon-free", self.lm_path)
            return
        words = lexicon_words(read_arpa(self.lm_path).vocabulary, self.tokens)
        self.lexicon = Path(self._files.name) / "lexicon.txt"
        self.lexicon.write_text("".join(f"{w} {' '.join(w)} {SEPARATOR}\n" for w in words), encoding="utf-8")
        self.word_list = Path(self._files.name) / "words.txt"
        self.word_list.write_text("".join(f"{w}\n" for w in [*words, UNK]), encoding="utf-8")
        self._lm = kenlm(str(self.lm_path), dictionary(str(self.word_list)))  # loaded once, shared by all settings
        log.info("beam search LM %s: lexicon of %d words", self.lm_path, len(words))

    def _decoder(self, settings: BeamSettings):
        if settings not in self._decoders:
            common = {"tokens": self.tokens, "beam_size": settings.beam_size, "nbest": 1,
                      "blank_token": self.tokens[BLANK_ID], "sil_token": SEPARATOR}
            if self.lm_path is None:
                decoder = self._ctc_decoder(lexicon=None, lm=None, **common)
            elif self.lm_unit == "char":  # the word score goes to every separator
                decoder = self._ctc_decoder(lexicon=None, lm=self._lm, lm_weight=settings.lm_weight,
                                            sil_score=settings.word_score, **common)
            else:
                decoder = self._ctc_decoder(lexicon=str(self.lexicon), lm=self._lm, lm_dict=str(self.word_list),
                                            lm_weight=settings.lm_weight, word_score=settings.word_score, **common)
            self._decoders[settings] = decoder
        return self._decoders[settings]

    def decode(self, emissions: Sequence[torch.Tensor], settings: BeamSettings, progress: bool = False) -> list[str]:
        """Transcripts of ``emissions``: one (frames, num_classes) tensor of log-probabilities per utterance."""
        decoder = self._decoder(settings)
        separator = torch.full((1, len(self.tokens)), _IMPOSSIBLE)
        separator[0, self.tokens.index(SEPARATOR)] = 0.0
        texts = []
        for log_probs in tqdm(emissions, desc="beam search", disable=not progress, leave=False):
            if log_probs.ndim != 2 or log_probs.shape[1] != len(self.tokens):
                raise ValueError(f"emissions must be (frames, {len(self.tokens)}); got {tuple(log_probs.shape)}")
            log_probs = log_probs.detach().float().cpu()
            lexicon = self.lm_path is not None and self.lm_unit == "word"
            if lexicon:
                log_probs = torch.cat([log_probs, separator])
            hypotheses = decoder(log_probs.contiguous()[None])[0]  # best first; none when no path survives
            if not hypotheses:
                texts.append("")
            elif lexicon:
                texts.append(" ".join(hypotheses[0].words))
            else:
                texts.append(" ".join(self.tokenizer.decode(hypotheses[0].tokens.tolist()).split()))
        return texts
