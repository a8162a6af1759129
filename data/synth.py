"""The built-in English speech corpus: espeak-ng voices read Markov-chain sentences, with noise and gain.

No corpus can be downloaded in this project's environment, so it synthesises one. Dev and test use voices and
sentences that training never sees (:func:`data.synth_voice.split_voices`, :mod:`data.synth_text`). The same
config gives byte-identical manifests and audio. Speech comes from espeak-ng (GPL-3.0), loaded at run time.

Layout of a corpus folder: ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` (manifests), ``wav/<split>/*.wav``
(16-bit PCM), ``meta/<split>.jsonl`` (voice, rate, pitch, gain, SNR of every utterance) and ``corpus.json``
(config, its hash and per-split totals), written last: a folder without it is incomplete.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, get_type_hints

import numpy as np
import torch
from tqdm import tqdm

from data.atomic import write_text_atomic
from data.audio import audio_duration, resample, write_audio
from data.manifest import Utterance, write_manifest
from data.synth_text import Sentence, generate_sentences
from data.synth_voice import EspeakSynthesizer, split_voices

log = logging.getLogger(__name__)

#: Bump when a code change alters the audio or text made from the same config (forces rebuilds).
FORMAT_VERSION = 1
SPLITS = ("train", "dev", "test")
_SPEECH_PEAK = 0.5  # clean speech is scaled to this peak (-6 dBFS) before the random gain
_MAX_PEAK = 0.99  # a noisy mix that would clip is scaled down as a whole (its SNR is kept)


def check_ranges(config: object, *pairs: tuple[str, str]) -> None:
    """Raise ValueError naming the config and the fields when a (low, high) pair of its fields has low > high."""
    for low, high in pairs:
        if getattr(config, low) > getattr(config, high):
            raise ValueError(f"{type(config).__name__}: {low} > {high}")


@dataclass
class SynthConfig:
    """The synthetic corpus; every field changes the corpus (and its hash).

    seed: seeds sentences, voice split and per-utterance draws.
    num_train / num_dev / num_test: utterances per split.
    min_words / max_words: words per transcript, inclusive.
    rate_wpm_min / rate_wpm_max: speaking rate in words per minute, drawn per utterance (espeak-ng: 80-450).
    pitch_min / pitch_max: espeak-ng pitch 0-100 (50 = the voice's own), drawn per utterance.
    snr_db_min / snr_db_max: signal-to-noise ratio in dB of the added white-to-pink noise, drawn per utterance.
    gain_db_min / gain_db_max: level in dB relative to a -6 dBFS speech peak, drawn per utterance.
    num_dev_voices / num_test_voices: voices held out for dev / test (each split's own; about half of them
        use voice variants that no other split hears).
    sample_rate: output sample rate in Hz.
    """

    seed: int = 0
    num_train: int = 700
    num_dev: int = 100
    num_test: int = 100
    min_words: int = 4
    max_words: int = 14
    rate_wpm_min: int = 140
    rate_wpm_max: int = 200
    pitch_min: int = 25
    pitch_max: int = 75
    snr_db_min: float = 5.0
    snr_db_max: float = 30.0
    gain_db_min: float = -6.0
    gain_db_max: float = 0.0
    num_dev_voices: int = 8
    num_test_voices: int = 8
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        check_ranges(self, ("min_words", "max_words"), ("rate_wpm_min", "rate_wpm_max"), ("pitch_min", "pitch_max"),
                     ("snr_db_min", "snr_db_max"), ("gain_db_min", "gain_db_max"))
        if min(self.num_train, self.num_dev, self.num_test) < 0 or self.min_words < 1:
            raise ValueError("SynthConfig: utterance counts must be >= 0 and min_words >= 1")
        if min(self.num_dev_voices, self.num_test_voices) < 1 or self.sample_rate <= 0:
            raise ValueError("SynthConfig: need >= 1 dev and test voice and a positive sample_rate")


#: Named sizes for ``scripts/prepare_synth.py --size``; hours of audio (train/dev/test) with seed 0:
#: tiny 0.035/0.008/0.006, small 0.648/0.086/0.089, full 2.773/0.172/0.189.
SYNTH_SIZES: dict[str, SynthConfig] = {
    "tiny": SynthConfig(num_train=40, num_dev=8, num_test=8, num_dev_voices=2, num_test_voices=2),
    "small": SynthConfig(num_train=1000),
    "full": SynthConfig(num_train=3000, num_dev=200, num_test=200, num_dev_voices=12, num_test_voices=12),
}


@dataclass(frozen=True)
class UtteranceSpec:
    """Everything one utterance's audio is made from; drawn by :func:`plan_corpus`.

    voice: ``"<base>+<variant>"``; rate_wpm, pitch: espeak-ng settings; gain_db: level change;
    snr_db: speech-to-noise power ratio; noise_color: noise power spectrum ~ 1/f**noise_color (0 white,
    1 pink); seed: espeak-ng's and the noise generator's seed. recording_rate: when set, the speech passes through
    this sample rate on its way to the corpus's (as a recording made at 8 kHz does: nothing above 4 kHz but the
    noise added afterwards); 0 = straight from espeak-ng's 22.05 kHz.
    """

    split: str
    index: int
    text: str
    prompt: str
    voice: str
    rate_wpm: int
    pitch: int
    gain_db: float
    snr_db: float
    noise_color: float
    seed: int
    recording_rate: int = 0

    def wav_path(self, sample_rate: int) -> Path:
        """Path relative to the corpus folder; its name carries a hash of everything the audio depends on
        (``recording_rate`` only when set, so wavs made before it existed keep their names)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items()
                  if k not in ("split", "index", "text") and (k != "recording_rate" or v)}
        digest = _digest({"format_version": FORMAT_VERSION, "sample_rate": sample_rate, **fields})[:12]
        return Path("wav") / self.split / f"{self.index:06d}-{digest}.wav"


