"""Speaker-wise cross-validation of the FSDD recipe: every speaker is the unseen test speaker once.

    python scripts/fsdd_cross_validation.py                          # 5 folds of experiment=fsdd, ~1.7 h on 2 cores
    python scripts/fsdd_cross_validation.py --folds george lucas     # some folds (the others stay as they are)
    python scripts/fsdd_cross_validation.py --out results/fsdd_cv_cmvn --set data.features.utterance_variance=true

With speakers s_0..s_{n-1} (default: the recipe's five, sorted), fold ``s_i`` tests on s_i, tunes the decoder on
s_{i+1} (dev) and trains on the others, plus the espeak-ng voices; the recipe's own split (test jackson, dev
lucas) is fold ``jackson``. Each fold
runs the recipe of configs/experiment/fsdd.yaml end to end: train (``<out>/runs/<test>/``, resumable), average the
last checkpoints with batch-norm statistics re-estimated on training utterances, evaluate on the test speaker with
the digit-lexicon beam search tuned on the dev speaker, then again adapted to the test speaker's audio (AdaBN).
Run the same command again after a kill: finished steps are skipped, an interrupted training resumes.

Outputs in ``<out>``: cross_validation.md/.csv/.json (a row per fold, the mean and spread over folds) and
cross_validation.png (beam WER per test speaker, plain and adapted). Every fold's corpus is built once into
``<corpora>/<test>`` (about 300 MB each); do not run two drivers with different ``data.fsdd`` settings at once.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matplotlib.figure import Figure  # noqa: E402

from data.atomic import write_csv_atomic, write_text_atomic  # noqa: E402
from data.fsdd import FsddConfig  # noqa: E402
from training.checkpoint import code_version  # noqa: E402
from training.run_driver import REPO, TrainingRun, train_run  # noqa: E402
from training.word_errors import WordEdits, read_hyps  # noqa: E402

log = logging.getLogger("fsdd_cross_validation")
RECIPE = FsddConfig()
RECIPE_SPEAKERS = sorted(RECIPE.train_speakers + RECIPE.dev_speakers + RECIPE.test_speakers)
TARGET_WER = 10.0  # % on the unseen speaker (issue 6)


@dataclass(frozen=True)
class Fold:
    """One split of the speakers: ``test`` is scored, ``dev`` tunes the decoder, ``train`` is learnt from."""

    test: str
    dev: str
    train: tuple[str, ...]


def speaker_folds(speakers: list[str]) -> list[Fold]:
    """A fold per speaker: fold i tests on speakers[i], tunes on speakers[i + 1] (cyclically), trains on the rest."""
    if len(speakers) < 3 or len(set(speakers)) != len(speakers):
        raise ValueError(f"need at least 3 distinct speakers (train, dev, test), got {speakers}")
    folds = []
    for i, test in enumerate(speakers):
        dev = speakers[(i + 1) % len(speakers)]
        folds.append(Fold(test, dev, tuple(s for s in speakers if s not in (test, dev))))
    return folds


def fold_overrides(fold: Fold, experiment: str, corpora: Path, extra: list[str]) -> list[str]:
    """train.py arguments of a fold: the experiment, its speakers, its own corpus folder, the user's extras."""
    return [f"experiment={experiment}", f"data.fsdd.train_speakers=[{','.join(fold.train)}]",
            f"data.fsdd.dev_speakers=[{fold.dev}]", f"data.fsdd.test_speakers=[{fold.test}]",
            f"data.corpus_dir={(corpora / fold.test).resolve()}", *extra]


def run_step(command: list[str], done: Path, after: Path, what: str) -> None:
    """Run a script unless ``done`` exists and is newer than ``after`` (its input); RuntimeError if it fails."""
    if done.is_file() and done.stat().st_mtime >= after.stat().st_mtime:
        log.info("%s: done earlier (%s), skipped", what, done)
        return
    log.info("%s: %s", what, " ".join(command[1:]))
    if subprocess.run(command, cwd=REPO).returncode != 0:
        raise RuntimeError(f"{what} failed: {' '.join(command)}")
    if not done.is_file():
        raise RuntimeError(f"{what} finished without writing {done}")


EVALUATIONS = {"plain": [], "adapted": ["--adapt-batch-norm"]}


