"""The built-in synthetic corpus (data/synth*.py), on a corpus of 6 train, 3 dev and 3 test utterances."""
import dataclasses
import functools
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from omegaconf import OmegaConf

from data import synth, synth_text
from data.audio import audio_duration
from data.manifest import read_manifest
from data.synth import (
    SPLITS, SynthConfig, as_synth_config, build_synth_corpus, colored_noise, config_hash, corpus_summary,
    measure_snr_db, plan_corpus, speak,
)
from data.synth_text import speakable_transcript
from data.synth_voice import BASE_VOICES, EspeakSynthesizer, split_voices
from data.text import out_of_alphabet

CFG = SynthConfig(num_train=6, num_dev=3, num_test=3, max_words=10, num_dev_voices=2, num_test_voices=3)
COUNTS = {"train": 6, "dev": 3, "test": 3}
_SYNTHESIZE_MANY = EspeakSynthesizer.synthesize_many


class Interrupted(Exception):
    """Stands in for Ctrl-C or a crash in the middle of a build."""


@pytest.fixture(scope="module", autouse=True)
def shared_text_model():
    """Load the Markov text model (~4 s) once for this module instead of once per build."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synth_text, "DocumentGenerator", functools.lru_cache(maxsize=1)(synth_text.DocumentGenerator))
        yield


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp("synth")
    assert build_synth_corpus(CFG, out_dir, progress=False) == {s: out_dir / f"{s}.jsonl" for s in SPLITS}
    return out_dir


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _count_synthesized(monkeypatch, fail_after: int | None = None) -> list[dict]:
    """Record every request sent to espeak-ng; raise after ``fail_after`` of them when given."""
    requests: list[dict] = []

    def recording(self, stream):
        for request in stream:
            if fail_after is not None and len(requests) == fail_after:
                raise Interrupted
            requests.append(request)
            yield from _SYNTHESIZE_MANY(self, [request])

    monkeypatch.setattr(EspeakSynthesizer, "synthesize_many", recording)
    return requests


def test_manifests_hold_valid_16khz_utterances_within_limits(corpus):
    for split, count in COUNTS.items():
        lines = [json.loads(line) for line in (corpus / f"{split}.jsonl").read_text().splitlines()]
        assert len(lines) == count
        assert all(set(line) == {"audio_filepath", "duration", "text"} for line in lines)
        assert all(line["audio_filepath"].startswith(f"wav/{split}/") for line in lines)  # relative paths
        for utt in read_manifest(corpus / f"{split}.jsonl"):
            info = soundfile.info(utt.audio_filepath)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert utt.duration == pytest.approx(audio_duration(utt.audio_filepath), abs=1e-4)
            assert 0.5 < utt.duration < 12
            assert not out_of_alphabet(utt.text) and utt.text == " ".join(utt.text.split())
            assert CFG.min_words <= len(utt.text.split()) <= CFG.max_words


def test_dev_and_test_voices_are_never_heard_in_training(corpus):
    voices = {split: set(stats["voices"]) for split, stats in corpus_summary(corpus).items()}
    assert len(voices["dev"]) == 2 and len(voices["test"]) == 3 and len(voices["train"]) == 6
    assert not voices["train"] & voices["dev"] and not voices["train"] & voices["test"]
    assert not voices["dev"] & voices["test"]
    train_variants = {voice.split("+")[1] for voice in voices["train"]}
    assert {voice.split("+")[1] for voice in voices["test"]} - train_variants  # some unseen variant
    meta = [json.loads(line) for line in (corpus / "meta" / "test.jsonl").read_text().splitlines()]
    assert {record["voice"] for record in meta} == voices["test"]


def test_split_voices_holds_out_variants_and_combinations():
    voices = split_voices(num_dev=5, num_test=8, seed=3)
    variants = {split: {v.split("+")[1] for v in names} for split, names in voices.items()}
    assert (len(voices["dev"]), len(voices["test"])) == (5, 8)
    assert len(voices["train"]) == len(set(voices["train"])) and set(voices["train"]).isdisjoint(voices["test"])
    assert len(variants["test"] - variants["train"] - variants["dev"]) == 4  # ceil(8 / 2) unseen variants
    assert len(variants["dev"] - variants["train"] - variants["test"]) == 3
    assert all(v.split("+")[0] in BASE_VOICES for v in voices["train"])
    assert split_voices(5, 8, seed=3) == voices != split_voices(5, 8, seed=4)


def test_dev_and_test_sentences_are_never_in_training(corpus):
    texts = {split: [u.text for u in read_manifest(corpus / f"{split}.jsonl")] for split in SPLITS}
    assert len({text for split in SPLITS for text in texts[split]}) == sum(COUNTS.values())


def test_same_config_gives_byte_identical_corpus(corpus, tmp_path):
    build_synth_corpus(CFG, tmp_path, progress=False)
    assert _files(tmp_path) == _files(corpus)


def test_espeak_output_depends_on_the_request_only():
    request = {"voice": "en-us+m1", "text": "Same words, same sound.", "rate_wpm": 170, "pitch": 50, "seed": 1}
    with EspeakSynthesizer() as synthesizer:
        first = synthesizer.synthesize(**request)
        synthesizer.synthesize("en+f3", "Something else entirely.", 150, 30, 2)
        again = list(synthesizer.synthesize_many([request, {**request, "voice": "en-029+klatt"}]))[0]
    assert synthesizer.sample_rate == 22050 and len(first) > 22050 // 2
    np.testing.assert_array_equal(first, again)


def test_a_built_corpus_is_returned_without_work(corpus, monkeypatch):
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*")}
    monkeypatch.setattr(synth, "plan_corpus", lambda cfg: pytest.fail("rebuilt a cached corpus"))
    monkeypatch.setattr(synth, "EspeakSynthesizer", lambda: pytest.fail("rebuilt a cached corpus"))
    assert build_synth_corpus(OmegaConf.structured(CFG), corpus, progress=False)["dev"] == corpus / "dev.jsonl"
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*")} == before


def test_more_training_utterances_rebuild_reusing_the_old_wavs(corpus, tmp_path, monkeypatch):
    shutil.copytree(corpus, tmp_path, dirs_exist_ok=True)
    requests = _count_synthesized(monkeypatch)
    bigger = dataclasses.replace(CFG, num_train=8)
    build_synth_corpus(bigger, tmp_path, progress=False)
    assert len(requests) == 2  # dev, test and the first 6 train utterances are unchanged
    assert json.loads((tmp_path / "corpus.json").read_text())["hash"] == config_hash(bigger) != config_hash(CFG)
    assert len(read_manifest(tmp_path / "train.jsonl")) == 8
    assert (tmp_path / "dev.jsonl").read_text() == (corpus / "dev.jsonl").read_text()


def test_new_seed_rebuilds_everything_and_removes_stale_wavs(corpus, tmp_path):
    shutil.copytree(corpus, tmp_path, dirs_exist_ok=True)
    build_synth_corpus(dataclasses.replace(CFG, seed=1), tmp_path, progress=False)
    old = {u.text for split in SPLITS for u in read_manifest(corpus / f"{split}.jsonl")}
    new = [u for split in SPLITS for u in read_manifest(tmp_path / f"{split}.jsonl")]
    assert not old & {u.text for u in new}
    wavs = {p.resolve() for p in (tmp_path / "wav").rglob("*") if p.is_file()}
    assert wavs == {Path(u.audio_filepath).resolve() for u in new}


def test_interrupted_build_looks_incomplete_and_resumes(corpus, tmp_path, monkeypatch):
    shutil.copytree(corpus, tmp_path, dirs_exist_ok=True)
    changed = dataclasses.replace(CFG, snr_db_min=20.0)
    _count_synthesized(monkeypatch, fail_after=5)
    with pytest.raises(Interrupted):
        build_synth_corpus(changed, tmp_path, progress=False)
    assert not (tmp_path / "corpus.json").exists()
    assert not any((tmp_path / f"{split}.jsonl").exists() for split in SPLITS)
    requests = _count_synthesized(monkeypatch)
    build_synth_corpus(changed, tmp_path, progress=False)
    assert len(requests) == sum(COUNTS.values()) - 5
    assert json.loads((tmp_path / "corpus.json").read_text())["hash"] == config_hash(changed)


def test_noise_is_added_at_the_planned_snr(corpus):
    specs = plan_corpus(CFG)["dev"]
    assert all(CFG.snr_db_min <= spec.snr_db <= CFG.snr_db_max for spec in specs)
    with EspeakSynthesizer() as synthesizer:
        for spec in specs:
            noisy, _ = soundfile.read(corpus / spec.wav_path(CFG.sample_rate), dtype="float32")
            clean = speak(spec, synthesizer, CFG.sample_rate)
            assert measure_snr_db(clean, noisy) == pytest.approx(spec.snr_db, abs=0.3)


def test_measure_snr_db_and_colored_noise():
    rng = np.random.default_rng(0)
    clean = np.sin(np.arange(32000) * 0.05).astype(np.float32)
    white, pink = colored_noise(32000, 0.0, rng), colored_noise(32000, 1.0, rng)
    assert np.sqrt(np.mean(white ** 2)) == pytest.approx(1.0) and np.sqrt(np.mean(pink ** 2)) == pytest.approx(1.0)
    power = [np.abs(np.fft.rfft(noise)) ** 2 for noise in (white, pink)]
    low_share = [p[:1000].sum() / p.sum() for p in power]  # share of power in the lowest 1/16 of the band
    assert low_share[0] < 0.1 < 0.5 < low_share[1]  # white: ~6%; pink: ~70%
    noise = white * np.sqrt(np.mean(clean ** 2) / 10)
    assert measure_snr_db(clean, 0.3 * (clean + noise)) == pytest.approx(10.0, abs=0.2)


@pytest.mark.parametrize("sentence", [
    "In 1990 the city grew very fast.", "Profits rose by five % in the year.", "The NASA probe landed there safely.",
    "Mr. Smith went to the town today.", "The U.S. army marched on the town.", "The café opened its doors today.",
    "Too short.", "One two three four five six seven eight nine ten eleven.",
])
def test_sentences_not_read_as_written_or_off_length_are_rejected(sentence):
    assert speakable_transcript(sentence, min_words=4, max_words=10) is None


def test_sentences_are_unique_across_groups_and_exhaustion_is_an_error(monkeypatch):
    class RepeatingGenerator:
        def __init__(self):
            self._sentences = itertools.cycle([
                "The cat sat on the mat.", "The cat sat on the mat!", "A dog ran in the park.", "In 1990 it rained.",
                "Birds sing in the morning.",
            ])

        def sentence(self):
            return next(self._sentences)

    monkeypatch.setattr(synth_text, "DocumentGenerator", RepeatingGenerator)
    groups = synth_text.generate_sentences({"dev": 1, "test": 1, "train": 1}, seed=0, min_words=4, max_words=10)
    assert [sentence.text for group in groups.values() for sentence in group] == [
        "the cat sat on the mat", "a dog ran in the park", "birds sing in the morning"]
    with pytest.raises(RuntimeError, match="too few speakable sentences"):
        synth_text.generate_sentences({"train": 4}, seed=0, min_words=4, max_words=10)


def test_speakable_sentence_is_normalised():
    sentence = 'Well-known singers, however, "don\'t" sing (much).'
    assert speakable_transcript(sentence, 4, 10) == "well known singers however don't sing much"


def test_config_is_validated_and_canonical():
    with pytest.raises(ValueError, match="snr_db_min > snr_db_max"):
        SynthConfig(snr_db_min=30.0, snr_db_max=5.0)
    assert as_synth_config(OmegaConf.structured(CFG)) == CFG
    assert config_hash(as_synth_config(SynthConfig(snr_db_min=5))) == config_hash(SynthConfig())


@pytest.mark.parametrize("size, config", [("tiny", "synth_tiny"), ("small", "synth_small"), ("full", "synth")])
def test_named_sizes_build_the_same_corpus_as_the_data_configs(size, config):
    from training.compose import compose_config

    cfg = compose_config([f"data={config}", "trainer.output_dir=unused"])
    assert synth.as_synth_config(cfg.data.synth) == synth.SYNTH_SIZES[size]


def test_lm_text_never_repeats_a_transcript_and_is_rebuilt_only_when_asked(tmp_path, monkeypatch):
    transcripts = {text for group in synth_text.generate_sentences(
        {"dev": CFG.num_dev, "test": CFG.num_test, "train": CFG.num_train}, CFG.seed, CFG.min_words, CFG.max_words
    ).values() for text in (s.text for s in group)}
    path = synth.write_lm_text(CFG, 40, tmp_path / "lm_text.txt")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(set(lines)) == 40 and not transcripts & set(lines)
    assert all(not out_of_alphabet(line) for line in lines)
    monkeypatch.setattr(synth, "lm_text", lambda cfg, n: pytest.fail("an up-to-date LM text was regenerated"))
    synth.write_lm_text(CFG, 40, path)
    monkeypatch.setattr(synth, "lm_text", lambda cfg, n: ["new text"] * n)
    synth.write_lm_text(CFG, 2, path)  # another count: rewritten
    assert path.read_text(encoding="utf-8") == "new text\nnew text\n"