def as_synth_config(cfg: Any) -> SynthConfig:
    """A validated :class:`SynthConfig` from one, or from anything with its fields (an OmegaConf node)."""
    types = get_type_hints(SynthConfig)
    return SynthConfig(**{f.name: types[f.name](getattr(cfg, f.name)) for f in dataclasses.fields(SynthConfig)})


def config_hash(cfg: SynthConfig) -> str:
    """Hex digest of the config and :data:`FORMAT_VERSION`: equal hashes mean equal corpora."""
    return _digest({"format_version": FORMAT_VERSION, "config": dataclasses.asdict(cfg)})


def _digest(value: dict) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def plan_corpus(cfg: SynthConfig) -> dict[str, list[UtteranceSpec]]:
    """Every utterance of every split, drawn deterministically from ``cfg`` (loads the text model, ~4 s).

    Sentences are drawn dev, test, then train, so changing ``num_train`` keeps dev and test as they are.
    """
    counts = {"dev": cfg.num_dev, "test": cfg.num_test, "train": cfg.num_train}
    sentences = generate_sentences(counts, cfg.seed, cfg.min_words, cfg.max_words)
    voices = split_voices(cfg.num_dev_voices, cfg.num_test_voices, cfg.seed)
    return {split: _plan_split(split, sentences[split], voices[split], cfg) for split in SPLITS}


def lm_text(cfg: SynthConfig, num_sentences: int) -> list[str]:
    """``num_sentences`` transcripts for a language model, drawn from the corpus's text source after its dev, test
    and train sentences (same seeded stream), so none of them is a transcript of any split."""
    counts = {"dev": cfg.num_dev, "test": cfg.num_test, "train": cfg.num_train, "lm": num_sentences}
    return [sentence.text for sentence in generate_sentences(counts, cfg.seed, cfg.min_words, cfg.max_words)["lm"]]


def write_lm_text(cfg: SynthConfig, num_sentences: int, path: str | Path) -> Path:
    """Write :func:`lm_text` to ``path`` (one sentence per line, atomically) unless the file there was made from
    the same config and count (its sidecar ``<path>.json`` holds both)."""
    cfg, path = as_synth_config(cfg), Path(path)
    record = {"corpus_hash": config_hash(cfg), "num_sentences": num_sentences}
    stamp = path.with_name(path.name + ".json")
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == record:
        log.info("LM text %s is up to date", path)
        return path
    stamp.unlink(missing_ok=True)
    log.info("drawing %d sentences of LM text (about 15 s per 100 k)", num_sentences)
    write_text_atomic(path, "".join(f"{text}\n" for text in lm_text(cfg, num_sentences)))
    write_text_atomic(stamp, json.dumps(record) + "\n")
    log.info("LM text %s: %d sentences disjoint from the corpus's transcripts", path, num_sentences)
    return path


