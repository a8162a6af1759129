"""A manifest's audio slowed down or sped up, pitch kept: does a speaker's speaking rate explain a model's errors?

    python scripts/stretch_manifest.py corpora/fsdd_cv/nicolas/test.jsonl --factor 1.6 --out outputs/nicolas_x1.6
    python evaluate.py <checkpoint> --manifest outputs/nicolas_x1.6/manifest.jsonl

Every utterance of MANIFEST lasts FACTOR times as long afterwards (> 1: slower), stretched by the phase vocoder that
builds the FSDD corpus's slower training digits (data/audio.py time_stretch); transcripts stay as they are. Writes
``OUT/wav/<index>.wav`` at ``--sample-rate`` and ``OUT/manifest.jsonl``, each atomically, the manifest last. A
missing or unreadable audio file stops it with an error that names the file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm  # noqa: E402

from data.audio import load_audio, time_stretch, write_audio  # noqa: E402
from data.manifest import Utterance, read_manifest, write_manifest  # noqa: E402


def stretch_manifest(manifest: Path, factor: float, out: Path, sample_rate: int = 16000) -> Path:
    """Write the stretched copy of ``manifest`` into ``out``; returns the new manifest's path."""
    if factor <= 0:
        raise ValueError(f"--factor must be > 0, got {factor}")
    stretched = []
    for index, utt in enumerate(tqdm(read_manifest(manifest), desc=f"stretching x{factor:g}", unit="utt")):
        wave = time_stretch(load_audio(utt.audio_filepath, sample_rate).numpy(), factor)
        path = out / "wav" / f"{index:06d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_audio(path, wave, sample_rate)
        stretched.append(Utterance(str(path.resolve()), len(wave) / sample_rate, utt.text))
    write_manifest(out / "manifest.jsonl", stretched)
    return out / "manifest.jsonl"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--factor", type=float, required=True, help="duration afterwards / before (> 1: slower)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--sample-rate", type=int, default=16000, help="of the written audio (default: 16000)")
    args = parser.parse_args(argv)
    path = stretch_manifest(args.manifest, args.factor, args.out, args.sample_rate)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
