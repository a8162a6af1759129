"""Prepare LibriSpeech (and mini LibriSpeech) manifests, downloading the official archives or using a folder.

    python scripts/prepare_librispeech.py --subsets mini --download             # train-clean-5, dev-clean-2, test-clean
    python scripts/prepare_librispeech.py --subsets 960 --root /data/LibriSpeech --workers 16
    python scripts/prepare_librispeech.py --subsets dev-clean test-clean --download --mirror https://us.openslr.org

Groups: 960 (the three training subsets, dev/test clean/other), 100 (train-clean-100 and dev/test), mini, all.
Writes ``<out>/<subset>.jsonl`` for each subset, ``<out>/train-960.jsonl`` once its three parts are prepared, and
``<out>/preparation_report.{json,md}`` (every skipped file by kind, every change counted). Archives are checked
against their published SHA-256/MD5 sums; an interrupted download or preparation resumes; a rerun over unchanged
data writes nothing.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.librispeech import (
    COMBINED,
    GROUPS,
    SUBSETS,
    expand_subsets,
    fetch_subset,
    find_subset_dir,
)
from data.librispeech_prep import combine, prepare_subset, write_preparation_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subsets", nargs="+", default=["mini"], metavar="NAME",
                        help=f"subsets or groups: {', '.join([*GROUPS, *SUBSETS])}")
    parser.add_argument("--out", type=Path, default=Path("corpora/librispeech"), help="manifests and report go here")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--root", type=Path, help="an existing folder holding <subset>/ or LibriSpeech/<subset>/")
    source.add_argument("--download", action="store_true", help="fetch the archives from OpenSLR into <out>")
    parser.add_argument("--mirror", help="scheme and host replacing https://www.openslr.org (e.g. https://us.openslr.org)")
    parser.add_argument("--keep-archives", action="store_true", help="keep the .tar.gz files after unpacking")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="processes decoding audio (0: none)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        names = expand_subsets(args.subsets)
    except ValueError as err:
        parser.error(str(err))
    reports = []
    for name in names:
        if args.download:
            subset_dir = fetch_subset(name, args.out, keep_archive=args.keep_archives, mirror=args.mirror,
                                      progress=not args.quiet)
        else:
            subset_dir = find_subset_dir(args.root or args.out, name)
        if subset_dir is None:
            where = args.root or args.out
            parser.error(f"{name}: neither {where / name} nor {where / 'LibriSpeech' / name} exists; "
                         "pass --download, or --root with the folder that holds it")
        reports.append(prepare_subset(name, subset_dir, args.out, workers=args.workers, progress=not args.quiet))
    reports += [r for r in (combine(name, args.out) for name in COMBINED) if r is not None]
    written = write_preparation_report(args.out)
    print(f"{'manifest':<20} {'utterances':>10} {'hours':>8} {'skipped':>8}")
    for report in reports:
        print(f"{report.name + '.jsonl':<20} {report.kept:>10} {report.hours:>8.2f} {report.num_skipped:>8}")
    print(f"report: {args.out / 'preparation_report.md'}" + ("" if written else " (unchanged)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
