"""LibriSpeech (OpenSLR 12) and mini LibriSpeech (OpenSLR 31): archives, layout, and per-subset manifests.

Layout of a subset: ``<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` (one line per utterance:
``<id> <TRANSCRIPT>``) next to ``<id>.flac`` (16 kHz mono). Preparing a subset pairs every transcript line with
its audio, decodes every file in full and writes ``<out>/<subset>.jsonl``; see :mod:`data.librispeech_prep`
for what is skipped, noted, cached and resumed. ``train-960`` joins the three training subsets.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from data.download import Opener, download, extract_tar
from data.prep_report import PreparationReport

_SLR12 = "https://www.openslr.org/resources/12/"
_SLR31 = "https://www.openslr.org/resources/31/"
AUDIO_SUFFIXES = (".flac", ".wav")


@dataclass(frozen=True)
class Subset:
    """One official archive: ``url`` of the .tar.gz, its ``checksum`` ("sha256:..." or "md5:...") and size."""

    name: str
    url: str
    checksum: str
    size: str


# SHA-256 sums as torchaudio.datasets.librispeech pins them; mini LibriSpeech: the MD5 sums OpenSLR publishes.
SUBSETS: dict[str, Subset] = {s.name: s for s in (
    Subset("train-clean-100", _SLR12 + "train-clean-100.tar.gz",
           "sha256:d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2", "6.3 GB"),
    Subset("train-clean-360", _SLR12 + "train-clean-360.tar.gz",
           "sha256:146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf", "23 GB"),
    Subset("train-other-500", _SLR12 + "train-other-500.tar.gz",
           "sha256:ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2", "30 GB"),
    Subset("dev-clean", _SLR12 + "dev-clean.tar.gz",
           "sha256:76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3", "337 MB"),
    Subset("dev-other", _SLR12 + "dev-other.tar.gz",
           "sha256:12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365", "314 MB"),
    Subset("test-clean", _SLR12 + "test-clean.tar.gz",
           "sha256:39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23", "346 MB"),
    Subset("test-other", _SLR12 + "test-other.tar.gz",
           "sha256:d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29", "328 MB"),
    Subset("train-clean-5", _SLR31 + "train-clean-5.tar.gz", "md5:5df7d4e78065366204ca6845bb08f490", "332 MB"),
    Subset("dev-clean-2", _SLR31 + "dev-clean-2.tar.gz", "md5:6d7ab67ac6a1d2c993d050e16d61080d", "126 MB"),
)}

#: Manifests joined from prepared subsets: the 960 h training set of the LibriSpeech papers.
COMBINED: dict[str, tuple[str, ...]] = {"train-960": ("train-clean-100", "train-clean-360", "train-other-500")}

#: Named groups for ``scripts/prepare_librispeech.py --subsets``.
GROUPS: dict[str, tuple[str, ...]] = {
    "all": tuple(n for n in SUBSETS if n not in ("train-clean-5", "dev-clean-2")),
    "960": (*COMBINED["train-960"], "dev-clean", "dev-other", "test-clean", "test-other"),
    "100": ("train-clean-100", "dev-clean", "dev-other", "test-clean", "test-other"),
    "mini": ("train-clean-5", "dev-clean-2", "test-clean"),  # mini LibriSpeech has no test set of its own
}


def expand_subsets(names: list[str]) -> list[str]:
    """Subset and group names (``960``, ``100``, ``mini``, ``all``) -> subset names in catalogue order."""
    wanted = set()
    for name in names:
        if name in GROUPS:
            wanted.update(GROUPS[name])
        elif name in SUBSETS:
            wanted.add(name)
        else:
            raise ValueError(f"unknown LibriSpeech subset {name!r}; choose from {sorted(SUBSETS) + sorted(GROUPS)}")
    return [name for name in SUBSETS if name in wanted]


def find_subset_dir(root: str | Path, name: str) -> Path | None:
    """``<root>/<name>`` or ``<root>/LibriSpeech/<name>`` (how the archives unpack), whichever exists."""
    for candidate in (Path(root) / name, Path(root) / "LibriSpeech" / name):
        if candidate.is_dir():
            return candidate
    return None


def fetch_subset(name: str, out_dir: str | Path, opener: Opener | None = None, keep_archive: bool = False,
                 mirror: str | None = None, progress: bool = True) -> Path:
    """Download (resumably, checksum-verified) and unpack ``name`` into ``<out_dir>/LibriSpeech/<name>``.

    Nothing is fetched when an earlier run finished unpacking it (``<out_dir>/LibriSpeech/.<name>.extracted``).
    ``mirror`` replaces the scheme and host of https://www.openslr.org (e.g. https://us.openslr.org).
    """
    subset = SUBSETS[name]
    out_dir = Path(out_dir)
    marker = out_dir / "LibriSpeech" / f".{name}.extracted"
    if not marker.is_file():
        url = mirror.rstrip("/") + urlsplit(subset.url).path if mirror else subset.url
        archive = out_dir / "archives" / f"{name}.tar.gz"
        kwargs = {"opener": opener} if opener else {}
        download(url, archive, subset.checksum, progress=progress, **kwargs)
        extract_tar(archive, out_dir, marker, progress=progress)
        if not keep_archive:
            archive.unlink()
    subset_dir = find_subset_dir(out_dir, name)
    if subset_dir is None:
        raise FileNotFoundError(f"{subset.url} unpacked, but {out_dir / 'LibriSpeech' / name} is not there")
    return subset_dir


@dataclass(frozen=True)
class Job:
    """One transcript line paired with its audio file. ``where`` is ``<trans.txt>:<line>``."""

    utt_id: str
    raw_text: str
    audio: str
    where: str


def pair_transcripts(subset_dir: Path, report: PreparationReport) -> list[Job]:
    """Every usable (transcript line, audio file) pair of a subset folder, sorted by utterance id.

    Skipped and counted in ``report``: transcript files that do not decode as UTF-8 (``unreadable_transcript``),
    lines without an id and text (``malformed_transcript_line``), ids seen before (``duplicate_id``), lines whose
    ``<id>.flac`` is not next to the transcript (``transcript_without_audio``), audio files no line names
    (``audio_without_transcript``) and any other file (``unexpected_file``).
    """
    files = sorted(p for p in subset_dir.rglob("*") if p.is_file())
    audio = {p for p in files if p.suffix in AUDIO_SUFFIXES}
    claimed: set[Path] = set()
    seen: dict[str, str] = {}
    jobs = []
    for trans in (p for p in files if p.name.endswith(".trans.txt")):
        for where, utt_id, raw in _transcript_lines(trans, report):
            if utt_id in seen:
                report.skip("duplicate_id", where, f"utterance id {utt_id} already at {seen[utt_id]}")
                continue
            seen[utt_id] = where
            candidates = [trans.parent / f"{utt_id}{suffix}" for suffix in AUDIO_SUFFIXES]
            found = [path for path in candidates if path in audio]
            if not found:
                report.skip("transcript_without_audio", where, f"no {utt_id}.flac next to the transcript")
                continue
            claimed.update(found)
            for extra in found[1:]:
                report.skip("duplicate_id", extra, f"utterance id {utt_id} already has {found[0].name}")
            jobs.append(Job(utt_id, raw, str(found[0]), where))
    for path in sorted(audio - claimed):
        report.skip("audio_without_transcript", path, f"no transcript line for {path.stem}")
    for path in files:
        if path not in audio and not path.name.endswith(".trans.txt"):
            report.skip("unexpected_file", path, "neither audio nor a .trans.txt transcript")
    return sorted(jobs, key=lambda job: job.utt_id)


def _transcript_lines(trans: Path, report: PreparationReport):
    """(``file:line``, id, text) of each non-blank line; bad files and lines are skipped into ``report``."""
    try:
        lines = trans.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        report.skip("unreadable_transcript", trans, f"not UTF-8 ({err.reason} at byte {err.start})")
        return
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) < 2:
            report.skip("malformed_transcript_line", f"{trans}:{number}", f"expected '<id> <text>', got {line!r}")
            continue
        yield f"{trans}:{number}", parts[0], parts[1]
