"""Connected digits from real recordings: the Free Spoken Digit Dataset (FSDD) joined into 1-7 digit utterances.

FSDD holds isolated digits ``{digit}_{speaker}_{index}.wav`` (8 kHz mono, trimmed). An utterance here is
1-7 recordings of one speaker ("three nine one") with random pauses between them, resampled to 16 kHz, at a
random level, with light noise. Speakers are split: dev and test speakers are never heard in training.
The same config and source give byte-identical manifests and audio (everything is drawn from ``seed``).

Layout of a corpus folder: ``train.jsonl``, ``dev.jsonl``, ``test.jsonl``, ``wav/<split>/*.wav``,
``meta/<split>.jsonl`` (the recordings, pauses, gain and SNR of every utterance), ``preparation_report.{json,md}``
(recordings skipped or changed) and ``corpus.json`` (config, hash, per-split totals), written last: a folder
without it is incomplete, and a build with a different config or source starts over, reusing what it can.

Optionally (``synth_train``) the training split also gets digit strings read by espeak-ng voices of the built-in
corpus (:mod:`data.synth`), in ``wav/train_synth/`` with their settings in ``meta/train_synth.jsonl``: hundreds
of synthetic voices next to three real speakers.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from data.atomic import write_text_atomic
from data.audio import audio_duration, resample, time_stretch, write_audio
from data.fsdd_source import DIGIT_WORDS, Recording, scan_recordings, source_listing
from data.manifest import Utterance, write_manifest
from data.prep_report import write_report
from data import synth
from data.synth import check_ranges, colored_noise, write_meta
from data.synth_voice import split_voices

log = logging.getLogger(__name__)

#: Bump when a code change alters the audio or text made from the same config (forces rebuilds).
FORMAT_VERSION = 1
SPLITS = ("train", "dev", "test")
_DIGIT_PEAK = 0.5  # every recording is scaled to this peak before the utterance's gain
_MAX_PEAK = 0.99


@dataclass
class FsddConfig:
    """The connected-digits corpus; every field except ``source_dir`` changes the corpus (and its hash).

    source_dir: the FSDD repository (its ``recordings/`` folder, or a folder of the wavs themselves).
    seed: seeds every draw. train_speakers / dev_speakers / test_speakers: disjoint lists of speaker names.
    num_train / num_dev / num_test: utterances per split.
    min_digits / max_digits: digits per utterance, inclusive.
    pause_min / pause_max: silence between digits in seconds; edge_min / edge_max: before the first and after
        the last digit.
    snr_db_min / snr_db_max: white-to-pink noise level against the digits' power, drawn per utterance.
    gain_db_min / gain_db_max: level relative to a -6 dBFS digit peak, drawn per utterance.
    tempo_min / tempo_max: training digits only: each is time-stretched (pitch kept) to this many times its
        duration, drawn per digit; [1, 1] draws nothing and stretches nothing. Dev and test are never stretched.
    synth_train: extra training utterances of 1-7 digits read by espeak-ng's training voices of the built-in
        corpus (:func:`data.synth_voice.split_voices`), with this config's gain and SNR ranges; 0 = none.
    synth_rate_wpm_min / synth_rate_wpm_max: their speaking rate in words per minute, drawn per utterance.
    synth_recording_rate: when set, the espeak-ng speech is resampled to this rate before the output rate, as
        FSDD's recordings were made at 8 kHz: with 8000 no voice carries speech above 4 kHz that no real speaker
        has (espeak-ng speaks at 22.05 kHz); 0 = not band-limited.
    sample_rate: output sample rate in Hz.
    """

    source_dir: str = "../shared/data/fsdd"
    seed: int = 0
    train_speakers: list[str] = field(default_factory=lambda: ["george", "nicolas", "yweweler"])
    dev_speakers: list[str] = field(default_factory=lambda: ["lucas"])
    test_speakers: list[str] = field(default_factory=lambda: ["jackson"])
    num_train: int = 2000
    num_dev: int = 100
    num_test: int = 100
    min_digits: int = 1
    max_digits: int = 7
    pause_min: float = 0.05
    pause_max: float = 0.4
    edge_min: float = 0.05
    edge_max: float = 0.3
    snr_db_min: float = 20.0
    snr_db_max: float = 40.0
    gain_db_min: float = -6.0
    gain_db_max: float = 0.0
    tempo_min: float = 1.0
    tempo_max: float = 1.0
    synth_train: int = 0
    synth_rate_wpm_min: int = 100
    synth_rate_wpm_max: int = 200
    synth_recording_rate: int = 0
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        check_ranges(self, ("min_digits", "max_digits"), ("pause_min", "pause_max"), ("edge_min", "edge_max"),
                     ("snr_db_min", "snr_db_max"), ("gain_db_min", "gain_db_max"), ("tempo_min", "tempo_max"),
                     ("synth_rate_wpm_min", "synth_rate_wpm_max"))
        counts = (self.num_train, self.num_dev, self.num_test, self.synth_train)
        if self.min_digits < 1 or min(*counts, self.pause_min, self.edge_min) < 0:
            raise ValueError("FsddConfig: min_digits must be >= 1; counts, pauses and edges >= 0")
        if self.tempo_min <= 0:
            raise ValueError("FsddConfig: tempo_min must be > 0")
        if self.synth_recording_rate < 0:
            raise ValueError(f"FsddConfig: synth_recording_rate must be >= 0 (0 = off), got {self.synth_recording_rate}")
        groups = {s: getattr(self, f"{s}_speakers") for s in SPLITS}
        if not all(groups.values()):
            raise ValueError(f"FsddConfig: every split needs a speaker, got {groups}")
        everyone = [name for names in groups.values() for name in names]
        if len(set(everyone)) != len(everyone):
            raise ValueError(f"FsddConfig: a speaker is in more than one split: {groups}")


def as_fsdd_config(cfg: Any) -> FsddConfig:
    """A validated :class:`FsddConfig` from one or from an OmegaConf node with its fields."""
    if isinstance(cfg, FsddConfig):
        return cfg
    values = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    return FsddConfig(**values)


@dataclass(frozen=True)
class UtteranceSpec:
    """Everything one utterance is made from: the recordings (file names) in order, the pauses around and
    between them (seconds; ``len(recordings) + 1`` of them), gain, SNR, noise colour, the noise seed, and the
    duration factor each recording is time-stretched by (``tempos``; empty: none is)."""

    split: str
    index: int
    speaker: str
    recordings: tuple[str, ...]
    digits: tuple[int, ...]
    pauses: tuple[float, ...]
    gain_db: float
    snr_db: float
    noise_color: float
    seed: int
    tempos: tuple[float, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(DIGIT_WORDS[d] for d in self.digits)

    def wav_path(self, sample_rate: int) -> Path:
        """Path relative to the corpus folder; the name hashes everything the audio depends on (``tempos`` only
        when set, so wavs made before it existed keep their names)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items()
                  if k not in ("split", "index") and (k != "tempos" or v)}
        digest = _digest({"format_version": FORMAT_VERSION, "sample_rate": sample_rate, **fields})[:12]
        return Path("wav") / self.split / f"{self.index:06d}-{digest}.wav"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def plan_corpus(cfg: FsddConfig, recordings: list[Recording]) -> dict[str, list[UtteranceSpec]]:
    """Every utterance of every split, drawn from ``cfg.seed``.

    Each (speaker, digit) pool is shuffled and drawn in turn, so a recording is used again only after all its
    speaker's recordings of that digit were; dev and test (100 utterances, about 400 digits) use each of their
    speaker's 500 recordings at most once. Raises ValueError naming a configured speaker with no recordings.
    """
    by_speaker: dict[str, dict[int, list[str]]] = {}
    for rec in recordings:
        by_speaker.setdefault(rec.speaker, {}).setdefault(rec.digit, []).append(rec.name)
    counts = {"train": cfg.num_train, "dev": cfg.num_dev, "test": cfg.num_test}
    plan = {}
    for split in SPLITS:
        speakers = sorted(getattr(cfg, f"{split}_speakers"))
        missing = [s for s in speakers if s not in by_speaker]
        if missing:
            raise ValueError(f"FSDD speakers {missing} ({split}) have no usable recordings in {cfg.source_dir}; "
                             f"found {sorted(by_speaker)}")
        rng = random.Random(f"{cfg.seed}:{split}")
        pools = {s: {d: _Pool(names, rng) for d, names in sorted(by_speaker[s].items())} for s in speakers}
        plan[split] = [_plan_utterance(split, i, speakers[i % len(speakers)], pools, rng, cfg)
                       for i in range(counts[split])]
    return plan


