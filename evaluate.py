"""Evaluate checkpoints on a manifest: greedy CTC decoding and, on request, beam search with an n-gram LM.

    python evaluate.py outputs/demo/<run> [more runs or .pt files] [--split test | --manifest m.jsonl]
                       [--baseline NAME] [--out results/eval] [--ensemble]
                       [--beam 50 [--lm PATH | --lm train] [--lm-unit word|char --lm-order N]
                                  [--lm-weight 1.0 --word-score 0.0 | --tune [--tune-metric wer|cer]]]

Writes ``<out>/<name>.hyps.jsonl`` (reference, hypothesis, loss per utterance; ``beam_hypothesis`` with
``--beam``), ``<out>/results.json`` and ``<out>/results.md``, and prints the table: greedy and beam WER/CER side by
side, corpus-level, from the scorer validation uses. ``--lm train`` builds a Kneser-Ney LM from each model's
training transcripts (``<out>/lm/``), over words or, with ``--lm-unit char``, characters (a lexicon-free search
that can spell unseen words); ``--tune`` picks the LM weight and word score by WER (or CER) on each model's dev
split (grid in ``<out>/<name>.tuning.json``, heatmaps in ``<name>.tuning.png``). Beam search needs the optional
extra ``lm`` (flashlight-text). ``--ensemble`` adds a row for the models scored as one (their per-frame output
probabilities averaged, training/ensemble.py), with ``ensemble.hyps.jsonl``. ``--adapt-batch-norm`` re-estimates
each model's batch-norm statistics on every split it decodes (the evaluated split, and dev for ``--tune``) from
that split's own audio, no transcripts (AdaBN; training/batch_norm.py): unsupervised adaptation to an unseen
speaker or microphone, reported as such.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from data.atomic import write_text_atomic
from data.dataset import SpeechDataset
from data.manifest import read_manifest
from data.validate import ValidationReport
from training.batch_norm import recompute_batch_norm
from training.beam import BeamSearchDecoder, BeamSettings, require_decoder
from training.beam_evaluation import (
    DEFAULT_LM_WEIGHTS,
    DEFAULT_WORD_SCORES,
    beam_evaluate,
    plot_tuning,
    tune,
)
from training.ensemble import check_compatible, estimate_delays, fuse_posteriors, greedy_texts
from training.evaluation import EvaluationResult, evaluate_dataset
from training.inference import LoadedModel, evaluation_data, load_model
from training.lm import build_lm
from training.pipeline import manifest_paths
from training.scoring import score
from training.trainer import pick_device

log = logging.getLogger("evaluate")


@dataclass
class SplitPass:
    """One model's forward pass over one split: the usable utterances (skips counted), their dataset, and the
    greedy results with, when the beam search or the ensemble needs them, the log-probabilities."""

    utterances: ValidationReport
    dataset: SpeechDataset
    result: EvaluationResult

    @property
    def references(self) -> list[str]:
        return [utt.text for utt in self.dataset.utterances]


class SplitPasses:
    """Decodes each (model, split) once: the greedy row, the beam search, the tuning on dev and ``--ensemble`` all
    read the same pass. With ``adapt_batch_norm`` (``--adapt-batch-norm``) the pass runs on a copy of the model
    whose batch-norm statistics come from that split's own audio (AdaBN, training/batch_norm.py)."""

    def __init__(self, device: torch.device, adapt_batch_norm: bool = False, keep_emissions: bool = False) -> None:
        self.device = device
        self.adapt_batch_norm = adapt_batch_norm
        self.keep_emissions = keep_emissions
        self._passes: dict[tuple[int, Path], SplitPass] = {}

    def __call__(self, loaded: LoadedModel, manifest: Path) -> SplitPass:
        key = (id(loaded), Path(manifest))
        if key not in self._passes:
            utterances, dataset = evaluation_data(loaded, read_manifest(manifest), str(manifest))
            model = loaded.model
            if self.adapt_batch_norm:
                model = copy.deepcopy(loaded.model)
                recompute_batch_norm(model, dataset, self.device, loaded.data_cfg.max_frames_per_batch, progress=True)
            result = evaluate_dataset(model, dataset, self.device, loaded.data_cfg.max_frames_per_batch, progress=True,
                                      keep_emissions=self.keep_emissions)
            self._passes[key] = SplitPass(utterances, dataset, result)
        return self._passes[key]

    def emissions(self, loaded: LoadedModel, manifest: Path) -> tuple[list[torch.Tensor], list[str]]:
        """Log-probabilities and reference transcripts of the usable utterances of ``manifest``, in manifest
        order (needs ``keep_emissions``)."""
        split = self(loaded, manifest)
        if split.result.emissions is None:
            raise RuntimeError("SplitPasses(keep_emissions=False) keeps no log-probabilities")
        return split.result.emissions, split.references

    def forget(self, loaded: LoadedModel) -> None:
        """Drop ``loaded``'s passes (their log-probabilities take memory on large test sets)."""
        self._passes = {key: value for key, value in self._passes.items() if key[0] != id(loaded)}