def _plan_split(split: str, sentences: list[Sentence], voices: list[str], cfg: SynthConfig) -> list[UtteranceSpec]:
    rng = random.Random(f"{cfg.seed}:{split}:utterances")
    voices = sorted(voices)
    rng.shuffle(voices)  # then used in turn, so every voice gets a fair share
    return [
        UtteranceSpec(
            split=split, index=index, text=sentence.text, prompt=sentence.prompt,
            voice=voices[index % len(voices)],
            rate_wpm=rng.randint(cfg.rate_wpm_min, cfg.rate_wpm_max),
            pitch=rng.randint(cfg.pitch_min, cfg.pitch_max),
            gain_db=round(rng.uniform(cfg.gain_db_min, cfg.gain_db_max), 2),
            snr_db=round(rng.uniform(cfg.snr_db_min, cfg.snr_db_max), 2),
            noise_color=round(rng.random(), 3),
            seed=rng.getrandbits(31),
        )
        for index, sentence in enumerate(sentences)
    ]


def speak(spec: UtteranceSpec, synthesizer: EspeakSynthesizer, sample_rate: int) -> np.ndarray:
    """Clean speech of ``spec``: float32, shape (num_samples,), at ``sample_rate``, peak at -6 dBFS."""
    return _clean_speech(synthesizer.synthesize(**_request(spec)), synthesizer.sample_rate, sample_rate, spec)


def _request(spec: UtteranceSpec) -> dict[str, Any]:
    return {"voice": spec.voice, "text": spec.prompt, "rate_wpm": spec.rate_wpm, "pitch": spec.pitch, "seed": spec.seed}


def _clean_speech(raw: np.ndarray, raw_sample_rate: int, sample_rate: int, spec: UtteranceSpec) -> np.ndarray:
    """espeak-ng's ``raw`` samples at ``sample_rate`` (through ``spec.recording_rate`` when set), -6 dBFS peak."""
    speech = torch.from_numpy(raw)
    if spec.recording_rate:
        speech = resample(speech, raw_sample_rate, spec.recording_rate)
        raw_sample_rate = spec.recording_rate
    speech = resample(speech, raw_sample_rate, sample_rate).numpy()
    peak = float(np.abs(speech).max(initial=0.0))
    if peak == 0.0:
        raise RuntimeError(f"espeak-ng produced no sound for {spec.prompt!r} ({spec.voice})")
    return speech * np.float32(_SPEECH_PEAK / peak)


def degrade(speech: np.ndarray, spec: UtteranceSpec) -> np.ndarray:
    """Apply ``spec``'s gain, add its noise at ``spec.snr_db``; same shape. Scaled down as a whole if it would clip."""
    speech = speech * np.float32(10 ** (spec.gain_db / 20))
    noise = colored_noise(len(speech), spec.noise_color, np.random.default_rng(spec.seed))
    noise *= np.sqrt(np.mean(speech ** 2) / 10 ** (spec.snr_db / 10))
    noisy = (speech + noise).astype(np.float32)
    peak = float(np.abs(noisy).max())
    return noisy * np.float32(_MAX_PEAK / peak) if peak > _MAX_PEAK else noisy