class _Pool:
    """A speaker's recordings of one digit, handed out in a shuffled order, reshuffled when used up."""

    def __init__(self, names: list[str], rng: random.Random) -> None:
        self.names, self.rng, self.order = sorted(names), rng, []

    def draw(self) -> str:
        if not self.order:
            self.order = self.rng.sample(self.names, len(self.names))
        return self.order.pop()


def _plan_utterance(split: str, index: int, speaker: str, pools: dict[str, dict[int, _Pool]],
                    rng: random.Random, cfg: FsddConfig) -> UtteranceSpec:
    available = sorted(pools[speaker])
    digits = tuple(rng.choice(available) for _ in range(rng.randint(cfg.min_digits, cfg.max_digits)))
    pauses = (round(rng.uniform(cfg.edge_min, cfg.edge_max), 3),
              *(round(rng.uniform(cfg.pause_min, cfg.pause_max), 3) for _ in digits[1:]),
              round(rng.uniform(cfg.edge_min, cfg.edge_max), 3))
    spec = UtteranceSpec(
        split=split, index=index, speaker=speaker, recordings=tuple(pools[speaker][d].draw() for d in digits),
        digits=digits, pauses=pauses, gain_db=round(rng.uniform(cfg.gain_db_min, cfg.gain_db_max), 2),
        snr_db=round(rng.uniform(cfg.snr_db_min, cfg.snr_db_max), 2), noise_color=round(rng.random(), 3),
        seed=rng.getrandbits(31))
    if split != "train" or (cfg.tempo_min, cfg.tempo_max) == (1.0, 1.0):
        return spec
    tempo_rng = random.Random(f"{cfg.seed}:{split}:{index}:tempo")  # its own stream: the rest stays as it was
    tempos = tuple(round(tempo_rng.uniform(cfg.tempo_min, cfg.tempo_max), 3) for _ in digits)
    return dataclasses.replace(spec, tempos=tempos)