def evaluate_checkpoint(loaded: LoadedModel, manifest: Path, passes: SplitPasses) -> tuple[dict, list[dict]]:
    """Score one model on ``manifest`` with greedy decoding; returns its results row and per-utterance records."""
    split = passes(loaded, manifest)
    total, nonzero = loaded.num_parameters()
    row = {
        "name": loaded.name,
        "checkpoint": loaded.checkpoint["path"],
        "rnn_type": loaded.model_cfg.rnn_type,
        "units": loaded.model_cfg.rnn_hidden_size,
        "params": total,
        "nonzero_params": nonzero,
        "sparsity": 1 - nonzero / total,
        "manifest": str(manifest),
        "skipped_utterances": split.utterances.num_skipped,
        "batch_norm_adapted": passes.adapt_batch_norm,
        "loss": split.result.loss,
        **split.result.scores.as_dict(),
    }
    return row, [dict(record) for record in split.result.records]


def language_model(spec: str | None, loaded: LoadedModel, args: argparse.Namespace, built: dict) -> Path | None:
    """The ARPA file of ``--lm``: a path, or ``train`` for one built from the model's training transcripts
    (built once per training manifest; ``built`` caches them)."""
    if spec is None:
        return None
    if spec != "train":
        return Path(spec)
    train_manifest = manifest_paths(loaded.data_cfg, progress=False)["train"]
    if train_manifest not in built:
        unit = "" if args.lm_unit == "word" else f"-{args.lm_unit}"
        path = args.out / "lm" / f"{train_manifest.parent.name}-{train_manifest.stem}-{args.lm_order}gram{unit}.arpa"
        build_lm([train_manifest], path, args.lm_order, args.lm_min_count, args.lm_unit)
        built[train_manifest] = path
    return built[train_manifest]


Emissions = Callable[[Path], tuple[list[torch.Tensor], list[str]]]


def evaluate_beam(
    loaded: LoadedModel, name: str, emissions_for: Emissions, manifest: Path, args: argparse.Namespace, built: dict
) -> tuple[dict, list[str]]:
    """Beam-search results on ``manifest`` of the log-probabilities ``emissions_for(manifest)`` gives (row fields,
    hypotheses in manifest order); with ``--tune`` the LM weight and word score are chosen on ``loaded``'s dev split
    first. ``loaded`` supplies the tokenizer, the dev split and, for ``--lm train``, the training transcripts."""
    lm_path = language_model(args.lm, loaded, args, built)
    decoder = BeamSearchDecoder(loaded.frontend.tokenizer, lm_path, args.lm_unit)
    settings = BeamSettings(args.beam, args.lm_weight, args.word_score)
    tuned_on = None
    if args.tune:
        tuned_on = manifest_paths(loaded.data_cfg, progress=False)["dev"]
        dev_emissions, dev_references = emissions_for(tuned_on)
        settings, grid = tune(decoder, dev_emissions, dev_references, args.beam, args.tune_lm_weights,
                              args.tune_word_scores, progress=True, metric=args.tune_metric)
        write_text_atomic(args.out / f"{name}.tuning.json", json.dumps(grid, indent=2) + "\n")
        plot_tuning(grid, settings, args.out / f"{name}.tuning.png",
                    f"{name}: beam {args.beam}, chosen by dev {args.tune_metric.upper()} (red)")
        log.info("%s: tuned on %s: lm_weight %g, word_score %g", name, tuned_on, settings.lm_weight,
                 settings.word_score)
    emissions, references = emissions_for(manifest)
    result = beam_evaluate(decoder, emissions, references, settings, progress=True)
    fields = {
        "beam_size": settings.beam_size,
        "lm": None if lm_path is None else str(lm_path),
        "lm_unit": args.lm_unit if lm_path else None,
        "lm_weight": settings.lm_weight if lm_path else None,
        "word_score": settings.word_score if lm_path else None,
        "tuned_on": None if tuned_on is None else str(tuned_on),
        "beam_wer": result.scores.wer,
        "beam_cer": result.scores.cer,
    }
    return fields, result.hypotheses


