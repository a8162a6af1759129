import json

import numpy as np
import pytest

from data.audio import AudioError, load_audio, write_audio
from data.manifest import ManifestError, Utterance, read_manifest, write_manifest
from data.tokenizer import CharTokenizer
from data.validate import ctc_min_frames, validate_utterances


def test_manifest_round_trip_with_relative_paths(tmp_path):
    write_audio(tmp_path / "wav" / "a.wav", np.zeros(1600), 16000)
    write_manifest(tmp_path / "m.jsonl", [Utterance(str(tmp_path / "wav" / "a.wav"), 0.1, "hello")])
    line = json.loads((tmp_path / "m.jsonl").read_text())
    assert line == {"audio_filepath": "wav/a.wav", "duration": 0.1, "text": "hello"}
    [utt] = read_manifest(tmp_path / "m.jsonl")
    assert utt.audio_filepath == str((tmp_path / "wav" / "a.wav").resolve())
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file


@pytest.mark.parametrize(
    "line, message",
    [("{not json", "not valid JSON"), ('{"audio_filepath": "a.wav", "text": "x"}', "missing field 'duration'"),
     ('{"audio_filepath": "a.wav", "duration": "long", "text": "x"}', "bad field value")],
)
def test_bad_manifest_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"audio_filepath": "a.wav", "duration": 1, "text": "ok"}\n' + line + "\n")
    with pytest.raises(ManifestError, match=f"bad.jsonl:2: {message}"):
        read_manifest(path)


def test_load_audio_downmixes_and_resamples(tmp_path):
    import soundfile

    stereo = np.stack([np.full(8000, 0.5), np.full(8000, -0.5)], axis=1)
    soundfile.write(tmp_path / "s.wav", stereo, 8000)
    waveform = load_audio(tmp_path / "s.wav", 16000)
    assert waveform.shape == (16000,) and float(waveform.abs().max()) < 1e-3


def test_load_audio_errors_name_the_file(tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(AudioError, match="corrupt.wav"):
        load_audio(tmp_path / "corrupt.wav")
    with pytest.raises(AudioError, match="not found: .*missing.wav"):
        load_audio(tmp_path / "missing.wav")


def test_ctc_min_frames_counts_repeats():
    assert ctc_min_frames([1, 2, 3]) == 3
    assert ctc_min_frames([1, 1, 2, 2, 2]) == 8
    assert ctc_min_frames([]) == 0


def test_validator_reports_each_kind_of_broken_input(tmp_path):
    write_audio(tmp_path / "ok.wav", np.zeros(16000), 16000)  # 1 s
    write_audio(tmp_path / "long.wav", np.zeros(16000 * 21), 16000)  # 21 s
    (tmp_path / "corrupt.wav").write_bytes(b"not audio at all")
    ok = str(tmp_path / "ok.wav")
    utterances = [
        Utterance(ok, 1.0, "fine"),
        Utterance(str(tmp_path / "missing.wav"), 1.0, "gone"),
        Utterance(str(tmp_path / "corrupt.wav"), 1.0, "broken"),
        Utterance(ok, 1.0, ""),
        Utterance(ok, 1.0, "Caps and digits 42"),
        Utterance(ok, 1.0, "a" * 30),  # 30 labels + 29 repeats > 50 output frames
        Utterance(str(tmp_path / "long.wav"), 21.0, "long"),
    ]
    report = validate_utterances(utterances, CharTokenizer().encode, lambda seconds: int(50 * seconds), max_duration=20)
    assert [u.text for u in report.kept] == ["fine"]
    counts = report.counts()
    assert counts == {"missing_audio": 1, "unreadable_audio": 1, "empty_transcript": 1, "out_of_alphabet": 1,
                      "too_short_for_transcript": 1, "too_long": 1}
    assert report.num_skipped == 6
    assert "missing.wav" in report.details() and "corrupt.wav" in report.details()
    assert report.summary().startswith("1/7 utterances kept")


def test_csv_is_written_whole_with_every_key_as_a_column(tmp_path):
    from data.atomic import write_csv_atomic

    path = tmp_path / "out" / "rows.csv"
    write_csv_atomic(path, [{"a": 1, "b": "x"}, {"a": 2, "c": 3.5}])
    assert path.read_text().splitlines() == ["a,b,c", "1,x,", "2,,3.5"]
    assert [p.name for p in path.parent.iterdir()] == ["rows.csv"]          # no temporary file left behind
    write_csv_atomic(path, [])
    assert path.read_text() == ""
