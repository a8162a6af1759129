"""The FSDD connected-digits corpus (data/fsdd*.py): on small source folders the tests write, and on the real
recordings in ../shared/data/fsdd (read-only)."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from data import fsdd
from data.audio import time_stretch
from data.fsdd import (
    FsddConfig,
    UtteranceSpec,
    build_fsdd_corpus,
    corpus_summary,
    plan_corpus,
    render,
)
from data.fsdd_source import DIGIT_WORDS, scan_recordings
from data.manifest import read_manifest
from data.synth_voice import split_voices
from training.compose import compose_config
from training.pipeline import manifest_paths

SHARED_FSDD = Path(__file__).resolve().parents[3] / "shared" / "data" / "fsdd"
SPEAKERS = {"train_speakers": ["ann", "bob"], "dev_speakers": ["cat"], "test_speakers": ["dan"]}


def write_source(folder: Path, speakers=("ann", "bob", "cat", "dan"), rate: int = 8000) -> Path:
    """An FSDD-layout folder: ``recordings/{digit}_{speaker}_{index}.wav``, two 0.2 s tones per digit."""
    recordings = folder / "recordings"
    recordings.mkdir(parents=True)
    t = np.arange(int(0.2 * rate)) / rate
    for s, speaker in enumerate(speakers):
        for digit in range(10):
            for index in range(2):
                tone = 0.4 * np.sin(2 * np.pi * (200 + 50 * digit + 10 * s + index) * t)
                soundfile.write(recordings / f"{digit}_{speaker}_{index}.wav", tone, rate, subtype="PCM_16")
    return folder


def small(source: Path, **overrides) -> FsddConfig:
    values = {"source_dir": str(source), "num_train": 6, "num_dev": 3, "num_test": 3, **SPEAKERS, **overrides}
    return FsddConfig(**values)


def files(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return write_source(tmp_path_factory.mktemp("fsdd_source"))


@pytest.fixture(scope="module")
def corpus(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fsdd_corpus")
    build_fsdd_corpus(small(source), out, progress=False)
    return out


def test_manifests_hold_16khz_digit_utterances_of_held_out_speakers(corpus):
    meta = {split: [json.loads(line) for line in (corpus / "meta" / f"{split}.jsonl").read_text().splitlines()]
            for split in ("train", "dev", "test")}
    for split, count in (("train", 6), ("dev", 3), ("test", 3)):
        utterances = read_manifest(corpus / f"{split}.jsonl")
        assert len(utterances) == count
        for utt, record in zip(utterances, meta[split]):
            info = soundfile.info(utt.audio_filepath)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert utt.duration == pytest.approx(info.frames / 16000, abs=1e-4)
            words = utt.text.split()
            assert 1 <= len(words) <= 7 and set(words) <= set(DIGIT_WORDS)
            assert words == [DIGIT_WORDS[int(name[0])] for name in record["recordings"]]
            assert {name.split("_")[1] for name in record["recordings"]} == {record["speaker"]}
    assert {r["speaker"] for r in meta["train"]} == {"ann", "bob"}
    assert {r["speaker"] for r in meta["dev"]} == {"cat"} and {r["speaker"] for r in meta["test"]} == {"dan"}
    assert corpus_summary(corpus)["test"]["speakers"] == ["dan"]


def test_same_config_gives_byte_identical_corpus(source, corpus, tmp_path):
    build_fsdd_corpus(small(source), tmp_path, progress=False)
    assert {k: v[1] for k, v in files(tmp_path).items()} == {k: v[1] for k, v in files(corpus).items()}


def test_second_build_does_nothing(source, tmp_path, monkeypatch):
    build_fsdd_corpus(small(source), tmp_path, progress=False)
    before = files(tmp_path)
    monkeypatch.setattr(fsdd, "scan_recordings", lambda *a, **k: pytest.fail("source decoded again"))
    build_fsdd_corpus(small(source), tmp_path, progress=False)
    assert files(tmp_path) == before


def test_changed_config_rebuilds_reusing_unchanged_wavs(source, tmp_path, monkeypatch):
    build_fsdd_corpus(small(source), tmp_path, progress=False)
    written = []
    real_write = fsdd.write_audio
    monkeypatch.setattr(fsdd, "write_audio", lambda path, *a: written.append(path) or real_write(path, *a))
    build_fsdd_corpus(small(source, num_train=8), tmp_path, progress=False)
    assert len(read_manifest(tmp_path / "train.jsonl")) == 8
    assert 0 < len(written) < 8 + 3 + 3  # dev and test are drawn apart from train: their wavs are reused
    assert len(list((tmp_path / "wav").rglob("*.wav"))) == 8 + 3 + 3  # no stale wavs left


class Interrupted(Exception):
    """Stands in for Ctrl-C or a killed process."""


def test_interrupted_build_leaves_no_manifest_and_resumes(source, corpus, tmp_path, monkeypatch):
    real_write, calls = fsdd.write_audio, []

    def failing(path, *args):
        if len(calls) == 5:
            raise Interrupted
        calls.append(path)
        real_write(path, *args)

    monkeypatch.setattr(fsdd, "write_audio", failing)
    with pytest.raises(Interrupted):
        build_fsdd_corpus(small(source), tmp_path, progress=False)
    assert not list(tmp_path.glob("*.jsonl")) and not (tmp_path / "corpus.json").exists()
    calls.clear()
    monkeypatch.setattr(fsdd, "write_audio", lambda path, *a: calls.append(path) or real_write(path, *a))
    build_fsdd_corpus(small(source), tmp_path, progress=False)
    assert len(calls) == 12 - 5
    assert {k: v[1] for k, v in files(tmp_path).items()} == {k: v[1] for k, v in files(corpus).items()}


def test_broken_source_files_are_counted_and_named(tmp_path):
    source = write_source(tmp_path / "src", speakers=("ann", "bob", "cat", "dan", "eve"))
    recordings = source / "recordings"
    (recordings / "1_ann_7.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk")
    (recordings / "2_ann_7.wav").write_bytes(b"")
    soundfile.write(recordings / "3_ann_7.wav", np.zeros(0), 8000)
    soundfile.write(recordings / "4_bob_7.wav", np.full((1600, 2), 0.1), 8000)
    soundfile.write(recordings / "5_bob_7.wav", np.full(2205, 0.1), 22050)
    (recordings / "README.txt").write_text("not a recording")
    recs, report = scan_recordings(source, {"ann", "bob", "cat", "dan"})
    assert report.skip_counts() == {"empty_audio": 2, "unreadable_audio": 1, "unrecognised_name": 1,
                                    "unused_speaker": 20}
    assert [Path(p).name for p, _ in report.skipped["unreadable_audio"]] == ["1_ann_7.wav"]
    assert report.note_counts == {"downmixed": 1, "resampled": len(recs)}
    assert report.kept == len(recs) == 4 * 20 + 2 and report.examined == 5 * 20 + 6
    assert {r.sample_rate for r in recs if r.name == "5_bob_7.wav"} == {22050}
    out = tmp_path / "out"
    build_fsdd_corpus(small(source), out, progress=False)
    written = json.loads((out / "preparation_report.json").read_text())["sections"][0]
    assert written["skip_counts"] == report.skip_counts()


def test_config_errors_name_the_problem(source):
    with pytest.raises(ValueError, match="more than one split"):
        small(source, dev_speakers=["ann"])
    with pytest.raises(ValueError, match="min_digits > max_digits"):
        small(source, min_digits=3, max_digits=2)
    with pytest.raises(ValueError, match=r"\['zed'\] \(test\)"):
        recordings, _ = scan_recordings(source, {"ann", "bob", "cat", "zed"})
        plan_corpus(small(source, test_speakers=["zed"]), recordings)
    with pytest.raises(FileNotFoundError, match="free-spoken-digit-dataset"):
        build_fsdd_corpus(small(source.parent / "missing"), source.parent / "out_missing", progress=False)


def test_render_places_digits_between_pauses_with_light_noise():
    clips = {"a": np.full(1000, 0.5, np.float32), "b": np.full(500, -0.5, np.float32)}
    spec = UtteranceSpec("train", 0, "x", ("a", "b"), (1, 2), (0.01, 0.02, 0.03), gain_db=0.0, snr_db=30.0,
                         noise_color=0.0, seed=1)
    wave = render(spec, clips, 16000)
    assert wave.shape == (160 + 1000 + 320 + 500 + 480,) and wave.dtype == np.float32
    assert spec.text == "one two"
    noise = np.concatenate([wave[:160], wave[1160:1480], wave[1980:]])
    assert 10 * np.log10(0.25 / np.mean(noise ** 2)) == pytest.approx(30.0, abs=1.5)
    assert np.mean(wave[160:1160]) == pytest.approx(0.5, abs=0.01)


def test_time_stretch_changes_duration_not_pitch():
    t = np.arange(6400) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    assert time_stretch(tone, 1.0) is tone
    for factor in (0.8, 1.5):
        stretched = time_stretch(tone, factor)
        assert len(stretched) == round(6400 * factor)
        peak_hz = np.argmax(np.abs(np.fft.rfft(stretched))) * 16000 / len(stretched)
        assert peak_hz == pytest.approx(440, abs=5)


def test_tempo_stretches_training_digits_only(source, corpus, tmp_path):
    build_fsdd_corpus(small(source, tempo_min=1.2, tempo_max=1.5), tmp_path, progress=False)
    meta = {split: [json.loads(line) for line in (tmp_path / "meta" / f"{split}.jsonl").read_text().splitlines()]
            for split in ("train", "dev", "test")}
    assert all(len(r["tempos"]) == len(r["digits"]) and all(1.2 <= x <= 1.5 for x in r["tempos"])
               for r in meta["train"])
    assert all(r["tempos"] == [] for split in ("dev", "test") for r in meta[split])
    plain, stretched = read_manifest(corpus / "train.jsonl"), read_manifest(tmp_path / "train.jsonl")
    assert [u.text for u in stretched] == [u.text for u in plain]
    assert all(s.duration > p.duration for s, p in zip(stretched, plain))
    for split in ("dev", "test"):  # held-out speakers are heard as recorded, in the same files
        assert (tmp_path / f"{split}.jsonl").read_text() == (corpus / f"{split}.jsonl").read_text()


def test_espeak_digits_join_the_training_split_only(source, corpus, tmp_path):
    build_fsdd_corpus(small(source, synth_train=4), tmp_path, progress=False)
    plain, mixed = read_manifest(corpus / "train.jsonl"), read_manifest(tmp_path / "train.jsonl")
    assert [u.text for u in mixed[:6]] == [u.text for u in plain] and len(mixed) == 6 + 4
    meta = [json.loads(line) for line in (tmp_path / "meta" / "train_synth.jsonl").read_text().splitlines()]
    assert [record["text"] for record in meta] == [u.text for u in mixed[6:]]
    training_voices = set(split_voices(8, 8, 0)["train"])
    for utt, record in zip(mixed[6:], meta):
        assert record["voice"] in training_voices and 100 <= record["rate_wpm"] <= 200
        assert 1 <= len(utt.text.split()) <= 7 and set(utt.text.split()) <= set(DIGIT_WORDS)
        assert soundfile.info(utt.audio_filepath).samplerate == 16000 and utt.duration > 0.2
    assert corpus_summary(tmp_path)["train_synth"]["num_utterances"] == 4
    for split in ("dev", "test"):
        assert (tmp_path / f"{split}.jsonl").read_text() == (corpus / f"{split}.jsonl").read_text()


def high_band_share(path: str, above_hz: float = 4200.0) -> float:
    """Fraction of a wav's power spectrum above ``above_hz``."""
    samples, rate = soundfile.read(path, dtype="float32")
    power = np.abs(np.fft.rfft(samples)) ** 2
    return float(power[np.fft.rfftfreq(len(samples), 1 / rate) > above_hz].sum() / power.sum())


