"""Transcribe audio files with a trained checkpoint (greedy CTC decoding).

    python scripts/transcribe.py outputs/demo/<run> audio1.wav [audio2.flac ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.inference import load_model  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="checkpoint file or run folder (best.pt preferred)")
    parser.add_argument("audio", nargs="+", type=Path)
    args = parser.parse_args(argv)
    loaded = load_model(args.checkpoint)
    for path in args.audio:
        print(f"{path}\t{loaded.transcribe(path)}")


if __name__ == "__main__":
    main()