def evaluate_ensemble(
    models: list[LoadedModel], names: list[str], manifest: Path, passes: SplitPasses, args: argparse.Namespace,
    built: dict,
) -> tuple[dict, list[dict]]:
    """The models scored as one (``--ensemble``): their posteriors, aligned by each model's delay estimated on the
    split itself (no transcripts used) and fused (training/ensemble.py), decoded greedily and, with ``--beam``, by
    beam search; the row counts the parameters of all of them and records the delays."""
    check_compatible([m.frontend.tokenizer for m in models], names)
    fused: dict[Path, tuple[list[torch.Tensor], list[str]]] = {}
    delays_of: dict[Path, list[int]] = {}

    def fused_emissions(path: Path) -> tuple[list[torch.Tensor], list[str]]:
        if path not in fused:
            per_model = [passes.emissions(model, path) for model in models]
            references = per_model[0][1]
            if any(other != references for _, other in per_model[1:]):
                raise ValueError(f"ensemble: the models keep different utterances of {path} (their front-ends differ)")
            emissions = [emissions for emissions, _ in per_model]
            delays = estimate_delays(emissions)
            log.info("ensemble: delays against %s on %s, in frames: %s", names[0], path, delays)
            fused[path] = fuse_posteriors(emissions, delays), references
            delays_of[path] = delays
        return fused[path]

    emissions, references = fused_emissions(manifest)
    hypotheses = greedy_texts(emissions, models[0].frontend.tokenizer)
    counts = [model.num_parameters() for model in models]
    total, nonzero = sum(t for t, _ in counts), sum(n for _, n in counts)
    row = {
        "name": "ensemble",
        "members": names,
        "checkpoint": [model.checkpoint["path"] for model in models],
        "rnn_type": models[0].model_cfg.rnn_type,
        "units": models[0].model_cfg.rnn_hidden_size,
        "params": total,
        "nonzero_params": nonzero,
        "sparsity": 1 - nonzero / total,
        "manifest": str(manifest),
        "delays": delays_of[manifest],
        "batch_norm_adapted": passes.adapt_batch_norm,
        **score(references, hypotheses).as_dict(),
    }
    records = [{"reference": ref, "hypothesis": hyp} for ref, hyp in zip(references, hypotheses)]
    if args.beam is not None:
        fields, beam_hypotheses = evaluate_beam(models[0], "ensemble", fused_emissions, manifest, args, built)
        row.update(fields)
        for record, hypothesis in zip(records, beam_hypotheses, strict=True):
            record["beam_hypothesis"] = hypothesis
    return row, records


def add_relative(rows: list[dict], baseline: str | None) -> None:
    """Relative performance as the paper defines it: (CER_baseline - CER) / CER_baseline, for greedy CER and,
    where both rows have one, beam CER."""
    base = next((r for r in rows if r["name"] == baseline), None)
    if baseline and base is None:
        raise ValueError(f"baseline {baseline!r} is not among the evaluated models: {[r['name'] for r in rows]}")
    for row in rows:
        for key, relative in (("cer", "relative_cer"), ("beam_cer", "beam_relative_cer")):
            if key in row:
                reference = base.get(key) if base else None
                row[relative] = (reference - row[key]) / reference if reference else None