def plan_synth_digits(cfg: FsddConfig) -> list[synth.UtteranceSpec]:
    """The ``cfg.synth_train`` espeak-ng utterances of the training split, drawn from ``cfg.seed``: voices of the
    built-in corpus's training split taken in a shuffled turn, digits, rate, pitch, gain and SNR drawn uniformly."""
    rng = random.Random(f"{cfg.seed}:synth_digits")
    voices = sorted(split_voices(8, 8, cfg.seed)["train"])
    rng.shuffle(voices)
    specs = []
    for index in range(cfg.synth_train):
        text = " ".join(DIGIT_WORDS[rng.randrange(10)] for _ in range(rng.randint(cfg.min_digits, cfg.max_digits)))
        specs.append(synth.UtteranceSpec(
            split="train_synth", index=index, text=text, prompt=text, voice=voices[index % len(voices)],
            rate_wpm=rng.randint(cfg.synth_rate_wpm_min, cfg.synth_rate_wpm_max), pitch=rng.randint(25, 75),
            gain_db=round(rng.uniform(cfg.gain_db_min, cfg.gain_db_max), 2),
            snr_db=round(rng.uniform(cfg.snr_db_min, cfg.snr_db_max), 2), noise_color=round(rng.random(), 3),
            seed=rng.getrandbits(31), recording_rate=cfg.synth_recording_rate))
    return specs