def evaluate_fold(run: TrainingRun, args: argparse.Namespace) -> None:
    """Average the run's last checkpoints and score the average on the test speaker, plain and adapted."""
    average = run.run_dir / "checkpoints" / "average.pt"
    run_step([sys.executable, "scripts/average_checkpoints.py", str(run.run_dir), "--last", str(args.average_last),
              "--batch-norm-utterances", str(args.batch_norm_utterances), "--out", str(average)],
             average, run.run_dir / "summary.json", f"fold {run.name}: averaging")
    for label, adapt in EVALUATIONS.items():
        out = run.run_dir / f"eval_test_{label}"
        run_step([sys.executable, "evaluate.py", str(average), "--split", "test", "--beam", str(args.beam),
                  "--lm", "train", "--lm-order", "2", "--tune", "--names", "fsdd", "--out", str(out), *adapt],
                 out / "results.json", average, f"fold {run.name}: evaluating ({label})")


def fold_row(fold: Fold, run: TrainingRun) -> dict | None:
    """The fold's row of the table from its evaluations on disk; None while they are not all there."""
    paths = {label: run.run_dir / f"eval_test_{label}" / "results.json" for label in EVALUATIONS}
    if not all(path.is_file() for path in paths.values()):
        return None
    plain, adapted = (json.loads(paths[label].read_text())[0] for label in ("plain", "adapted"))
    return {"test": fold.test, "dev": fold.dev, "train": " ".join(fold.train),
            "greedy_wer": 100 * plain["wer"], "beam_wer": 100 * plain["beam_wer"],
            "beam_cer": 100 * plain["beam_cer"], "adapted_beam_wer": 100 * adapted["beam_wer"],
            "test_words": plain["num_words"], "train_minutes": run.train_seconds() / 60,
            "top_beam_error": top_error(run.run_dir / "eval_test_plain" / "fsdd.hyps.jsonl")}


def top_error(hyps: Path) -> str:
    """The most frequent word error of the beam search in an evaluate.py ``hyps.jsonl``, as "one -> nine x36"."""
    errors = WordEdits.of(*read_hyps(hyps, "beam_hypothesis")).errors()
    return f"{errors[0][0]} -> {errors[0][1]} x{errors[0][2]}" if errors else "none"


def summarise(rows: list[dict], columns: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """(mean, population standard deviation) over folds of every column."""
    return {c: (statistics.fmean(r[c] for r in rows), statistics.pstdev(r[c] for r in rows)) for c in columns}


SCORE_COLUMNS = ("greedy_wer", "beam_wer", "beam_cer", "adapted_beam_wer")


def write_report(rows: list[dict], out: Path, command: str, wall_minutes: float) -> None:
    """cross_validation.md/.csv/.json and cross_validation.png in ``out``."""
    summary = summarise(rows, SCORE_COLUMNS)
    write_text_atomic(out / "cross_validation.json", json.dumps(
        {"command": command, "commit": code_version(), "folds": rows,
         "mean": {c: m for c, (m, _) in summary.items()}, "std": {c: s for c, (_, s) in summary.items()}},
        indent=2) + "\n")
    write_csv_atomic(out / "cross_validation.csv", rows)
    lines = [
        "# FSDD connected digits: speaker-wise cross-validation\n",
        f"- command: `{command}`\n- commit: {code_version()}, {time.strftime('%Y-%m-%d %H:%M')}",
        f"- this invocation: {wall_minutes:.1f} min; WER/CER in % on the fold's test speaker (never heard in "
        "training); beam: digit-lexicon beam search with a word bigram of the training "
        "transcripts, weights tuned on the dev speaker; adapted: batch-norm statistics re-estimated on the test "
        "speaker's own audio (AdaBN, transductive)\n",
        "| test speaker | dev speaker | train speakers | greedy WER | beam WER | beam CER | adapted beam WER "
        "| training min | most frequent beam error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['test']} | {r['dev']} | {r['train']} | {r['greedy_wer']:.2f} | {r['beam_wer']:.2f} | "
              f"{r['beam_cer']:.2f} | {r['adapted_beam_wer']:.2f} | {r['train_minutes']:.1f} | {r['top_beam_error']} |"
              for r in rows]
    lines.append("| **mean ± std** | | | " + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in summary.values()) + " | | |")
    write_text_atomic(out / "cross_validation.md", "\n".join(lines) + "\n")
    plot_folds(rows, out / "cross_validation.png")