def _percent(value: float | None, signed: bool = False) -> str:
    return "" if value is None else f"{100 * value:+.2f}%" if signed else f"{100 * value:.2f}"


def decoder_description(row: dict) -> str:
    """How a row's beam results were decoded, for the table."""
    if row["lm"] is None:
        return f"beam {row['beam_size']}, no LM"
    tuned = ", tuned on dev" if row["tuned_on"] else ""
    unit = " character" if row.get("lm_unit") == "char" else ""
    return f"beam {row['beam_size']},{unit} LM weight {row['lm_weight']:g}, word score {row['word_score']:+g}{tuned}"


def markdown_table(rows: list[dict]) -> str:
    """Greedy results, and beam results next to them when any row has them; the LM files below the table."""
    beam = any("beam_cer" in r for r in rows)
    header = "| model | units | params | nonzero | sparsity | WER % | CER % | relative |"
    if beam:
        header += " beam WER % | beam CER % | beam relative | decoder |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        line = (f"| {r['name']} | {r['units']} | {r['params'] / 1e6:.2f} M | {r['nonzero_params'] / 1e6:.2f} M "
                f"| {100 * r['sparsity']:.1f}% | {_percent(r['wer'])} | {_percent(r['cer'])} "
                f"| {_percent(r.get('relative_cer'), signed=True)} |")
        if beam and "beam_cer" in r:
            line += (f" {_percent(r['beam_wer'])} | {_percent(r['beam_cer'])} "
                     f"| {_percent(r.get('beam_relative_cer'), signed=True)} | {decoder_description(r)} |")
        elif beam:
            line += " | | | |"
        lines.append(line)
    lms = sorted({r["lm"] for r in rows if r.get("lm")})
    if lms:
        lines += ["", *(f"LM: `{lm}`" for lm in lms)]
    if any(r.get("batch_norm_adapted") for r in rows):
        lines += ["", "Batch-norm statistics re-estimated on each decoded split's own audio (`--adapt-batch-norm`, "
                      "no transcripts)."]
    return "\n".join(lines)