def render(spec: UtteranceSpec, clips: dict[str, np.ndarray], sample_rate: int) -> np.ndarray:
    """The utterance's waveform, float32 of shape (num_samples,): pause, digit, pause, ..., digit, pause, with
    ``clips`` (recording name -> waveform at ``sample_rate``, peak at -6 dBFS), stretches, gain and noise applied."""
    digits = [time_stretch(clips[name], tempo) for name, tempo in zip(spec.recordings, spec.tempos or
                                                                        (1.0,) * len(spec.recordings))]
    parts = [np.zeros(round(spec.pauses[0] * sample_rate), np.float32)]
    for digit, pause in zip(digits, spec.pauses[1:]):
        parts += [digit, np.zeros(round(pause * sample_rate), np.float32)]
    speech = np.concatenate(parts) * np.float32(10 ** (spec.gain_db / 20))
    digit_power = np.mean(np.concatenate(digits) ** 2) * 10 ** (spec.gain_db / 10)
    noise = colored_noise(len(speech), spec.noise_color, np.random.default_rng(spec.seed))
    noisy = (speech + noise * np.sqrt(digit_power / 10 ** (spec.snr_db / 10))).astype(np.float32)
    peak = float(np.abs(noisy).max())
    return noisy * np.float32(_MAX_PEAK / peak) if peak > _MAX_PEAK else noisy


