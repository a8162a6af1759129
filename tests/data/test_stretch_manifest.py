"""scripts/stretch_manifest.py: a manifest's audio slowed down or sped up, transcripts kept, bad input named."""
import numpy as np
import pytest

from data.audio import AudioError, load_audio, write_audio
from data.manifest import Utterance, read_manifest, write_manifest
from scripts.stretch_manifest import main


@pytest.fixture
def manifest(tmp_path):
    t = np.arange(8000) / 16000
    utterances = []
    for index, hz in enumerate((300, 500)):
        path = tmp_path / "audio" / f"{index}.wav"
        path.parent.mkdir(exist_ok=True)
        write_audio(path, 0.5 * np.sin(2 * np.pi * hz * t[: 8000 - 1600 * index]), 16000)
        utterances.append(Utterance(str(path), (8000 - 1600 * index) / 16000, f"utterance {index}"))
    write_manifest(tmp_path / "m.jsonl", utterances)
    return tmp_path / "m.jsonl"


@pytest.mark.parametrize("factor", [0.75, 1.6])
def test_every_utterance_lasts_factor_times_as_long_with_its_transcript(manifest, tmp_path, factor):
    path = main([str(manifest), "--factor", str(factor), "--out", str(tmp_path / "out")])
    before, after = read_manifest(manifest), read_manifest(path)
    assert [u.text for u in after] == [u.text for u in before]
    for old, new in zip(before, after):
        wave = load_audio(new.audio_filepath)
        assert len(wave) == round(old.duration * 16000 * factor)
        assert new.duration == pytest.approx(len(wave) / 16000, abs=1e-4)
        assert new.audio_filepath != old.audio_filepath


def test_a_missing_audio_file_is_named_and_no_manifest_is_written(manifest, tmp_path):
    gone = read_manifest(manifest)[1].audio_filepath
    (tmp_path / "audio" / "1.wav").unlink()
    with pytest.raises(AudioError, match=gone):
        main([str(manifest), "--factor", "1.2", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def test_a_factor_must_be_positive(manifest, tmp_path):
    with pytest.raises(ValueError, match="--factor must be > 0"):
        main([str(manifest), "--factor", "0", "--out", str(tmp_path / "out")])