def unique_names(models: list[LoadedModel], names: list[str] | None) -> list[str]:
    """Given names, else experiment names, made unique with the run folder where they collide."""
    if names:
        if len(names) != len(models):
            raise ValueError(f"{len(names)} --names for {len(models)} checkpoints")
        return names
    plain = [m.name for m in models]
    return [
        n if plain.count(n) == 1 else f"{n}@{Path(m.checkpoint['path']).parents[1].name}" for n, m in zip(plain, models)
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files or run folders (best.pt preferred)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--manifest", type=Path, help="JSONL manifest to evaluate on")
    source.add_argument("--split", default="test", choices=["train", "dev", "test"],
                        help="split of each model's own training corpus (default: test)")
    parser.add_argument("--names", nargs="+", help="row names, one per checkpoint")
    parser.add_argument("--baseline", help="row name that relative CER is measured against")
    parser.add_argument("--out", type=Path, default=Path("results/eval"), help="output folder")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ensemble", action="store_true",
                        help="also score the models as one: the mean of their per-frame output probabilities "
                             "(same tokenizer and frame rate); pair it with --beam and a lexicon, since greedy "
                             "decoding suffers where the models' CTC spikes fall on different frames")
    parser.add_argument("--adapt-batch-norm", action="store_true",
                        help="re-estimate each model's batch-norm statistics on the audio of every split it decodes "
                             "(unsupervised adaptation to the split's speakers; no transcripts used)")
    beam = parser.add_argument_group("beam search (optional extra 'lm': flashlight-text)")
    beam.add_argument("--beam", type=int, metavar="SIZE", help="also decode with a beam search of this size")
    beam.add_argument("--lm", metavar="PATH|train",
                      help="word n-gram LM (ARPA) for the beam search, or 'train' to build one from each model's "
                           "training transcripts; without it the beam search has no LM")
    beam.add_argument("--lm-unit", choices=["word", "char"], default="word",
                      help="what the LM's n-grams are made of: words (a lexicon decoder that spells only the LM's "
                           "words) or characters (lexicon-free; spaces written '|'); default: word")
    beam.add_argument("--lm-order", type=int, default=3,
                      help="n-gram order of '--lm train' (default: 3; 6-8 suit characters)")
    beam.add_argument("--lm-min-count", type=int, default=1,
                      help="'--lm train' drops n-grams (order >= 2) seen fewer times (default: 1, keep all)")
    beam.add_argument("--lm-weight", type=float, default=1.0, help="weight of the LM's log10 score (default: 1)")
    beam.add_argument("--word-score", type=float, default=0.0, help="score added per word (default: 0)")
    beam.add_argument("--tune", action="store_true",
                      help="choose --lm-weight and --word-score on each model's dev split (grid below)")
    beam.add_argument("--tune-metric", choices=["wer", "cer"], default="wer",
                      help="what --tune minimises (default: wer)")
    beam.add_argument("--tune-lm-weights", type=float, nargs="+", default=list(DEFAULT_LM_WEIGHTS), metavar="W")
    beam.add_argument("--tune-word-scores", type=float, nargs="+", default=list(DEFAULT_WORD_SCORES), metavar="S")
    args = parser.parse_args(argv)
    if args.beam is None and (args.lm or args.tune):
        parser.error("--lm and --tune need --beam SIZE")
    if args.beam is not None and args.beam < 1:
        parser.error(f"--beam must be at least 1, got {args.beam}")
    if args.lm_order < 2:  # flashlight's KenLM aborts the process on a unigram-only ARPA file
        parser.error(f"--lm-order must be at least 2 (the decoder's KenLM cannot load a unigram LM), got {args.lm_order}")
    if args.ensemble and len(args.checkpoints) < 2:
        parser.error("--ensemble needs at least two checkpoints")
    if args.tune and not args.lm:
        parser.error("--tune needs --lm: without an LM there is no weight to tune")
    if args.lm not in (None, "train") and not Path(args.lm).is_file():
        parser.error(f"--lm: no ARPA file at {args.lm} (or '--lm train' to build one from the training transcripts)")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.beam is not None:
        require_decoder()  # fail before the greedy pass, not after it
    device = pick_device(args.device)

    models = [load_model(path, device) for path in args.checkpoints]
    args.out.mkdir(parents=True, exist_ok=True)
    rows, built_lms = [], {}
    passes = SplitPasses(device, args.adapt_batch_norm, keep_emissions=args.beam is not None or args.ensemble)
    for name, loaded in zip(unique_names(models, args.names), models):
        manifest = args.manifest or manifest_paths(loaded.data_cfg, progress=False)[args.split]
        row, records = evaluate_checkpoint(loaded, manifest, passes)
        row["name"] = name
        if args.beam is not None:
            fields, hypotheses = evaluate_beam(
                loaded, name, lambda path, loaded=loaded: passes.emissions(loaded, path),
                manifest, args, built_lms)
            row.update(fields)
            for record, hypothesis in zip(records, hypotheses, strict=True):
                record["beam_hypothesis"] = hypothesis
        rows.append(row)
        write_text_atomic(args.out / f"{name}.hyps.jsonl", "".join(json.dumps(record) + "\n" for record in records))
        if not args.ensemble:
            passes.forget(loaded)
    if args.ensemble:
        manifest = args.manifest or manifest_paths(models[0].data_cfg, progress=False)[args.split]
        row, records = evaluate_ensemble(models, [r["name"] for r in rows], manifest, passes, args, built_lms)
        rows.append(row)
        write_text_atomic(args.out / "ensemble.hyps.jsonl", "".join(json.dumps(record) + "\n" for record in records))
    add_relative(rows, args.baseline)
    table = markdown_table(rows)
    write_text_atomic(args.out / "results.json", json.dumps(rows, indent=2) + "\n")
    write_text_atomic(args.out / "results.md", table + "\n")
    print(table)
    return rows


if __name__ == "__main__":
    main()
