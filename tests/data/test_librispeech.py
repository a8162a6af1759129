"""LibriSpeech preparation (data/librispeech*.py, data/download.py, data/prep_*.py) on folders the tests write:
a few short FLAC files with ``*.trans.txt`` in the LibriSpeech layout, including broken ones."""
import hashlib
import io
import json
import tarfile
import urllib.error
from email.message import Message
from pathlib import Path

import numpy as np
import pytest
import soundfile

from data import librispeech_prep
from data.download import DownloadError, download, extract_tar
from data.librispeech import (
    SUBSETS,
    Subset,
    expand_subsets,
    fetch_subset,
    pair_transcripts,
)
from data.librispeech_prep import combine, prepare_subset, write_preparation_report
from data.manifest import read_manifest
from data.prep_checks import Skip, clean_transcript
from data.prep_report import PreparationReport

SR = 16000


def tone(seconds: float, sample_rate: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    mono = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


def write_chapter(folder: Path, lines: list[str], audio: dict[str, np.ndarray | tuple | bytes]):
    """A chapter folder: ``<speaker>-<chapter>.trans.txt`` with ``lines`` and one FLAC per ``audio`` entry:
    samples at 16 kHz, (samples, sample rate), or bytes written as they are (a broken file)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{folder.parent.name}-{folder.name}.trans.txt").write_text("\n".join(lines) + "\n")
    for utt_id, data in audio.items():
        if isinstance(data, bytes):
            (folder / f"{utt_id}.flac").write_bytes(data)
        else:
            samples, rate = data if isinstance(data, tuple) else (data, SR)
            soundfile.write(folder / f"{utt_id}.flac", samples, rate, format="FLAC")


def flac_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, tone(seconds), SR, format="FLAC")
    return buffer.getvalue()


def make_clean_subset(root: Path, name: str = "dev-clean", speaker: str = "19") -> Path:
    chapter = root / "LibriSpeech" / name / speaker / "198"
    write_chapter(chapter, [f"{speaker}-198-0000 HELLO WORLD", f"{speaker}-198-0001 IT'S A TEST"],
                  {f"{speaker}-198-0000": tone(0.5), f"{speaker}-198-0001": tone(0.7)})
    return root / "LibriSpeech" / name


@pytest.fixture
def broken_subset(tmp_path) -> Path:
    """One good utterance and one of every problem preparation must handle."""
    subset = tmp_path / "src" / "dev-clean"
    lines = ["19-198-0000 HELLO WORLD", "19-198-0001 BAD BYTES", "19-198-0002 CUT SHORT", "19-198-0003 NOTHING",
             "19-198-0004 EIGHT KILOHERTZ", "19-198-0005 TWO CHANNELS", "19-198-0006 THE 3 LITTLE PIGS",
             "19-198-0007 CAF\u00c9\u2014NOIR, PLEASE!", "19-198-0000 SAID AGAIN", "19-198-0008 WHERE IS MY AUDIO",
             "19-198-0010", "", "19-198-0011 ... ?"]
    write_chapter(subset / "19" / "198", lines, {
        "19-198-0000": tone(0.5), "19-198-0001": b"fLaC" + bytes(range(256)) * 4,
        "19-198-0002": flac_bytes(1.0)[:3000], "19-198-0003": b"", "19-198-0004": (tone(0.6, 8000), 8000),
        "19-198-0005": tone(0.4, SR, channels=2), "19-198-0006": tone(0.3), "19-198-0007": tone(0.3),
        "19-198-0009": tone(0.3), "19-198-0011": tone(0.3),
    })
    (subset / "19" / "198" / "notes.txt").write_text("stray file\n")
    return subset


def all_files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_ino) for p in folder.rglob("*")}


def test_every_problem_is_skipped_or_noted_by_kind_naming_the_file(broken_subset, tmp_path):
    out = tmp_path / "out"
    report = prepare_subset("dev-clean", broken_subset, out, progress=False)
    utts = {Path(u.audio_filepath).stem: u for u in read_manifest(out / "dev-clean.jsonl")}
    assert sorted(utts) == ["19-198-0000", "19-198-0004", "19-198-0005", "19-198-0007"]
    assert utts["19-198-0000"].text == "hello world" and utts["19-198-0000"].duration == pytest.approx(0.5)
    assert utts["19-198-0007"].text == "cafe noir please"
    for converted in ("19-198-0004", "19-198-0005"):  # 8 kHz and stereo: converted copies, 16 kHz mono
        info = soundfile.info(utts[converted].audio_filepath)
        assert (info.samplerate, info.channels) == (SR, 1)
        assert Path(utts[converted].audio_filepath).is_relative_to(out / "converted" / "dev-clean")
    assert utts["19-198-0004"].duration == pytest.approx(0.6)
    assert report.skip_counts() == {
        "audio_without_transcript": 1, "duplicate_id": 1, "empty_audio": 1, "empty_transcript": 1,
        "malformed_transcript_line": 1, "out_of_alphabet": 1, "transcript_without_audio": 1,
        "unexpected_file": 1, "unreadable_audio": 2,
    }
    assert report.note_counts == {"downmixed": 1, "resampled": 1, "transcript_normalised": 1}
    named = {kind: [path for path, _ in items] for kind, items in report.skipped.items()}
    assert sorted(Path(p).name for p in named["unreadable_audio"]) == ["19-198-0001.flac", "19-198-0002.flac"]
    assert named["empty_audio"] == [str(broken_subset.resolve() / "19/198/19-198-0003.flac")]
    assert named["duplicate_id"] == [f"{broken_subset.resolve()}/19/198/19-198.trans.txt:9"]
    assert named["malformed_transcript_line"][0].endswith("19-198.trans.txt:11")
    assert Path(named["audio_without_transcript"][0]).name == "19-198-0009.flac"
    assert "'3'" in report.skipped["out_of_alphabet"][0][1]
    assert (report.examined, report.kept) == (report.kept + report.num_skipped, 4)
    assert not list((out / ".state").glob("*.partial.jsonl"))  # the resume cache is gone once finished


def test_report_files_list_every_skip(broken_subset, tmp_path):
    out = tmp_path / "out"
    prepare_subset("dev-clean", broken_subset, out, progress=False)
    assert write_preparation_report(out) == [out / "preparation_report.json", out / "preparation_report.md"]
    record = json.loads((out / "preparation_report.json").read_text())
    section = record["sections"][0]
    assert section["name"] == "dev-clean" and sum(section["skip_counts"].values()) == 10
    assert "19-198-0001.flac" in (out / "preparation_report.md").read_text()
    assert write_preparation_report(out) == []  # unchanged: not rewritten


def test_second_run_does_nothing(broken_subset, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = prepare_subset("dev-clean", broken_subset, out, progress=False)
    before = all_files(out)
    monkeypatch.setattr(librispeech_prep, "check_audio", lambda *a, **k: pytest.fail("audio decoded again"))
    again = prepare_subset("dev-clean", broken_subset, out, progress=False)
    assert all_files(out) == before
    assert again.to_dict() == first.to_dict()


def test_a_changed_source_is_prepared_again(tmp_path):
    subset = make_clean_subset(tmp_path / "src")
    out = tmp_path / "out"
    assert prepare_subset("dev-clean", subset, out, progress=False).kept == 2
    write_chapter(subset / "20" / "7", ["20-7-0000 NEW SPEAKER"], {"20-7-0000": tone(0.4)})
    assert prepare_subset("dev-clean", subset, out, progress=False).kept == 3
    assert len(read_manifest(out / "dev-clean.jsonl")) == 3


class Interrupted(Exception):
    """Stands in for Ctrl-C or a killed process."""


def test_interrupted_preparation_leaves_no_manifest_and_resumes(broken_subset, tmp_path, monkeypatch):
    out, reference = tmp_path / "out", tmp_path / "reference"
    prepare_subset("dev-clean", broken_subset, reference, progress=False)
    real_check, calls = librispeech_prep.check_audio, []

    def failing_after_three(*args, **kwargs):
        if len(calls) == 3:
            raise Interrupted
        calls.append(args[0])
        return real_check(*args, **kwargs)

    monkeypatch.setattr(librispeech_prep, "check_audio", failing_after_three)
    with pytest.raises(Interrupted):
        prepare_subset("dev-clean", broken_subset, out, progress=False)
    assert not (out / "dev-clean.jsonl").exists() and not (out / ".state" / "dev-clean.json").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    cache = out / ".state" / "dev-clean.partial.jsonl"
    with cache.open("a") as torn:  # a write cut off by the kill
        torn.write('{"key": "abc", "audio_fi')
    done, calls[:] = list(calls), []
    monkeypatch.setattr(librispeech_prep, "check_audio", lambda *a, **k: calls.append(a[0]) or real_check(*a, **k))
    report = prepare_subset("dev-clean", broken_subset, out, progress=False)
    assert len(calls) == 7 - 3 and not set(calls) & set(done)  # 7 utterances reach the audio check
    assert report.to_dict() == json.loads((reference / ".state" / "dev-clean.json").read_text())["report"]
    assert [(u.text, u.duration) for u in read_manifest(out / "dev-clean.jsonl")] == [
        (u.text, u.duration) for u in read_manifest(reference / "dev-clean.jsonl")]


def test_worker_processes_give_the_same_manifest(broken_subset, tmp_path):
    serial = prepare_subset("dev-clean", broken_subset, tmp_path / "a", progress=False)
    parallel = prepare_subset("dev-clean", broken_subset, tmp_path / "b", workers=2, progress=False)
    assert serial.to_dict() == parallel.to_dict()
    assert (tmp_path / "a" / "dev-clean.jsonl").read_text().replace(str(tmp_path / "a"), "") == \
        (tmp_path / "b" / "dev-clean.jsonl").read_text().replace(str(tmp_path / "b"), "")


def test_train_960_joins_three_parts_and_counts_duplicate_ids(tmp_path):
    out, parts = tmp_path / "out", ("train-clean-100", "train-clean-360", "train-other-500")
    assert combine("train-960", out) is None  # nothing prepared yet
    for index, part in enumerate(parts):
        subset = make_clean_subset(tmp_path / "src", part, speaker=str(100 + index))
        prepare_subset(part, subset, out, progress=False)
    make_clean_subset(tmp_path / "src", "train-other-500", speaker="100")  # speaker 100 also in a second part
    prepare_subset("train-other-500", tmp_path / "src" / "LibriSpeech" / "train-other-500", out, progress=False)
    report = combine("train-960", out)
    assert (report.kept, report.skip_counts()) == (6, {"duplicate_id": 2})
    assert len(read_manifest(out / "train-960.jsonl")) == 6
    before = all_files(out)
    combine("train-960", out)
    assert all_files(out) == before


@pytest.mark.parametrize("raw, expected", [
    ("HELLO WORLD", ("hello world", False)),
    ("IT'S  A   TEST", ("it's a test", False)),
    ("CAF\u00c9 \u2014 NOIR", ("cafe noir", True)),
    ("ROCK\u2019N\u2019ROLL, SIR!", ("rock'n'roll sir", True)),
    ("WELL-KNOWN", ("well known", True)),
])
def test_clean_transcript_keeps_words(raw, expected):
    assert clean_transcript(raw) == expected


@pytest.mark.parametrize("raw, kind", [
    ("ROOM 101", "out_of_alphabet"), ("SALT & PEPPER", "out_of_alphabet"), ("STRASSE \u00df", "out_of_alphabet"),
    ("50%", "out_of_alphabet"), ("?!", "empty_transcript"), ("", "empty_transcript"),
])
def test_clean_transcript_rejects_what_would_lose_words(raw, kind):
    with pytest.raises(Skip) as err:
        clean_transcript(raw)
    assert err.value.kind == kind


def test_pairing_reports_undecodable_transcript_files(tmp_path):
    subset = make_clean_subset(tmp_path)
    (subset / "19" / "198" / "19-198.trans.txt").write_bytes(b"19-198-0000 HELLO \xff\xfe\n")
    report = PreparationReport("dev-clean")
    assert pair_transcripts(subset, report) == []
    assert report.skip_counts() == {"audio_without_transcript": 2, "unreadable_transcript": 1}


def test_expand_subsets_groups_and_unknown_names():
    assert expand_subsets(["mini"]) == ["test-clean", "train-clean-5", "dev-clean-2"]
    assert len(expand_subsets(["960", "dev-clean"])) == 7
    with pytest.raises(ValueError, match="train-clean-101"):
        expand_subsets(["train-clean-101"])


# --- downloads: a fake server in memory, and file:// URLs ------------------------------------------------------

class FakeResponse(io.BytesIO):
    def __init__(self, body: bytes, status: int, headers: dict[str, str]):
        super().__init__(body)
        self.status, self.headers = status, Message()
        for key, value in headers.items():
            self.headers[key] = value


def fake_server(payload: bytes, honour_range: bool = True, fail_after: int | None = None):
    """An opener serving ``payload``; it records the Range headers asked for and can cut the body short."""
    requests = []

    def opener(request, timeout):
        wanted = request.get_header("Range")
        requests.append(wanted)
        start = int(wanted[6:-1]) if wanted and honour_range else 0
        if start >= len(payload) and wanted:
            raise urllib.error.HTTPError(request.full_url, 416, "Range Not Satisfiable", Message(), None)
        body = payload[start:]
        headers = {"Content-Length": str(len(body))}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(payload) - 1}/{len(payload)}"
        response = FakeResponse(body, 206 if start else 200, headers)
        if fail_after is not None:
            real_read = response.read

            def read(n=-1):
                if response.tell() >= fail_after:
                    raise ConnectionResetError("connection reset")
                return real_read(min(n, fail_after - response.tell()))

            response.read = read
        return response

    return opener, requests


PAYLOAD = bytes(range(256)) * 20_000  # 5 MB: several 1 MiB chunks
SHA = "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()


def test_download_resumes_a_cut_transfer_with_a_range_request(tmp_path):
    dest = tmp_path / "a.tar.gz"
    opener, requests = fake_server(PAYLOAD, fail_after=3 << 20)
    with pytest.raises(DownloadError, match="run again to resume"):
        download("https://example.org/a.tar.gz", dest, SHA, opener=opener, progress=False)
    assert (tmp_path / "a.tar.gz.part").stat().st_size == 3 << 20 and not dest.exists()
    opener, requests = fake_server(PAYLOAD)
    assert download("https://example.org/a.tar.gz", dest, SHA, opener=opener, progress=False) == dest
    assert requests == [f"bytes={3 << 20}-"] and dest.read_bytes() == PAYLOAD
    assert download("https://example.org/a.tar.gz", dest, SHA, opener=lambda *a, **k: pytest.fail("refetched"))


def test_download_restarts_when_the_server_ignores_the_range(tmp_path):
    (tmp_path / "a.bin.part").write_bytes(b"junk that is not the start of the file")
    opener, requests = fake_server(PAYLOAD, honour_range=False)
    download("https://example.org/a.bin", tmp_path / "a.bin", SHA, opener=opener, progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD and requests[0].startswith("bytes=")


def test_download_of_a_complete_part_file_only_verifies_it(tmp_path):
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD)
    opener, _ = fake_server(PAYLOAD)
    download("https://example.org/a.bin", tmp_path / "a.bin", SHA, opener=opener, progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_the_file_and_names_the_url(tmp_path):
    opener, _ = fake_server(PAYLOAD)
    with pytest.raises(DownloadError, match="example.org/a.bin.*expected 00"):
        download("https://example.org/a.bin", tmp_path / "a.bin", "md5:" + "0" * 32, opener=opener, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="checksum must be"):
        download("https://example.org/a.bin", tmp_path / "a.bin", "crc32:1234", opener=opener)


def make_archive(path: Path, source_root: Path) -> str:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source_root / "LibriSpeech", arcname="LibriSpeech")
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_subset_from_a_file_url_mirror_then_prepare(tmp_path, monkeypatch):
    make_clean_subset(tmp_path / "server")
    archive = tmp_path / "mirror" / "resources" / "12" / "dev-clean.tar.gz"
    archive.parent.mkdir(parents=True)
    checksum = make_archive(archive, tmp_path / "server")
    url = "https://www.openslr.org/resources/12/dev-clean.tar.gz"
    monkeypatch.setitem(SUBSETS, "dev-clean", Subset("dev-clean", url, checksum, "1 kB"))
    out = tmp_path / "out"
    subset_dir = fetch_subset("dev-clean", out, mirror=(tmp_path / "mirror").as_uri(), progress=False)
    assert subset_dir == out / "LibriSpeech" / "dev-clean"
    assert not (out / "archives" / "dev-clean.tar.gz").exists()  # removed after unpacking by default
    assert prepare_subset("dev-clean", subset_dir, out, progress=False).kept == 2
    assert all(not Path(line["audio_filepath"]).is_absolute()
               for line in map(json.loads, (out / "dev-clean.jsonl").read_text().splitlines()))
    archive.unlink()
    assert fetch_subset("dev-clean", out, progress=False) == subset_dir  # unpacked before: nothing fetched


def test_extraction_refuses_paths_outside_the_folder(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(tarfile.OutsideDestinationError):
        extract_tar(archive, tmp_path / "dest", tmp_path / "dest" / ".done", progress=False)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "dest" / ".done").exists()


def test_script_prepares_from_a_root_folder_and_rerun_changes_nothing(tmp_path, capsys):
    from scripts.prepare_librispeech import main

    make_clean_subset(tmp_path / "src", "dev-clean")
    make_clean_subset(tmp_path / "src", "test-clean", speaker="20")
    args = ["--subsets", "dev-clean", "test-clean", "--root", str(tmp_path / "src"), "--out", str(tmp_path / "out"),
            "--workers", "0", "--quiet"]
    assert main(args) == 0
    assert "dev-clean.jsonl" in capsys.readouterr().out
    before = all_files(tmp_path / "out")
    assert main(args) == 0
    assert "(unchanged)" in capsys.readouterr().out and all_files(tmp_path / "out") == before
    with pytest.raises(SystemExit):
        main(["--subsets", "dev-other", "--root", str(tmp_path / "src"), "--out", str(tmp_path / "out")])
