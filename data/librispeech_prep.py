"""Prepare LibriSpeech-layout subsets into manifests: idempotent, resumable, nothing lost without a count.

For each subset, every (transcript line, audio) pair from :func:`data.librispeech.pair_transcripts` is checked:
the transcript normalised to the alphabet (``out_of_alphabet`` / ``empty_transcript`` skips when that would
lose words), the audio decoded in full (``unreadable_audio`` / ``empty_audio`` skips); audio that is not 16 kHz
mono is converted into ``<out>/converted/<subset>/`` and noted. Each result is appended to
``<out>/.state/<subset>.partial.jsonl`` as it is made, so a killed run resumes where it stopped; the manifest
``<out>/<subset>.jsonl`` is written atomically at the end, then ``<out>/.state/<subset>.json`` (the source's
fingerprint and the subset's report). A rerun over an unchanged source writes nothing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from data.atomic import write_text_atomic
from data.librispeech import COMBINED, SUBSETS, Job, pair_transcripts
from data.manifest import Utterance, read_manifest, write_manifest
from data.prep_checks import Skip, check_audio, clean_transcript
from data.prep_report import PreparationReport, write_report

log = logging.getLogger(__name__)

#: Bump when a code change alters what preparation writes for the same source (forces a redo).
FORMAT_VERSION = 1
_CHUNKSIZE = 16


def prepare_subset(name: str, subset_dir: str | Path, out_dir: str | Path, sample_rate: int = 16000,
                   workers: int = 0, progress: bool = True) -> PreparationReport:
    """Write ``<out_dir>/<name>.jsonl`` from ``subset_dir`` unless it is up to date; the subset's report.

    ``workers`` > 0 decodes audio in that many processes (0: in this one).
    """
    out_dir, subset_dir = Path(out_dir), Path(subset_dir).resolve()
    state_path = out_dir / ".state" / f"{name}.json"
    identity = {"format_version": FORMAT_VERSION, "source": str(subset_dir), "sample_rate": sample_rate,
                "fingerprint": source_fingerprint(subset_dir)}
    state = _read_json(state_path)
    if state and {k: state.get(k) for k in identity} == identity and (out_dir / f"{name}.jsonl").is_file():
        log.info("%s: up to date (%s)", name, out_dir / f"{name}.jsonl")
        return PreparationReport.from_dict(state["report"])
    report = PreparationReport(name)
    jobs = pair_transcripts(subset_dir, report)
    report.examined = len(jobs) + report.num_skipped
    results = _checked(jobs, out_dir, name, subset_dir, sample_rate, workers, progress)
    utterances = [_record(result, report) for result in results]
    utterances = [utt for utt in utterances if utt is not None]
    report.kept, report.hours = len(utterances), sum(u.duration for u in utterances) / 3600
    write_manifest(out_dir / f"{name}.jsonl", utterances)
    write_text_atomic(state_path, json.dumps({**identity, "report": report.to_dict()}, indent=1) + "\n")
    _cache_path(out_dir, name).unlink(missing_ok=True)
    log.info("%s", report.summary())
    return report


def source_fingerprint(folder: Path) -> str:
    """SHA-256 over every file's relative path, size and modification time: changes when the source does."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for file in sorted(files):
            stat = os.stat(os.path.join(root, file))
            digest.update(f"{os.path.relpath(os.path.join(root, file), folder)}\0{stat.st_size}\0"
                          f"{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _cache_path(out_dir: Path, name: str) -> Path:
    return out_dir / ".state" / f"{name}.partial.jsonl"


def _job_key(job: Job) -> str:
    """Identifies a job's inputs: audio path, size, mtime and transcript text."""
    stat = os.stat(job.audio)
    return hashlib.sha1(f"{job.audio}\0{stat.st_size}\0{stat.st_mtime_ns}\0{job.raw_text}".encode()).hexdigest()


def _checked(jobs: list[Job], out_dir: Path, name: str, subset_dir: Path, sample_rate: int, workers: int,
             progress: bool) -> list[dict[str, Any]]:
    """Each job's result, from the resume cache when it is there, else computed and appended to the cache."""
    cache_path = _cache_path(out_dir, name)
    cached = _load_cache(cache_path)
    keys = [_job_key(job) for job in jobs]
    todo = [(key, job) for key, job in zip(keys, jobs) if key not in cached]
    if cached:
        log.info("%s: resuming, %d of %d utterances already checked", name, len(jobs) - len(todo), len(jobs))
    converted = out_dir / "converted" / name
    check = partial(_check_job, subset_dir=subset_dir, converted_dir=converted, sample_rate=sample_rate)
    with cache_path.open("a", encoding="utf-8") as cache, tqdm(
        total=len(jobs), initial=len(jobs) - len(todo), desc=name, unit="utt", disable=not progress
    ) as bar:
        for result in _run(check, todo, workers):
            cache.write(json.dumps(result, ensure_ascii=False) + "\n")
            cache.flush()
            cached[result["key"]] = result
            bar.update()
    return [cached[key] for key in keys]


def _run(check, todo: list[tuple[str, Job]], workers: int) -> Iterator[dict[str, Any]]:
    if workers <= 0:
        yield from map(check, todo)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=torch.set_num_threads,
                             initargs=(1,)) as pool:
        yield from pool.map(check, todo, chunksize=_CHUNKSIZE)


