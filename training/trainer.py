"""One training run: model, optimiser, LR schedule, pruner, data order, checkpoints and logs.

Step order (style.md, Narang et al. Algorithm 1): forward -> fp32 CTC -> backward -> clip -> optimizer.step()
-> scheduler.step() -> pruner.step(step), which recomputes masks when due and re-applies them in place.

Under torchrun every process runs this with its share of each global batch (training/distributed.py);
rank 0 alone writes checkpoints, logs, metrics and TensorBoard. One process behaves exactly as before.
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

from data.atomic import write_text_atomic
from data.dataset import Batch, SpeechDataset, collate
from data.manifest import Utterance, read_manifest
from data.sampler import DurationBatchSampler
from models.config import build_model
from pruning.config import build_pruner
from pruning.report import write_pruning_report
from training.checkpoint import (
    code_version,
    link_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from training.distributed import (
    SINGLE_PROCESS,
    World,
    batch_loss,
    broadcast_from_main,
    check_masks_agree,
    evaluate_sharded,
    in_turn,
    pick_device,
    sync_buffers,
    wrap_model,
)
from training.evaluation import EvaluationResult
from training.loss import ctc_losses
from training.optim import build_lr_schedule, build_optimizer
from training.pipeline import Frontend, fit_frontend, manifest_paths, validated
from training.run_log import MetricsLog

log = logging.getLogger(__name__)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """"fp32" -> None (no autocast); "bf16" / "fp16" -> the autocast dtype (CTC stays fp32 either way)."""
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"trainer.precision must be one of {sorted(dtypes)}, got {precision!r}")
    return dtypes[precision]


class Trainer:
    """Builds everything a run needs from ``cfg`` (or from the checkpoint it resumes) and trains it.

    ``world``: this process's place in a torchrun launch (training/distributed.py ``distributed_session``).
    """

    def __init__(self, cfg, world: World = SINGLE_PROCESS) -> None:
        self.cfg, self.world = cfg, world
        trainer = cfg.trainer
        resume = load_checkpoint(trainer.resume) if trainer.resume else None
        if resume and "averaged_from" in resume:
            raise ValueError(f"trainer.resume={trainer.resume}: {resume['path']} is an average of checkpoints "
                             "(scripts/average_checkpoints.py), for evaluation only; resume from the run folder")
        out_dir = Path(resume["path"]).resolve().parents[1] if resume else Path(trainer.output_dir)
        self.out_dir = Path(broadcast_from_main(str(out_dir), world))  # Hydra's timestamp may differ per process
        if world.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            _log_to_file(self.out_dir / "train.log")
        else:
            logging.getLogger().setLevel(logging.WARNING)
        if trainer.threads:
            torch.set_num_threads(trainer.threads)
        torch.manual_seed(trainer.seed)
        self.device = pick_device(trainer.device, world)
        self.autocast_dtype = autocast_dtype(trainer.precision)
        self._build_data(resume)
        self.model = build_model(cfg.model, self.frontend.extractor.num_features, self.frontend.tokenizer.num_classes)
        self.model.to(self.device)
        self.network = wrap_model(self.model, world, self.device)  # what training steps call
        self._build_loaders()
        self.optimizer = build_optimizer(cfg.optim, self.model.parameters())
        self.scheduler = build_lr_schedule(cfg.optim, self.optimizer, self.steps_per_epoch, trainer.num_epochs)
        self.pruner = build_pruner(cfg.pruning, self.model, self.steps_per_epoch, trainer.num_epochs)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=trainer.precision == "fp16")
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best_cer = math.inf
        self.counters = {"infeasible_utterances": 0, "nonfinite_batches": 0}
        self.metrics = MetricsLog(self.out_dir / "metrics.jsonl")
        if resume:
            self._restore(resume)
        self.writer = SummaryWriter(str(self.out_dir / "tensorboard")) if world.is_main else None
        if world.is_main:
            OmegaConf.save(cfg, self.out_dir / "config.yaml", resolve=True)

    # ----------------------------------------------------------------------------------- building
    def _build_data(self, resume: dict | None) -> None:
        cfg = self.cfg.data
        progress = self.cfg.trainer.progress and self.world.is_main
        paths = in_turn(self.world, lambda: manifest_paths(cfg, progress))  # one corpus builder at a time
        train = read_manifest(paths["train"])
        self.frontend = (
            Frontend.from_checkpoint(cfg, resume) if resume
            else fit_frontend(cfg, train, self.cfg.trainer.seed, progress)
        )
        self.manifests = paths
        self._raw_train, self._raw_dev = train, read_manifest(paths["dev"])

    def _build_loaders(self) -> None:
        cfg = self.cfg.data
        lengths = self.model.output_lengths
        train = validated(self._raw_train, self.frontend, lengths, cfg.max_duration, "train").kept
        dev = validated(self._raw_dev, self.frontend, lengths, math.inf, "dev").kept
        self.train_set = self.frontend.dataset(train, cfg, train=True, seed=self.cfg.trainer.seed)
        self.dev_utterances = dev
        self.sampler = DurationBatchSampler(
            self.train_set.num_frames(), cfg.max_frames_per_batch, cfg.sortagrad, seed=self.cfg.trainer.seed,
            num_replicas=self.world.size, rank=self.world.rank,
        )
        self.steps_per_epoch = len(self.sampler.batches)
        log.info("train: %d utterances, %.2f h, %d batches per epoch (each split over %d processes); "
                 "dev: %d utterances", len(train), sum(u.duration for u in train) / 3600, self.steps_per_epoch,
                 self.world.size, len(dev))

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
            "sampler": {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch},  # global batches
            "world_size": self.world.size,
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
        if self.world.is_main:
            self.metrics.truncate_after(self.step)
        log.info("resumed from %s at step %d (epoch %d, batch %d), saved by %d process(es), now %d", state["path"],
                 self.step, self.epoch, self.batch_in_epoch, state.get("world_size", 1), self.world.size)

    def save(self, name: str, *aliases: str) -> None:
        """Write ``checkpoints/<name>`` atomically (rank 0 only); each alias becomes a link to it."""
        if not self.world.is_main:
            return
        folder = self.out_dir / "checkpoints"
        save_checkpoint(folder / name, self.state_dict())
        for alias in aliases:
            link_checkpoint(folder / name, folder / alias)

    def _save_periodic(self) -> None:
        """``step<N>.pt`` (the newest ``keep_checkpoints`` are kept) and ``last.pt`` pointing at it (rank 0)."""
        if not self.world.is_main:
            return
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
        bar = tqdm(self._loader(), desc=f"epoch {self.epoch + 1}/{cfg.num_epochs}", total=len(self.sampler),
                   disable=not cfg.progress or not self.world.is_main, dynamic_ncols=True)
        global_batches = self.sampler.epoch_order(self.epoch)[self.batch_in_epoch :]
        tic, audio_seconds, sample_rate = time.perf_counter(), 0.0, self.cfg.data.sample_rate
        for batch, global_batch in zip(bar, global_batches):
            self.batch_in_epoch += 1
            stats, frames = self._train_step(batch, self.sampler.has_share(global_batch))
            audio_seconds += frames * self.frontend.extractor.hop_length / sample_rate
            if stats is not None and self.step % cfg.log_every_steps == 0 and self.world.is_main:
                stats["audio_sec_per_sec"] = audio_seconds / (time.perf_counter() - tic)
                stats["sparsity"] = self.pruner.sparsity()  # counts nonzeros: only at log steps
                self._log_train(stats)
                bar.set_postfix(loss=f"{stats['loss']:.2f}", sparsity=f"{stats['sparsity']:.2f}")
                tic, audio_seconds = time.perf_counter(), 0.0
            if cfg.checkpoint_every_steps and stats is not None and self.step % cfg.checkpoint_every_steps == 0:
                self._save_periodic()
            if self._max_steps_reached():
                break

    def _train_step(self, batch: Batch, has_share: bool = True) -> tuple[dict | None, int]:
        """One optimiser step on this process's share of a global batch (``has_share`` False: a weight-0 copy).

        Returns (stats, or None when the batch was skipped (counted); feature frames trained on by all processes).
        Skipping is decided from totals over all processes, so every process skips the same batches.
        """
        self.network.train()
        with torch.autocast(self.device.type, self.autocast_dtype) if self.autocast_dtype else nullcontext():
            log_probs, out_lengths = self.network(batch.features.to(self.device),
                                                  batch.feature_lengths.to(self.device))
        losses, feasible = ctc_losses(log_probs, out_lengths, batch.targets, batch.target_lengths)
        loss, totals = batch_loss(losses, feasible, batch.feature_lengths, has_share, self.world)
        self.counters["infeasible_utterances"] += totals.infeasible
        if loss is None or not math.isfinite(totals.loss):
            self._skip_batch("no feasible utterance" if loss is None else f"loss {totals.loss}")
            return None, totals.frames
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.max_grad_norm or math.inf)
        if not torch.isfinite(grad_norm):  # gradients are all-reduced: the same on every process
            self.scaler.update()  # fp16: lowers the loss scale after an overflow (a no-op otherwise)
            self._skip_batch(f"gradient norm {float(grad_norm)}")
            return None, totals.frames
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        changed = self.pruner.step(self.step)
        if self.pruner.updates_masks_at(self.step):
            check_masks_agree(self.pruner.masks, self.world, self.step)
        if changed and self.world.is_main:
            for key, value in self.pruner.scalars().items():
                self.writer.add_scalar(f"pruning/{key}", value, self.step)
        stats = {"loss": totals.loss, "grad_norm": float(grad_norm), "lr": self.scheduler.get_last_lr()[0]}
        return stats, totals.frames

    def _skip_batch(self, why: str) -> None:
        self.counters["nonfinite_batches"] += 1
        self.optimizer.zero_grad(set_to_none=True)
        log.warning("skipped batch %d of epoch %d: %s (%d skipped so far)", self.batch_in_epoch, self.epoch + 1,
                    why, self.counters["nonfinite_batches"])

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
        """Dev WER/CER (decoded on all processes, scored once); rank 0 logs them and saves ``best.pt``."""
        sync_buffers(self.model, self.world)
        result = evaluate_sharded(self.model, self.dev_utterances, self._dev_dataset, self.device,
                                  self.cfg.data.max_frames_per_batch, self.world)
        scores = result.scores
        if self.world.is_main:
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

    def _dev_dataset(self, utterances: list[Utterance]) -> SpeechDataset:
        return self.frontend.dataset(utterances, self.cfg.data, train=False)

    def _finish(self) -> dict:
        summary = {"output_dir": str(self.out_dir), "step": self.step, "epoch": self.epoch,
                   "best_dev_cer": self.best_cer, "sparsity": self.pruner.sparsity(), **self.counters}
        if not self.world.is_main:
            return summary
        log.info("pruning report:\n%s", write_pruning_report(self.pruner, self.out_dir))
        self.metrics.plot(self.out_dir / "loss_curves.png")
        self.writer.close()
        summary["last_dev"] = self.metrics.last_eval()
        write_text_atomic(self.out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
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