def load_clips(recordings: list[Recording], sample_rate: int) -> dict[str, np.ndarray]:
    """Recording name -> mono waveform at ``sample_rate`` without DC offset, scaled to a -6 dBFS peak.

    """
    clips = {}
    for rec in recordings:
        wave = resample(torch.from_numpy(rec.samples), rec.sample_rate, sample_rate).numpy()
        wave = wave - wave.mean()
        clips[rec.name] = (wave * (_DIGIT_PEAK / max(float(np.abs(wave).max()), 1e-9))).astype(np.float32)
    return clips


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Short clips gain nothing from intra-op threads, and on a busy machine the extra ones only spin (measured
    on a busy 2-core machine: resampling 80 clips took 7.8 s with two threads, a build of them 0.7 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def build_fsdd_corpus(cfg: FsddConfig | Any, out_dir: str | Path, progress: bool = True) -> dict[str, Path]:
    """Build the corpus of ``cfg`` into ``out_dir`` unless it is there already; the manifest of each split.

    The hash covers the config (:func:`_hashed_fields`), :data:`FORMAT_VERSION` and the names and sizes of the
    source files, so moving the source keeps the corpus and changing its files rebuilds it. When the source is
    missing but a corpus is built, that corpus is used (with a warning): evaluating on another machine.
    """
    cfg = as_fsdd_config(cfg)
    out_dir = Path(out_dir)
    manifests = {split: out_dir / f"{split}.jsonl" for split in SPLITS}
    if not Path(cfg.source_dir).exists() and _is_built(out_dir, None, manifests.values()):
        log.warning("FSDD source %s not found; using the corpus already built in %s", cfg.source_dir, out_dir)
        return manifests
    digest = _digest({"format_version": FORMAT_VERSION, "source": source_listing(cfg.source_dir),
                      "config": _hashed_fields(cfg)})
    if _is_built(out_dir, digest, manifests.values()):
        log.info("FSDD digits corpus %s is up to date", out_dir)
        return manifests
    for path in (out_dir / "corpus.json", *manifests.values()):
        path.unlink(missing_ok=True)
    speakers = {name for split in SPLITS for name in getattr(cfg, f"{split}_speakers")}
    recordings, report = scan_recordings(cfg.source_dir, speakers, cfg.sample_rate)
    plan = plan_corpus(cfg, recordings)
    used = {name for specs in plan.values() for spec in specs for name in spec.recordings}
    with one_torch_thread():
        clips = load_clips([rec for rec in recordings if rec.name in used], cfg.sample_rate)
        utterances = _render_all(plan, clips, cfg.sample_rate, out_dir.resolve(), progress)
    synth_specs = plan_synth_digits(cfg)
    synth_utterances = []
    if synth_specs:
        synth_utterances = synth.render_utterances(synth_specs, cfg.sample_rate, out_dir.resolve(), progress,
                                                   desc="espeak digits")
        write_meta(out_dir / "meta" / "train_synth.jsonl", synth_specs, cfg.sample_rate)
    for split in SPLITS:
        write_manifest(manifests[split], utterances[split] + (synth_utterances if split == "train" else []))
        write_meta(out_dir / "meta" / f"{split}.jsonl", plan[split], cfg.sample_rate)
    keep = {Path(u.audio_filepath) for u in synth_utterances}
    keep |= {Path(u.audio_filepath) for split in SPLITS for u in utterances[split]}
    for path in (out_dir / "wav").rglob("*"):
        if path.is_file() and path.resolve() not in keep:
            path.unlink()
    write_report(out_dir / "preparation_report", "FSDD connected digits: source recordings", [report])
    summary = {split: _split_summary(plan[split], utterances[split]) for split in SPLITS}
    if synth_specs:
        summary["train_synth"] = _synth_summary(synth_specs, synth_utterances)
    record = {"format_version": FORMAT_VERSION, "config": dataclasses.asdict(cfg), "hash": digest, "splits": summary}
    write_text_atomic(out_dir / "corpus.json", json.dumps(record, indent=2) + "\n")
    log.info("FSDD digits corpus %s: %s; %s", out_dir, "; ".join(
        f"{split} {s['num_utterances']} utterances, {s['hours']:.3f} h, speakers {s['speakers']}"
        for split, s in summary.items()), report.summary())
    return manifests


def _hashed_fields(cfg: FsddConfig) -> dict[str, Any]:
    """The config fields the corpus hash covers: all but ``source_dir``, the tempo range only when it stretches,
    the espeak-ng fields only when ``synth_train`` asks for utterances and their recording rate only when set
    (corpora built before these fields existed stay valid)."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "source_dir"}
    if (cfg.tempo_min, cfg.tempo_max) == (1.0, 1.0):
        del fields["tempo_min"], fields["tempo_max"]
    if not cfg.synth_train:
        del fields["synth_train"], fields["synth_rate_wpm_min"], fields["synth_rate_wpm_max"]
    if not cfg.synth_train or not cfg.synth_recording_rate:
        del fields["synth_recording_rate"]
    return fields


def _is_built(out_dir: Path, digest: str | None, manifests) -> bool:
    """Whether ``out_dir`` holds a finished corpus with hash ``digest`` (None: any hash)."""
    try:
        record = json.loads((out_dir / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return digest in (None, record.get("hash")) and all(path.is_file() for path in manifests)


def _render_all(plan: dict[str, list[UtteranceSpec]], clips: dict[str, np.ndarray], sample_rate: int, root: Path,
                progress: bool) -> dict[str, list[Utterance]]:
    """Write the wavs ``root`` lacks; every split's utterances (absolute paths)."""
    utterances: dict[str, list[Utterance]] = {split: [] for split in SPLITS}
    total = sum(len(specs) for specs in plan.values())
    with tqdm(total=total, desc="fsdd digits", unit="utt", disable=not progress) as bar:
        for split in SPLITS:
            for spec in plan[split]:
                path = root / spec.wav_path(sample_rate)
                if not path.is_file():
                    write_audio(path, render(spec, clips, sample_rate), sample_rate)
                utterances[split].append(Utterance(str(path), audio_duration(path), spec.text))
                bar.update()
    return utterances


def _split_summary(specs: list[UtteranceSpec], utterances: list[Utterance]) -> dict[str, Any]:
    hours = sum(u.duration for u in utterances) / 3600
    digits = sum(len(spec.digits) for spec in specs)
    return {"num_utterances": len(utterances), "hours": round(hours, 4), "num_digits": digits,
            "num_recordings": len({name for spec in specs for name in spec.recordings}),
            "speakers": sorted({spec.speaker for spec in specs})}


def _synth_summary(specs: list[synth.UtteranceSpec], utterances: list[Utterance]) -> dict[str, Any]:
    return {"num_utterances": len(utterances), "hours": round(sum(u.duration for u in utterances) / 3600, 4),
            "num_digits": sum(len(spec.text.split()) for spec in specs), "num_recordings": 0,
            "speakers": [f"{len({spec.voice for spec in specs})} espeak-ng voices"]}


def corpus_summary(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Per split of a built corpus: utterances, hours, digits, distinct recordings and speakers; with
    ``synth_train``, also ``train_synth`` (the espeak-ng part of the training manifest)."""
    return json.loads((Path(out_dir) / "corpus.json").read_text(encoding="utf-8"))["splits"]