def _check_job(item: tuple[str, Job], subset_dir: Path, converted_dir: Path, sample_rate: int) -> dict[str, Any]:
    """One utterance checked: a manifest record with notes, or a skip naming the file at fault."""
    key, job = item
    converted = converted_dir / Path(job.audio).relative_to(subset_dir).with_suffix(".wav")
    try:
        text, normalised = clean_transcript(job.raw_text)
    except Skip as skip:
        return {"key": key, "skip": [skip.kind, job.where, skip.detail]}
    try:
        audio = check_audio(job.audio, converted, sample_rate)
    except Skip as skip:
        return {"key": key, "skip": [skip.kind, job.audio, skip.detail]}
    notes = [[kind, job.audio, detail] for kind, detail in audio.changes]
    if normalised:
        notes.append(["transcript_normalised", job.where, f"{job.raw_text.strip()!r} -> {text!r}"])
    return {"key": key, "audio_filepath": audio.audio_filepath, "duration": audio.duration, "text": text,
            "notes": notes}


def _record(result: dict[str, Any], report: PreparationReport) -> Utterance | None:
    """Enter ``result``'s skip or notes into ``report``; the utterance when it is kept."""
    if "skip" in result:
        report.skip(*result["skip"])
        return None
    for kind, path, detail in result["notes"]:
        report.note(kind, path, detail)
    return Utterance(result["audio_filepath"], result["duration"], result["text"])


def _load_cache(path: Path) -> dict[str, dict[str, Any]]:
    """Results a killed run left; a torn last line is dropped and the file rewritten without it."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        return {}
    results, lines = {}, []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue
        results[result["key"]] = result
        lines.append(line + "\n")
    write_text_atomic(path, "".join(lines))
    return results


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def combine(name: str, out_dir: str | Path) -> PreparationReport | None:
    """Join the prepared parts of ``COMBINED[name]`` into ``<out_dir>/<name>.jsonl``; None if a part is missing.

    An utterance id (audio file stem) in more than one part is kept once and counted as ``duplicate_id``.
    """
    out_dir = Path(out_dir)
    parts = COMBINED[name]
    states = [_read_json(out_dir / ".state" / f"{part}.json") for part in parts]
    if not all(states) or not all((out_dir / f"{part}.jsonl").is_file() for part in parts):
        return None
    identity = {"format_version": FORMAT_VERSION, "parts": {p: s["fingerprint"] for p, s in zip(parts, states)}}
    state_path = out_dir / ".state" / f"{name}.json"
    state = _read_json(state_path)
    if state and {k: state.get(k) for k in identity} == identity and (out_dir / f"{name}.jsonl").is_file():
        return PreparationReport.from_dict(state["report"])
    report, seen, kept = PreparationReport(name), {}, []
    for part in parts:
        for utt in read_manifest(out_dir / f"{part}.jsonl"):
            report.examined += 1
            utt_id = Path(utt.audio_filepath).stem
            if utt_id in seen:
                report.skip("duplicate_id", utt.audio_filepath, f"utterance id {utt_id} already in {seen[utt_id]}")
                continue
            seen[utt_id] = part
            kept.append(utt)
    report.kept, report.hours = len(kept), sum(u.duration for u in kept) / 3600
    write_manifest(out_dir / f"{name}.jsonl", kept)
    write_text_atomic(state_path, json.dumps({**identity, "report": report.to_dict()}, indent=1) + "\n")
    log.info("%s", report.summary())
    return report


def write_preparation_report(out_dir: str | Path) -> list[Path]:
    """``<out_dir>/preparation_report.{json,md}`` over every subset prepared there (written only if changed)."""
    out_dir = Path(out_dir)
    sections = []
    for name in (*SUBSETS, *COMBINED):
        state = _read_json(out_dir / ".state" / f"{name}.json")
        if state:
            sections.append(PreparationReport.from_dict(state["report"]))
    return write_report(out_dir / "preparation_report", "LibriSpeech preparation", sections)

