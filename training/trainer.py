"""One training run: model, optimiser, LR schedule, pruner, data order, checkpoints and logs.

Step order (style.md, Narang et al. Algorithm 1): forward -> fp32 CTC -> backward -> clip -> optimizer.step()
-> scheduler.step() -> pruner.step(step), which recomputes masks when due and re-applies them in place.
"""
from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from data.dataset import Batch, collate
from data.manifest import read_manifest
from data.sampler import DurationBatchSampler
from models.config import build_model
from pruning.config import build_pruner
from pruning.report import write_pruning_report
from training.checkpoint import (
    code_version, link_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state,
)
from training.evaluation import EvaluationResult, evaluate_dataset
from training.loss import ctc_losses
from training.optim import build_lr_schedule, build_optimizer
from training.pipeline import Frontend, fit_frontend, manifest_paths, validated
from training.run_log import MetricsLog

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """"fp32" -> None (no autocast); "bf16" / "fp16" -> the autocast dtype (CTC stays fp32 either way)."""
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"trainer.precision must be one of {sorted(dtypes)}, got {precision!r}")
    return dtypes[precision]


class Trainer:
    """Builds everything a run needs from ``cfg`` (or from the checkpoint it resumes) and trains it."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        trainer = cfg.trainer
        resume = load_checkpoint(trainer.resume) if trainer.resume else None
        self.out_dir = Path(resume["path"]).resolve().parents[1] if resume else Path(trainer.output_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _log_to_file(self.out_dir / "train.log")
        if trainer.threads:
            torch.set_num_threads(trainer.threads)
        torch.manual_seed(trainer.seed)
        self.device = pick_device(trainer.device)
        self.autocast_dtype = autocast_dtype(trainer.precision)
        self._build_data(resume)
        self.model = build_model(cfg.model, self.frontend.extractor.num_features, self.frontend.tokenizer.num_classes)
        self.model.to(self.device)
        self._build_loaders()
        self.optimizer = build_optimizer(cfg.optim, self.model.parameters())
        self.scheduler = build_lr_schedule(cfg.optim, self.optimizer, self.steps_per_epoch)
        self.pruner = build_pruner(cfg.pruning, self.model, self.steps_per_epoch, trainer.num_epochs)
        self.scaler = torch.amp.GradScaler("cuda", enabled=trainer.precision == "fp16")
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best_cer = math.inf
        self.counters = {"infeasible_utterances": 0, "nonfinite_batches": 0}
        self.metrics = MetricsLog(self.out_dir / "metrics.jsonl")
        if resume:
            self._restore(resume)
        self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))
        OmegaConf.save(cfg, self.out_dir / "config.yaml", resolve=True)

    # ----------------------------------------------------------------------------------- building
    def _build_data(self, resume: dict | None) -> None:
        cfg = self.cfg.data
        paths = manifest_paths(cfg, self.cfg.trainer.progress)
        train = read_manifest(paths["train"])
        self.frontend = (
            Frontend.from_checkpoint(cfg, resume) if resume
            else fit_frontend(cfg, train, self.cfg.trainer.seed, self.cfg.trainer.progress)
        )
        self.manifests = paths
        self._raw_train, self._raw_dev = train, read_manifest(paths["dev"])

    def _build_loaders(self) -> None:
        cfg = self.cfg.data
        lengths = self.model.output_lengths
        train = validated(self._raw_train, self.frontend, lengths, cfg.max_duration, "train").kept
        dev = validated(self._raw_dev, self.frontend, lengths, math.inf, "dev").kept
        self.train_set = self.frontend.dataset(train, cfg, train=True, seed=self.cfg.trainer.seed)
        self.dev_set = self.frontend.dataset(dev, cfg, train=False)
        self.sampler = DurationBatchSampler(
            self.train_set.num_frames(), cfg.max_frames_per_batch, cfg.sortagrad, seed=self.cfg.trainer.seed
        )
        self.steps_per_epoch = len(self.sampler.batches)
        log.info("train: %d utterances, %.2f h, %d batches per epoch; dev: %d utterances",
                 len(train), sum(u.duration for u in train) / 3600, self.steps_per_epoch, len(dev))

    def _loader(self) -> torch.utils.data.DataLoader:
        self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
        self.train_set.epoch = self.epoch
        workers = self.cfg.data.num_workers
        return torch.utils.data.DataLoader(
            self.train_set, batch_sampler=self.sampler, collate_fn=collate, num_workers=workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
        )

    # ----------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {
            "code_version": code_version(),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "pruning": self.pruner.state_dict(),
            "sampler": {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch},
            "step": self.step,
            "epoch": self.epoch,
            "best_cer": self.best_cer,
            "counters": dict(self.counters),
            "rng": rng_state(),
            **self.frontend.state_dict(),
        }

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.pruner.load_state_dict(state["pruning"])
        self.epoch, self.batch_in_epoch = state["sampler"]["epoch"], state["sampler"]["batch_in_epoch"]
        self.step, self.best_cer, self.counters = state["step"], state["best_cer"], dict(state["counters"])
        set_rng_state(state["rng"])
        self.metrics.truncate_after(self.step)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", state["path"], self.step, self.epoch,
                 self.batch_in_epoch)

    def save(self, name: str, *aliases: str) -> None:
        """Write ``checkpoints/<name>`` atomically; each alias becomes a link to it."""
        folder = self.out_dir / "checkpoints"
        save_checkpoint(folder / name, self.state_dict())
        for alias in aliases:
            link_checkpoint(folder / name, folder / alias)

    def _save_periodic(self) -> None:
        """``step<N>.pt`` (the newest ``keep_checkpoints`` are kept) and ``last.pt`` pointing at it."""
        self.save(f"step{self.step}.pt", "last.pt")
        periodic = sorted((self.out_dir / "checkpoints").glob("step*.pt"), key=lambda p: int(p.stem[4:]))
        for old in periodic[: -self.cfg.trainer.keep_checkpoints]:
            old.unlink()

    # ----------------------------------------------------------------------------------- training
    def fit(self) -> dict:
        """Train to ``num_epochs`` (or ``max_steps``); returns the final summary (also in summary.json)."""
        cfg = self.cfg.trainer
        while self.epoch < cfg.num_epochs and not self._max_steps_reached():
            self._train_epoch()
            if self._max_steps_reached() and self.batch_in_epoch:
                break
            last_epoch = self.epoch + 1 == cfg.num_epochs
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            if last_epoch or self.epoch % cfg.eval_every_epochs == 0:
                self._validate()
            self.save("last.pt")
        self.save("last.pt")
        return self._finish()

    def _max_steps_reached(self) -> bool:
        return 0 < self.cfg.trainer.max_steps <= self.step

    def _train_epoch(self) -> None:
        cfg = self.cfg.trainer
        bar = tqdm(self._loader(), desc=f"epoch {self.epoch + 1}/{cfg.num_epochs}", disable=not cfg.progress,
                   total=len(self.sampler), dynamic_ncols=True)
        tic, audio_seconds, sample_rate = time.perf_counter(), 0.0, self.cfg.data.sample_rate
        for batch in bar:
            self.batch_in_epoch += 1
            stats = self._train_step(batch)
            audio_seconds += float(batch.feature_lengths.sum()) * self.frontend.extractor.hop_length / sample_rate
            if stats is not None and self.step % cfg.log_every_steps == 0:
                stats["audio_sec_per_sec"] = audio_seconds / (time.perf_counter() - tic)
                stats["sparsity"] = self.pruner.sparsity()  # counts nonzeros: only at log steps
                self._log_train(stats)
                bar.set_postfix(loss=f"{stats['loss']:.2f}", sparsity=f"{stats['sparsity']:.2f}")
                tic, audio_seconds = time.perf_counter(), 0.0
            if cfg.checkpoint_every_steps and stats is not None and self.step % cfg.checkpoint_every_steps == 0:
                self._save_periodic()
            if self._max_steps_reached():
                break

    def _train_step(self, batch: Batch) -> dict | None:
        """One optimiser step; returns None when the batch was skipped (counted)."""
        self.model.train()
        with torch.autocast(self.device.type, self.autocast_dtype) if self.autocast_dtype else nullcontext():
            log_probs, out_lengths = self.model(batch.features.to(self.device), batch.feature_lengths.to(self.device))
        losses, feasible = ctc_losses(log_probs, out_lengths, batch.targets, batch.target_lengths)
        self.counters["infeasible_utterances"] += int((~feasible).sum())
        loss = losses[feasible].mean() if feasible.any() else None
        if loss is None or not torch.isfinite(loss):
            return self._skip_batch("no feasible utterance" if loss is None else f"loss {float(loss)}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.max_grad_norm or math.inf)
        if not torch.isfinite(grad_norm):
            return self._skip_batch(f"gradient norm {float(grad_norm)}")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        if self.pruner.step(self.step):
            for key, value in self.pruner.scalars().items():
                self.writer.add_scalar(f"pruning/{key}", value, self.step)
        return {"loss": loss.item(), "grad_norm": float(grad_norm), "lr": self.scheduler.get_last_lr()[0]}

    def _skip_batch(self, why: str) -> None:
        self.counters["nonfinite_batches"] += 1
        self.optimizer.zero_grad(set_to_none=True)
        log.warning("skipped batch %d of epoch %d: %s (%d skipped so far)", self.batch_in_epoch, self.epoch + 1,
                    why, self.counters["nonfinite_batches"])
        return None

    # ----------------------------------------------------------------------------------- logging
    def _log_train(self, stats: dict) -> None:
        for key, value in stats.items():
            self.writer.add_scalar(f"train/{key}", value, self.step)
        self.metrics.append({"step": self.step, "epoch": self.epoch, **stats, **self.counters})
        if not self.cfg.trainer.progress:
            log.info("step %d epoch %d loss %.3f lr %.2e grad %.1f sparsity %.3f %.0f audio s/s", self.step,
                     self.epoch + 1, stats["loss"], stats["lr"], stats["grad_norm"], stats["sparsity"],
                     stats["audio_sec_per_sec"])

    def _validate(self) -> EvaluationResult:
        result = evaluate_dataset(self.model, self.dev_set, self.device, self.cfg.data.max_frames_per_batch)
        scores = result.scores
        for key, value in {"loss": result.loss, "wer": scores.wer, "cer": scores.cer}.items():
            self.writer.add_scalar(f"dev/{key}", value, self.step)
        self.metrics.append({"step": self.step, "epoch": self.epoch, "dev_loss": result.loss,
                             "dev_wer": scores.wer, "dev_cer": scores.cer, "sparsity": self.pruner.sparsity()})
        log.info("epoch %d step %d: dev loss %.3f WER %.2f%% CER %.2f%% sparsity %.3f", self.epoch, self.step,
                 result.loss, 100 * scores.wer, 100 * scores.cer, self.pruner.sparsity())
        if scores.cer < self.best_cer:
            self.best_cer = scores.cer
            self.save("best.pt")
        return result

    def _finish(self) -> dict:
        log.info("pruning report:\n%s", write_pruning_report(self.pruner, self.out_dir))
        self.metrics.plot(self.out_dir / "loss_curves.png")
        self.writer.close()
        summary = {"output_dir": str(self.out_dir), "step": self.step, "epoch": self.epoch,
                   "best_dev_cer": self.best_cer, "sparsity": self.pruner.sparsity(), **self.counters,
                   "last_dev": self.metrics.last_eval()}
        (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info("finished: %s", json.dumps(summary))
        return summary


def _log_to_file(path: Path) -> None:
    """Append this process's log records to ``path`` (once per path)."""
    root = logging.getLogger()
    if any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.resolve() for h in root.handlers):
        return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
