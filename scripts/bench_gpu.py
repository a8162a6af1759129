"""Training speed at paper scale on one GPU: audio seconds per second, dense and pruned, fp32 and mixed precision.

    python scripts/bench_gpu.py                          # GPU: ds2_rnn_paper and ds2_gru_paper, batch 32 x 10 s
    python scripts/bench_gpu.py --precisions fp32 bf16   # a subset
    python scripts/bench_gpu.py --quick                  # seconds on a CPU: tiny sizes, checks that it all runs

For each model x {dense, pruned} x precision one model trains ``--steps`` timed SGD steps (after ``--warmup``
untimed ones) on a fixed random batch, exactly as the trainer steps: forward under autocast (bf16/fp16), CTC in
fp32, GradScaler for fp16, gradient clipping, optimizer step; "pruned" also applies ``--sparsity`` magnitude
masks in place after every step (Narang et al.'s masked dense training: no sparse kernels, so no speed-up is
expected). Each row also checks what mixed precision and in-place masks must not break: the pruned tensors stay
at the target sparsity, and nn.GRU's weights stay views into cuDNN's one flat buffer ("flat weights"; n/a off
CUDA, where nothing is flattened); "RNN output" is the dtype the first recurrent layer really returns (PyTorch's
autocast wrapper for cuDNN RNNs casts to fp16 even under bf16 autocast, in the sources read; this shows it).
Writes a markdown table to ``--out`` and the rows as JSON next to it.

It reads configs/model/*.yaml and configs/pruning/hard.yaml with OmegaConf alone (no Hydra, no corpus code), so
a GPU machine with PyTorch and torchaudio needs only the omegaconf and antlr4-python3-runtime wheels besides.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from omegaconf import DictConfig, OmegaConf

from data.atomic import write_text_atomic
from data.features import FeatureConfig, FeatureExtractor
from data.tokenizer import CharTokenizer
from models.config import ModelConfig, build_model
from pruning.config import PruningConfig, build_pruner
from training.benchmark import random_batch
from training.loss import ctc_losses

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUICK_MODEL = ["conv_channels=[4,4]", "rnn_hidden_size=32", "fc_hidden_size=32", "num_rnn_layers=2"]
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # trainer.precision's autocast dtypes


def model_config(name: str, quick: bool) -> DictConfig:
    """configs/model/<name>.yaml on its schema (tiny sizes when ``quick``)."""
    return OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONFIGS / "model" / f"{name}.yaml"),
                           OmegaConf.from_dotlist(QUICK_MODEL if quick else []))


def pruning_config(sparsity: float) -> DictConfig:
    """configs/pruning/hard.yaml pruning at step 1 to exactly ``sparsity``."""
    return OmegaConf.merge(OmegaConf.structured(PruningConfig), OmegaConf.load(CONFIGS / "pruning" / "hard.yaml"),
                           OmegaConf.from_dotlist(["start_step=1", f"target_sparsity={sparsity}"]))


class Setup:
    """One benchmarked configuration: model, optimizer, scaler, optional pruner and a fixed batch on ``device``."""

    def __init__(self, model_name: str, pruned: bool, precision: str, args: argparse.Namespace,
                 device: torch.device) -> None:
        extractor = FeatureExtractor(FeatureConfig())  # DS2's 161-bin linear spectrogram at 16 kHz
        torch.manual_seed(0)
        model_cfg = model_config(model_name, args.quick)
        self.model = build_model(model_cfg, extractor.num_features, CharTokenizer().num_classes).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-6, momentum=0.9, nesterov=True)
        self.dtype = PRECISIONS[precision]
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.pruner = (build_pruner(pruning_config(args.sparsity), self.model, steps_per_epoch=1, num_epochs=2)
                       if pruned else None)
        if self.pruner is not None:
            self.pruner.step(1)  # hard pruning: the masks at exactly --sparsity, applied in place
        self.batch = random_batch(extractor.num_features, args.batch, args.seconds, device)
        self.device = device
        self.rnn_dtype = ""  # what the recurrent layers really compute in (autocast may differ from its dtype)
        self.model.rnns[0].register_forward_hook(self._record_dtype)

    def _record_dtype(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.rnn_dtype = str(output.dtype).removeprefix("torch.")

    def step(self) -> None:
        """One training step as training/trainer.py takes it (then the masks, when pruned)."""
        features, lengths, targets, target_lengths = self.batch
        with torch.autocast(self.device.type, self.dtype, enabled=self.dtype is not None):
            log_probs, out_lengths = self.model(features, lengths)
        losses, _ = ctc_losses(log_probs, out_lengths, targets, target_lengths)  # fp32 whatever the autocast
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses.mean()).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 400.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.pruner is not None:
            self.pruner.apply()

    def flat_weights(self) -> str:
        """"intact" when every cuDNN RNN's weights are views into one flat buffer, "n/a" when nothing is flattened."""
        rnns = [m for m in self.model.modules() if isinstance(m, torch.nn.RNNBase)]
        if not rnns or self.device.type != "cuda":
            return "n/a"
        intact = all(len({w.untyped_storage().data_ptr() for w in rnn._flat_weights}) == 1 for rnn in rnns)
        return "intact" if intact else "BROKEN"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model_name: str, pruned: bool, precision: str, args: argparse.Namespace, device: torch.device) -> dict:
    """One row: step time, audio seconds per second, peak GPU memory and the two integrity checks."""
    row = {"model": model_name, "pruned": pruned, "precision": precision}
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        setup = Setup(model_name, pruned, precision, args, device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(args.warmup):
                setup.step()
            _sync(device)
            tic = time.perf_counter()
            for _ in range(args.steps):
                setup.step()
            _sync(device)
            elapsed = time.perf_counter() - tic
    except torch.cuda.OutOfMemoryError:
        return {**row, "error": "out of memory"}
    non_contiguous = any("contiguous chunk of memory" in str(w.message) for w in caught)
    row.update(
        params_m=sum(p.numel() for p in setup.model.parameters()) / 1e6,
        step_s=elapsed / args.steps,
        audio_s_per_s=args.batch * args.seconds * args.steps / elapsed,
        peak_gib=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        sparsity=setup.pruner.sparsity() if setup.pruner is not None else 0.0,
        flat_weights="BROKEN (re-flattened every call)" if non_contiguous else setup.flat_weights(),
        rnn_dtype=setup.rnn_dtype,
    )
    return row


def table(rows: list[dict], header: str) -> str:
    columns = ("| model | params | weights | precision | RNN output | step time | audio s / s | peak memory | "
               "pruned-tensor sparsity | flat weights |")
    lines = [header, "", columns, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        weights = "pruned" if r["pruned"] else "dense"
        if "error" in r:
            lines.append(f"| {r['model']} | | {weights} | {r['precision']} | | {r['error']} | | | | |")
            continue
        memory = "" if r["peak_gib"] is None else f"{r['peak_gib']:.1f} GiB"
        lines.append(f"| {r['model']} | {r['params_m']:.2f} M | {weights} | {r['precision']} | {r['rnn_dtype']} | "
                     f"{r['step_s'] * 1000:.1f} ms | {r['audio_s_per_s']:.0f} | {memory} | {r['sparsity']:.3f} | "
                     f"{r['flat_weights']} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["ds2_rnn_paper", "ds2_gru_paper"])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=list(PRECISIONS))
    parser.add_argument("--batch", type=int, default=32, help="utterances per batch")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of every utterance")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (cuDNN, allocator)")
    parser.add_argument("--sparsity", type=float, default=0.9, help="of the pruned matrices in pruned rows")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true",
                        help="tiny models (2 x 32 units), batch 2 x 1 s, 1 warm-up and 1 timed step: runs on a CPU")
    parser.add_argument("--out", type=Path, default=Path("results/bench_gpu.md"))
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.seconds, args.steps, args.warmup = 2, 1.0, 1, 1
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    """Measure every row, write ``--out`` (markdown) and ``--out`` with suffix .json; returns the rows."""
    args = parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    rows = []
    for model_name in args.models:
        for pruned in (False, True):
            for precision in args.precisions:
                rows.append(measure(model_name, pruned, precision, args, device))
                print(json.dumps(rows[-1]), flush=True)
    header = (f"{name}, torch {torch.__version__}{' (--quick: tiny models)' if args.quick else ''}; batch "
              f"{args.batch} x {args.seconds:g} s, {args.steps} timed steps after {args.warmup}; pruned = "
              f"{args.sparsity:.0%} of the RNN and FC matrices zeroed in place after every step")
    text = table(rows, header)
    write_text_atomic(args.out, text + "\n")
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(rows, indent=2) + "\n")
    print(text)
    return rows


if __name__ == "__main__":
    main()