def plot_folds(rows: list[dict], path: Path) -> None:
    """Beam WER per test speaker and their mean, plain and adapted, with the 10 % target."""
    labels = [r["test"] for r in rows] + ["mean"]
    plain = [r["beam_wer"] for r in rows]
    adapted = [r["adapted_beam_wer"] for r in rows]
    plain.append(statistics.fmean(plain))
    adapted.append(statistics.fmean(adapted))
    figure = Figure(figsize=(1.2 * len(labels) + 2.5, 3.6))
    axes = figure.subplots()
    positions = range(len(labels))
    axes.bar([p - 0.2 for p in positions], plain, 0.4, label="beam")
    axes.bar([p + 0.2 for p in positions], adapted, 0.4, label="beam, adapted (AdaBN)")
    axes.axhline(TARGET_WER, color="black", linestyle="--", linewidth=1, label=f"target {TARGET_WER:g} %")
    axes.set_ylim(0, 1.35 * max(*plain, *adapted, TARGET_WER))  # room for the legend
    axes.set_xticks(list(positions), labels)
    axes.set_xlabel("test speaker (unseen in training)")
    axes.set_ylabel("WER %")
    axes.legend(fontsize="small", ncols=3, loc="upper center")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speakers", nargs="+", default=RECIPE_SPEAKERS, help="in fold order (default: %(default)s)")
    parser.add_argument("--folds", nargs="+", metavar="SPEAKER", help="run only these folds (by test speaker)")
    parser.add_argument("--experiment", default="fsdd", help="experiment config (default: %(default)s)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="extra train.py overrides")
    parser.add_argument("--out", type=Path, default=Path("results/fsdd_cv"), help="default: %(default)s")
    parser.add_argument("--corpora", type=Path, default=Path("corpora/fsdd_cv"),
                        help="where every fold's corpus is built (default: %(default)s)")
    parser.add_argument("--average-last", type=int, default=5, help="checkpoints averaged (default: %(default)s)")
    parser.add_argument("--batch-norm-utterances", type=int, default=1000,
                        help="training utterances that re-estimate the average's statistics (default: %(default)s)")
    parser.add_argument("--beam", type=int, default=50, help="beam size (default: %(default)s)")
    parser.add_argument("--restart", nargs="+", default=[], metavar="SPEAKER",
                        help="delete these folds' runs and train them again")
    args = parser.parse_args(argv)
    folds = {fold.test: fold for fold in speaker_folds(args.speakers)}
    unknown = sorted(set(args.folds or []) - set(folds)) + sorted(set(args.restart) - set(folds))
    if unknown:
        parser.error(f"no fold for {unknown}; the speakers are {args.speakers}")
    args.selected = [folds[name] for name in (args.folds or args.speakers)]
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the selected folds; returns the rows of every evaluated fold (the table, rewritten after each fold)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    command = "python scripts/fsdd_cross_validation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    tic = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = {fold: TrainingRun(fold.test, args.out / "runs" / fold.test) for fold in speaker_folds(args.speakers)}

    def overrides_of(fold: Fold) -> list[str]:
        return fold_overrides(fold, args.experiment, args.corpora, args.set)

    rows = []
    for index, fold in enumerate(args.selected, start=1):
        run = runs[fold]
        if fold.test in args.restart and run.run_dir.exists():
            log.info("--restart %s: removing %s", fold.test, run.run_dir)
            shutil.rmtree(run.run_dir)
        train_run(run, overrides_of(fold), f"[{index}/{len(args.selected)}]")
        evaluate_fold(run, args)
        # the table: every fold evaluated so far with these settings, by this invocation or an earlier one
        rows = [row for f, r in runs.items() if r.state().get("overrides") == overrides_of(f)
                and (row := fold_row(f, r)) is not None]
        write_report(rows, args.out, command.strip(), (time.time() - tic) / 60)
        scores = fold_row(fold, run)
        log.info("fold %s: beam WER %.2f %%, adapted %.2f %% (%s)", fold.test, scores["beam_wer"],
                 scores["adapted_beam_wer"], args.out / "cross_validation.md")
    print((args.out / "cross_validation.md").read_text())
    return rows


if __name__ == "__main__":
    main()