def colored_noise(num_samples: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink), unit RMS, shape (num_samples,)."""
    num_fft = 1 << max(num_samples - 1, 1).bit_length()  # a power of two: fast for any length
    frequencies = np.fft.rfftfreq(num_fft)
    frequencies[0] = frequencies[1]  # no infinite gain at DC
    spectrum = np.fft.rfft(rng.standard_normal(num_fft)) * frequencies ** (-exponent / 2)
    noise = np.fft.irfft(spectrum, n=num_fft)[:num_samples]
    return noise / max(float(np.sqrt(np.mean(noise ** 2))), 1e-12)


def measure_snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """SNR in dB of ``noisy`` against the ``clean`` speech it contains at an unknown gain (least squares).

    Both of shape (num_samples,). The speech part is the projection of ``noisy`` onto ``clean``; the rest is noise.
    """
    clean, noisy = clean.astype(np.float64), noisy.astype(np.float64)
    speech = clean * (np.dot(noisy, clean) / np.dot(clean, clean))
    return float(10 * np.log10(np.sum(speech ** 2) / np.sum((noisy - speech) ** 2)))


def build_synth_corpus(cfg: SynthConfig, out_dir: str | Path, progress: bool = True) -> dict[str, Path]:
    """Build the corpus of ``cfg`` into ``out_dir`` (unless it is there already); the manifest path of each split.

    ``cfg`` may be an OmegaConf node with :class:`SynthConfig`'s fields. A folder whose ``corpus.json`` holds
    the same config hash is returned at once. Otherwise ``corpus.json`` and the manifests are removed first and
    written last, so an interrupted build never looks complete; a rerun reuses the wavs already written
    (their names hash what they were made from) and deletes wavs that the config no longer uses.
    """
    cfg = as_synth_config(cfg)
    out_dir = Path(out_dir)
    manifests = {split: out_dir / f"{split}.jsonl" for split in SPLITS}
    digest = config_hash(cfg)
    if _is_built(out_dir, digest, manifests.values()):
        log.info("synthetic corpus %s is up to date", out_dir)
        return manifests
    for path in (out_dir / "corpus.json", *manifests.values(), *_meta_paths(out_dir).values()):
        path.unlink(missing_ok=True)
    plan = plan_corpus(cfg)
    specs = [spec for split in SPLITS for spec in plan[split]]
    rendered = iter(render_utterances(specs, cfg.sample_rate, out_dir.resolve(), progress))
    utterances = {split: [next(rendered) for _ in plan[split]] for split in SPLITS}
    for split in SPLITS:
        write_manifest(manifests[split], utterances[split])
        write_meta(_meta_paths(out_dir)[split], plan[split], cfg.sample_rate)
    _remove_stale_files(out_dir / "wav", {Path(u.audio_filepath) for split in SPLITS for u in utterances[split]})
    summary = {split: _split_summary(plan[split], utterances[split]) for split in SPLITS}
    record = {"format_version": FORMAT_VERSION, "config": dataclasses.asdict(cfg), "hash": digest, "splits": summary}
    write_text_atomic(out_dir / "corpus.json", json.dumps(record, indent=2) + "\n")
    log.info("synthetic corpus %s: %s", out_dir, "; ".join(
        f"{split} {s['num_utterances']} utterances, {s['hours']:.3f} h, {s['num_voices']} voices"
        for split, s in summary.items()))
    return manifests


def corpus_summary(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Per split of a built corpus: ``num_utterances``, ``hours``, ``num_voices`` and ``voices`` (sorted)."""
    return json.loads((Path(out_dir) / "corpus.json").read_text(encoding="utf-8"))["splits"]


def _is_built(out_dir: Path, digest: str, manifests: Iterable[Path]) -> bool:
    try:
        record = json.loads((out_dir / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return record.get("hash") == digest and all(path.is_file() for path in manifests)


def _meta_paths(out_dir: Path) -> dict[str, Path]:
    return {split: out_dir / "meta" / f"{split}.jsonl" for split in SPLITS}


def render_utterances(specs: list[UtteranceSpec], sample_rate: int, root: Path, progress: bool,
                      desc: str = "synth") -> list[Utterance]:
    """Synthesise the wavs of ``specs`` that ``root`` lacks; their utterances (absolute paths), in order."""
    paths = {spec: root / spec.wav_path(sample_rate) for spec in specs}
    missing = [spec for spec in specs if not paths[spec].is_file()]
    with _one_torch_thread(), EspeakSynthesizer() as synthesizer, tqdm(
        total=len(specs), initial=len(specs) - len(missing), desc=desc, unit="utt", disable=not progress
    ) as bar:
        for spec, raw in zip(missing, synthesizer.synthesize_many(_request(spec) for spec in missing)):
            speech = _clean_speech(raw, synthesizer.sample_rate, sample_rate, spec)
            write_audio(paths[spec], degrade(speech, spec), sample_rate)
            bar.update()
    return [Utterance(str(paths[spec]), audio_duration(paths[spec]), spec.text) for spec in specs]


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Resampling a short utterance gains nothing from intra-op threads, which would spin against the espeak-ng
    helper for the CPU (measured: half the wall time, a quarter of the CPU time on 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def write_meta(path: Path, specs: list[Any], sample_rate: int) -> None:
    """One JSON line per spec (a dataclass with ``wav_path``): its audio path and every field, written atomically."""
    lines = []
    for spec in specs:
        record = {"audio_filepath": str(spec.wav_path(sample_rate)), **dataclasses.asdict(spec)}
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    write_text_atomic(path, "".join(lines))


def _split_summary(specs: list[UtteranceSpec], utterances: list[Utterance]) -> dict[str, Any]:
    voices = sorted({spec.voice for spec in specs})
    hours = sum(u.duration for u in utterances) / 3600
    return {"num_utterances": len(utterances), "hours": round(hours, 4), "num_voices": len(voices), "voices": voices}


def _remove_stale_files(folder: Path, keep: set[Path]) -> None:
    """Delete files under ``folder`` not in ``keep`` (absolute): wavs of an older config, interrupted writes."""
    for path in folder.rglob("*"):
        if path.is_file() and path.resolve() not in keep:
            path.unlink()