def test_espeak_digits_recorded_at_8khz_carry_no_speech_above_4khz(source, tmp_path):
    full_band, band_limited = tmp_path / "full", tmp_path / "8k"
    build_fsdd_corpus(small(source, synth_train=3, snr_db_min=60, snr_db_max=60), full_band, progress=False)
    build_fsdd_corpus(small(source, synth_train=3, snr_db_min=60, snr_db_max=60, synth_recording_rate=8000),
                      band_limited, progress=False)
    for plain, limited in zip(read_manifest(full_band / "train.jsonl")[6:], read_manifest(band_limited / "train.jsonl")[6:]):
        assert plain.text == limited.text and Path(plain.audio_filepath).name != Path(limited.audio_filepath).name
        assert high_band_share(limited.audio_filepath) < 1e-3 < high_band_share(plain.audio_filepath)
    meta = [json.loads(line) for line in (band_limited / "meta" / "train_synth.jsonl").read_text().splitlines()]
    assert {record["recording_rate"] for record in meta} == {8000}
    with pytest.raises(ValueError, match="synth_recording_rate"):
        small(source, synth_recording_rate=-8000)


def test_real_fsdd_split_by_speaker_through_the_training_pipeline(tmp_path):
    """The shipped config, made small, built on demand by the training pipeline from real recordings (links to
    the first 3 of every digit and speaker, to keep the test fast)."""
    (tmp_path / "src").mkdir()
    for path in sorted((SHARED_FSDD / "recordings").glob("*_[012].wav")):
        (tmp_path / "src" / path.name).symlink_to(path)
    out = tmp_path / "out"
    cfg = compose_config(["data=fsdd_digits", f"data.corpus_dir={out}", f"data.fsdd.source_dir={tmp_path / 'src'}",
                          "data.fsdd.num_train=6", "data.fsdd.num_dev=2", "data.fsdd.num_test=2",
                          "trainer.output_dir=unused"])
    paths = manifest_paths(cfg.data, progress=False)
    assert paths == {split: out / f"{split}.jsonl" for split in ("train", "dev", "test")}
    summary = corpus_summary(out)
    assert summary["test"]["speakers"] == ["jackson"] and summary["dev"]["speakers"] == ["lucas"]
    assert not {"jackson", "lucas"} & set(summary["train"]["speakers"])
    report = json.loads((out / "preparation_report.json").read_text())["sections"][0]
    assert (report["kept"], report["skip_counts"], report["note_counts"]) == (150, {}, {"resampled": 150})
    assert all(soundfile.info(u.audio_filepath).samplerate == 16000 for u in read_manifest(paths["test"]))


def test_script_builds_with_overrides(source, tmp_path, capsys):
    from scripts.prepare_fsdd import main

    out = tmp_path / "out"
    assert main(["--source", str(source), "--out", str(out), "--num-train", "4", "--num-dev", "2", "--num-test", "2",
                 "--train-speakers", "ann", "bob", "--dev-speakers", "cat", "--test-speakers", "dan", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "test" in printed and "dan" in printed
    assert len(read_manifest(out / "train.jsonl")) == 4
    assert json.loads((out / "corpus.json").read_text())["config"]["num_train"] == 4
    with pytest.raises(SystemExit):
        main(["--source", str(source), "--out", str(out), "--dev-speakers", "ann"])


def test_config_from_yaml_round_trips():
    cfg = compose_config(["data=fsdd_digits", "trainer.output_dir=unused"])
    assert dataclasses.asdict(fsdd.as_fsdd_config(cfg.data.fsdd)) == dataclasses.asdict(FsddConfig())
